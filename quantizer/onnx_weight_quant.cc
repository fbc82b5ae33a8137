#include "quantizer/onnx_weight_quant.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "formats/error_text.h"
#include "formats/onnx_model.h"
#include "quantizer/onnx_graph_edit.h"

namespace shrink {
namespace {

using namespace onnx_edit;
using onnx::TensorProto;

std::string q(const std::string& s) { return quote_untrusted(s, 120); }

std::string node_label(const onnx::NodeProto& n) { return "node " + q(n.name()) + " (" + n.op_type() + ")"; }

bool listed(const std::vector<std::string>& list, const std::string& s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

// The op types each weight-only method rewrites.
std::vector<std::string> supported_ops(OnnxQuantMethod m) {
  switch (m) {
    case OnnxQuantMethod::kWeightInt4: return {"MatMul", "Gemm", "Gather"};
    case OnnxQuantMethod::kWeightInt4Qdq: return {"MatMul", "Gemm"};
    case OnnxQuantMethod::kWeightInt8: return {"Conv", "Gemm", "MatMul"};
    case OnnxQuantMethod::kDynamic: return {"Conv", "MatMul", "Gemm"};
  }
  return {};
}

// Row-major transpose of an (r, c) matrix.
std::vector<float> transpose(const std::vector<float>& a, int64_t r, int64_t c) {
  std::vector<float> t(a.size());
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < c; ++j) t[j * r + i] = a[i * c + j];
  return t;
}

// A MatMul or Gemm viewed as Y = A (.., K) x W (K, N) [+ bias (N)], or why it is not one.
struct LinearView {
  std::vector<float> w_kn;  // (K, N)
  int64_t K = 0, N = 0;
  bool transposed = false;  // the stored weight is (N, K) (Gemm transB=1)
  std::string bias;         // Gemm C when it is a 1-D (N) tensor
  ConstantWeight weight;
};

Result<LinearView> linear_view(const onnx::NodeProto& n, const GraphScopes& scopes) {
  LinearView v;
  SHRINK_ASSIGN(v.weight, constant_float_weight(n, 1, scopes));
  if (v.weight.dims.size() != 2)
    return make_error(node_label(n) + ": weight " + q(n.input(1)) + " has " + std::to_string(v.weight.dims.size()) +
                      " dims, not 2");
  if (n.op_type() == "Gemm") {
    if (attr_int(n, "transA", 0) != 0) return make_error(node_label(n) + ": transA=1 is not supported");
    if (attr_float(n, "alpha", 1.0f) != 1.0f) return make_error(node_label(n) + ": alpha != 1 is not supported");
    v.transposed = attr_int(n, "transB", 0) != 0;
    if (n.input_size() > 2 && !n.input(2).empty()) {
      if (attr_float(n, "beta", 1.0f) != 1.0f) return make_error(node_label(n) + ": beta != 1 is not supported");
      v.bias = n.input(2);
    }
  }
  const int64_t r = v.weight.dims[0], c = v.weight.dims[1];
  if (v.transposed) {
    v.N = r, v.K = c;
    v.w_kn = transpose(v.weight.values, r, c);
  } else {
    v.K = r, v.N = c;
    v.w_kn = v.weight.values;
  }
  if (!v.bias.empty()) {
    const TensorProto* b = find_constant(scopes, v.bias);
    if (b == nullptr || b->dims_size() != 1 || b->dims(0) != v.N)
      return make_error(node_label(n) + ": bias " + q(v.bias) + " is not a constant 1-D tensor of " + std::to_string(v.N) +
                        " values");
  }
  return v;
}

void pack_nibble(std::vector<uint8_t>& bytes, size_t index, uint8_t code) {
  bytes[index / 2] |= static_cast<uint8_t>((code & 0xf) << ((index & 1) * 4));
}

uint8_t nibble(const std::vector<uint8_t>& bytes, size_t index) {
  return (bytes[index / 2] >> ((index & 1) * 4)) & 0xf;
}

// Symmetric per-channel int8: scale = max|w| / 127, codes round half away from zero into [-127, 127].
// (ONNX Runtime's quantizer maps max|w| to 127.5 and clamps at 127; this keeps the extreme exact.)
void quantize_int8_channels(const std::vector<float>& w, int64_t channels, int64_t inner, int64_t outer,
                            std::vector<int8_t>* codes, std::vector<float>* scales) {
  // Element (o, c, i) of a weight seen as (outer, channels, inner) belongs to channel c.
  codes->assign(w.size(), 0);
  scales->assign(channels, 0.0f);
  for (int64_t c = 0; c < channels; ++c) {
    float amax = 0;
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) amax = std::max(amax, std::fabs(w[(o * channels + c) * inner + i]));
    const float scale = amax / 127.0f;
    (*scales)[c] = scale;
    const float inv = scale != 0 ? 1.0f / scale : 0.0f;
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        const size_t at = static_cast<size_t>((o * channels + c) * inner + i);
        (*codes)[at] = static_cast<int8_t>(std::clamp(std::round(w[at] * inv), -127.0f, 127.0f));
      }
  }
}

