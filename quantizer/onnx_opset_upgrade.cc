#include "quantizer/onnx_opset_upgrade.h"

#include <map>

#include "formats/error_text.h"
#include "formats/onnx_model.h"
#include "quantizer/onnx_graph_edit.h"

namespace shrink {
namespace {

using onnx::AttributeProto;
using onnx::NodeProto;
using onnx::TensorProto;

const AttributeProto* find_attr(const NodeProto& n, const std::string& name) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}

void drop_attr(NodeProto* n, const std::string& name) {
  auto* attrs = n->mutable_attribute();
  for (int i = 0; i < attrs->size(); ++i)
    if (attrs->Get(i).name() == name) {
      attrs->DeleteSubrange(i, 1);
      return;
    }
}

void set_string_attr(NodeProto* n, const std::string& name, const std::string& v) {
  drop_attr(n, name);
  AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(AttributeProto::STRING);
  a->set_s(v);
}

void set_int_attr(NodeProto* n, const std::string& name, int64_t v) {
  drop_attr(n, name);
  onnx_edit::set_attr(n, name, v);
}

std::vector<int64_t> ints_of(const AttributeProto& a) { return {a.ints().begin(), a.ints().end()}; }

// Inserts `value` as input `k` of `n`, padding skipped optional inputs with "".
void set_input(NodeProto* n, int k, const std::string& value) {
  while (n->input_size() <= k) n->add_input("");
  n->set_input(k, value);
}

// IR version that introduced each opset (onnx/helper.py VERSION_TABLE): 10 -> 5, 11 -> 6, 13 -> 7,
// 15 -> 8, 19 -> 9, 21 -> 10.
int64_t ir_for_opset(int64_t opset) {
  if (opset >= 21) return 10;
  if (opset >= 19) return 9;
  if (opset >= 15) return 8;
  if (opset >= 13) return 7;
  if (opset >= 11) return 6;
  if (opset >= 10) return 5;
  return 3;
}

bool is_reduce(const std::string& op) { return op.rfind("Reduce", 0) == 0; }

class Upgrader {
 public:
  Upgrader(onnx::ModelProto* m, int64_t from, int64_t to, const std::string& file)
      : from_(from), to_(to), file_(file), names_(m->graph()) {
    collect_ranks(m->graph());
  }

