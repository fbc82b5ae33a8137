// The forward pass of a Llama-family decoder, step for step as llama.cpp builds its graph
// (src/models/llama.cpp, qwen2.cpp) and as ggml's CPU ops compute each step:
//   x = token_embd[tokens]
//   per layer: h = rms_norm(x) * attn_norm; q,k,v = h Wq,Wk,Wv (+ biases); RoPE(q, k);
//              x += softmax(q k^T / sqrt(head_dim) + causal mask) v Wo
//              h = rms_norm(x) * ffn_norm; x += (silu(h Wgate) * (h Wup)) Wdown
//   logits = (rms_norm(x) * output_norm) Woutput
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/dot.h"
#include "kernels/fp16.h"
#include "kernels/kernels.h"
#include "model/llama_model.h"

namespace shrink {
namespace {

inline float round_fp16(float x) { return kernels::fp16_to_fp32(kernels::fp32_to_fp16(x)); }

// ggml_compute_forward_rms_norm_f32: sum of squares in double, scale = 1/sqrtf(mean + eps);
// then ggml_mul by the norm weight.
void rms_norm(const float* x, const float* w, int64_t n, float eps, float* y) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * scale) * w[i];
}

// cos/sin of each rotated pair at position `pos`, as ggml's rope cache computes them: theta
// starts at pos and is multiplied by freq_base^(-2/n_dims) per pair (in float).
void rope_cache(float pos, int64_t n_dims, float freq_base, float freq_scale, const std::vector<float>& factors,
                std::vector<float>& cs) {
  const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(n_dims));
  cs.resize(static_cast<size_t>(n_dims));
  float theta = pos;
  for (int64_t i0 = 0; i0 < n_dims; i0 += 2) {
    const float ff = factors.empty() ? 1.0f : factors[static_cast<size_t>(i0 / 2)];
    const float t = freq_scale * (theta / ff);
    cs[static_cast<size_t>(i0)] = std::cos(t);
    cs[static_cast<size_t>(i0 + 1)] = std::sin(t);
    theta *= theta_scale;
  }
}

// Rotates one head in place. GGUF "llama" pairs adjacent elements (2i, 2i+1) (ggml's normal
// mode); "qwen2" pairs i with i + n_dims/2 (NEOX mode), llama.cpp's convention per architecture.
void rope_head(float* x, int64_t n_dims, const std::vector<float>& cs, bool neox) {
  for (int64_t i0 = 0; i0 < n_dims; i0 += 2) {
    const float c = cs[static_cast<size_t>(i0)], s = cs[static_cast<size_t>(i0 + 1)];
    const int64_t a = neox ? i0 / 2 : i0;
    const int64_t b = neox ? i0 / 2 + n_dims / 2 : i0 + 1;
    const float x0 = x[a], x1 = x[b];
    x[a] = x0 * c - x1 * s;
    x[b] = x0 * s + x1 * c;
  }
}

inline float silu(float x) { return x / (1.0f + std::exp(-x)); }

}  // namespace

