// The executor: tensor conversion, op lookup, and running a graph node by node in file order
// (ONNX requires nodes to be topologically sorted), freeing each value after its last use.
#include "calibration/onnx_executor.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "calibration/onnx_ops_util.h"

namespace shrink {

namespace {
using onnx::TensorProto;
constexpr int32_t kUint4 = 21, kInt4 = 22;  // TensorProto.DataType values added in onnx 1.16

int byte_width(int32_t type) {
  switch (type) {
    case TensorProto::FLOAT: case TensorProto::INT32: case TensorProto::UINT32: return 4;
    case TensorProto::INT64: case TensorProto::UINT64: return 8;
    case TensorProto::INT16: case TensorProto::UINT16: return 2;
    case TensorProto::INT8: case TensorProto::UINT8: case TensorProto::BOOL: return 1;
    default: return 0;
  }
}

int64_t read_int_le(const uint8_t* p, int32_t type) {
  switch (type) {
    case TensorProto::INT8: { int8_t v; std::memcpy(&v, p, 1); return v; }
    case TensorProto::UINT8: case TensorProto::BOOL: return p[0];
    case TensorProto::INT16: { int16_t v; std::memcpy(&v, p, 2); return v; }
    case TensorProto::UINT16: { uint16_t v; std::memcpy(&v, p, 2); return v; }
    case TensorProto::INT32: { int32_t v; std::memcpy(&v, p, 4); return v; }
    case TensorProto::UINT32: { uint32_t v; std::memcpy(&v, p, 4); return v; }
    default: { int64_t v; std::memcpy(&v, p, 8); return v; }
  }
}
}  // namespace

int64_t OnnxTensor::numel() const { return onnx_ops::shape_numel(shape); }

OnnxTensor OnnxTensor::floats(std::vector<int64_t> shape, std::vector<float> values) {
  OnnxTensor t;
  t.type = TensorProto::FLOAT;
  t.shape = std::move(shape);
  t.f = std::move(values);
  return t;
}
OnnxTensor OnnxTensor::ints(int32_t type, std::vector<int64_t> shape, std::vector<int64_t> values) {
  OnnxTensor t;
  t.type = type;
  t.shape = std::move(shape);
  t.i = std::move(values);
  return t;
}

bool onnx_type_supported(int32_t type) { return byte_width(type) > 0 || type == kInt4 || type == kUint4; }

std::string onnx_type_name(int32_t type) {
  if (type == kInt4) return "INT4";
  if (type == kUint4) return "UINT4";
  if (TensorProto::DataType_IsValid(type)) return TensorProto::DataType_Name(static_cast<TensorProto::DataType>(type));
  return "type " + std::to_string(type);
}

Result<OnnxTensor> tensor_from_proto(const TensorProto& t, const std::string& what) {
  OnnxTensor out;
  out.type = t.data_type();
  if (!onnx_type_supported(out.type))
    return make_error(what + ": element type " + onnx_type_name(out.type) + " is not supported by the executor");
  if (t.data_location() == TensorProto::EXTERNAL)
    return make_error(what + ": data is external; it must be loaded into raw_data first (read_onnx does)");
  int64_t n = 1;
  for (int64_t d : t.dims()) {
    if (d < 0 || (d > 0 && n > (int64_t{1} << 40) / d)) return make_error(what + ": bad dims (dim " + std::to_string(d) + ")");
    n *= d;
    out.shape.push_back(d);
  }
  const bool raw = t.has_raw_data();
  const std::string& r = t.raw_data();
  if (out.type == kInt4 || out.type == kUint4) {
    const size_t want = static_cast<size_t>((n + 1) / 2);
    std::vector<uint8_t> bytes;
    if (raw) {
      if (r.size() != want) return make_error(what + ": raw_data holds " + std::to_string(r.size()) + " bytes, expected " + std::to_string(want));
      bytes.assign(r.begin(), r.end());
    } else {
      if (static_cast<size_t>(t.int32_data_size()) != want) return make_error(what + ": int32_data has the wrong length");
      for (int32_t v : t.int32_data()) bytes.push_back(static_cast<uint8_t>(v));
    }
    out.i.resize(n);
    for (int64_t k = 0; k < n; ++k) {
      int v = (bytes[k / 2] >> ((k % 2) * 4)) & 0xF;
      if (out.type == kInt4 && v >= 8) v -= 16;
      out.i[k] = v;
    }
    return out;
  }
  const int w = byte_width(out.type);
  if (raw) {
    if (r.size() != static_cast<size_t>(n) * w)
      return make_error(what + ": raw_data holds " + std::to_string(r.size()) + " bytes, expected " + std::to_string(n * w));
    const auto* p = reinterpret_cast<const uint8_t*>(r.data());
    if (out.type == TensorProto::FLOAT) {
      out.f.resize(n);
      if (n) std::memcpy(out.f.data(), p, n * 4);
    } else {
      out.i.resize(n);
      for (int64_t k = 0; k < n; ++k) out.i[k] = read_int_le(p + k * w, out.type);
    }
    return out;
  }
  auto bad_len = [&](int64_t got) {
    return make_error(what + ": holds " + std::to_string(got) + " values, dims say " + std::to_string(n));
  };
  switch (out.type) {
    case TensorProto::FLOAT:
      if (t.float_data_size() != n) return bad_len(t.float_data_size());
      out.f.assign(t.float_data().begin(), t.float_data().end());
      break;
    case TensorProto::INT64:
      if (t.int64_data_size() != n) return bad_len(t.int64_data_size());
      out.i.assign(t.int64_data().begin(), t.int64_data().end());
      break;
    case TensorProto::UINT32: case TensorProto::UINT64:
      if (t.uint64_data_size() != n) return bad_len(t.uint64_data_size());
      for (uint64_t v : t.uint64_data()) out.i.push_back(static_cast<int64_t>(v));
      break;
    default:
      if (t.int32_data_size() != n) return bad_len(t.int32_data_size());
      for (int32_t v : t.int32_data()) out.i.push_back(onnx_ops::wrap_to_type(v, out.type));
  }
  return out;
}

TensorProto tensor_to_proto(const OnnxTensor& t, const std::string& name) {
  TensorProto p;
  p.set_name(name);
  p.set_data_type(t.type);
  for (int64_t d : t.shape) p.add_dims(d);
  std::string raw;
  const int64_t n = t.numel();
  if (t.type == kInt4 || t.type == kUint4) {
    raw.assign(static_cast<size_t>((n + 1) / 2), '\0');
    for (int64_t k = 0; k < n; ++k) raw[k / 2] = static_cast<char>(raw[k / 2] | ((t.i[k] & 0xF) << ((k % 2) * 4)));
  } else if (t.is_float()) {
    raw.resize(n * 4);
    if (n) std::memcpy(raw.data(), t.f.data(), n * 4);
  } else {
    const int w = byte_width(t.type);
    raw.resize(n * w);
    for (int64_t k = 0; k < n; ++k) {
      const int64_t v = t.i[k];
      std::memcpy(raw.data() + k * w, &v, w);  // little-endian host: the low bytes
    }
  }
  p.set_raw_data(std::move(raw));
  return p;
}

namespace onnx_ops {

const onnx::AttributeProto* find_attr(const onnx::NodeProto& n, const std::string& name) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}
int64_t attr_int(const onnx::NodeProto& n, const std::string& name, int64_t dflt) {
  const auto* a = find_attr(n, name);
  return a ? a->i() : dflt;
}
float attr_float(const onnx::NodeProto& n, const std::string& name, float dflt) {
  const auto* a = find_attr(n, name);
  return a ? a->f() : dflt;
}
std::string attr_string(const onnx::NodeProto& n, const std::string& name, const std::string& dflt) {
  const auto* a = find_attr(n, name);
  return a ? a->s() : dflt;
}
std::vector<int64_t> attr_ints(const onnx::NodeProto& n, const std::string& name, std::vector<int64_t> dflt) {
  const auto* a = find_attr(n, name);
  if (!a) return dflt;
  return std::vector<int64_t>(a->ints().begin(), a->ints().end());
}
std::vector<float> attr_floats(const onnx::NodeProto& n, const std::string& name) {
  const auto* a = find_attr(n, name);
  if (!a) return {};
  return std::vector<float>(a->floats().begin(), a->floats().end());
}

int64_t shape_numel(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}
std::string shape_text(const std::vector<int64_t>& s) {
  std::string t = "[";
  for (size_t k = 0; k < s.size(); ++k) t += (k ? "," : "") + std::to_string(s[k]);
  return t + "]";
}

Result<std::vector<int64_t>> broadcast_shapes(const std::vector<std::vector<int64_t>>& shapes) {
  size_t r = 0;
  for (const auto& s : shapes) r = std::max(r, s.size());
  std::vector<int64_t> out(r, 1);
  for (const auto& s : shapes) {
    for (size_t d = 0; d < s.size(); ++d) {
      int64_t& o = out[r - s.size() + d];
      if (s[d] == o || s[d] == 1) continue;
      if (o == 1) { o = s[d]; continue; }
      std::string all;
      for (const auto& x : shapes) all += shape_text(x) + " ";
      return make_error("shapes " + all + "do not broadcast");
    }
  }
  return out;
}

Result<int64_t> norm_axis(const OpContext& c, int64_t axis, int64_t rank) {
  const int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) return c.fail("axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  return a;
}

Result<std::vector<int64_t>> int_values(const OpContext& c, size_t k) {
  const OnnxTensor* t = c.input(k);
  if (!t) return c.fail("input " + std::to_string(k) + " is required");
  if (t->is_float()) return c.fail("input " + std::to_string(k) + " must be an integer tensor");
  return t->i;
}

bool is_integer_type(int32_t type) { return type != TensorProto::FLOAT && onnx_type_supported(type); }

int64_t wrap_to_type(int64_t v, int32_t type) {
  switch (type) {
    case TensorProto::INT8: return static_cast<int8_t>(v);
    case TensorProto::UINT8: return static_cast<uint8_t>(v);
    case TensorProto::INT16: return static_cast<int16_t>(v);
    case TensorProto::UINT16: return static_cast<uint16_t>(v);
    case TensorProto::INT32: return static_cast<int32_t>(v);
    case TensorProto::UINT32: return static_cast<uint32_t>(v);
    case TensorProto::BOOL: return v != 0;
    case kInt4: return ((v & 0xF) ^ 8) - 8;
    case kUint4: return v & 0xF;
    default: return v;
  }
}

int64_t float_to_type(double v, int32_t type) {
  if (type == TensorProto::BOOL) return v != 0;
  if (std::isnan(v)) return 0;
  const double t = std::trunc(v);
  if (t >= 9.2e18) return wrap_to_type(std::numeric_limits<int64_t>::max(), type);
  if (t <= -9.2e18) return wrap_to_type(std::numeric_limits<int64_t>::min(), type);
  return wrap_to_type(static_cast<int64_t>(t), type);
}

}  // namespace onnx_ops