struct Rewriter {
  onnx::ModelProto* model;
  const OnnxQuantOptions& opt;
  NameSet names;
  OnnxQuantReport report;
  std::set<std::string> replaced_weights;
  std::string first_skip;
  std::map<std::string, int> uses;  // reads of each value before any rewrite

  Rewriter(onnx::ModelProto* m, const OnnxQuantOptions& o)
      : model(m), opt(o), names(m->graph()), uses(count_uses(m->graph())) {}

  void skip(const std::string& why) {
    report.skipped.push_back(why);
    if (first_skip.empty()) first_skip = why;
  }

  std::string add_init(onnx::GraphProto* g, TensorProto t) {
    const std::string name = t.name();
    *g->add_initializer() = std::move(t);
    return name;
  }

  // weight-int4: MatMul/Gemm -> MatMulNBits(A, B, scales[, zero_points], g_idx = "", bias).
  Result<bool> to_matmul_nbits(const onnx::NodeProto& n, const LinearView& v, onnx::GraphProto* g,
                               std::vector<onnx::NodeProto>* out) {
    Int4Blocks qb = quantize_int4_blocks(v.w_kn.data(), v.K, v.N, opt.block_size, opt.asymmetric);
    const std::string base = n.input(1);
    const std::string b = add_init(g, make_tensor(names.fresh(base + "_Q4"), TensorProto::UINT8,
                                                  {v.N, qb.n_blocks, opt.block_size / 2}, qb.codes.data(), qb.codes.size()));
    const std::string s = add_init(g, make_f32_tensor(names.fresh(base + "_scales"), {v.N, qb.n_blocks}, qb.scales));
    std::vector<std::string> inputs = {n.input(0), b, s};
    size_t bytes = qb.codes.size() + qb.scales.size() * 4;
    if (opt.asymmetric) {
      inputs.push_back(add_init(g, make_tensor(names.fresh(base + "_zero_points"), TensorProto::UINT8,
                                               {static_cast<int64_t>(qb.zero_points.size())}, qb.zero_points.data(),
                                               qb.zero_points.size())));
      bytes += qb.zero_points.size();
    }
    if (!v.bias.empty()) {
      while (inputs.size() < 5) inputs.push_back("");  // zero_points, g_idx absent
      inputs.push_back(v.bias);
    }
    onnx::NodeProto m = make_node("MatMulNBits", inputs, {n.output(0)}, names.fresh(n.name() + "_Q4"), "com.microsoft");
    set_attr(&m, "K", v.K);
    set_attr(&m, "N", v.N);
    set_attr(&m, "bits", int64_t{4});
    set_attr(&m, "block_size", opt.block_size);
    if (opt.accuracy_level > 0) set_attr(&m, "accuracy_level", opt.accuracy_level);
    out->push_back(std::move(m));
    report.quantized.push_back({n.name(), n.op_type(), base, v.weight.values.size() * 4, bytes});
    replaced_weights.insert(base);
    return true;
  }