  Result<bool> rewrite(const NodeProto& node, const onnx_edit::GraphScopes& scopes, onnx::GraphProto* graph,
                       std::vector<NodeProto>* out) {
    if (!node.domain().empty() && node.domain() != "ai.onnx") return false;
    const std::string& op = node.op_type();
    const std::string what = "node " + quote_untrusted(node.name(), 120) + " (" + op + ")";
    auto refuse = [&](const std::string& why) -> Result<bool> {
      return make_error(file_ + ": " + what + " cannot be upgraded from opset " + std::to_string(from_) + " to " +
                        std::to_string(to_) + ": " + why);
    };
    graph_ = graph;
    scopes_ = &scopes;
    NodeProto n = node;
    std::vector<NodeProto> before, after;
    std::vector<std::string> did;

    if (op == "Scan" && crosses(9)) return refuse("Scan-8's batch axis has no rewrite here");
    if (op == "RoiAlign" && crosses(16)) return refuse("coordinate_transformation_mode's default changed; not rewritten");
    if (op == "GroupNormalization" && crosses(21)) return refuse("scale/bias change from per-group to per-channel");

    if ((op == "Slice" && crosses(10)) || (op == "TopK" && crosses(10))) {
      if (op == "Slice") {
        const AttributeProto* starts = find_attr(n, "starts");
        const AttributeProto* ends = find_attr(n, "ends");
        if (!starts || !ends) return refuse("Slice-1 without starts/ends");
        set_input(&n, 1, i64(n.name() + "_starts", ints_of(*starts)));
        set_input(&n, 2, i64(n.name() + "_ends", ints_of(*ends)));
        if (const AttributeProto* axes = find_attr(n, "axes")) set_input(&n, 3, i64(n.name() + "_axes", ints_of(*axes)));
        for (const char* a : {"starts", "ends", "axes"}) drop_attr(&n, a);
        did.push_back("starts/ends/axes -> inputs");
      } else {
        const AttributeProto* k = find_attr(n, "k");
        if (!k) return refuse("TopK-1 without k");
        set_input(&n, 1, i64(n.name() + "_k", {k->i()}));
        drop_attr(&n, "k");
        did.push_back("k -> input");
      }
    }
    if (op == "Upsample" && crosses(9) && !crosses(10)) {
      // Upsample-9 takes the scales as an input.
      if (const AttributeProto* s = find_attr(n, "scales")) {
        set_input(&n, 1, f32(n.name() + "_scales", {static_cast<int64_t>(s->floats_size())}, {s->floats().begin(), s->floats().end()}));
        drop_attr(&n, "scales");
        did.push_back("scales -> input");
      }
    }
    if (op == "Upsample" && crosses(10)) {
      // Upsample-7 (scales attribute) / -9 (scales input) -> Resize with the same arithmetic: output
      // coordinate x maps to x / scale (asymmetric), nearest takes floor of it.
      std::string scales;
      if (const AttributeProto* s = find_attr(n, "scales")) {
        scales = f32(n.name() + "_scales", {static_cast<int64_t>(s->floats_size())}, {s->floats().begin(), s->floats().end()});
      } else if (n.input_size() > 1) {
        scales = n.input(1);
      } else {
        return refuse("no scales");
      }
      const std::string mode = find_attr(n, "mode") ? find_attr(n, "mode")->s() : "nearest";
      SHRINK_CHECK(check_nearest_scales(what, mode, scales));
      NodeProto r = onnx_edit::make_node("Resize", {n.input(0)}, {n.output(0)}, n.name());
      set_string_attr(&r, "mode", mode);
      if (to_ >= 11) {
        r.add_input(empty_roi(n.name()));
        set_string_attr(&r, "coordinate_transformation_mode", "asymmetric");
        if (mode == "nearest") set_string_attr(&r, "nearest_mode", "floor");
      }
      r.add_input(scales);
      n = r;
      did.push_back("-> Resize (asymmetric" + std::string(mode == "nearest" ? ", floor)" : ")"));
    }
    if (op == "Resize" && crosses(11)) {
      // Resize-10 (X, scales): the same coordinate rule as Upsample.
      if (n.input_size() != 2) return refuse("Resize-10 takes 2 inputs, this node has " + std::to_string(n.input_size()));
      const std::string mode = find_attr(n, "mode") ? find_attr(n, "mode")->s() : "nearest";
      SHRINK_CHECK(check_nearest_scales(what, mode, n.input(1)));
      const std::string scales = n.input(1);
      n.set_input(1, empty_roi(n.name()));
      n.add_input(scales);
      set_string_attr(&n, "coordinate_transformation_mode", "asymmetric");
      if (mode == "nearest") set_string_attr(&n, "nearest_mode", "floor");
      did.push_back("roi input, asymmetric" + std::string(mode == "nearest" ? ", floor" : ""));
    }
    if (op == "Clip" && crosses(11)) {
      // Clip-6: min/max attributes, defaulting to the float range (so absent = no bound).
      if (const AttributeProto* a = find_attr(n, "min")) set_input(&n, 1, f32(n.name() + "_min", {}, {a->f()}));
      if (const AttributeProto* a = find_attr(n, "max")) set_input(&n, 2, f32(n.name() + "_max", {}, {a->f()}));
      drop_attr(&n, "min");
      drop_attr(&n, "max");
      did.push_back("min/max -> inputs");
    }
    if (op == "Pad" && crosses(11)) {
      const AttributeProto* pads = find_attr(n, "pads");
      if (!pads) pads = find_attr(n, "paddings");  // Pad-1's name
      if (!pads) return refuse("no pads attribute");
      set_input(&n, 1, i64(n.name() + "_pads", {pads->ints_size()}, ints_of(*pads)));
      if (const AttributeProto* v = find_attr(n, "value"); v && v->f() != 0.0f)
        set_input(&n, 2, f32(n.name() + "_value", {}, {v->f()}));
      for (const char* a : {"pads", "paddings", "value"}) drop_attr(&n, a);
      did.push_back("pads/value -> inputs");
    }
    if (op == "Scatter" && crosses(11)) {
      n.set_op_type("ScatterElements");  // the same op, renamed (Scatter is deprecated from 11)
      did.push_back("-> ScatterElements");
    }
    if (op == "Dropout" && crosses(12)) {
      // Inference Dropout is the identity either way; the mask is T before opset 10 and bool from 10.
      if (from_ < 10 && n.output_size() > 1 && !n.output(1).empty())
        return refuse("its mask output changes type (T -> bool) at opset 10");
      if (const AttributeProto* r = find_attr(n, "ratio")) set_input(&n, 1, f32(n.name() + "_ratio", {}, {r->f()}));
      drop_attr(&n, "ratio");
      drop_attr(&n, "is_test");
      did.push_back("ratio -> input");
    }
    if (op == "BatchNormalization" && (crosses(9) || crosses(14))) {
      if (const AttributeProto* s = find_attr(n, "spatial"); s && s->i() == 0 && crosses(9))
        return refuse("spatial = 0 (per-element statistics) has no opset-9 form");
      for (int k = 1; k < n.output_size(); ++k)
        if (!n.output(k).empty()) return refuse("training outputs (running mean/variance) change meaning at opset 14");
      if (find_attr(n, "spatial")) did.push_back("spatial dropped");
      drop_attr(&n, "spatial");
    }
    if ((op == "Squeeze" || op == "Unsqueeze" || op == "ReduceSum") && crosses(13)) {
      if (const AttributeProto* a = find_attr(n, "axes")) {
        set_input(&n, 1, i64(n.name() + "_axes", {a->ints_size()}, ints_of(*a)));
        drop_attr(&n, "axes");
        did.push_back("axes -> input");
      }
    }
    if (is_reduce(op) && op != "ReduceSum" && crosses(18)) {
      if (const AttributeProto* a = find_attr(n, "axes")) {
        set_input(&n, 1, i64(n.name() + "_axes", {a->ints_size()}, ints_of(*a)));
        drop_attr(&n, "axes");
        did.push_back("axes -> input");
      }
    }
    if (op == "Split") {
      if (crosses(13))
        if (const AttributeProto* s = find_attr(n, "split")) {
          set_input(&n, 1, i64(n.name() + "_split", {s->ints_size()}, ints_of(*s)));
          drop_attr(&n, "split");
          did.push_back("split -> input");
        }
      // Split-18 needs num_outputs when no split sizes are given (equal parts).
      if (crosses(18) && (n.input_size() < 2 || n.input(1).empty()) && !find_attr(n, "num_outputs")) {
        set_int_attr(&n, "num_outputs", n.output_size());
        did.push_back("num_outputs = " + std::to_string(n.output_size()));
      }
    }
    if ((op == "Softmax" || op == "LogSoftmax" || op == "Hardmax") && crosses(13)) {
      // Before 13: the input is coerced to 2-D (dims before `axis` x dims from `axis`) and normalized over
      // the second dim. From 13: normalized over `axis` alone. The same when `axis` is the last axis.
      const int64_t axis = onnx_edit::attr_int(n, "axis", 1);
      const int rank = rank_of(n.input(0));
      if (axis == -1 || (rank > 0 && (axis + (axis < 0 ? rank : 0)) == rank - 1)) {
        if (!find_attr(n, "axis")) {
          set_int_attr(&n, "axis", axis);  // explicit: the default changed from 1 to -1
          did.push_back("axis 1 made explicit (the last axis)");
        }
      } else {
        const std::string x = n.input(0), y = n.output(0), base = n.name().empty() ? y : n.name();
        const std::string flat = names_.fresh(base + "_flat"), norm = names_.fresh(base + "_2d"), shape = names_.fresh(base + "_shape");
        NodeProto f = onnx_edit::make_node("Flatten", {x}, {flat}, names_.fresh(base + "_Flatten"));
        set_int_attr(&f, "axis", axis);
        before.push_back(f);
        before.push_back(onnx_edit::make_node("Shape", {x}, {shape}, names_.fresh(base + "_Shape")));
        n.set_input(0, flat);
        n.set_output(0, norm);
        set_int_attr(&n, "axis", -1);
        after.push_back(onnx_edit::make_node("Reshape", {norm, shape}, {y}, names_.fresh(base + "_Reshape")));
        did.push_back("Flatten(axis " + std::to_string(axis) + ") -> " + op + "(-1) -> Reshape (2-D rule kept)");
      }
    }
    if (did.empty() && before.empty() && after.empty()) return false;
    out->insert(out->end(), before.begin(), before.end());
    out->push_back(n);
    out->insert(out->end(), after.begin(), after.end());
    if (!did.empty()) {
      std::string line = what + ":";
      for (size_t k = 0; k < did.size(); ++k) line += (k ? "; " : " ") + did[k];
      changes.push_back(line);
    }
    return true;
  }

