#include "quantizer/onnx_graph_edit.h"

#include <cmath>
#include <cstring>
#include <map>

#include "formats/error_text.h"
#include "formats/onnx_model.h"

namespace shrink::onnx_edit {
namespace {

bool same_domain(const std::string& a, const std::string& b) {
  auto norm = [](const std::string& d) { return d == "ai.onnx" ? std::string() : d; };
  return norm(a) == norm(b);
}

void count_graph(const onnx::GraphProto& g, std::map<std::string, int>& uses) {
  for (const auto& n : g.node()) {
    for (const auto& i : n.input())
      if (!i.empty()) ++uses[i];
    for (const auto& a : n.attribute()) {
      if (a.has_g()) count_graph(a.g(), uses);
      for (const auto& sg : a.graphs()) count_graph(sg, uses);
    }
  }
  for (const auto& o : g.output()) ++uses[o.name()];
}

// Ops whose meaning or signature changes at a default-domain opset version, so that a node written for an
// older opset means something else (or is invalid) once the import is raised past that version. From the
// non-trivial upgrade adapters of ONNX's version converter (onnx/version_converter/convert.h: Upsample 7/9/10,
// Scan 9, Slice/TopK 10, Clip/Pad/Resize/Scatter 11, Dropout 12, ReduceSum/Squeeze/Unsqueeze/Split/Softmax/
// LogSoftmax 13, BatchNormalization 14, RoiAlign 16) and the ONNX changelog for 18..21 (the other Reduce* ops
// move axes from an attribute to an input at 18; GroupNormalization changes its scale/bias shape at 21).
struct Break {
  const char* op;
  int64_t version;
};
constexpr Break kBreaks[] = {
    {"Upsample", 7}, {"Upsample", 9}, {"Upsample", 10}, {"Scan", 9}, {"Slice", 10}, {"TopK", 10},
    {"Clip", 11}, {"Pad", 11}, {"Resize", 11}, {"Scatter", 11}, {"Dropout", 12}, {"ReduceSum", 13},
    {"Squeeze", 13}, {"Unsqueeze", 13}, {"Split", 13}, {"Softmax", 13}, {"LogSoftmax", 13}, {"Hardmax", 13},
    {"BatchNormalization", 14}, {"RoiAlign", 16}, {"ReduceMean", 18}, {"ReduceMax", 18}, {"ReduceMin", 18},
    {"ReduceProd", 18}, {"ReduceL1", 18}, {"ReduceL2", 18}, {"ReduceLogSum", 18}, {"ReduceLogSumExp", 18},
    {"ReduceSumSquare", 18}, {"GroupNormalization", 21},
};

// Nodes that hit a break but keep their meaning: Softmax-family with axis -1 (the last axis, where the
// old flatten-to-2-D rule and the new single-axis rule agree); BatchNormalization in inference form
// (one output); reductions/squeezes without the axes attribute that moved (they reduce all axes / need axes).
bool survives(const onnx::NodeProto& n, int64_t version) {
  const std::string& op = n.op_type();
  if (op == "Softmax" || op == "LogSoftmax" || op == "Hardmax") return attr_int(n, "axis", 1) == -1;
  if (op == "BatchNormalization") return n.output_size() == 1 && attr_int(n, "spatial", 1) == 1;
  if (op.rfind("Reduce", 0) == 0) return !has_attr(n, "axes");
  return false;
}

const onnx::NodeProto* first_breaking_node(const onnx::GraphProto& g, int64_t from, int64_t to) {
  for (const auto& n : g.node()) {
    if (same_domain(n.domain(), "")) {
      for (const Break& b : kBreaks)
        if (n.op_type() == b.op && from < b.version && to >= b.version && !survives(n, b.version)) return &n;
    }
    for (const auto& a : n.attribute()) {
      if (a.has_g())
        if (const auto* bad = first_breaking_node(a.g(), from, to)) return bad;
      for (const auto& sg : a.graphs())
        if (const auto* bad = first_breaking_node(sg, from, to)) return bad;
    }
  }
  return nullptr;
}

}  // namespace

const onnx::TensorProto* find_constant(const GraphScopes& scopes, const std::string& name) {
  for (auto it = scopes.rbegin(); it != scopes.rend(); ++it) {
    const onnx::GraphProto& g = **it;
    for (const auto& t : g.initializer())
      if (t.name() == name) return &t;
    for (const auto& n : g.node()) {
      if (n.op_type() != "Constant" || !same_domain(n.domain(), "") || n.output_size() != 1 || n.output(0) != name) continue;
      for (const auto& a : n.attribute())
        if (a.name() == "value" && a.has_t()) return &a.t();
      return nullptr;
    }
    for (const auto& n : g.node())
      for (const auto& o : n.output())
        if (o == name) return nullptr;  // computed in this scope: shadows anything outside
  }
  return nullptr;
}

bool is_graph_input(const GraphScopes& scopes, const std::string& name) {
  for (const auto* g : scopes)
    for (const auto& i : g->input())
      if (i.name() == name) return true;
  return false;
}

Result<ConstantWeight> constant_float_weight(const onnx::NodeProto& n, int input, const GraphScopes& scopes) {
  const std::string label = "node " + quote_untrusted(n.name(), 120) + " (" + n.op_type() + ")";
  if (n.input_size() <= input || n.input(input).empty()) return make_error(label + ": has no weight input");
  const std::string& name = n.input(input);
  const std::string quoted = quote_untrusted(name, 120);
  const onnx::TensorProto* t = find_constant(scopes, name);
  if (t == nullptr || is_graph_input(scopes, name))
    return make_error(label + ": weight " + quoted + " is not a constant (computed or a graph input)");
  if (t->data_type() != onnx::TensorProto::FLOAT)
    return make_error(label + ": weight " + quoted + " has data_type " + std::to_string(t->data_type()) + ", not float32");
  ConstantWeight w;
  w.tensor = t;
  w.dims.assign(t->dims().begin(), t->dims().end());
  SHRINK_ASSIGN(w.values, tensor_to_f32(*t));
  for (size_t i = 0; i < w.values.size(); ++i)
    if (!std::isfinite(w.values[i]))
      return make_error(label + ": weight " + quoted + " holds NaN or Inf (value " + std::to_string(i) + ")");
  return w;
}

std::map<std::string, int> count_uses(const onnx::GraphProto& g) {
  std::map<std::string, int> uses;
  count_graph(g, uses);
  return uses;
}

NameSet::NameSet(const onnx::GraphProto& g) { add_graph(g); }

void NameSet::add_graph(const onnx::GraphProto& g) {
  for (const auto& t : g.initializer()) names_.insert(t.name());
  for (const auto& i : g.input()) names_.insert(i.name());
  for (const auto& o : g.output()) names_.insert(o.name());
  for (const auto& n : g.node()) {
    names_.insert(n.name());
    for (const auto& o : n.output()) names_.insert(o);
    for (const auto& a : n.attribute()) {
      if (a.has_g()) add_graph(a.g());
      for (const auto& sg : a.graphs()) add_graph(sg);
    }
  }
}

std::string NameSet::fresh(const std::string& base) {
  std::string name = base;
  for (int i = 1; names_.count(name); ++i) name = base + "_" + std::to_string(i);
  names_.insert(name);
  return name;
}

bool remove_constant(onnx::GraphProto* g, const std::string& name) {
  auto* inits = g->mutable_initializer();
  for (int i = 0; i < inits->size(); ++i)
    if (inits->Get(i).name() == name) {
      inits->DeleteSubrange(i, 1);
      return true;
    }
  auto* nodes = g->mutable_node();
  for (int i = 0; i < nodes->size(); ++i) {
    const auto& n = nodes->Get(i);
    if (n.op_type() == "Constant" && n.output_size() == 1 && n.output(0) == name) {
      nodes->DeleteSubrange(i, 1);
      return true;
    }
  }
  return false;
}

onnx::TensorProto make_tensor(const std::string& name, int data_type, const std::vector<int64_t>& dims,
                              const void* raw, size_t raw_bytes) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(data_type);
  for (int64_t d : dims) t.add_dims(d);
  t.set_raw_data(raw, raw_bytes);
  return t;
}

