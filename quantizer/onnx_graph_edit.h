// Small helpers the ONNX rewrites share: constants by name (initializers and Constant nodes, looked up
// through enclosing graphs), use counts, fresh names, tensor/node builders, attributes, and opset imports
// (raising the default-domain opset only when no op in the model changes meaning between the versions).
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/result.h"

namespace shrink::onnx_edit {

// The chain of graphs from the model's main graph down to the one being edited: a subgraph (If/Loop body)
// may read constants of any enclosing graph by name.
using GraphScopes = std::vector<const onnx::GraphProto*>;

// The tensor behind `name` if it is an initializer or the output of a Constant node (attribute `value`),
// searching the innermost graph first; nullptr when it is computed or a graph input.
const onnx::TensorProto* find_constant(const GraphScopes& scopes, const std::string& name);
// True when `name` is also a graph input of any scope (an initializer that is also an input may be
// overridden at run time, so it is not a constant).
bool is_graph_input(const GraphScopes& scopes, const std::string& name);

// The constant float32 weight node `n` reads at input `input`, with its values.
struct ConstantWeight {
  const onnx::TensorProto* tensor = nullptr;
  std::vector<int64_t> dims;
  std::vector<float> values;  // row-major
};
// Fails, naming the node and the tensor, when the input is absent, computed, a graph input (overridable
// at run time), not float32, or holds NaN/Inf (their codes would be meaningless).
Result<ConstantWeight> constant_float_weight(const onnx::NodeProto& n, int input, const GraphScopes& scopes);

// How many times each value name is read across the whole model: node inputs in every graph and
// subgraph, and graph outputs.
std::map<std::string, int> count_uses(const onnx::GraphProto& g);

// Every name in the model (values, initializers, inputs, nodes), so new names never collide.
class NameSet {
 public:
  explicit NameSet(const onnx::GraphProto& g);
  // `base` itself if free, else base + "_1", "_2", ...; the result is reserved.
  std::string fresh(const std::string& base);

 private:
  void add_graph(const onnx::GraphProto& g);
  std::set<std::string> names_;
};

// Removes the initializer `name` from `g` (and the Constant node producing it, if any). Returns true if found.
bool remove_constant(onnx::GraphProto* g, const std::string& name);

onnx::TensorProto make_tensor(const std::string& name, int data_type, const std::vector<int64_t>& dims,
                              const void* raw, size_t raw_bytes);
onnx::TensorProto make_f32_tensor(const std::string& name, const std::vector<int64_t>& dims, const std::vector<float>& v);
onnx::TensorProto make_i64_tensor(const std::string& name, const std::vector<int64_t>& dims, const std::vector<int64_t>& v);

onnx::NodeProto make_node(const std::string& op_type, const std::vector<std::string>& inputs,
                          const std::vector<std::string>& outputs, const std::string& name,
                          const std::string& domain = "");
void set_attr(onnx::NodeProto* n, const std::string& name, int64_t v);
void set_attr(onnx::NodeProto* n, const std::string& name, float v);

int64_t attr_int(const onnx::NodeProto& n, const std::string& name, int64_t fallback);
float attr_float(const onnx::NodeProto& n, const std::string& name, float fallback);
bool has_attr(const onnx::NodeProto& n, const std::string& name);

// Visits every node of `g` and of its subgraphs (a node's subgraphs before the node itself). `fn` may
// replace the node: it returns true and fills `replacement` (in execution order, producing the node's
// outputs); new initializers go into `graph`, the graph that holds the node. Order is kept, so the graph
// stays topologically sorted.
using NodeRewrite = std::function<Result<bool>(const onnx::NodeProto& node, const GraphScopes& scopes,
                                               onnx::GraphProto* graph, std::vector<onnx::NodeProto>* replacement)>;
Status rewrite_nodes(onnx::GraphProto* g, const NodeRewrite& fn);
// Removes every initializer / Constant named in `names` that nothing reads any more, in any graph.
void remove_unused_constants(onnx::GraphProto* main_graph, const std::set<std::string>& names);

// The opset version the model imports for `domain` ("" and "ai.onnx" are the same domain), or 0.
int64_t opset_version(const onnx::ModelProto& m, const std::string& domain);
// Adds an import of `domain` at `version` unless the model already imports it.
void add_opset(onnx::ModelProto* m, const std::string& domain, int64_t version);
// Raises the default-domain opset to at least `min_version` (and the IR version it needs), or fails
// naming the first op whose meaning changes between the model's opset and `min_version` (those need a
// version converter, which shrink does not have). `file` names the model in the message.
Status raise_default_opset(onnx::ModelProto* m, int64_t min_version, const std::string& file);

}  // namespace shrink::onnx_edit
