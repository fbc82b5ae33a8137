// Inputs for the kernel tests: random rows of weight-like values and the edge-case blocks that
// DESIGN.md (convention 2) asks for. All values are finite (NaN/Inf policy: kernels/ref/quant_ref.cc).
// Header-only: each test_kernels_*.cc is its own program.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace shrink::test::kernel_data {

using Rng = std::mt19937;

inline float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float uniform(Rng& rng, float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng); }
inline int uniform_int(Rng& rng, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
inline float random_sign(Rng& rng) { return (rng() & 1) ? -1.0f : 1.0f; }
inline float pow2(int e) { return std::ldexp(1.0f, e); }

// Any finite float, every exponent equally likely (subnormals and zeros included).
inline float random_finite_bits(Rng& rng) {
  for (;;) {
    const uint32_t u = static_cast<uint32_t>(rng());
    if ((u & 0x7F800000u) != 0x7F800000u) return from_bits(u);
  }
}

// A row of weight-like values: normal with a per-row scale drawn log-uniform over 1e-4..1e2,
// sometimes with a few large outliers (as in real checkpoints), sometimes uniform.
inline void fill_random_row(Rng& rng, float* x, int64_t n) {
  const float sigma = std::pow(10.0f, uniform(rng, -4.0f, 2.0f));
  const int kind = uniform_int(rng, 0, 9);
  std::normal_distribution<float> normal(0.0f, sigma);
  for (int64_t i = 0; i < n; ++i) x[i] = kind == 0 ? uniform(rng, -sigma, sigma) : normal(rng);
  if (kind >= 7) {
    const int outliers = uniform_int(rng, 1, 4);
    for (int k = 0; k < outliers; ++k) x[uniform_int(rng, 0, static_cast<int>(n - 1))] *= uniform(rng, 10.0f, 300.0f);
  }
}

// Exact ties: with a power-of-two scale s, a block whose extreme makes d == s (or -s) exactly
// puts every (k + 0.5) * s on a rounding boundary: roundf's .5 for Q8_0, and the integer edge
// of trunc(x*id + 8.5f) / trunc(x*id + 16.5f) / trunc((x-min)*id + 0.5f) for the 4/5-bit types.
// `lo`..`hi` is the range of k; `first` is the extreme that fixes d.
inline void fill_ties(Rng& rng, float* x, float first, int lo, int hi, float extra, int nudge) {
  const float s = pow2(uniform_int(rng, -20, 20));
  x[0] = first * s;
  for (int j = 1; j < 32; ++j) {
    float v = (static_cast<float>(uniform_int(rng, lo, hi)) + 0.5f) * s;
    if (nudge != 0) v = std::nextafter(v, nudge > 0 ? FLT_MAX : -FLT_MAX);  // just off the tie
    x[j] = v;
  }
  if (extra != 0.0f) x[1] = extra * s;  // the other end of the range (Q4_1/Q5_1 need min and max)
  // Move the extreme to a random position so "first occurrence" logic is exercised.
  std::swap(x[0], x[uniform_int(rng, 0, 31)]);
}

struct BlockCase {
  std::string name;
  std::function<void(Rng&, float*)> fill;  // writes 32 values
};

inline std::vector<BlockCase> edge_cases() {
  std::vector<BlockCase> c;
  c.push_back({"all +0", [](Rng&, float* x) { for (int j = 0; j < 32; ++j) x[j] = 0.0f; }});
  c.push_back({"all -0", [](Rng&, float* x) { for (int j = 0; j < 32; ++j) x[j] = -0.0f; }});
  c.push_back({"mixed signed zeros", [](Rng& r, float* x) { for (int j = 0; j < 32; ++j) x[j] = r() & 1 ? -0.0f : 0.0f; }});
  c.push_back({"constant", [](Rng& r, float* x) {
    const float v = random_sign(r) * std::pow(10.0f, uniform(r, -6.0f, 6.0f));
    for (int j = 0; j < 32; ++j) x[j] = v;
  }});
  c.push_back({"constant with signed zeros", [](Rng& r, float* x) {
    const float v = random_sign(r) * uniform(r, 0.1f, 10.0f);
    for (int j = 0; j < 32; ++j) x[j] = (r() % 3 == 0) ? (r() & 1 ? -0.0f : 0.0f) : v;
  }});
  c.push_back({"+-FLT_MAX", [](Rng& r, float* x) {
    for (int j = 0; j < 32; ++j) x[j] = uniform(r, -1.0f, 1.0f) * FLT_MAX;
    x[uniform_int(r, 0, 31)] = FLT_MAX;
    x[uniform_int(r, 0, 31)] = -FLT_MAX;
  }});
  c.push_back({"FLT_MAX one sign", [](Rng& r, float* x) {
    const float s = random_sign(r);
    for (int j = 0; j < 32; ++j) x[j] = s * uniform(r, 0.0f, 1.0f) * FLT_MAX;
    x[uniform_int(r, 0, 31)] = s * FLT_MAX;
  }});
  c.push_back({"scale near fp16 overflow", [](Rng& r, float* x) {
    // d crosses 65504 (largest half) / 65520 (rounds to inf) for divisors 127, 8, 16, 15, 31.
    static const float kDiv[] = {127.0f, 8.0f, 16.0f, 15.0f, 31.0f, 1.0f};
    static const float kD[] = {65504.0f, 65519.0f, 65520.0f, 65536.0f, 70000.0f};
    const float amax = kD[uniform_int(r, 0, 4)] * kDiv[uniform_int(r, 0, 5)];
    for (int j = 0; j < 32; ++j) x[j] = uniform(r, -1.0f, 1.0f) * amax;
    x[uniform_int(r, 0, 31)] = random_sign(r) * amax;
  }});
  // Ties, per format family, exactly on and just off the boundary.
  for (int nudge = -1; nudge <= 1; ++nudge) {
    const std::string suffix = nudge == 0 ? "" : (nudge > 0 ? " +1ulp" : " -1ulp");
    c.push_back({"q8_0 ties" + suffix, [nudge](Rng& r, float* x) { fill_ties(r, x, random_sign(r) * 127.0f, -127, 126, 0.0f, nudge); }});
    c.push_back({"q4_0 ties" + suffix, [nudge](Rng& r, float* x) { fill_ties(r, x, random_sign(r) * 8.0f, -8, 7, 0.0f, nudge); }});
    c.push_back({"q5_0 ties" + suffix, [nudge](Rng& r, float* x) { fill_ties(r, x, random_sign(r) * 16.0f, -16, 15, 0.0f, nudge); }});
    c.push_back({"q4_1 ties" + suffix, [nudge](Rng& r, float* x) { fill_ties(r, x, -7.0f, -7, 7, 8.0f, nudge); }});
    c.push_back({"q5_1 ties" + suffix, [nudge](Rng& r, float* x) { fill_ties(r, x, -15.0f, -15, 15, 16.0f, nudge); }});
  }
  c.push_back({"subnormals", [](Rng& r, float* x) {
    for (int j = 0; j < 32; ++j) x[j] = from_bits((static_cast<uint32_t>(r()) & 0x807FFFFFu));
  }});
  c.push_back({"subnormals and zeros", [](Rng& r, float* x) {
    for (int j = 0; j < 32; ++j) x[j] = r() & 1 ? from_bits(static_cast<uint32_t>(r()) & 0x800000FFu) : 0.0f;
  }});
  c.push_back({"max below 2^-120 (1/d overflows)", [](Rng& r, float* x) {
    const float top = pow2(-uniform_int(r, 120, 149));
    for (int j = 0; j < 32; ++j) x[j] = random_sign(r) * uniform(r, 0.0f, 1.0f) * top;
    x[uniform_int(r, 0, 31)] = random_sign(r) * top;
  }});
  c.push_back({"huge dynamic range", [](Rng& r, float* x) {
    for (int j = 0; j < 32; ++j) x[j] = random_sign(r) * std::ldexp(uniform(r, 1.0f, 2.0f), uniform_int(r, -149, 127));
  }});
  c.push_back({"one huge among tiny", [](Rng& r, float* x) {
    for (int j = 0; j < 32; ++j) x[j] = random_sign(r) * uniform(r, 0.5f, 1.0f) * 1e-30f;
    x[uniform_int(r, 0, 31)] = random_sign(r) * 1e30f;
  }});
  c.push_back({"tiny (fp16 scale underflows)", [](Rng& r, float* x) {
    const float s = std::pow(10.0f, uniform(r, -30.0f, -6.0f));
    for (int j = 0; j < 32; ++j) x[j] = uniform(r, -1.0f, 1.0f) * s;
  }});
  c.push_back({"+a and -a both present", [](Rng& r, float* x) {
    const float a = uniform(r, 0.5f, 2.0f);
    for (int j = 0; j < 32; ++j) x[j] = uniform(r, -0.4f, 0.4f);
    int p = uniform_int(r, 0, 31), q = uniform_int(r, 0, 31);
    if (p == q) q = (p + 1) % 32;
    x[p] = a;
    x[q] = -a;
  }});
  c.push_back({"negative max dominates by 1 ulp", [](Rng& r, float* x) {
    const float a = uniform(r, 0.5f, 2.0f);
    for (int j = 0; j < 32; ++j) x[j] = uniform(r, -0.4f, 0.4f);
    x[uniform_int(r, 0, 15)] = a;
    x[uniform_int(r, 16, 31)] = -std::nextafter(a, FLT_MAX);
  }});
  c.push_back({"positive max dominates by 1 ulp", [](Rng& r, float* x) {
    const float a = uniform(r, 0.5f, 2.0f);
    for (int j = 0; j < 32; ++j) x[j] = uniform(r, -0.4f, 0.4f);
    x[uniform_int(r, 0, 15)] = -a;
    x[uniform_int(r, 16, 31)] = std::nextafter(a, FLT_MAX);
  }});
  c.push_back({"all negative", [](Rng& r, float* x) { for (int j = 0; j < 32; ++j) x[j] = -uniform(r, 0.001f, 3.0f); }});
  c.push_back({"all positive", [](Rng& r, float* x) { for (int j = 0; j < 32; ++j) x[j] = uniform(r, 0.001f, 3.0f); }});
  c.push_back({"random finite bit patterns", [](Rng& r, float* x) { for (int j = 0; j < 32; ++j) x[j] = random_finite_bits(r); }});
  return c;
}

// Row lengths the tests use (multiples of 32): one block up to several thousand, incl. 4128
// (= 4096 + 32, breaks power-of-two assumptions).
inline const std::vector<int64_t>& row_lengths() {
  static const std::vector<int64_t> v = {32, 64, 96, 256, 4096, 4128};
  return v;
}

}  // namespace shrink::test::kernel_data