  // weight-int4, Gather over a constant (vocab, hidden) float table (an embedding) ->
  // com.microsoft.GatherBlockQuantized(data, indices, scales[, zero_points]) in the uint8 form that
  // shares MatMulNBits' conventions (ONNX Runtime's contrib schema; its CPU kernel requires gather_axis 0
  // and quantize_axis = the last axis for uint8 data):
  //   data        uint8 (vocab, hidden / 2): codes of row v, two per byte, low nibble first
  //   scales      float (vocab, n_blocks), n_blocks = ceil(hidden / block)
  //   zero_points uint8 (vocab, ceil(n_blocks / 2)) packed alike; absent when symmetric (zero point 8)
  // Each row is quantized along hidden exactly as a MatMulNBits column along K (the same RTN).
  Result<bool> to_gather_block_quantized(const onnx::NodeProto& n, const GraphScopes& scopes, onnx::GraphProto* g,
                                         std::vector<onnx::NodeProto>* out) {
    // Only a lookup into a constant float table is an embedding; the many Gathers of shape plumbing
    // (computed data, or constant indices) are not candidates and are not reported as skipped.
    if (n.input_size() < 2 || n.input(0).empty() || n.input(1).empty()) return false;
    const TensorProto* table = find_constant(scopes, n.input(0));
    if (table == nullptr || is_graph_input(scopes, n.input(0)) || table->data_type() != TensorProto::FLOAT) return false;
    if (find_constant(scopes, n.input(1)) != nullptr && !is_graph_input(scopes, n.input(1))) return false;
    if (attr_int(n, "axis", 0) != 0)
      return make_error(node_label(n) + ": axis " + std::to_string(attr_int(n, "axis", 0)) + " is not 0 (not a row lookup)");
    // A table other nodes also read (a tied output projection through Transpose, a second lookup) stays
    // float for them, so a quantized copy would only add bytes.
    if (uses[n.input(0)] > 1)
      return make_error(node_label(n) + ": table " + q(n.input(0)) + " is also read by " + std::to_string(uses[n.input(0)] - 1) +
                        " other node(s); a 4-bit copy beside it would enlarge the model");
    SHRINK_ASSIGN(ConstantWeight w, constant_float_weight(n, 0, scopes));
    if (w.dims.size() != 2)
      return make_error(node_label(n) + ": table " + q(n.input(0)) + " has " + std::to_string(w.dims.size()) + " dims, not 2");
    const int64_t V = w.dims[0], H = w.dims[1];
    if (H % 2 != 0)  // uint8 data holds two codes per byte and the kernel doubles the stored last dim
      return make_error(node_label(n) + ": table " + q(n.input(0)) + " has an odd row length " + std::to_string(H) +
                        " (GatherBlockQuantized's uint8 form needs it even)");
    // quantize_int4_blocks blocks along K of a (K, N) matrix: the table transposed, K = hidden, N = vocab.
    const Int4Blocks qb = quantize_int4_blocks(transpose(w.values, V, H).data(), H, V, opt.block_size, opt.asymmetric);
    // Its codes are (vocab, n_blocks, block / 2) with the last block padded; the table rows are unpadded.
    std::vector<uint8_t> data(static_cast<size_t>(V * H / 2), 0);
    for (int64_t v = 0; v < V; ++v)
      for (int64_t h = 0; h < H; ++h)
        pack_nibble(data, static_cast<size_t>(v * H + h),
                    nibble(qb.codes, static_cast<size_t>((v * qb.n_blocks + h / opt.block_size) * opt.block_size + h % opt.block_size)));
    const std::string base = n.input(0);
    std::vector<std::string> inputs = {
        add_init(g, make_tensor(names.fresh(base + "_Q4"), TensorProto::UINT8, {V, H / 2}, data.data(), data.size())),
        n.input(1), add_init(g, make_f32_tensor(names.fresh(base + "_scales"), {V, qb.n_blocks}, qb.scales))};
    size_t bytes = data.size() + qb.scales.size() * 4;
    if (opt.asymmetric) {
      inputs.push_back(add_init(g, make_tensor(names.fresh(base + "_zero_points"), TensorProto::UINT8,
                                               {V, (qb.n_blocks + 1) / 2}, qb.zero_points.data(), qb.zero_points.size())));
      bytes += qb.zero_points.size();
    }
    onnx::NodeProto m = make_node("GatherBlockQuantized", inputs, {n.output(0)}, names.fresh(n.name() + "_Q4"), "com.microsoft");
    set_attr(&m, "gather_axis", int64_t{0});
    set_attr(&m, "quantize_axis", int64_t{1});
    set_attr(&m, "block_size", opt.block_size);
    set_attr(&m, "bits", int64_t{4});
    out->push_back(std::move(m));
    report.quantized.push_back({n.name(), n.op_type(), base, w.values.size() * 4, bytes});
    replaced_weights.insert(base);
    return true;
  }

