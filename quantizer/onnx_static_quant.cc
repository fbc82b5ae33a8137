#include "quantizer/onnx_static_quant.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>

#include "formats/onnx_model.h"
#include "quantizer/onnx_graph_edit.h"

namespace shrink {
namespace {
using onnx::TensorProto;

const std::vector<std::string> kDefaultOps = {"Conv", "ConvTranspose", "Gemm", "MatMul"};

bool has_weight(const std::string& op) { return op == "Conv" || op == "ConvTranspose" || op == "Gemm" || op == "MatMul"; }
bool has_bias(const std::string& op) { return op == "Conv" || op == "Gemm"; }  // input 2 (ConvTranspose: also, but left float)

// A graph being rewritten: the main graph or an If/Loop body, with the chain of enclosing graphs (a body may
// read any enclosing graph's values and constants by name).
struct GraphAt {
  onnx::GraphProto* g;
  onnx_edit::GraphScopes scopes;  // main graph first, `g` last
  std::string where;              // "" for the main graph, else "If 'x' then_branch" (for messages)
};

struct Plan {
  std::vector<int> nodes;  // indices of this graph's nodes to quantize
  std::vector<std::string> skipped;
};

std::string node_label(const onnx::NodeProto& n, const std::string& where) {
  return "node '" + n.name() + "' (" + n.op_type() + ")" + (where.empty() ? "" : " in " + where);
}

Result<Plan> plan_nodes(const onnx::GraphProto& g, const std::string& where, const OnnxStaticOptions& opt) {
  const std::vector<std::string>& ops = opt.op_types.empty() ? kDefaultOps : opt.op_types;
  const std::set<std::string> op_set(ops.begin(), ops.end());
  const std::set<std::string> excluded(opt.exclude_nodes.begin(), opt.exclude_nodes.end());
  for (const auto& op : ops)
    if (op == "QuantizeLinear" || op == "DequantizeLinear") return make_error(opt.file + ": --op-types " + op + " cannot be quantized");
  Plan p;
  for (int k = 0; k < g.node_size(); ++k) {
    const auto& n = g.node(k);
    if (!op_set.count(n.op_type())) continue;
    const std::string what = node_label(n, where);
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

// Calls `fn` on the main graph and on every If/Loop/Scan body, bodies before the graph that holds them
// (so a body's rewrite is done when its holder's node list is rebuilt).
Status for_each_graph(onnx::GraphProto* g, onnx_edit::GraphScopes& scopes, const std::string& where,
                      const std::function<Status(GraphAt&)>& fn) {
  scopes.push_back(g);
  for (auto& n : *g->mutable_node())
    for (auto& a : *n.mutable_attribute()) {
      const std::string here = n.op_type() + " '" + n.name() + "' " + a.name() + (where.empty() ? "" : " of " + where);
      if (a.has_g()) SHRINK_CHECK(for_each_graph(a.mutable_g(), scopes, here, fn));
      for (auto& sg : *a.mutable_graphs()) SHRINK_CHECK(for_each_graph(&sg, scopes, here, fn));
    }
  GraphAt at{g, scopes, where};
  Status st = fn(at);
  scopes.pop_back();
  return st;
}

bool is_constant(const onnx_edit::GraphScopes& scopes, const std::string& name) {
  return onnx_edit::find_constant(scopes, name) && !onnx_edit::is_graph_input(scopes, name);
}

std::set<std::string> graph_outputs(const onnx::GraphProto& g) {
  std::set<std::string> s;
  for (const auto& o : g.output()) s.insert(o.name());
  return s;
}

// The activation inputs (by index) of a node to quantize: non-constant, non-empty, not the bias.
std::vector<int> activation_inputs(const onnx_edit::GraphScopes& scopes, const onnx::NodeProto& n) {
  std::vector<int> v;
  for (int i = 0; i < n.input_size(); ++i) {
    if (n.input(i).empty()) continue;
    if (has_weight(n.op_type()) && i >= 2) continue;  // bias / C
    if (is_constant(scopes, n.input(i))) continue;
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
  onnx::ModelProto m = model;  // for_each_graph hands out mutable graphs; nothing is changed here
  std::set<std::string> seen;
  std::vector<std::string> v;
  onnx_edit::GraphScopes scopes;
  SHRINK_CHECK(for_each_graph(m.mutable_graph(), scopes, "", [&](GraphAt& at) -> Status {
    SHRINK_ASSIGN(Plan p, plan_nodes(*at.g, at.where, opt));
    const auto outs = graph_outputs(*at.g);
    auto add = [&](const std::string& t) {
      if (!t.empty() && !outs.count(t) && seen.insert(t).second) v.push_back(t);
    };
    for (int k : p.nodes) {
      const auto& n = at.g->node(k);
      for (int i : activation_inputs(at.scopes, n)) add(n.input(i));
      if (n.output_size() > 0) add(n.output(0));
    }
    return {};
  }));
  return v;
}

namespace {

struct Rewrite {
  const std::map<std::string, std::array<float, 2>>& ranges;
  const OnnxStaticOptions& opt;
  std::string qdomain;
  onnx_edit::NameSet names;
  OnnxStaticReport rep;
  std::set<std::string> maybe_unused;

  Status graph(GraphAt& at);
};

// Rewrites one graph: its nodes to quantize get Q/DQ on their calibrated activations (new scales and zero
// points are initializers of this graph) and DequantizeLinear on their weights; readers in this graph read
// the dequantized values. A body's node whose activations were never observed (a branch calibration did not
// take) stays float entirely.
Status Rewrite::graph(GraphAt& at) {
  onnx::GraphProto* g = at.g;
  const auto& scopes = at.scopes;
  const bool body = !at.where.empty();
  SHRINK_ASSIGN(Plan plan, plan_nodes(*g, at.where, opt));
  rep.skipped.insert(rep.skipped.end(), plan.skipped.begin(), plan.skipped.end());
  const auto outs = graph_outputs(*g);
  std::set<std::string> produced_here;
  for (const auto& n : g->node())
    for (const auto& o : n.output()) produced_here.insert(o);

  struct ActParams {
    float scale;
    uint8_t zp;
    std::string scale_name, zp_name, dq_name;
  };
  std::map<std::string, ActParams> acts;  // activation -> its QDQ
  std::vector<onnx::NodeProto> prefix;    // weight DQs and QDQs of values from outside this graph, placed first
  std::map<std::string, std::vector<onnx::NodeProto>> after;  // producer output -> its Q, DQ

  auto has_range = [&](const std::string& t) { return !t.empty() && !outs.count(t) && ranges.count(t); };
  auto add_act = [&](const std::string& t) -> bool {
    if (!has_range(t)) return false;
    if (acts.count(t)) return true;
    const auto& r = ranges.at(t);
    ActParams a;
    uint8_params(r[0], r[1], &a.scale, &a.zp);
    a.scale_name = names.fresh(t + "_scale");
    a.zp_name = names.fresh(t + "_zero_point");
    const std::string q = names.fresh(t + "_quantized");
    a.dq_name = names.fresh(t + "_dequantized");
    *g->add_initializer() = onnx_edit::make_f32_tensor(a.scale_name, {}, {a.scale});
    *g->add_initializer() = onnx_edit::make_tensor(a.zp_name, TensorProto::UINT8, {}, &a.zp, 1);
    std::vector<onnx::NodeProto> pair = {
        onnx_edit::make_node("QuantizeLinear", {t, a.scale_name, a.zp_name}, {q}, names.fresh(t + "_QuantizeLinear"), qdomain),
        onnx_edit::make_node("DequantizeLinear", {q, a.scale_name, a.zp_name}, {a.dq_name}, names.fresh(t + "_DequantizeLinear"), qdomain)};
    // Graph inputs and values of enclosing graphs are quantized at the top of this graph.
    auto& slot = produced_here.count(t) ? after[t] : prefix;
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

  for (int k : plan.nodes) {
    const onnx::NodeProto& n = g->node(k);
    const std::string what = node_label(n, at.where);
    if (body) {
      bool observed = n.output_size() > 0 && has_range(n.output(0));
      for (int i : activation_inputs(scopes, n)) observed = observed || has_range(n.input(i));
      if (!observed) {
        rep.skipped.push_back(what + ": not reached during calibration (an If branch not taken or a loop body that did not "
                              "run), left float");
        continue;
      }
    }
    bool any = false;
    for (int i : activation_inputs(scopes, n)) any = add_act(n.input(i)) || any;
    if (n.output_size() > 0) any = add_act(n.output(0)) || any;
    // The weight.
    std::string wname;
    if (has_weight(n.op_type()) && n.input_size() > 1 && is_constant(scopes, n.input(1))) {
      wname = n.input(1);
      if (!weights.count(wname)) {
        const TensorProto* tp = onnx_edit::find_constant(scopes, wname);
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
        acts.count(n.input(0)) && is_constant(scopes, n.input(2))) {
      const TensorProto* bp = onnx_edit::find_constant(scopes, n.input(2));
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
    if (any) {
      ++rep.quantized_nodes;
      if (body) ++rep.quantized_body_nodes;
    } else {
      rep.skipped.push_back(what + ": no calibrated float input/output and no constant FLOAT weight");
    }
  }
  if (acts.empty() && renamed.empty()) return {};

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
  return {};
}

}  // namespace

Result<OnnxStaticReport> quantize_onnx_static(onnx::ModelProto* model,
                                              const std::map<std::string, std::array<float, 2>>& ranges,
                                              const OnnxStaticOptions& opt) {
  const int64_t opset = onnx_edit::opset_version(*model, "");
  if (opset < 1) return make_error(opt.file + ": the model imports no default-domain opset");
  // Standard Q/DQ exist from opset 10; their `axis` (per-channel) from 13.
  const bool standard = opset >= 13 || (opset >= 10 && !opt.per_channel);
  Rewrite rw{ranges, opt, standard ? "" : "com.microsoft", onnx_edit::NameSet(model->graph()), {}, {}};
  onnx_edit::GraphScopes scopes;
  SHRINK_CHECK(for_each_graph(model->mutable_graph(), scopes, "", [&](GraphAt& at) { return rw.graph(at); }));
  if (rw.rep.quantized_nodes == 0) {
    std::string why;
    for (const auto& s : rw.rep.skipped) why += "; " + s;
    return make_error(opt.file + ": nothing to quantize: no node of the chosen op types had a calibrated activation or weight" + why);
  }
  onnx_edit::remove_unused_constants(model->mutable_graph(), rw.maybe_unused);
  if (!standard) onnx_edit::add_opset(model, "com.microsoft", 1);
  return rw.rep;
}

}  // namespace shrink
