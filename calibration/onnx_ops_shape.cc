// Data-movement ops: Reshape, Transpose, Concat, Split, Slice, Gather, (Un)Squeeze, Flatten, Pad,
// and the shape/constant producers Shape, Size, Constant, ConstantOfShape. Any element type.
#include <algorithm>
#include <numeric>

#include "calibration/onnx_ops_util.h"

namespace shrink::onnx_ops {
namespace {
using onnx::TensorProto;

// out = src[idx[k]] for each k; idx[k] < 0 means `fill` (Pad's constant).
void take(const OnnxTensor& src, const std::vector<int64_t>& idx, std::vector<int64_t> shape, OnnxTensor& out,
          double fill = 0) {
  out.type = src.type;
  out.shape = std::move(shape);
  const int64_t n = static_cast<int64_t>(idx.size());
  if (src.is_float()) {
    out.f.resize(n);
    for (int64_t k = 0; k < n; ++k) out.f[k] = idx[k] < 0 ? static_cast<float>(fill) : src.f[idx[k]];
  } else {
    out.i.resize(n);
    for (int64_t k = 0; k < n; ++k) out.i[k] = idx[k] < 0 ? static_cast<int64_t>(fill) : src.i[idx[k]];
  }
}

std::vector<int64_t> strides_of(const std::vector<int64_t>& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (int64_t d = static_cast<int64_t>(s.size()) - 2; d >= 0; --d) st[d] = st[d + 1] * s[d + 1];
  return st;
}

// Calls fn(k, coords) for every row-major position of `shape`.
template <class F>
void for_each_coord(const std::vector<int64_t>& shape, F&& fn) {
  const int64_t n = shape_numel(shape);
  std::vector<int64_t> pos(shape.size(), 0);
  for (int64_t k = 0; k < n; ++k) {
    fn(k, pos);
    for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
      if (++pos[d] < shape[d]) break;
      pos[d] = 0;
    }
  }
}

Status reshape(OpContext& c) {
  const OnnxTensor* a = c.input(0);
  if (!a) return c.fail("needs data");
  std::vector<int64_t> want;
  if (c.opset < 5) {
    want = attr_ints(c.node, "shape");
  } else {
    SHRINK_ASSIGN(want, int_values(c, 1));
  }
  const bool allowzero = attr_int(c.node, "allowzero", 0) != 0;
  int64_t known = 1, infer = -1;
  for (size_t d = 0; d < want.size(); ++d) {
    if (want[d] == 0 && !allowzero) {
      if (d >= a->shape.size()) return c.fail("shape dim " + std::to_string(d) + " is 0 but the input has no such dim");
      want[d] = a->shape[d];
    }
    if (want[d] == -1) {
      if (infer >= 0) return c.fail("shape " + shape_text(want) + " has more than one -1");
      infer = static_cast<int64_t>(d);
    } else if (want[d] < 0) {
      return c.fail("shape " + shape_text(want) + " has a negative dim");
    } else {
      known *= want[d];
    }
  }
  const int64_t n = a->numel();
  if (infer >= 0) {
    if (known == 0 || n % known) return c.fail("cannot reshape " + shape_text(a->shape) + " to " + shape_text(want));
    want[infer] = n / known;
  }
  if (shape_numel(want) != n) return c.fail("cannot reshape " + shape_text(a->shape) + " to " + shape_text(want));
  c.out[0] = *a;
  c.out[0].shape = want;
  return {};
}

Status transpose(OpContext& c) {
  const OnnxTensor* a = c.input(0);
  if (!a) return c.fail("needs data");
  const int64_t r = static_cast<int64_t>(a->shape.size());
  std::vector<int64_t> perm = attr_ints(c.node, "perm");
  if (perm.empty())
    for (int64_t d = r - 1; d >= 0; --d) perm.push_back(d);
  if (static_cast<int64_t>(perm.size()) != r) return c.fail("perm has " + std::to_string(perm.size()) + " entries for rank " + std::to_string(r));
  std::vector<bool> seen(r, false);
  for (int64_t& p : perm) {
    if (p < 0) p += r;
    if (p < 0 || p >= r || seen[p]) return c.fail("perm " + shape_text(perm) + " is not a permutation");
    seen[p] = true;
  }
  std::vector<int64_t> shape(r);
  for (int64_t d = 0; d < r; ++d) shape[d] = a->shape[perm[d]];
  const auto st = strides_of(a->shape);
  std::vector<int64_t> idx(shape_numel(shape));
  for_each_coord(shape, [&](int64_t k, const std::vector<int64_t>& pos) {
    int64_t s = 0;
    for (int64_t d = 0; d < r; ++d) s += pos[d] * st[perm[d]];
    idx[k] = s;
  });
  take(*a, idx, shape, c.out[0]);
  return {};
}

Status concat(OpContext& c) {
  if (c.n_in() == 0 || !c.input(0)) return c.fail("needs inputs");
  const OnnxTensor& first = *c.input(0);
  const int64_t r = static_cast<int64_t>(first.shape.size());
  SHRINK_ASSIGN(int64_t axis, norm_axis(c, attr_int(c.node, "axis", 0), r));
  std::vector<int64_t> shape = first.shape;
  shape[axis] = 0;
  for (size_t k = 0; k < c.n_in(); ++k) {
    const OnnxTensor* t = c.input(k);
    if (!t || t->type != first.type || static_cast<int64_t>(t->shape.size()) != r)
      return c.fail("input " + std::to_string(k) + " differs in type or rank");
    for (int64_t d = 0; d < r; ++d)
      if (d != axis && t->shape[d] != first.shape[d])
        return c.fail("input shapes " + shape_text(first.shape) + " and " + shape_text(t->shape) + " differ off the axis");
    shape[axis] += t->shape[axis];
  }
  OnnxTensor& o = c.out[0];
  o.type = first.type;
  o.shape = shape;
  int64_t outer = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= shape[d];
  const int64_t inner = shape_numel(shape) / std::max<int64_t>(outer, 1) / std::max<int64_t>(shape[axis], 1);
  if (first.is_float()) o.f.reserve(shape_numel(shape));
  else o.i.reserve(shape_numel(shape));
  for (int64_t b = 0; b < outer; ++b)
    for (size_t k = 0; k < c.n_in(); ++k) {
      const OnnxTensor* t = c.input(k);
      const int64_t len = t->shape[axis] * inner;
      if (first.is_float()) o.f.insert(o.f.end(), t->f.begin() + b * len, t->f.begin() + (b + 1) * len);
      else o.i.insert(o.i.end(), t->i.begin() + b * len, t->i.begin() + (b + 1) * len);
    }
  return {};
}

Status split(OpContext& c) {
  const OnnxTensor* a = c.input(0);
  if (!a) return c.fail("needs data");
  const int64_t r = static_cast<int64_t>(a->shape.size());
  SHRINK_ASSIGN(int64_t axis, norm_axis(c, attr_int(c.node, "axis", 0), r));
  std::vector<int64_t> parts;
  if (c.opset < 13) {
    parts = attr_ints(c.node, "split");
  } else if (c.input(1)) {
    SHRINK_ASSIGN(parts, int_values(c, 1));
  }
  const int64_t n_out = static_cast<int64_t>(c.out.size());
  const int64_t dim = a->shape[axis];
  if (parts.empty() && find_attr(c.node, "num_outputs")) {
    // Opset 18: chunks of ceil(dim / num_outputs), the last one smaller.
    const int64_t chunk = (dim + n_out - 1) / n_out;
    for (int64_t k = 0; k < n_out; ++k) parts.push_back(std::max<int64_t>(0, std::min(chunk, dim - k * chunk)));
  }
  if (parts.empty()) {
    if (dim % n_out) return c.fail("dim " + std::to_string(dim) + " does not split evenly into " + std::to_string(n_out));
    parts.assign(n_out, dim / n_out);
  }
  if (static_cast<int64_t>(parts.size()) != n_out || std::accumulate(parts.begin(), parts.end(), int64_t{0}) != dim)
    return c.fail("split " + shape_text(parts) + " does not cover dim " + std::to_string(dim));
  const auto st = strides_of(a->shape);
  int64_t start = 0;
  for (int64_t k = 0; k < n_out; ++k) {
    std::vector<int64_t> shape = a->shape;
    shape[axis] = parts[k];
    std::vector<int64_t> idx(shape_numel(shape));
    for_each_coord(shape, [&](int64_t j, const std::vector<int64_t>& pos) {
      int64_t s = 0;
      for (int64_t d = 0; d < r; ++d) s += (d == axis ? pos[d] + start : pos[d]) * st[d];
      idx[j] = s;
    });
    take(*a, idx, shape, c.out[k]);
    start += parts[k];
  }
  return {};
}

Status slice(OpContext& c) {
  const OnnxTensor* a = c.input(0);
  if (!a) return c.fail("needs data");
  const int64_t r = static_cast<int64_t>(a->shape.size());
  std::vector<int64_t> starts, ends, axes, steps;
  if (c.opset < 10) {
    starts = attr_ints(c.node, "starts");
    ends = attr_ints(c.node, "ends");
    axes = attr_ints(c.node, "axes");
  } else {
    SHRINK_ASSIGN(starts, int_values(c, 1));
    SHRINK_ASSIGN(ends, int_values(c, 2));
    if (c.input(3)) { SHRINK_ASSIGN(axes, int_values(c, 3)); }
    if (c.input(4)) { SHRINK_ASSIGN(steps, int_values(c, 4)); }
  }
  if (axes.empty())
    for (size_t k = 0; k < starts.size(); ++k) axes.push_back(static_cast<int64_t>(k));
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
    return c.fail("starts/ends/axes/steps differ in length");
  std::vector<int64_t> begin(r, 0), step(r, 1), shape = a->shape;
  for (size_t k = 0; k < starts.size(); ++k) {
    SHRINK_ASSIGN(int64_t ax, norm_axis(c, axes[k], r));
    const int64_t dim = a->shape[ax];
    const int64_t s = steps[k];
    if (s == 0) return c.fail("step 0");
    int64_t b = starts[k], e = ends[k];
    if (b < 0) b += dim;
    if (e < 0) e += dim;
    if (s > 0) {
      b = std::clamp<int64_t>(b, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
      shape[ax] = e > b ? (e - b + s - 1) / s : 0;
    } else {
      b = std::clamp<int64_t>(b, 0, dim - 1);
      e = std::clamp<int64_t>(e, -1, dim - 1);
      shape[ax] = b > e ? (b - e + (-s) - 1) / (-s) : 0;
    }
    begin[ax] = b;
    step[ax] = s;
  }
  const auto st = strides_of(a->shape);
  std::vector<int64_t> idx(shape_numel(shape));
  for_each_coord(shape, [&](int64_t k, const std::vector<int64_t>& pos) {
    int64_t s = 0;
    for (int64_t d = 0; d < r; ++d) s += (begin[d] + pos[d] * step[d]) * st[d];
    idx[k] = s;
  });
  take(*a, idx, shape, c.out[0]);
  return {};
}

Status gather(OpContext& c) {
  const OnnxTensor* a = c.input(0);
  const OnnxTensor* ind = c.input(1);
  if (!a || !ind || ind->is_float()) return c.fail("needs data and integer indices");
  const int64_t r = static_cast<int64_t>(a->shape.size());
  SHRINK_ASSIGN(int64_t axis, norm_axis(c, attr_int(c.node, "axis", 0), r));
  const int64_t dim = a->shape[axis];
  std::vector<int64_t> shape(a->shape.begin(), a->shape.begin() + axis);
  shape.insert(shape.end(), ind->shape.begin(), ind->shape.end());
  shape.insert(shape.end(), a->shape.begin() + axis + 1, a->shape.end());
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= a->shape[d];
  for (int64_t d = axis + 1; d < r; ++d) inner *= a->shape[d];
  const int64_t m = ind->numel();
  std::vector<int64_t> idx;
  idx.reserve(outer * m * inner);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < m; ++j) {
      int64_t g = ind->i[j];
      if (g < 0) g += dim;
      if (g < 0 || g >= dim) return c.fail("index " + std::to_string(ind->i[j]) + " is out of range for dim " + std::to_string(dim));
      for (int64_t q = 0; q < inner; ++q) idx.push_back((o * dim + g) * inner + q);
    }
  take(*a, idx, shape, c.out[0]);
  return {};
}

Status unsqueeze(OpContext& c) {
  const OnnxTensor* a = c.input(0);
  if (!a) return c.fail("needs data");
  std::vector<int64_t> axes;
  if (c.opset < 13) axes = attr_ints(c.node, "axes");
  else { SHRINK_ASSIGN(axes, int_values(c, 1)); }
  const int64_t r = static_cast<int64_t>(a->shape.size() + axes.size());
  std::vector<bool> is_new(r, false);
  for (int64_t ax : axes) {
    SHRINK_ASSIGN(int64_t n, norm_axis(c, ax, r));
    if (is_new[n]) return c.fail("axis " + std::to_string(ax) + " repeats");
    is_new[n] = true;
  }
  std::vector<int64_t> shape;
  size_t src = 0;
  for (int64_t d = 0; d < r; ++d) shape.push_back(is_new[d] ? 1 : a->shape[src++]);
  c.out[0] = *a;
  c.out[0].shape = shape;
  return {};
}

Status squeeze(OpContext& c) {
  const OnnxTensor* a = c.input(0);
  if (!a) return c.fail("needs data");
  std::vector<int64_t> axes;
  if (c.opset < 13) axes = attr_ints(c.node, "axes");
  else if (c.input(1)) { SHRINK_ASSIGN(axes, int_values(c, 1)); }
  const int64_t r = static_cast<int64_t>(a->shape.size());
  std::vector<bool> drop(r, false);
  if (axes.empty()) {
    for (int64_t d = 0; d < r; ++d) drop[d] = a->shape[d] == 1;
  } else {
    for (int64_t ax : axes) {
      SHRINK_ASSIGN(int64_t n, norm_axis(c, ax, r));
      if (a->shape[n] != 1) return c.fail("axis " + std::to_string(ax) + " has size " + std::to_string(a->shape[n]) + ", not 1");
      drop[n] = true;
    }
  }
  std::vector<int64_t> shape;
  for (int64_t d = 0; d < r; ++d)
    if (!drop[d]) shape.push_back(a->shape[d]);
  c.out[0] = *a;
  c.out[0].shape = shape;
  return {};
}

Status flatten(OpContext& c) {
  const OnnxTensor* a = c.input(0);
  if (!a) return c.fail("needs data");
  const int64_t r = static_cast<int64_t>(a->shape.size());
  int64_t axis = attr_int(c.node, "axis", 1);
  if (axis < 0) axis += r;
  if (axis < 0 || axis > r) return c.fail("axis " + std::to_string(axis) + " is out of range");
  int64_t outer = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= a->shape[d];
  c.out[0] = *a;
  c.out[0].shape = {outer, outer ? a->numel() / outer : 0};
  return {};
}

Status pad(OpContext& c) {
  const OnnxTensor* a = c.input(0);
  if (!a) return c.fail("needs data");
  const int64_t r = static_cast<int64_t>(a->shape.size());
  std::vector<int64_t> pads;
  double value = 0;
  const std::string mode = attr_string(c.node, "mode", "constant");
  if (c.opset < 11) {
    pads = attr_ints(c.node, c.opset < 2 ? "paddings" : "pads");
    value = attr_float(c.node, "value", 0.0f);
  } else {
    SHRINK_ASSIGN(pads, int_values(c, 1));
    if (c.input(2) && c.input(2)->numel() == 1) value = c.input(2)->at(0);
    if (c.input(3)) return c.fail("the axes input (opset 18) is not supported");
  }
  if (static_cast<int64_t>(pads.size()) != 2 * r) return c.fail("pads " + shape_text(pads) + " need 2*rank entries");
  if (mode != "constant" && mode != "reflect" && mode != "edge") return c.fail("mode '" + mode + "' is not supported");
  std::vector<int64_t> shape(r);
  for (int64_t d = 0; d < r; ++d) {
    shape[d] = a->shape[d] + pads[d] + pads[d + r];
    if (shape[d] < 0) return c.fail("pads make dim " + std::to_string(d) + " negative");
    if (mode == "reflect" && (pads[d] >= a->shape[d] || pads[d + r] >= a->shape[d]) && (pads[d] > 0 || pads[d + r] > 0))
      return c.fail("reflect pad larger than the dim is not supported");
    if (mode != "constant" && a->shape[d] == 0 && shape[d] > 0) return c.fail("cannot " + mode + "-pad an empty dim");
  }
  const auto st = strides_of(a->shape);
  std::vector<int64_t> idx(shape_numel(shape));
  for_each_coord(shape, [&](int64_t k, const std::vector<int64_t>& pos) {
    int64_t s = 0;
    for (int64_t d = 0; d < r; ++d) {
      int64_t p = pos[d] - pads[d];
      const int64_t n = a->shape[d];
      if (p < 0 || p >= n) {
        if (mode == "constant") { s = -1; break; }
        if (mode == "edge") p = std::clamp<int64_t>(p, 0, n - 1);
        else p = p < 0 ? -p : 2 * (n - 1) - p;
      }
      s += p * st[d];
    }
    idx[k] = s;
  });
  take(*a, idx, shape, c.out[0], value);
  return {};
}

Status shape_op(OpContext& c) {
  const OnnxTensor* a = c.input(0);
  if (!a) return c.fail("needs data");
  const int64_t r = static_cast<int64_t>(a->shape.size());
  int64_t start = attr_int(c.node, "start", 0), end = attr_int(c.node, "end", r);
  if (start < 0) start += r;
  if (end < 0) end += r;
  start = std::clamp<int64_t>(start, 0, r);
  end = std::clamp<int64_t>(end, 0, r);
  std::vector<int64_t> v;
  for (int64_t d = start; d < end; ++d) v.push_back(a->shape[d]);
  c.out[0] = OnnxTensor::ints(TensorProto::INT64, {static_cast<int64_t>(v.size())}, v);
  return {};
}

Status size_op(OpContext& c) {
  const OnnxTensor* a = c.input(0);
  if (!a) return c.fail("needs data");
  c.out[0] = OnnxTensor::ints(TensorProto::INT64, {}, {a->numel()});
  return {};
}

Status constant(OpContext& c) {
  if (c.node.attribute_size() != 1) return c.fail("needs exactly one value attribute");
  const auto& at = c.node.attribute(0);
  if (at.name() == "value") {
    auto t = tensor_from_proto(at.t(), c.where + " value");
    if (!t.ok()) return t.error();
    c.out[0] = std::move(t).value();
  } else if (at.name() == "value_float") {
    c.out[0] = OnnxTensor::floats({}, {at.f()});
  } else if (at.name() == "value_floats") {
    c.out[0] = OnnxTensor::floats({at.floats_size()}, std::vector<float>(at.floats().begin(), at.floats().end()));
  } else if (at.name() == "value_int") {
    c.out[0] = OnnxTensor::ints(TensorProto::INT64, {}, {at.i()});
  } else if (at.name() == "value_ints") {
    c.out[0] = OnnxTensor::ints(TensorProto::INT64, {at.ints_size()}, std::vector<int64_t>(at.ints().begin(), at.ints().end()));
  } else {
    return c.fail("attribute '" + at.name() + "' is not supported");
  }
  return {};
}

Status constant_of_shape(OpContext& c) {
  SHRINK_ASSIGN(std::vector<int64_t> shape, int_values(c, 0));
  for (int64_t d : shape)
    if (d < 0) return c.fail("negative dim in " + shape_text(shape));
  OnnxTensor v = OnnxTensor::floats({1}, {0.0f});
  if (const auto* a = find_attr(c.node, "value")) {
    auto t = tensor_from_proto(a->t(), c.where + " value");
    if (!t.ok()) return t.error();
    v = std::move(t).value();
    if (v.numel() != 1) return c.fail("value must hold one element");
  }
  OnnxTensor& o = c.out[0];
  o.type = v.type;
  o.shape = shape;
  if (v.is_float()) o.f.assign(shape_numel(shape), v.f[0]);
  else o.i.assign(shape_numel(shape), v.i[0]);
  return {};
}

}  // namespace

void add_shape_ops(OpTable& t) {
  t[":Reshape"] = reshape;
  t[":Transpose"] = transpose;
  t[":Concat"] = concat;
  t[":Split"] = split;
  t[":Slice"] = slice;
  t[":Gather"] = gather;
  t[":Unsqueeze"] = unsqueeze;
  t[":Squeeze"] = squeeze;
  t[":Flatten"] = flatten;
  t[":Pad"] = pad;
  t[":Shape"] = shape_op;
  t[":Size"] = size_op;
  t[":Constant"] = constant;
  t[":ConstantOfShape"] = constant_of_shape;
}

}  // namespace shrink::onnx_ops