  // weight-int4-qdq: the stored weight as int4 (symmetric) or uint4 + zero points, blocked along K,
  // behind DequantizeLinear-21 (axis = the K axis of the stored layout).
  Result<bool> to_blocked_dq(const onnx::NodeProto& n, const LinearView& v, onnx::GraphProto* g,
                             std::vector<onnx::NodeProto>* out) {
    Int4Blocks qb = quantize_int4_blocks(v.w_kn.data(), v.K, v.N, opt.block_size, opt.asymmetric);
    const int64_t r = v.weight.dims[0], c = v.weight.dims[1];
    // Codes and scales in the stored layout: (K, N) with scales (n_blocks, N), or (N, K) with (N, n_blocks).
    std::vector<uint8_t> packed((static_cast<size_t>(r * c) + 1) / 2, 0);
    std::vector<float> scales(static_cast<size_t>(v.N * qb.n_blocks));
    std::vector<uint8_t> zps(opt.asymmetric ? (scales.size() + 1) / 2 : 0, 0);
    const int64_t blob = opt.block_size / 2;
    for (int64_t col = 0; col < v.N; ++col)
      for (int64_t k = 0; k < v.K; ++k) {
        const int64_t blk = k / opt.block_size, in = k % opt.block_size;
        uint8_t code = nibble(qb.codes, static_cast<size_t>((col * qb.n_blocks + blk) * blob * 2 + in));
        if (!opt.asymmetric) code = static_cast<uint8_t>((code - 8) & 0xf);  // int4 two's complement, zero point 0
        const size_t at = static_cast<size_t>(v.transposed ? col * v.K + k : k * v.N + col);
        pack_nibble(packed, at, code);
      }
    for (int64_t col = 0; col < v.N; ++col)
      for (int64_t blk = 0; blk < qb.n_blocks; ++blk) {
        const size_t at = static_cast<size_t>(v.transposed ? col * qb.n_blocks + blk : blk * v.N + col);
        scales[at] = qb.scales[static_cast<size_t>(col * qb.n_blocks + blk)];
        if (opt.asymmetric) pack_nibble(zps, at, nibble(qb.zero_points, static_cast<size_t>(col * ((qb.n_blocks + 1) / 2) * 2 + blk)));
      }
    const std::vector<int64_t> sdims = v.transposed ? std::vector<int64_t>{v.N, qb.n_blocks} : std::vector<int64_t>{qb.n_blocks, v.N};
    const std::string base = n.input(1);
    const int type = opt.asymmetric ? kOnnxUint4 : kOnnxInt4;
    std::vector<std::string> inputs = {
        add_init(g, make_tensor(names.fresh(base + "_q4"), type, {r, c}, packed.data(), packed.size())),
        add_init(g, make_f32_tensor(names.fresh(base + "_scale"), sdims, scales))};
    size_t bytes = packed.size() + scales.size() * 4;
    if (opt.asymmetric) {
      inputs.push_back(add_init(g, make_tensor(names.fresh(base + "_zero_point"), kOnnxUint4, sdims, zps.data(), zps.size())));
      bytes += zps.size();
    }
    const std::string deq = names.fresh(base + "_dequantized");
    onnx::NodeProto dq = make_node("DequantizeLinear", inputs, {deq}, names.fresh(n.name() + "_weight_dq"));
    set_attr(&dq, "axis", int64_t{v.transposed ? 1 : 0});
    set_attr(&dq, "block_size", opt.block_size);
    out->push_back(std::move(dq));
    onnx::NodeProto user = n;
    user.set_input(1, deq);
    out->push_back(std::move(user));
    report.quantized.push_back({n.name(), n.op_type(), base, v.weight.values.size() * 4, bytes});
    replaced_weights.insert(base);
    return true;
  }