// ---------------------------------------------------------------------------------------------
namespace {
using onnx_ops::OpContext;
using onnx_ops::OpFn;
using onnx_ops::OpTable;

const OpTable& op_table() {
  static const OpTable table = [] {
    OpTable t;
    onnx_ops::add_elementwise_ops(t);
    onnx_ops::add_shape_ops(t);
    onnx_ops::add_nn_ops(t);
    onnx_ops::add_quant_ops(t);
    onnx_ops::add_rnn_ops(t);
    onnx_ops::add_contrib_ops(t);
    return t;
  }();
  return table;
}

std::string op_key(const std::string& domain, const std::string& op) {
  return (domain == "ai.onnx" ? std::string() : domain) + ":" + op;
}

// Values visible while running one graph: its own, its initializers, then the enclosing scope.
struct Scope {
  std::map<std::string, OnnxTensor> values;
  const std::map<std::string, OnnxTensor>* initializers = nullptr;
  const Scope* parent = nullptr;
  const OnnxTensor* find(const std::string& name) const {
    for (const Scope* s = this; s; s = s->parent) {
      auto it = s->values.find(name);
      if (it != s->values.end()) return &it->second;
      if (s->initializers) {
        auto jt = s->initializers->find(name);
        if (jt != s->initializers->end()) return &jt->second;
      }
    }
    return nullptr;
  }
};

void collect_subgraph_inputs(const onnx::GraphProto& g, std::set<std::string>& names) {
  for (const auto& n : g.node()) {
    for (const auto& i : n.input()) names.insert(i);
    for (const auto& a : n.attribute()) {
      if (a.has_g()) collect_subgraph_inputs(a.g(), names);
      for (const auto& sg : a.graphs()) collect_subgraph_inputs(sg, names);
    }
  }
}

Status check_ops(const onnx::GraphProto& g, const std::string& source) {
  for (const auto& n : g.node()) {
    if (!onnx_op_supported(n.domain(), n.op_type()))
      return make_error(source + ": node '" + n.name() + "' uses op " + (n.domain().empty() ? "" : n.domain() + ".") +
                        n.op_type() + ", which the executor does not implement");
    for (const auto& a : n.attribute()) {
      if (a.has_g()) SHRINK_CHECK(check_ops(a.g(), source));
      for (const auto& sg : a.graphs()) SHRINK_CHECK(check_ops(sg, source));
    }
  }
  return {};
}
}  // namespace

