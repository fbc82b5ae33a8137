// Internal to the ONNX executor: what an op implementation sees (its node, inputs and outputs),
// attribute readers, broadcasting, and the per-family registration functions.
#pragma once

#include <onnx/onnx_pb.h>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "calibration/onnx_executor.h"
#include "common/result.h"

namespace shrink::onnx_ops {

struct OpContext {
  const onnx::NodeProto& node;
  int64_t opset = 0;                 // version of the node's domain the model imports
  std::vector<const OnnxTensor*> in;  // nullptr for an omitted optional input ("")
  std::vector<OnnxTensor> out;        // one per node output
  std::string where;                  // "<model>: node '<name>' (<op>)" for error messages
  // Runs a subgraph (If branches) with this node's scope visible; returns the subgraph outputs.
  std::function<Result<std::vector<OnnxTensor>>(const onnx::GraphProto&)> run_subgraph;

  Error fail(const std::string& why) const { return make_error(where + ": " + why); }
  size_t n_in() const { return in.size(); }
  // Input k or nullptr when absent / omitted.
  const OnnxTensor* input(size_t k) const { return k < in.size() ? in[k] : nullptr; }
};

using OpFn = Status (*)(OpContext&);
using OpTable = std::map<std::string, OpFn>;  // key: "domain:op_type", standard domain written as ""

void add_elementwise_ops(OpTable& t);  // onnx_ops_elementwise.cc
void add_shape_ops(OpTable& t);        // onnx_ops_shape.cc
void add_nn_ops(OpTable& t);           // onnx_ops_nn.cc
void add_quant_ops(OpTable& t);        // onnx_ops_quant.cc
void add_rnn_ops(OpTable& t);          // onnx_ops_rnn.cc (LSTM, If)
void add_contrib_ops(OpTable& t);      // onnx_ops_contrib.cc (com.microsoft.GatherBlockQuantized)

// ---- attributes ----
const onnx::AttributeProto* find_attr(const onnx::NodeProto& n, const std::string& name);
int64_t attr_int(const onnx::NodeProto& n, const std::string& name, int64_t dflt);
float attr_float(const onnx::NodeProto& n, const std::string& name, float dflt);
std::string attr_string(const onnx::NodeProto& n, const std::string& name, const std::string& dflt);
std::vector<int64_t> attr_ints(const onnx::NodeProto& n, const std::string& name, std::vector<int64_t> dflt = {});
std::vector<float> attr_floats(const onnx::NodeProto& n, const std::string& name);

// ---- shapes ----
int64_t shape_numel(const std::vector<int64_t>& s);
std::string shape_text(const std::vector<int64_t>& s);
// Numpy-style multidirectional broadcast; error when a pair of dims is neither equal nor 1.
Result<std::vector<int64_t>> broadcast_shapes(const std::vector<std::vector<int64_t>>& shapes);
// Normalizes a possibly negative axis into [0, rank); error otherwise.
Result<int64_t> norm_axis(const OpContext& c, int64_t axis, int64_t rank);
// Integer values of an input (shape / axes / pads ...).
Result<std::vector<int64_t>> int_values(const OpContext& c, size_t k);

// For each output element (row-major over `out_shape`), the flat index into each input,
// following broadcast rules. `fn(out_index, in_indices)`.
template <size_t N, class F>
void broadcast_for_each(const std::vector<int64_t>& out_shape, const std::array<const std::vector<int64_t>*, N>& in,
                        F&& fn) {
  const size_t r = out_shape.size();
  std::array<std::vector<int64_t>, N> strides;
  for (size_t k = 0; k < N; ++k) {
    strides[k].assign(r, 0);
    const auto& s = *in[k];
    int64_t st = 1;
    for (size_t d = 0; d < s.size(); ++d) {
      const size_t od = r - 1 - d, sd = s.size() - 1 - d;
      strides[k][od] = s[sd] == 1 ? 0 : st;
      st *= s[sd];
    }
  }
  const int64_t total = shape_numel(out_shape);
  if (total == 0) return;
  if (r == 0) {
    std::array<int64_t, N> idx{};
    fn(int64_t{0}, idx);
    return;
  }
  const int64_t inner = out_shape[r - 1];
  std::vector<int64_t> pos(r, 0);
  std::array<int64_t, N> base{};
  for (int64_t o = 0; o < total; o += inner) {
    std::array<int64_t, N> idx = base;
    for (int64_t j = 0; j < inner; ++j) {
      fn(o + j, idx);
      for (size_t k = 0; k < N; ++k) idx[k] += strides[k][r - 1];
    }
    // advance the odometer over dims [0, r-1)
    for (int64_t d = static_cast<int64_t>(r) - 2; d >= 0; --d) {
      ++pos[d];
      for (size_t k = 0; k < N; ++k) base[k] += strides[k][d];
      if (pos[d] < out_shape[d]) break;
      for (size_t k = 0; k < N; ++k) base[k] -= strides[k][d] * out_shape[d];
      pos[d] = 0;
    }
  }
}

// Wraps/saturates an int64 into the range of an integer element type (wrap like a C cast).
int64_t wrap_to_type(int64_t v, int32_t type);
// Float -> integer element type as Cast does (truncate toward zero, then wrap); BOOL: v != 0.
int64_t float_to_type(double v, int32_t type);
bool is_integer_type(int32_t type);

}  // namespace shrink::onnx_ops