  // weight-int8: per-output-channel int8 codes behind DequantizeLinear(axis).
  Result<bool> to_int8_dq(const onnx::NodeProto& n, const GraphScopes& scopes, onnx::GraphProto* g,
                          std::vector<onnx::NodeProto>* out) {
    SHRINK_ASSIGN(ConstantWeight w, constant_float_weight(n, 1, scopes));
    int64_t axis = 0;
    if (n.op_type() == "Conv") {
      if (w.dims.size() < 3) return make_error(node_label(n) + ": weight " + q(n.input(1)) + " has fewer than 3 dims");
      axis = 0;  // (C_out, C_in / group, k...)
    } else {
      if (w.dims.size() != 2) return make_error(node_label(n) + ": weight " + q(n.input(1)) + " is not 2-D");
      if (n.op_type() == "Gemm") {
        if (attr_int(n, "transA", 0) != 0) return make_error(node_label(n) + ": transA=1 is not supported");
        axis = attr_int(n, "transB", 0) != 0 ? 0 : 1;  // the N axis of the stored weight
      } else {
        axis = 1;  // MatMul (K, N): one scale per output column
      }
    }
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < axis; ++i) outer *= w.dims[static_cast<size_t>(i)];
    for (size_t i = static_cast<size_t>(axis) + 1; i < w.dims.size(); ++i) inner *= w.dims[i];
    const int64_t channels = w.dims[static_cast<size_t>(axis)];
    std::vector<int8_t> codes;
    std::vector<float> scales;
    quantize_int8_channels(w.values, channels, inner, outer, &codes, &scales);
    const std::string base = n.input(1);
    std::vector<std::string> inputs = {
        add_init(g, make_tensor(names.fresh(base + "_int8"), TensorProto::INT8, w.dims, codes.data(), codes.size())),
        add_init(g, make_f32_tensor(names.fresh(base + "_scale"), {channels}, scales))};
    const std::string deq = names.fresh(base + "_dequantized");
    onnx::NodeProto dq = make_node("DequantizeLinear", inputs, {deq}, names.fresh(n.name() + "_weight_dq"));
    set_attr(&dq, "axis", axis);
    out->push_back(std::move(dq));
    onnx::NodeProto user = n;
    user.set_input(1, deq);
    out->push_back(std::move(user));
    report.quantized.push_back({n.name(), n.op_type(), base, w.values.size() * 4, codes.size() + scales.size() * 4});
    replaced_weights.insert(base);
    return true;
  }

  Result<bool> visit(const onnx::NodeProto& n, const GraphScopes& scopes, onnx::GraphProto* g,
                     std::vector<onnx::NodeProto>* out) {
    if (!n.domain().empty() && n.domain() != "ai.onnx") return false;
    const std::vector<std::string> ops = opt.op_types.empty() ? supported_ops(opt.method) : opt.op_types;
    if (!listed(ops, n.op_type())) return false;
    if (listed(opt.exclude_nodes, n.name())) {
      skip(node_label(n) + ": excluded");
      return false;
    }
    if (n.op_type() == "Gather" && !opt.quantize_gather) return false;
    if (opt.method == OnnxQuantMethod::kWeightInt8 || n.op_type() == "Gather") {
      auto r = n.op_type() == "Gather" ? to_gather_block_quantized(n, scopes, g, out) : to_int8_dq(n, scopes, g, out);
      if (!r.ok()) skip(r.error().message);
      return r.ok() && *r;
    }
    auto v = linear_view(n, scopes);
    if (!v.ok()) {
      skip(v.error().message);
      return false;
    }
    return opt.method == OnnxQuantMethod::kWeightInt4 ? to_matmul_nbits(n, *v, g, out) : to_blocked_dq(n, *v, g, out);
  }
};

size_t count_candidates(const onnx::GraphProto& g, const std::vector<std::string>& ops) {
  size_t c = 0;
  for (const auto& n : g.node()) {
    if (listed(ops, n.op_type())) ++c;
    for (const auto& a : n.attribute()) {
      if (a.has_g()) c += count_candidates(a.g(), ops);
      for (const auto& sg : a.graphs()) c += count_candidates(sg, ops);
    }
  }
  return c;
}

}  // namespace

