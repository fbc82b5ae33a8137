#include "quantizer/onnx_dynamic_quant.h"

#include <algorithm>
#include <array>
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

const std::vector<std::string> kSupported = {"MatMul", "Gemm", "Conv"};

// 8-bit codes of a weight seen as (outer, channels, inner), one (scale, zero point) per channel,
// or one for the whole tensor when channels == 1.
struct Int8Weight {
  std::vector<uint8_t> codes;  // int8 or uint8 bit patterns
  std::vector<float> scales;
  std::vector<uint8_t> zero_points;
};

Int8Weight quantize_8bit(const std::vector<float>& w, int64_t outer, int64_t channels, int64_t inner, bool as_uint8) {
  Int8Weight r;
  r.codes.resize(w.size());
  r.scales.resize(static_cast<size_t>(channels));
  r.zero_points.resize(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) {
    float lo = 0, hi = 0;  // the range always includes 0 so that 0 is exact (zero padding, ReLU outputs)
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        const float v = w[static_cast<size_t>((o * channels + c) * inner + i)];
        lo = std::min(lo, v), hi = std::max(hi, v);
      }
    float scale, zp;
    if (as_uint8) {
      scale = (hi - lo) / 255.0f;
      zp = scale != 0 ? std::clamp(std::round(-lo / scale), 0.0f, 255.0f) : 0.0f;
    } else {
      scale = std::max(-lo, hi) / 127.0f;
      zp = 0;
    }
    r.scales[static_cast<size_t>(c)] = scale;
    r.zero_points[static_cast<size_t>(c)] = static_cast<uint8_t>(zp);
    const float inv = scale != 0 ? 1.0f / scale : 0.0f;
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        const size_t at = static_cast<size_t>((o * channels + c) * inner + i);
        const float code = std::round(w[at] * inv) + zp;
        r.codes[at] = as_uint8 ? static_cast<uint8_t>(std::clamp(code, 0.0f, 255.0f))
                               : static_cast<uint8_t>(static_cast<int8_t>(std::clamp(code, -127.0f, 127.0f)));
      }
  }
  return r;
}

struct DynamicRewriter {
  const OnnxQuantOptions& opt;
  NameSet names;
  OnnxQuantReport report;
  std::set<std::string> replaced;
  std::string first_skip;
  // (graph, activation) -> outputs of its DynamicQuantizeLinear, so consumers share one.
  std::map<std::pair<const onnx::GraphProto*, std::string>, std::array<std::string, 3>> quantized_inputs;

  DynamicRewriter(const onnx::ModelProto& m, const OnnxQuantOptions& o) : opt(o), names(m.graph()) {}

  void skip(const std::string& why) {
    report.skipped.push_back(why);
    if (first_skip.empty()) first_skip = why;
  }

  std::string add_init(onnx::GraphProto* g, TensorProto t) {
    const std::string name = t.name();
    *g->add_initializer() = std::move(t);
    return name;
  }

  const std::array<std::string, 3>& quantize_input(const std::string& x, onnx::GraphProto* g, std::vector<onnx::NodeProto>* out) {
    auto key = std::make_pair(static_cast<const onnx::GraphProto*>(g), x);
    auto it = quantized_inputs.find(key);
    if (it != quantized_inputs.end()) return it->second;
    std::array<std::string, 3> outs = {names.fresh(x + "_quantized"), names.fresh(x + "_scale"), names.fresh(x + "_zero_point")};
    out->push_back(make_node("DynamicQuantizeLinear", {x}, {outs[0], outs[1], outs[2]}, names.fresh(x + "_QuantizeLinear")));
    return quantized_inputs.emplace(key, outs).first->second;
  }

  Result<bool> visit(const onnx::NodeProto& n, const GraphScopes& scopes, onnx::GraphProto* g, std::vector<onnx::NodeProto>* out) {
    if (!n.domain().empty() && n.domain() != "ai.onnx") return false;
    const std::vector<std::string>& ops = opt.op_types.empty() ? kSupported : opt.op_types;
    if (!listed(ops, n.op_type())) return false;
    if (listed(opt.exclude_nodes, n.name())) {
      skip(node_label(n) + ": excluded");
      return false;
    }
    auto r = rewrite(n, scopes, g, out);
    if (!r.ok()) {
      skip(r.error().message);
      out->clear();
      return false;
    }
    return *r;
  }

