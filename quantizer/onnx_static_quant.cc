#include "quantizer/onnx_static_quant.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "formats/onnx_model.h"
#include "quantizer/onnx_graph_edit.h"

namespace shrink {
namespace {
using onnx::TensorProto;

const std::vector<std::string> kDefaultOps = {"Conv", "ConvTranspose", "Gemm", "MatMul"};

bool has_weight(const std::string& op) { return op == "Conv" || op == "ConvTranspose" || op == "Gemm" || op == "MatMul"; }
bool has_bias(const std::string& op) { return op == "Conv" || op == "Gemm"; }  // input 2 (ConvTranspose: also, but left float)

struct Plan {
  std::vector<int> nodes;  // indices of the main-graph nodes to quantize
  std::vector<std::string> skipped;
};

Result<Plan> plan_nodes(const onnx::ModelProto& m, const OnnxStaticOptions& opt) {
  const std::vector<std::string>& ops = opt.op_types.empty() ? kDefaultOps : opt.op_types;
  const std::set<std::string> op_set(ops.begin(), ops.end());
  const std::set<std::string> excluded(opt.exclude_nodes.begin(), opt.exclude_nodes.end());
  for (const auto& op : ops)
    if (op == "QuantizeLinear" || op == "DequantizeLinear") return make_error(opt.file + ": --op-types " + op + " cannot be quantized");
  Plan p;
  const auto& g = m.graph();
  for (int k = 0; k < g.node_size(); ++k) {
    const auto& n = g.node(k);
    const std::string what = "node '" + n.name() + "' (" + n.op_type() + ")";
    if (!op_set.count(n.op_type())) {
      for (const auto& a : n.attribute())
        if (a.has_g() || a.graphs_size()) {
          p.skipped.push_back(what + ": holds a subgraph; nodes inside If/Loop bodies stay float");
          break;
        }
      continue;
    }
    if (excluded.count(n.name())) {
      p.skipped.push_back(what + ": excluded by --exclude-nodes");
      continue;
    }
    if (!n.domain().empty() && n.domain() != "ai.onnx") {
      p.skipped.push_back(what + ": not a standard-domain op");
      continue;
    }
    p.nodes.push_back(k);
  }
  return p;
}

bool is_constant(const onnx::GraphProto& g, const std::string& name) {
  const onnx_edit::GraphScopes scopes{&g};
  return onnx_edit::find_constant(scopes, name) && !onnx_edit::is_graph_input(scopes, name);
}

std::set<std::string> graph_outputs(const onnx::GraphProto& g) {
  std::set<std::string> s;
  for (const auto& o : g.output()) s.insert(o.name());
  return s;
}

// The activation inputs (by index) of a node to quantize: non-constant, non-empty, not the bias.
std::vector<int> activation_inputs(const onnx::GraphProto& g, const onnx::NodeProto& n) {
  std::vector<int> v;
  for (int i = 0; i < n.input_size(); ++i) {
    if (n.input(i).empty()) continue;
    if (has_weight(n.op_type()) && i >= 2) continue;  // bias / C
    if (is_constant(g, n.input(i))) continue;
    v.push_back(i);
  }
  return v;
}

// The axis of a weight that indexes output channels, or -1 for per-tensor only.
int64_t channel_axis(const onnx::NodeProto& n, size_t rank) {
  if (n.op_type() == "Conv") return 0;
  if (n.op_type() == "ConvTranspose") return 1;
  if (n.op_type() == "Gemm") return onnx_edit::attr_int(n, "transB", 0) ? 0 : 1;
  if (n.op_type() == "MatMul" && rank == 2) return 1;
  return -1;
}

}  // namespace

void uint8_params(float rmin, float rmax, float* scale, uint8_t* zero_point) {
  rmin = std::min(rmin, 0.0f);
  rmax = std::max(rmax, 0.0f);
  float s = (rmax - rmin) / 255.0f;
  if (!(s > 0) || !std::isfinite(s)) {
    *scale = 1.0f;
    *zero_point = 0;
    return;
  }
  *scale = s;
  *zero_point = static_cast<uint8_t>(std::clamp(std::nearbyint(0.0f - rmin / s), 0.0f, 255.0f));
}

Result<std::vector<std::string>> onnx_static_activations(const onnx::ModelProto& model, const OnnxStaticOptions& opt) {
  SHRINK_ASSIGN(Plan p, plan_nodes(model, opt));
  const auto& g = model.graph();
  const auto outs = graph_outputs(g);
  std::set<std::string> seen;
  std::vector<std::string> v;
  auto add = [&](const std::string& t) {
    if (!t.empty() && !outs.count(t) && seen.insert(t).second) v.push_back(t);
  };
  for (int k : p.nodes) {
    const auto& n = g.node(k);
    for (int i : activation_inputs(g, n)) add(n.input(i));
    if (n.output_size() > 0) add(n.output(0));
  }
  return v;
}

Result<OnnxStaticReport> quantize_onnx_static(onnx::ModelProto* model,
                                              const std::map<std::string, std::array<float, 2>>& ranges,
                                              const OnnxStaticOptions& opt) {
  SHRINK_ASSIGN(Plan plan, plan_nodes(*model, opt));
  OnnxStaticReport rep;
  rep.skipped = plan.skipped;
  onnx::GraphProto* g = model->mutable_graph();
  const int64_t opset = onnx_edit::opset_version(*model, "");
  if (opset < 1) return make_error(opt.file + ": the model imports no default-domain opset");
  // Standard Q/DQ exist from opset 10; their `axis` (per-channel) from 13.
  const bool standard = opset >= 13 || (opset >= 10 && !opt.per_channel);
  const std::string qdomain = standard ? "" : "com.microsoft";
  onnx_edit::NameSet names(*g);
  const auto outs = graph_outputs(*g);

  struct ActParams {
    float scale;
    uint8_t zp;
    std::string scale_name, zp_name, dq_name;
  };
  std::map<std::string, ActParams> acts;  // activation -> its QDQ
  std::vector<onnx::NodeProto> prefix;    // weight DQs and graph-input QDQs, placed first
  std::map<std::string, std::vector<onnx::NodeProto>> after;  // producer output -> its Q, DQ

  std::set<std::string> graph_inputs;
  for (const auto& i : g->input()) graph_inputs.insert(i.name());

  auto add_act = [&](const std::string& t) -> bool {
    if (t.empty() || outs.count(t)) return false;
    if (acts.count(t)) return true;
    auto r = ranges.find(t);
    if (r == ranges.end()) return false;
    ActParams a;
    uint8_params(r->second[0], r->second[1], &a.scale, &a.zp);
    a.scale_name = names.fresh(t + "_scale");
    a.zp_name = names.fresh(t + "_zero_point");
    const std::string q = names.fresh(t + "_quantized");
    a.dq_name = names.fresh(t + "_dequantized");
    *g->add_initializer() = onnx_edit::make_f32_tensor(a.scale_name, {}, {a.scale});
    *g->add_initializer() = onnx_edit::make_tensor(a.zp_name, TensorProto::UINT8, {}, &a.zp, 1);
    std::vector<onnx::NodeProto> pair = {
        onnx_edit::make_node("QuantizeLinear", {t, a.scale_name, a.zp_name}, {q}, names.fresh(t + "_QuantizeLinear"), qdomain),
        onnx_edit::make_node("DequantizeLinear", {q, a.scale_name, a.zp_name}, {a.dq_name}, names.fresh(t + "_DequantizeLinear"), qdomain)};
    auto& slot = graph_inputs.count(t) ? prefix : after[t];
    slot.insert(slot.end(), pair.begin(), pair.end());
    acts[t] = a;
    ++rep.qdq_activations;
    return true;
  };

  struct WeightParams {
    std::vector<float> scales;  // 1 (per-tensor) or per channel
    int64_t axis = -1;
    std::string dq_name;
  };
  std::map<std::string, WeightParams> weights;
  std::map<int, std::map<int, std::string>> renamed;  // node index -> input index -> new name
  std::set<std::string> maybe_unused;

  for (int k : plan.nodes) {
    const onnx::NodeProto& n = g->node(k);
    const std::string what = "node '" + n.name() + "' (" + n.op_type() + ")";
    bool any = false;
    for (int i : activation_inputs(*g, n)) any = add_act(n.input(i)) || any;
    if (n.output_size() > 0) any = add_act(n.output(0)) || any;
    // The weight.
    std::string wname;
    if (has_weight(n.op_type()) && n.input_size() > 1 && is_constant(*g, n.input(1))) {
      wname = n.input(1);
      if (!weights.count(wname)) {
        const TensorProto* tp = onnx_edit::find_constant(onnx_edit::GraphScopes{g}, wname);
        if (tp->data_type() != TensorProto::FLOAT) {
          rep.skipped.push_back(what + ": weight '" + wname + "' is not FLOAT");
          wname.clear();
        } else {
          SHRINK_ASSIGN(std::vector<float> w, tensor_to_f32(*tp));
          std::vector<int64_t> dims(tp->dims().begin(), tp->dims().end());
          WeightParams wp;
          wp.axis = opt.per_channel ? channel_axis(n, dims.size()) : -1;
          const int64_t nch = wp.axis >= 0 ? dims[wp.axis] : 1;
          int64_t inner = 1;
          for (size_t d = wp.axis + 1; wp.axis >= 0 && d < dims.size(); ++d) inner *= dims[d];
          auto channel = [&](size_t idx) { return wp.axis >= 0 ? static_cast<int64_t>(idx / inner) % nch : 0; };
          std::vector<float> absmax(nch, 0.0f);
          for (size_t j = 0; j < w.size(); ++j) absmax[channel(j)] = std::max(absmax[channel(j)], std::fabs(w[j]));
          // Symmetric int8 in [-127, 127] (ONNX Runtime's symmetric weight range), scale = absmax / 127.
          for (float a : absmax) wp.scales.push_back(a > 0 ? a / 127.0f : 1.0f);
          std::vector<int8_t> q(w.size());
          for (size_t j = 0; j < w.size(); ++j)
            q[j] = static_cast<int8_t>(std::clamp(std::nearbyint(w[j] / wp.scales[channel(j)]), -127.0f, 127.0f));
          const std::string qn = names.fresh(wname + "_quantized"), sn = names.fresh(wname + "_scale");
          const std::string zn = names.fresh(wname + "_zero_point");
          wp.dq_name = names.fresh(wname + "_dequantized");
          *g->add_initializer() = onnx_edit::make_tensor(qn, TensorProto::INT8, dims, q.data(), q.size());
          const std::vector<int64_t> sdims = wp.axis >= 0 ? std::vector<int64_t>{nch} : std::vector<int64_t>{};
          *g->add_initializer() = onnx_edit::make_f32_tensor(sn, sdims, wp.scales);
          const std::vector<int8_t> zeros(nch, 0);
          *g->add_initializer() = onnx_edit::make_tensor(zn, TensorProto::INT8, sdims, zeros.data(), zeros.size());
          onnx::NodeProto dq = onnx_edit::make_node("DequantizeLinear", {qn, sn, zn}, {wp.dq_name}, names.fresh(wname + "_DequantizeLinear"), qdomain);
          if (wp.axis >= 0) onnx_edit::set_attr(&dq, "axis", wp.axis);
          prefix.push_back(dq);
          rep.float_weight_bytes += w.size() * 4;
          rep.quantized_weight_bytes += q.size() + nch * 5;
          ++rep.quantized_weights;
          weights[wname] = std::move(wp);
          maybe_unused.insert(wname);
        }
      }
      if (!wname.empty()) {
        renamed[k][1] = weights[wname].dq_name;
        any = true;
      }
    }
    // The bias: int32 with scale = input scale * weight scale, when both are quantized. (Left float, ONNX Runtime
    // 1.30 would quantize it itself with a per-axis DequantizeLinear, invalid below opset 13.)
    if (!wname.empty() && has_bias(n.op_type()) && n.input_size() > 2 && !n.input(2).empty() &&
        acts.count(n.input(0)) && is_constant(*g, n.input(2))) {
      const TensorProto* bp = onnx_edit::find_constant(onnx_edit::GraphScopes{g}, n.input(2));
      const WeightParams& wp = weights[wname];
      if (bp->data_type() == TensorProto::FLOAT && bp->dims_size() == 1 &&
          (wp.scales.size() == 1 || static_cast<int64_t>(wp.scales.size()) == bp->dims(0))) {
        SHRINK_ASSIGN(std::vector<float> b, tensor_to_f32(*bp));
        const float in_scale = acts[n.input(0)].scale;
        std::vector<float> bs(wp.scales.size());
        for (size_t j = 0; j < bs.size(); ++j) bs[j] = in_scale * wp.scales[j];
        std::vector<int32_t> q(b.size());
        for (size_t j = 0; j < b.size(); ++j) {
          const double v = std::nearbyint(static_cast<double>(b[j]) / bs[bs.size() == 1 ? 0 : j]);
          q[j] = static_cast<int32_t>(std::clamp(v, -2147483647.0, 2147483647.0));
        }
        const std::string bn = n.input(2);
        const std::string qn = names.fresh(bn + "_quantized"), sn = names.fresh(bn + "_scale"), zn = names.fresh(bn + "_zero_point");
        const std::string dqn = names.fresh(bn + "_dequantized");
        const std::vector<int64_t> sdims = bs.size() > 1 ? std::vector<int64_t>{static_cast<int64_t>(bs.size())} : std::vector<int64_t>{};
        *g->add_initializer() = onnx_edit::make_tensor(qn, TensorProto::INT32, {static_cast<int64_t>(q.size())}, q.data(), q.size() * 4);
        *g->add_initializer() = onnx_edit::make_f32_tensor(sn, sdims, bs);
        const std::vector<int32_t> zeros(bs.size(), 0);
        *g->add_initializer() = onnx_edit::make_tensor(zn, TensorProto::INT32, sdims, zeros.data(), zeros.size() * 4);
        onnx::NodeProto dq = onnx_edit::make_node("DequantizeLinear", {qn, sn, zn}, {dqn}, names.fresh(bn + "_DequantizeLinear"), qdomain);
        if (bs.size() > 1) onnx_edit::set_attr(&dq, "axis", int64_t{0});
        prefix.push_back(dq);
        renamed[k][2] = dqn;
        maybe_unused.insert(bn);
        ++rep.quantized_biases;
      }
    }
    if (any) ++rep.quantized_nodes;
    else rep.skipped.push_back(what + ": no calibrated float input/output and no constant FLOAT weight");
  }
  if (rep.quantized_nodes == 0) {
    std::string why;
    for (const auto& s : rep.skipped) why += "; " + s;
    return make_error(opt.file + ": nothing to quantize: no main-graph node of the chosen op types had a calibrated activation or weight" + why);
  }

  // Rebuild the node list: prefix, then each node (readers of a quantized activation read its DQ output)
  // followed by the Q/DQ of its quantized outputs.
  std::vector<onnx::NodeProto> nodes = prefix;
  for (int k = 0; k < g->node_size(); ++k) {
    onnx::NodeProto n = g->node(k);
    for (int i = 0; i < n.input_size(); ++i) {
      auto r = renamed.find(k);
      if (r != renamed.end() && r->second.count(i)) n.set_input(i, r->second.at(i));
      else if (acts.count(n.input(i))) n.set_input(i, acts.at(n.input(i)).dq_name);
    }
    nodes.push_back(n);
    for (const auto& o : g->node(k).output()) {
      auto a = after.find(o);
      if (a != after.end()) nodes.insert(nodes.end(), a->second.begin(), a->second.end());
    }
  }
  // Q nodes read the float tensor itself; the loop above renamed nothing inside them (they are new).
  g->clear_node();
  for (auto& n : nodes) *g->add_node() = std::move(n);
  onnx_edit::remove_unused_constants(g, maybe_unused);
  if (!standard) onnx_edit::add_opset(model, "com.microsoft", 1);
  return rep;
}

}  // namespace shrink