Result<OnnxQuantMethod> parse_onnx_quant_method(const std::string& name) {
  if (name == "weight-int4") return OnnxQuantMethod::kWeightInt4;
  if (name == "weight-int4-qdq") return OnnxQuantMethod::kWeightInt4Qdq;
  if (name == "weight-int8") return OnnxQuantMethod::kWeightInt8;
  if (name == "dynamic") return OnnxQuantMethod::kDynamic;
  return make_error("--method " + q(name) + ": unknown (weight-int4|weight-int4-qdq|weight-int8|dynamic)");
}

const char* onnx_quant_method_name(OnnxQuantMethod m) {
  switch (m) {
    case OnnxQuantMethod::kWeightInt4: return "weight-int4";
    case OnnxQuantMethod::kWeightInt4Qdq: return "weight-int4-qdq";
    case OnnxQuantMethod::kWeightInt8: return "weight-int8";
    case OnnxQuantMethod::kDynamic: return "dynamic";
  }
  return "?";
}

Int4Blocks quantize_int4_blocks(const float* w, int64_t K, int64_t N, int64_t block_size, bool asymmetric) {
  Int4Blocks qb;
  qb.K = K, qb.N = N, qb.block_size = block_size;
  qb.n_blocks = (K + block_size - 1) / block_size;
  const int64_t blob = block_size / 2;
  const int64_t zp_row = (qb.n_blocks + 1) / 2;
  qb.codes.assign(static_cast<size_t>(N * qb.n_blocks * blob), 0);
  qb.scales.assign(static_cast<size_t>(N * qb.n_blocks), 0.0f);
  if (asymmetric) qb.zero_points.assign(static_cast<size_t>(N * zp_row), 0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t b = 0; b < qb.n_blocks; ++b) {
      const int64_t k0 = b * block_size, len = std::min(block_size, K - k0);
      auto at = [&](int64_t i) { return w[(k0 + i) * N + n]; };
      const size_t code0 = static_cast<size_t>((n * qb.n_blocks + b) * blob * 2);
      float scale = 0;
      uint8_t zp = 8;
      if (!asymmetric) {
        // ONNX Runtime's symmetric RTN (contrib_ops/cpu/quantization/blockwise_quant_block.h): the value of
        // largest magnitude maps to code 0 (-8 after the zero point of 8); codes = floor(v / scale + 8.5).
        float amax = 0, vmax = 0;
        for (int64_t i = 0; i < len; ++i)
          if (amax < std::fabs(at(i))) amax = std::fabs(at(i)), vmax = at(i);
        scale = vmax / -8.0f;
        const float inv = scale != 0 ? 1.0f / scale : 0.0f;
        for (int64_t i = 0; i < len; ++i)
          pack_nibble(qb.codes, code0 + static_cast<size_t>(i),
                      static_cast<uint8_t>(std::min(15.0f, std::max(0.0f, at(i) * inv + 8.5f))));
      } else {
        // ONNX Runtime's asymmetric RTN: the block's range widened to include 0, 15 steps over it,
        // zero point round(-min / scale), codes round(v / scale + zero point), all clamped to [0, 15].
        float lo = at(0), hi = at(0);
        for (int64_t i = 0; i < len; ++i) lo = std::min(lo, at(i)), hi = std::max(hi, at(i));
        lo = std::min(lo, 0.0f);
        hi = std::max(hi, 0.0f);
        scale = (hi - lo) / 15.0f;
        const float inv = scale != 0 ? 1.0f / scale : 0.0f;
        const float zp_f = scale != 0 ? 0.0f - lo / scale : lo;
        zp = zp_f < 0 ? 0 : zp_f > 15 ? 15 : static_cast<uint8_t>(std::round(zp_f));
        for (int64_t i = 0; i < len; ++i)
          pack_nibble(qb.codes, code0 + static_cast<size_t>(i),
                      static_cast<uint8_t>(std::min(15.0f, std::max(0.0f, std::round(at(i) * inv + zp)))));
        pack_nibble(qb.zero_points, static_cast<size_t>(n * zp_row * 2 + b), zp);
      }
      // Padding past K (last block) holds the zero point: it dequantizes to 0 and is never read.
      for (int64_t i = len; i < block_size; ++i) pack_nibble(qb.codes, code0 + static_cast<size_t>(i), zp);
      qb.scales[static_cast<size_t>(n * qb.n_blocks + b)] = scale;
    }
  return qb;
}