struct OnnxExecutor::Impl {
  onnx::ModelProto model;
  std::string source;
  std::map<std::string, int64_t> opsets;  // domain -> version
  std::map<std::string, OnnxTensor> initializers;

  Result<std::vector<OnnxTensor>> run_graph(const onnx::GraphProto& g, Scope& scope, bool top,
                                            const OnnxRunOptions& opt) const;
};

bool onnx_op_supported(const std::string& domain, const std::string& op_type) {
  return op_table().count(op_key(domain, op_type)) > 0;
}

std::vector<std::string> onnx_supported_ops() {
  std::vector<std::string> v;
  for (const auto& [k, fn] : op_table()) v.push_back(k[0] == ':' ? k.substr(1) : k);
  return v;
}

Result<OnnxExecutor> OnnxExecutor::create(const onnx::ModelProto& model, const std::string& source) {
  auto impl = std::make_shared<Impl>();
  impl->model = model;
  impl->source = source;
  for (const auto& o : model.opset_import()) impl->opsets[o.domain() == "ai.onnx" ? "" : o.domain()] = o.version();
  if (!impl->opsets.count("")) impl->opsets[""] = 1;
  const auto& g = impl->model.graph();
  SHRINK_CHECK(check_ops(g, source));
  for (const auto& t : g.initializer()) {
    SHRINK_ASSIGN(OnnxTensor v, tensor_from_proto(t, source + ": initializer '" + t.name() + "'"));
    impl->initializers[t.name()] = std::move(v);
  }
  OnnxExecutor e;
  for (const auto& i : g.input())
    if (!impl->initializers.count(i.name())) e.inputs_.push_back(i.name());
  for (const auto& o : g.output()) e.outputs_.push_back(o.name());
  e.impl_ = std::move(impl);
  return e;
}