  std::vector<std::string> changes;

 private:
  bool crosses(int64_t version) const { return from_ < version && to_ >= version; }

  std::string i64(const std::string& base, const std::vector<int64_t>& values) {
    return i64(base, {static_cast<int64_t>(values.size())}, values);
  }
  std::string i64(const std::string& base, const std::vector<int64_t>& dims, const std::vector<int64_t>& values) {
    const std::string name = names_.fresh(base);
    *graph_->add_initializer() = onnx_edit::make_i64_tensor(name, dims, values);
    return name;
  }
  std::string f32(const std::string& base, const std::vector<int64_t>& dims, const std::vector<float>& values) {
    const std::string name = names_.fresh(base);
    *graph_->add_initializer() = onnx_edit::make_f32_tensor(name, dims, values);
    return name;
  }
  // Resize-11/12 need a roi input even when unused (an empty tensor); 13+ accept it too.
  std::string empty_roi(const std::string& base) { return f32(base + "_roi", {0}, {}); }

  // ONNX Runtime runs nearest Upsample / Resize-10 with floor when upsampling and ceil when downsampling;
  // Resize-11's nearest_mode is one rule, so only constant scales >= 1 convert exactly.
  Status check_nearest_scales(const std::string& what, const std::string& mode, const std::string& scales) {
    if (mode != "nearest") return {};
    const TensorProto* t = onnx_edit::find_constant(*scopes_, scales);  // scopes_ holds the graph being rewritten
    if (!t || t->data_type() != TensorProto::FLOAT)
      return make_error(file_ + ": " + what + " cannot be upgraded from opset " + std::to_string(from_) + " to " +
                        std::to_string(to_) + ": nearest mode with scales that are not a constant FLOAT tensor");
    SHRINK_ASSIGN(std::vector<float> v, tensor_to_f32(*t));
    for (float s : v)
      if (!(s >= 1.0f))
        return make_error(file_ + ": " + what + " cannot be upgraded from opset " + std::to_string(from_) + " to " +
                          std::to_string(to_) + ": nearest mode with scale " + std::to_string(s) +
                          " below 1 (ONNX Runtime rounds those up, Resize-11 has no such rule)");
    return {};
  }