onnx::TensorProto make_f32_tensor(const std::string& name, const std::vector<int64_t>& dims, const std::vector<float>& v) {
  return make_tensor(name, onnx::TensorProto::FLOAT, dims, v.data(), v.size() * sizeof(float));
}

onnx::TensorProto make_i64_tensor(const std::string& name, const std::vector<int64_t>& dims, const std::vector<int64_t>& v) {
  return make_tensor(name, onnx::TensorProto::INT64, dims, v.data(), v.size() * sizeof(int64_t));
}

onnx::NodeProto make_node(const std::string& op_type, const std::vector<std::string>& inputs,
                          const std::vector<std::string>& outputs, const std::string& name, const std::string& domain) {
  onnx::NodeProto n;
  n.set_op_type(op_type);
  n.set_name(name);
  if (!domain.empty()) n.set_domain(domain);
  for (const auto& i : inputs) n.add_input(i);
  for (const auto& o : outputs) n.add_output(o);
  return n;
}

void set_attr(onnx::NodeProto* n, const std::string& name, int64_t v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}

void set_attr(onnx::NodeProto* n, const std::string& name, float v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(v);
}

int64_t attr_int(const onnx::NodeProto& n, const std::string& name, int64_t fallback) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return a.i();
  return fallback;
}

float attr_float(const onnx::NodeProto& n, const std::string& name, float fallback) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return a.f();
  return fallback;
}