const onnx::ValueInfoProto* OnnxExecutor::input_info(const std::string& name) const {
  for (const auto& i : impl_->model.graph().input())
    if (i.name() == name) return &i;
  return nullptr;
}

Result<std::vector<OnnxTensor>> OnnxExecutor::Impl::run_graph(const onnx::GraphProto& g, Scope& scope, bool top,
                                                              const OnnxRunOptions& opt) const {
  std::map<std::string, OnnxTensor> sub_inits;
  if (!top) {
    for (const auto& t : g.initializer()) {
      SHRINK_ASSIGN(OnnxTensor v, tensor_from_proto(t, source + ": subgraph initializer '" + t.name() + "'"));
      sub_inits[t.name()] = std::move(v);
    }
    scope.initializers = &sub_inits;
  }
  // Last node index reading each value (the graph outputs are never freed).
  std::map<std::string, int> last_use;
  for (int k = 0; k < g.node_size(); ++k) {
    const auto& n = g.node(k);
    for (const auto& i : n.input()) last_use[i] = k;
    std::set<std::string> sub;
    for (const auto& a : n.attribute()) {
      if (a.has_g()) collect_subgraph_inputs(a.g(), sub);
      for (const auto& sg : a.graphs()) collect_subgraph_inputs(sg, sub);
    }
    for (const auto& s : sub) last_use[s] = k;
  }
  for (const auto& o : g.output()) last_use[o.name()] = g.node_size();

  for (int k = 0; k < g.node_size(); ++k) {
    const auto& n = g.node(k);
    const std::string key = op_key(n.domain(), n.op_type());
    auto it = op_table().find(key);
    std::string where = source + ": node '" + n.name() + "' (" + n.op_type() + ")";
    if (it == op_table().end()) return make_error(where + ": op is not implemented");
    OpContext c{n};
    auto ov = opsets.find(n.domain() == "ai.onnx" ? "" : n.domain());
    c.opset = ov == opsets.end() ? 1 : ov->second;
    c.where = where;
    for (const auto& name : n.input()) {
      if (name.empty()) {
        c.in.push_back(nullptr);
        continue;
      }
      const OnnxTensor* v = scope.find(name);
      if (!v) return make_error(where + ": input '" + name + "' has no value (not an input, initializer or earlier output)");
      c.in.push_back(v);
    }
    c.out.resize(n.output_size());
    c.run_subgraph = [this, &scope, &opt](const onnx::GraphProto& sg) -> Result<std::vector<OnnxTensor>> {
      Scope inner;
      inner.parent = &scope;
      return run_graph(sg, inner, false, opt);
    };
    Status st = it->second(c);
    if (!st.ok()) {
      // Op implementations prefix `where` themselves through c.fail(); add it where they did not.
      const std::string& m = st.message();
      if (m.rfind(source, 0) == 0) return st.error();
      return make_error(where + ": " + m);
    }
    for (int j = 0; j < n.output_size(); ++j)
      if (!n.output(j).empty()) scope.values[n.output(j)] = std::move(c.out[j]);
    if ((top || opt.observe_subgraphs) && opt.observer) {
      std::vector<std::string> names;
      std::vector<const OnnxTensor*> vals;
      for (const auto& o : n.output())
        if (!o.empty()) {
          names.push_back(o);
          vals.push_back(&scope.values[o]);
        }
      opt.observer(n, names, vals);
    }
    // Free what no later node reads.
    for (const auto& name : n.input()) {
      auto lu = last_use.find(name);
      if (lu != last_use.end() && lu->second == k) scope.values.erase(name);
    }
  }
  std::vector<OnnxTensor> outs;
  for (const auto& o : g.output()) {
    const OnnxTensor* v = scope.find(o.name());
    if (!v) return make_error(source + ": graph output '" + o.name() + "' was never computed");
    outs.push_back(*v);
  }
  return outs;
}