  int rank_of(const std::string& name) const {
    auto it = ranks_.find(name);
    return it == ranks_.end() ? 0 : it->second;
  }
  void note_rank(const onnx::ValueInfoProto& v) {
    if (v.type().has_tensor_type() && v.type().tensor_type().has_shape())
      ranks_[v.name()] = v.type().tensor_type().shape().dim_size();
  }
  void collect_ranks(const onnx::GraphProto& g) {
    for (const auto& v : g.input()) note_rank(v);
    for (const auto& v : g.output()) note_rank(v);
    for (const auto& v : g.value_info()) note_rank(v);
    for (const auto& t : g.initializer()) ranks_[t.name()] = t.dims_size();
    for (const auto& n : g.node())
      for (const auto& a : n.attribute()) {
        if (a.has_g()) collect_ranks(a.g());
        for (const auto& sg : a.graphs()) collect_ranks(sg);
      }
  }

  int64_t from_, to_;
  std::string file_;
  onnx_edit::NameSet names_;
  std::map<std::string, int> ranks_;
  onnx::GraphProto* graph_ = nullptr;
  const onnx_edit::GraphScopes* scopes_ = nullptr;
};

}  // namespace

Result<OnnxOpsetUpgradeReport> upgrade_onnx_opset(onnx::ModelProto* model, int64_t to, const std::string& file) {
  OnnxOpsetUpgradeReport rep;
  rep.from = onnx_edit::opset_version(*model, "");
  rep.to = to;
  if (rep.from == 0) rep.from = 1;  // no import: the default domain at version 1
  if (rep.from >= to) {
    rep.to = rep.from;
    return rep;
  }
  if (to > kOnnxMaxUpgradeOpset)
    return make_error(file + ": opset " + std::to_string(to) + " is newer than the " + std::to_string(kOnnxMaxUpgradeOpset) +
                      " ONNX Runtime 1.30 runs");
  if (rep.from < 7)
    return make_error(file + ": default-domain opset " + std::to_string(rep.from) +
                      " is older than 7 (broadcast attributes, is_test); shrink upgrades from 7 on");
  // Work on a copy: a refusal leaves the caller's model as it was.
  onnx::ModelProto m = *model;
  Upgrader up(&m, rep.from, to, file);
  SHRINK_CHECK(onnx_edit::rewrite_nodes(m.mutable_graph(),
                                        [&](const NodeProto& n, const onnx_edit::GraphScopes& scopes, onnx::GraphProto* g,
                                            std::vector<NodeProto>* out) { return up.rewrite(n, scopes, g, out); }));
  bool found = false;
  for (auto& o : *m.mutable_opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") {
      o.set_version(to);
      found = true;
    }
  if (!found) onnx_edit::add_opset(&m, "", to);
  if (m.ir_version() < ir_for_opset(to)) m.set_ir_version(ir_for_opset(to));
  rep.changes = up.changes;
  rep.rewritten_nodes = static_cast<int>(up.changes.size());
  *model = std::move(m);
  return rep;
}

}  // namespace shrink