std::vector<float> dequantize_int4_blocks(const Int4Blocks& qb) {
  std::vector<float> w(static_cast<size_t>(qb.K * qb.N));
  const int64_t blob = qb.block_size / 2, zp_row = (qb.n_blocks + 1) / 2;
  for (int64_t n = 0; n < qb.N; ++n)
    for (int64_t k = 0; k < qb.K; ++k) {
      const int64_t b = k / qb.block_size;
      const int code = nibble(qb.codes, static_cast<size_t>((n * qb.n_blocks + b) * blob * 2 + k % qb.block_size));
      const int zp = qb.zero_points.empty() ? 8 : nibble(qb.zero_points, static_cast<size_t>(n * zp_row * 2 + b));
      w[static_cast<size_t>(k * qb.N + n)] = static_cast<float>(code - zp) * qb.scales[static_cast<size_t>(n * qb.n_blocks + b)];
    }
  return w;
}

Result<OnnxQuantReport> quantize_onnx_weights(onnx::ModelProto* model, const OnnxQuantOptions& opt,
                                              const OnnxQuantProgress& progress) {
  const std::string& file = opt.file;
  if (opt.method == OnnxQuantMethod::kDynamic)
    return make_error(file + ": the dynamic method is quantize_onnx_dynamic's, not a weight-only method");
  const bool four_bit = opt.method != OnnxQuantMethod::kWeightInt8;
  if (four_bit && (opt.block_size < 16 || opt.block_size > 256 || (opt.block_size & (opt.block_size - 1)) != 0))
    return make_error("--block " + std::to_string(opt.block_size) + ": must be a power of two in 16..256");
  if (opt.accuracy_level < 0 || opt.accuracy_level > 4)
    return make_error("--accuracy-level " + std::to_string(opt.accuracy_level) + ": must be 0..4");
  const std::vector<std::string> supported = supported_ops(opt.method);
  for (const auto& op : opt.op_types)
    if (!listed(supported, op))
      return make_error(file + ": --op-types " + q(op) + " is not an op " + onnx_quant_method_name(opt.method) +
                        " quantizes (it handles: " + [&] {
                          std::string s;
                          for (const auto& x : supported) s += (s.empty() ? "" : ", ") + x;
                          return s;
                        }() + ")");

  // Opsets the output needs, checked before any rewrite so a refusal leaves the model as it was.
  if (opt.method == OnnxQuantMethod::kWeightInt4Qdq) SHRINK_CHECK(raise_default_opset(model, 21, file));
  if (opt.method == OnnxQuantMethod::kWeightInt8) SHRINK_CHECK(raise_default_opset(model, 13, file));

  Rewriter rw(model, opt);
  const size_t total = count_candidates(model->graph(), opt.op_types.empty() ? supported : opt.op_types);
  size_t done = 0;
  SHRINK_CHECK(rewrite_nodes(model->mutable_graph(), [&](const onnx::NodeProto& n, const GraphScopes& scopes,
                                                         onnx::GraphProto* g, std::vector<onnx::NodeProto>* out) -> Result<bool> {
    auto r = rw.visit(n, scopes, g, out);
    if (progress && listed(opt.op_types.empty() ? supported : opt.op_types, n.op_type())) progress(++done, total, n.name());
    return r;
  }));
  if (rw.report.quantized.empty())
    return make_error(file + ": nothing to quantize with " + onnx_quant_method_name(opt.method) +
                      (rw.first_skip.empty() ? ": no " + std::string(four_bit ? (opt.method == OnnxQuantMethod::kWeightInt4 ? "MatMul/Gemm/Gather" : "MatMul/Gemm") : "Conv/Gemm/MatMul") + " node"
                                             : " (" + rw.first_skip + ")"));
  if (opt.method == OnnxQuantMethod::kWeightInt4) add_opset(model, "com.microsoft", 1);
  remove_unused_constants(model->mutable_graph(), rw.replaced_weights);
  return rw.report;
}

}  // namespace shrink