  Result<bool> rewrite(const onnx::NodeProto& n, const GraphScopes& scopes, onnx::GraphProto* g, std::vector<onnx::NodeProto>* out) {
    SHRINK_ASSIGN(ConstantWeight cw, constant_float_weight(n, 1, scopes));
    const std::string& wname = n.input(1);
    std::vector<float> w = std::move(cw.values);
    const std::vector<int64_t> dims = cw.dims;
    const bool is_conv = n.op_type() == "Conv";
    std::string bias;
    std::vector<int64_t> wdims = dims;
    int64_t outer = 1, channels = 1, inner = 1;
    if (is_conv) {
      if (opt.per_channel && opt.weight_uint8)
        return make_error(node_label(n) + ": per-channel uint8 weights need one zero point per channel, and ONNX "
                          "Runtime's ConvInteger takes a single one (use int8 weights or per-tensor)");
      if (dims.size() < 3) return make_error(node_label(n) + ": weight " + q(wname) + " has fewer than 3 dims");
      channels = dims[0];
      for (size_t i = 1; i < dims.size(); ++i) inner *= dims[i];
      if (n.input_size() > 2) bias = n.input(2);
    } else {
      if (dims.size() != 2) return make_error(node_label(n) + ": weight " + q(wname) + " is not 2-D");
      if (n.op_type() == "Gemm") {
        if (attr_int(n, "transA", 0) != 0) return make_error(node_label(n) + ": transA=1 is not supported");
        if (attr_float(n, "alpha", 1.0f) != 1.0f) return make_error(node_label(n) + ": alpha != 1 is not supported");
        if (n.input_size() > 2 && !n.input(2).empty()) {
          if (attr_float(n, "beta", 1.0f) != 1.0f) return make_error(node_label(n) + ": beta != 1 is not supported");
          bias = n.input(2);
        }
        if (attr_int(n, "transB", 0) != 0) {  // stored (N, K): MatMulInteger wants (K, N)
          std::vector<float> tw(w.size());
          for (int64_t i = 0; i < dims[0]; ++i)
            for (int64_t j = 0; j < dims[1]; ++j) tw[static_cast<size_t>(j * dims[0] + i)] = w[static_cast<size_t>(i * dims[1] + j)];
          w.swap(tw);
          wdims = {dims[1], dims[0]};
        }
      }
      outer = wdims[0];
      channels = wdims[1];  // (K, N): one scale per output column
    }
    if (!opt.per_channel) outer = 1, inner = static_cast<int64_t>(w.size()), channels = 1;
    // Conv bias (C) is added after the rescale as (1, C, 1, ...) to broadcast over the NCHW output.
    std::string bias_input = bias;
    std::vector<float> conv_bias;
    if (is_conv && !bias.empty()) {
      const TensorProto* bt = find_constant(scopes, bias);
      if (bt == nullptr || bt->dims_size() != 1 || bt->dims(0) != dims[0])
        return make_error(node_label(n) + ": bias " + q(bias) + " is not a constant 1-D tensor of " + std::to_string(dims[0]) + " values");
      SHRINK_ASSIGN(conv_bias, tensor_to_f32(*bt));
    }
    Int8Weight qw = quantize_8bit(w, outer, channels, inner, opt.weight_uint8);
    // Symmetric int8 has zero point 0 in every channel: one scalar zero point serves (ConvInteger in
    // ONNX Runtime takes only a scalar weight zero point).
    const bool scalar_zp = channels == 1 || !opt.weight_uint8;
    const int wtype = opt.weight_uint8 ? TensorProto::UINT8 : TensorProto::INT8;
    const std::string base = wname;
    const std::string wq = add_init(g, make_tensor(names.fresh(base + "_quantized"), wtype, wdims, qw.codes.data(), qw.codes.size()));
    const std::string wzp =
        scalar_zp ? add_init(g, make_tensor(names.fresh(base + "_zero_point"), wtype, {}, qw.zero_points.data(), 1))
                  : add_init(g, make_tensor(names.fresh(base + "_zero_point"), wtype, {channels}, qw.zero_points.data(), qw.zero_points.size()));
    // Scale shape broadcasting against the integer output: scalar, (N) for MatMul, (1, C, 1, ...) for Conv.
    std::vector<int64_t> sdims;
    if (channels > 1) {
      if (is_conv) {
        sdims.assign(dims.size(), 1);
        sdims[1] = channels;
      } else {
        sdims = {channels};
      }
    }
    if (!conv_bias.empty()) {
      std::vector<int64_t> bdims(dims.size(), 1);
      bdims[1] = dims[0];
      bias_input = add_init(g, make_f32_tensor(names.fresh(bias + "_nchw"), bdims, conv_bias));
      replaced.insert(bias);
    }
    const std::string ws = add_init(g, make_f32_tensor(names.fresh(base + "_scale"), sdims, qw.scales));
    std::vector<onnx::NodeProto> nodes;
    const auto& xq = quantize_input(n.input(0), g, &nodes);
    const std::string stem = n.name().empty() ? n.output(0) : n.name();
    const std::string acc = names.fresh(stem + "_int32");
    onnx::NodeProto integer = make_node(is_conv ? "ConvInteger" : "MatMulInteger", {xq[0], wq, xq[2], wzp}, {acc},
                                        names.fresh(stem + "_quant"));
    if (is_conv)
      for (const auto& a : n.attribute()) *integer.add_attribute() = a;  // kernel_shape, pads, strides, group, ...
    nodes.push_back(std::move(integer));
    const std::string accf = names.fresh(stem + "_float");
    onnx::NodeProto cast = make_node("Cast", {acc}, {accf}, names.fresh(stem + "_cast"));
    set_attr(&cast, "to", int64_t{TensorProto::FLOAT});
    nodes.push_back(std::move(cast));
    const std::string scale = names.fresh(stem + "_scale");
    nodes.push_back(make_node("Mul", {xq[1], ws}, {scale}, names.fresh(stem + "_scale_mul")));
    const std::string scaled = bias.empty() ? n.output(0) : names.fresh(stem + "_scaled");
    nodes.push_back(make_node("Mul", {accf, scale}, {scaled}, names.fresh(stem + "_rescale")));
    size_t bytes = qw.codes.size() + qw.scales.size() * 4 + (scalar_zp ? 1 : qw.zero_points.size());
    if (!bias.empty()) nodes.push_back(make_node("Add", {scaled, bias_input}, {n.output(0)}, names.fresh(stem + "_bias")));
    for (auto& x : nodes) out->push_back(std::move(x));
    report.quantized.push_back({n.name(), n.op_type(), base, w.size() * 4, bytes});
    replaced.insert(base);
    return true;
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

Result<OnnxQuantReport> quantize_onnx_dynamic(onnx::ModelProto* model, const OnnxQuantOptions& opt,
                                              const OnnxQuantProgress& progress) {
  const std::string& file = opt.file;
  for (const auto& op : opt.op_types)
    if (!listed(kSupported, op))
      return make_error(file + ": --op-types " + q(op) + " is not an op dynamic quantizes (it handles: MatMul, Gemm, Conv)");
  SHRINK_CHECK(raise_default_opset(model, 11, file));
  DynamicRewriter rw(*model, opt);
  const std::vector<std::string>& ops = opt.op_types.empty() ? kSupported : opt.op_types;
  const size_t total = count_candidates(model->graph(), ops);
  size_t done = 0;
  SHRINK_CHECK(rewrite_nodes(model->mutable_graph(), [&](const onnx::NodeProto& n, const GraphScopes& scopes,
                                                         onnx::GraphProto* g, std::vector<onnx::NodeProto>* out) -> Result<bool> {
    std::vector<onnx::NodeProto> mine;
    auto r = rw.visit(n, scopes, g, &mine);
    if (progress && listed(ops, n.op_type())) progress(++done, total, n.name());
    if (!r.ok() || !*r) return r;
    for (auto& x : mine) out->push_back(std::move(x));
    return true;
  }));
  if (rw.report.quantized.empty())
    return make_error(file + ": nothing to quantize with dynamic" +
                      (rw.first_skip.empty() ? std::string(": no MatMul/Gemm/Conv node") : " (" + rw.first_skip + ")"));
  remove_unused_constants(model->mutable_graph(), rw.replaced);
  return rw.report;
}

}  // namespace shrink