Status llama_forward(const LlamaModel& model, KvCache& cache, std::span<const int32_t> tokens,
                     std::vector<float>& logits, int64_t logits_from, MatmulObserver* observer) {
  const LlamaConfig& c = model.config;
  const int64_t T = static_cast<int64_t>(tokens.size());
  const int64_t d = c.n_embd, dq = c.n_embd_q(), dkv = c.n_embd_kv(), ff = c.n_ff, hd = c.head_dim;
  const int64_t n_head = c.n_head, group = c.n_head / c.n_head_kv;
  if (T == 0) return {};
  if (cache.n_past + T > cache.n_ctx)
    return make_error("context full: " + std::to_string(cache.n_past) + " + " + std::to_string(T) +
                      " tokens exceed the KV cache of " + std::to_string(cache.n_ctx));
  if (logits_from < 0 || logits_from > T) return make_error("logits_from " + std::to_string(logits_from) + " out of range");
  for (int64_t t = 0; t < T; ++t)
    if (tokens[static_cast<size_t>(t)] < 0 || tokens[static_cast<size_t>(t)] >= c.n_vocab)
      return make_error("token id " + std::to_string(tokens[static_cast<size_t>(t)]) + " at index " + std::to_string(t) +
                        " is outside the vocabulary of " + std::to_string(c.n_vocab));
  const bool f16_cache = cache.type == KvCacheType::F16;
  const bool neox = c.arch == "qwen2";
  const float eps = static_cast<float>(c.rms_eps);
  const float freq_base = static_cast<float>(c.rope_theta);
  const float freq_scale =
      c.rope_scaling && c.rope_scaling->type == "linear" ? static_cast<float>(1.0 / c.rope_scaling->factor) : 1.0f;
  const float kq_scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t n_past = cache.n_past;
  auto mm = [observer](const WeightMatrix& w, const float* in, int64_t n_tok, float* out) {
    if (observer) observer->observe(w, in, n_tok);
    matmul(w, in, n_tok, out);
  };

  // (T, d) residual stream; embedding rows dequantized (ggml_get_rows).
  std::vector<float> x(static_cast<size_t>(T * d)), h(static_cast<size_t>(T * d));
  for (int64_t t = 0; t < T; ++t)
    kernels::dequantize_rows(model.token_embd.type, model.token_embd.row(tokens[static_cast<size_t>(t)]),
                             x.data() + t * d, 1, d);

  std::vector<std::vector<float>> rope(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t)
    rope_cache(static_cast<float>(n_past + t), hd, freq_base, freq_scale, model.rope_freq_factors,
               rope[static_cast<size_t>(t)]);

  std::vector<float> q(static_cast<size_t>(T * dq)), k(static_cast<size_t>(T * dkv)), v(static_cast<size_t>(T * dkv));
  std::vector<float> attn(static_cast<size_t>(T * dq)), proj(static_cast<size_t>(T * d));
  std::vector<float> gate(static_cast<size_t>(T * ff)), up(static_cast<size_t>(T * ff));

  for (size_t il = 0; il < model.layers.size(); ++il) {
    const LlamaLayer& L = model.layers[il];
    for (int64_t t = 0; t < T; ++t) rms_norm(x.data() + t * d, L.attn_norm.data(), d, eps, h.data() + t * d);
    mm(L.wq, h.data(), T, q.data());  // (T, dq)
    mm(L.wk, h.data(), T, k.data());  // (T, dkv)
    mm(L.wv, h.data(), T, v.data());  // (T, dkv)
    if (!L.bq.empty())
      for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < dq; ++i) q[static_cast<size_t>(t * dq + i)] += L.bq[static_cast<size_t>(i)];
    if (!L.bk.empty())
      for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < dkv; ++i) k[static_cast<size_t>(t * dkv + i)] += L.bk[static_cast<size_t>(i)];
    if (!L.bv.empty())
      for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < dkv; ++i) v[static_cast<size_t>(t * dkv + i)] += L.bv[static_cast<size_t>(i)];
    // RoPE; keys and values into the cache (ggml_cpy F32 -> F16 rounds to nearest even).
    std::vector<float>& kc = cache.k[il];
    std::vector<float>& vc = cache.v[il];
    for (int64_t t = 0; t < T; ++t) {
      const auto& cs = rope[static_cast<size_t>(t)];
      for (int64_t hh = 0; hh < n_head; ++hh) rope_head(q.data() + t * dq + hh * hd, hd, cs, neox);
      for (int64_t hh = 0; hh < c.n_head_kv; ++hh) rope_head(k.data() + t * dkv + hh * hd, hd, cs, neox);
      float* kd = kc.data() + (n_past + t) * dkv;
      float* vd = vc.data() + (n_past + t) * dkv;
      for (int64_t i = 0; i < dkv; ++i) {
        const float kv = k[static_cast<size_t>(t * dkv + i)], vv = v[static_cast<size_t>(t * dkv + i)];
        kd[i] = f16_cache ? round_fp16(kv) : kv;
        vd[i] = f16_cache ? round_fp16(vv) : vv;
      }
    }
    // Attention, one (token, head) pair per iteration. With an F16 cache ggml's products
    // K*q and V*softmax convert q and the softmax weights to F16 (the F16 vec_dot_type).
#pragma omp parallel
    {
      std::vector<float> qh(static_cast<size_t>(hd)), p(static_cast<size_t>(n_past + T));
#pragma omp for schedule(static) collapse(2)
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t hh = 0; hh < n_head; ++hh) {
          const int64_t pos = n_past + t, kvh = hh / group;
          for (int64_t i = 0; i < hd; ++i) {
            const float qv = q[static_cast<size_t>(t * dq + hh * hd + i)];
            qh[static_cast<size_t>(i)] = f16_cache ? round_fp16(qv) : qv;
          }
          float max = -INFINITY;
          for (int64_t j = 0; j <= pos; ++j) {
            const float* kj = kc.data() + j * dkv + kvh * hd;
            float s = 0;
            for (int64_t i = 0; i < hd; ++i) s += qh[static_cast<size_t>(i)] * kj[i];
            const float w = s * kq_scale;
            p[static_cast<size_t>(j)] = w;
            max = std::max(max, w);
          }
          double sum = 0;
          for (int64_t j = 0; j <= pos; ++j) {
            const float e = std::exp(p[static_cast<size_t>(j)] - max);
            p[static_cast<size_t>(j)] = e;
            sum += static_cast<double>(e);
          }
          const float inv = static_cast<float>(1.0 / sum);
          for (int64_t j = 0; j <= pos; ++j) {
            const float pj = p[static_cast<size_t>(j)] * inv;
            p[static_cast<size_t>(j)] = f16_cache ? round_fp16(pj) : pj;
          }
          float* out = attn.data() + t * dq + hh * hd;
          std::fill(out, out + hd, 0.0f);
          for (int64_t j = 0; j <= pos; ++j) {
            const float pj = p[static_cast<size_t>(j)];
            const float* vj = vc.data() + j * dkv + kvh * hd;
            for (int64_t i = 0; i < hd; ++i) out[i] += pj * vj[i];
          }
        }
      }
    }
    mm(L.wo, attn.data(), T, proj.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] += proj[i];

    for (int64_t t = 0; t < T; ++t) rms_norm(x.data() + t * d, L.ffn_norm.data(), d, eps, h.data() + t * d);
    mm(L.ffn_gate, h.data(), T, gate.data());
    mm(L.ffn_up, h.data(), T, up.data());
    for (size_t i = 0; i < gate.size(); ++i) gate[i] = silu(gate[i]) * up[i];
    mm(L.ffn_down, gate.data(), T, proj.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] += proj[i];
  }
  cache.n_past += T;

  const int64_t n_out = T - logits_from;
  for (int64_t t = 0; t < n_out; ++t)
    rms_norm(x.data() + (logits_from + t) * d, model.output_norm.data(), d, eps, h.data() + t * d);
  logits.resize(static_cast<size_t>(n_out * c.n_vocab));
  if (n_out > 0) mm(model.output, h.data(), n_out, logits.data());
  return {};
}

}  // namespace shrink