bool has_attr(const onnx::NodeProto& n, const std::string& name) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return true;
  return false;
}

namespace {

Status rewrite_in(onnx::GraphProto* g, const NodeRewrite& fn, GraphScopes& scopes) {
  scopes.push_back(g);
  for (auto& n : *g->mutable_node())
    for (auto& a : *n.mutable_attribute()) {
      if (a.has_g()) SHRINK_CHECK(rewrite_in(a.mutable_g(), fn, scopes));
      for (auto& sg : *a.mutable_graphs()) SHRINK_CHECK(rewrite_in(&sg, fn, scopes));
    }
  google::protobuf::RepeatedPtrField<onnx::NodeProto> rebuilt;
  for (const auto& n : g->node()) {
    std::vector<onnx::NodeProto> replacement;
    SHRINK_ASSIGN(bool replaced, fn(n, scopes, g, &replacement));
    if (!replaced) {
      *rebuilt.Add() = n;
      continue;
    }
    for (auto& r : replacement) *rebuilt.Add() = std::move(r);
  }
  g->mutable_node()->Swap(&rebuilt);
  scopes.pop_back();
  return {};
}

void remove_unused_in(onnx::GraphProto* g, const std::set<std::string>& names, const std::map<std::string, int>& uses) {
  for (const auto& name : names)
    if (!uses.count(name)) remove_constant(g, name);
  for (auto& n : *g->mutable_node())
    for (auto& a : *n.mutable_attribute()) {
      if (a.has_g()) remove_unused_in(a.mutable_g(), names, uses);
      for (auto& sg : *a.mutable_graphs()) remove_unused_in(&sg, names, uses);
    }
}

}  // namespace

Status rewrite_nodes(onnx::GraphProto* g, const NodeRewrite& fn) {
  GraphScopes scopes;
  return rewrite_in(g, fn, scopes);
}

void remove_unused_constants(onnx::GraphProto* main_graph, const std::set<std::string>& names) {
  remove_unused_in(main_graph, names, count_uses(*main_graph));
}

int64_t opset_version(const onnx::ModelProto& m, const std::string& domain) {
  for (const auto& o : m.opset_import())
    if (same_domain(o.domain(), domain)) return o.version();
  return 0;
}

void add_opset(onnx::ModelProto* m, const std::string& domain, int64_t version) {
  if (opset_version(*m, domain) != 0) return;
  auto* o = m->add_opset_import();
  o->set_domain(domain);
  o->set_version(version);
}

Status raise_default_opset(onnx::ModelProto* m, int64_t min_version, const std::string& file) {
  const int64_t from = opset_version(*m, "");
  if (from >= min_version) return {};
  if (from < 7)
    return make_error(file + ": default-domain opset " + std::to_string(from) + " is older than 7; the rewrite needs " +
                      std::to_string(min_version) + " and shrink does not convert such old models");
  if (const onnx::NodeProto* bad = first_breaking_node(m->graph(), from, min_version))
    return make_error(file + ": node " + quote_untrusted(bad->name(), 120) + " (" + bad->op_type() + ") changes meaning between opset " +
                      std::to_string(from) + " and " + std::to_string(min_version) +
                      ", which this rewrite needs; convert the model to opset " + std::to_string(min_version) + " first");
  for (auto& o : *m->mutable_opset_import())
    if (same_domain(o.domain(), "")) o.set_version(min_version);
  // IR versions that introduced the opsets (onnx/helper.py VERSION_TABLE): opset 13 needs IR 7,
  // 15 needs IR 8, 19 needs IR 9, 21 needs IR 10.
  int64_t ir = 3;
  if (min_version >= 21) ir = 10;
  else if (min_version >= 19) ir = 9;
  else if (min_version >= 15) ir = 8;
  else if (min_version >= 13) ir = 7;
  if (m->ir_version() < ir) m->set_ir_version(ir);
  return {};
}

}  // namespace shrink::onnx_edit