Result<std::map<std::string, OnnxTensor>> OnnxExecutor::run(const std::map<std::string, OnnxTensor>& inputs,
                                                             const OnnxRunOptions& opt) const {
  Scope scope;
  scope.initializers = &impl_->initializers;
  for (const auto& name : inputs_) {
    auto it = inputs.find(name);
    if (it == inputs.end()) return make_error(impl_->source + ": no value given for graph input '" + name + "'");
    const OnnxTensor& t = it->second;
    if (onnx_ops::shape_numel(t.shape) != static_cast<int64_t>(t.is_float() ? t.f.size() : t.i.size()))
      return make_error(impl_->source + ": input '" + name + "' holds a different number of values than its shape " +
                        onnx_ops::shape_text(t.shape));
    // A declared element type must match (a BFLOAT16 input fed as UINT16 bits would compute garbage).
    if (const onnx::ValueInfoProto* vi = input_info(name)) {
      const int32_t want = vi->type().tensor_type().elem_type();
      if (vi->type().has_tensor_type() && want != 0 && want != t.type)
        return make_error(impl_->source + ": input '" + name + "' is declared " + onnx_type_name(want) + " but got " +
                          onnx_type_name(t.type));
      if (!vi->type().has_tensor_type() && vi->type().value_case() != onnx::TypeProto::VALUE_NOT_SET)
        return make_error(impl_->source + ": input '" + name + "' is not a tensor (sequence/optional/map types are not supported)");
    }
    scope.values[name] = t;
  }
  // Inputs that shadow initializers (allowed by the spec) take the given value.
  for (const auto& [name, t] : inputs)
    if (!scope.values.count(name) && impl_->initializers.count(name)) scope.values[name] = t;
  SHRINK_ASSIGN(std::vector<OnnxTensor> outs, impl_->run_graph(impl_->model.graph(), scope, true, opt));
  std::map<std::string, OnnxTensor> result;
  for (size_t k = 0; k < outs.size(); ++k) result[outputs_[k]] = std::move(outs[k]);
  return result;
}

}  // namespace shrink
