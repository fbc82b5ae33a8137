// Elementwise ops: arithmetic and comparisons with numpy broadcasting, activations, Clip, Cast, Where.
// Floats compute in float (as ONNX Runtime's CPU kernels do); integers in int64, wrapped to the type.
#include <algorithm>
#include <cmath>

#include "calibration/onnx_ops_util.h"

namespace shrink::onnx_ops {
namespace {
using onnx::TensorProto;

// out[k] = f(a[ia], b[ib]) over the broadcast shape; `F` for float storage, `I` for integer storage.
template <class T, class U, class F>
void apply2(const std::vector<int64_t>& shape, const OnnxTensor& a, const std::vector<T>& av, const OnnxTensor& b,
            const std::vector<T>& bv, std::vector<U>& out, F&& f) {
  const int64_t n = shape_numel(shape);
  out.resize(n);
  if (a.shape == shape && b.shape == shape) {
    for (int64_t k = 0; k < n; ++k) out[k] = f(av[k], bv[k]);
  } else if (a.shape == shape && b.numel() == 1) {
    const T y = bv[0];
    for (int64_t k = 0; k < n; ++k) out[k] = f(av[k], y);
  } else if (b.shape == shape && a.numel() == 1) {
    const T x = av[0];
    for (int64_t k = 0; k < n; ++k) out[k] = f(x, bv[k]);
  } else {
    broadcast_for_each<2>(shape, {&a.shape, &b.shape},
                          [&](int64_t o, const std::array<int64_t, 2>& ix) { out[o] = f(av[ix[0]], bv[ix[1]]); });
  }
}

enum class Arith { kAdd, kSub, kMul, kDiv };

template <Arith OP>
Status arith(OpContext& c) {
  const OnnxTensor* a = c.input(0);
  const OnnxTensor* b = c.input(1);
  if (!a || !b) return c.fail("needs two inputs");
  if (a->type != b->type)
    return c.fail("input types differ (" + onnx_type_name(a->type) + " vs " + onnx_type_name(b->type) + ")");
  auto shape = broadcast_shapes({a->shape, b->shape});
  if (!shape.ok()) return c.fail(shape.error().message);
  OnnxTensor& o = c.out[0];
  o.type = a->type;
  o.shape = *shape;
  if (a->is_float()) {
    apply2(o.shape, *a, a->f, *b, b->f, o.f, [](float x, float y) {
      if constexpr (OP == Arith::kAdd) return x + y;
      if constexpr (OP == Arith::kSub) return x - y;
      if constexpr (OP == Arith::kMul) return x * y;
      return x / y;
    });
    return {};
  }
  if (OP == Arith::kDiv)
    for (int64_t v : b->i)
      if (v == 0) return c.fail("integer division by zero");
  const int32_t t = a->type;
  apply2(o.shape, *a, a->i, *b, b->i, o.i, [t](int64_t x, int64_t y) {
    int64_t r;
    if constexpr (OP == Arith::kAdd) r = static_cast<int64_t>(static_cast<uint64_t>(x) + static_cast<uint64_t>(y));
    else if constexpr (OP == Arith::kSub) r = static_cast<int64_t>(static_cast<uint64_t>(x) - static_cast<uint64_t>(y));
    else if constexpr (OP == Arith::kMul) r = static_cast<int64_t>(static_cast<uint64_t>(x) * static_cast<uint64_t>(y));
    else r = x / y;
    return wrap_to_type(r, t);
  });
  return {};
}

Status pow_op(OpContext& c) {
  const OnnxTensor* a = c.input(0);
  const OnnxTensor* b = c.input(1);
  if (!a || !b) return c.fail("needs two inputs");
  auto shape = broadcast_shapes({a->shape, b->shape});
  if (!shape.ok()) return c.fail(shape.error().message);
  OnnxTensor& o = c.out[0];
  o.type = a->type;
  o.shape = *shape;
  const int64_t n = shape_numel(o.shape);
  std::vector<double> r(n);
  // Mixed types (T=base, T1=exponent) since opset 12: go through double.
  std::vector<double> av(a->numel()), bv(b->numel());
  for (int64_t k = 0; k < a->numel(); ++k) av[k] = a->at(k);
  for (int64_t k = 0; k < b->numel(); ++k) bv[k] = b->at(k);
  if (a->is_float() && b->is_float()) {
    apply2(o.shape, *a, a->f, *b, b->f, o.f, [](float x, float y) {
      return y == 2.0f ? x * x : std::pow(x, y);
    });
    return {};
  }
  apply2(o.shape, *a, av, *b, bv, r, [](double x, double y) { return std::pow(x, y); });
  if (a->is_float()) {
    o.f.assign(r.begin(), r.end());
  } else {
    o.i.resize(n);
    for (int64_t k = 0; k < n; ++k) o.i[k] = float_to_type(r[k], o.type);
  }
  return {};
}

enum class Cmp { kEq, kLt, kGt, kLe, kGe };
template <Cmp OP>
Status compare(OpContext& c) {
  const OnnxTensor* a = c.input(0);
  const OnnxTensor* b = c.input(1);
  if (!a || !b) return c.fail("needs two inputs");
  if (a->type != b->type)
    return c.fail("input types differ (" + onnx_type_name(a->type) + " vs " + onnx_type_name(b->type) + ")");
  auto shape = broadcast_shapes({a->shape, b->shape});
  if (!shape.ok()) return c.fail(shape.error().message);
  OnnxTensor& o = c.out[0];
  o.type = TensorProto::BOOL;
  o.shape = *shape;
  auto f = [](auto x, auto y) -> int64_t {
    if constexpr (OP == Cmp::kEq) return x == y;
    if constexpr (OP == Cmp::kLt) return x < y;
    if constexpr (OP == Cmp::kGt) return x > y;
    if constexpr (OP == Cmp::kLe) return x <= y;
    return x >= y;
  };
  if (a->is_float()) apply2(o.shape, *a, a->f, *b, b->f, o.i, f);
  else apply2(o.shape, *a, a->i, *b, b->i, o.i, f);
  return {};
}

enum class Logic { kAnd, kOr, kXor };
template <Logic OP>
Status logic(OpContext& c) {
  const OnnxTensor* a = c.input(0);
  const OnnxTensor* b = c.input(1);
  if (!a || !b || a->type != TensorProto::BOOL || b->type != TensorProto::BOOL) return c.fail("needs two BOOL inputs");
  auto shape = broadcast_shapes({a->shape, b->shape});
  if (!shape.ok()) return c.fail(shape.error().message);
  OnnxTensor& o = c.out[0];
  o.type = TensorProto::BOOL;
  o.shape = *shape;
  apply2(o.shape, *a, a->i, *b, b->i, o.i, [](int64_t x, int64_t y) -> int64_t {
    if constexpr (OP == Logic::kAnd) return x && y;
    if constexpr (OP == Logic::kOr) return x || y;
    return (x != 0) != (y != 0);
  });
  return {};
}

Status not_op(OpContext& c) {
  const OnnxTensor* a = c.input(0);
  if (!a || a->type != TensorProto::BOOL) return c.fail("needs a BOOL input");
  c.out[0] = *a;
  for (auto& v : c.out[0].i) v = !v;
  return {};
}

// Float-only unary activations; `f` may read node attributes captured by the caller.
template <class F>
Status unary_float(OpContext& c, F&& f) {
  const OnnxTensor* a = c.input(0);
  if (!a) return c.fail("needs an input");
  if (!a->is_float()) return c.fail("input type " + onnx_type_name(a->type) + " is not supported (FLOAT only)");
  OnnxTensor& o = c.out[0];
  o.type = a->type;
  o.shape = a->shape;
  o.f.resize(a->f.size());
  const int64_t n = static_cast<int64_t>(a->f.size());
#pragma omp parallel for if (n > (1 << 16))
  for (int64_t k = 0; k < n; ++k) o.f[k] = f(a->f[k]);
  return {};
}

Status relu(OpContext& c) { return unary_float(c, [](float x) { return x > 0 ? x : 0.0f; }); }
Status sigmoid(OpContext& c) {
  return unary_float(c, [](float x) {
    // Split by sign so exp never overflows.
    if (x >= 0) return 1.0f / (1.0f + std::exp(-x));
    const float e = std::exp(x);
    return e / (1.0f + e);
  });
}
Status tanh_op(OpContext& c) { return unary_float(c, [](float x) { return std::tanh(x); }); }
Status sqrt_op(OpContext& c) { return unary_float(c, [](float x) { return std::sqrt(x); }); }
Status exp_op(OpContext& c) { return unary_float(c, [](float x) { return std::exp(x); }); }
Status log_op(OpContext& c) { return unary_float(c, [](float x) { return std::log(x); }); }
Status reciprocal(OpContext& c) { return unary_float(c, [](float x) { return 1.0f / x; }); }
Status floor_op(OpContext& c) { return unary_float(c, [](float x) { return std::floor(x); }); }
Status ceil_op(OpContext& c) { return unary_float(c, [](float x) { return std::ceil(x); }); }
Status erf_op(OpContext& c) { return unary_float(c, [](float x) { return std::erf(x); }); }
Status hard_sigmoid(OpContext& c) {
  const float alpha = attr_float(c.node, "alpha", 0.2f), beta = attr_float(c.node, "beta", 0.5f);
  return unary_float(c, [=](float x) { return std::max(0.0f, std::min(1.0f, alpha * x + beta)); });
}
Status hard_swish(OpContext& c) {
  // HardSwish(x) = x * HardSigmoid(x) with alpha = 1/6, beta = 0.5 (ONNX opset 14).
  return unary_float(c, [](float x) { return x * std::max(0.0f, std::min(1.0f, x / 6.0f + 0.5f)); });
}
Status leaky_relu(OpContext& c) {
  const float alpha = attr_float(c.node, "alpha", 0.01f);
  return unary_float(c, [=](float x) { return x >= 0 ? x : alpha * x; });
}

// Abs and Neg also take integer types.
template <bool NEG>
Status sign_op(OpContext& c) {
  const OnnxTensor* a = c.input(0);
  if (!a) return c.fail("needs an input");
  c.out[0] = *a;
  OnnxTensor& o = c.out[0];
  if (o.is_float()) {
    for (float& v : o.f) v = NEG ? -v : std::fabs(v);
  } else {
    for (int64_t& v : o.i) v = wrap_to_type(NEG ? -v : (v < 0 ? -v : v), o.type);
  }
  return {};
}

Status identity(OpContext& c) {
  if (!c.input(0)) return c.fail("needs an input");
  c.out[0] = *c.input(0);
  return {};
}

Status clip(OpContext& c) {
  const OnnxTensor* a = c.input(0);
  if (!a) return c.fail("needs an input");
  OnnxTensor& o = c.out[0];
  o = *a;
  if (c.opset < 11) {
    if (!a->is_float()) return c.fail("Clip before opset 11 takes FLOAT only");
    const float lo = attr_float(c.node, "min", -3.402823e38f), hi = attr_float(c.node, "max", 3.402823e38f);
    for (float& v : o.f) v = std::min(std::max(v, lo), hi);
    return {};
  }
  const OnnxTensor* mn = c.input(1);
  const OnnxTensor* mx = c.input(2);
  for (const OnnxTensor* b : {mn, mx})
    if (b && (b->numel() != 1 || b->type != a->type)) return c.fail("min/max must be scalars of the input's type");
  if (a->is_float()) {
    const float lo = mn ? mn->f[0] : -INFINITY, hi = mx ? mx->f[0] : INFINITY;
    for (float& v : o.f) v = std::min(std::max(v, lo), hi);
  } else {
    const int64_t lo = mn ? mn->i[0] : INT64_MIN, hi = mx ? mx->i[0] : INT64_MAX;
    for (int64_t& v : o.i) v = std::min(std::max(v, lo), hi);
  }
  return {};
}

Status cast(OpContext& c) {
  const OnnxTensor* a = c.input(0);
  if (!a) return c.fail("needs an input");
  const int32_t to = static_cast<int32_t>(attr_int(c.node, "to", 0));
  if (!onnx_type_supported(to)) return c.fail("cast to " + onnx_type_name(to) + " is not supported");
  OnnxTensor& o = c.out[0];
  o.type = to;
  o.shape = a->shape;
  const int64_t n = a->numel();
  if (to == TensorProto::FLOAT) {
    o.f.resize(n);
    for (int64_t k = 0; k < n; ++k) o.f[k] = a->is_float() ? a->f[k] : static_cast<float>(a->i[k]);
  } else {
    o.i.resize(n);
    for (int64_t k = 0; k < n; ++k) o.i[k] = a->is_float() ? float_to_type(a->f[k], to) : wrap_to_type(a->i[k], to);
  }
  return {};
}

Status where(OpContext& c) {
  const OnnxTensor* cond = c.input(0);
  const OnnxTensor* x = c.input(1);
  const OnnxTensor* y = c.input(2);
  if (!cond || !x || !y || cond->type != TensorProto::BOOL) return c.fail("needs a BOOL condition and two values");
  if (x->type != y->type) return c.fail("X and Y types differ");
  auto shape = broadcast_shapes({cond->shape, x->shape, y->shape});
  if (!shape.ok()) return c.fail(shape.error().message);
  OnnxTensor& o = c.out[0];
  o.type = x->type;
  o.shape = *shape;
  const int64_t n = shape_numel(o.shape);
  if (x->is_float()) o.f.resize(n);
  else o.i.resize(n);
  broadcast_for_each<3>(o.shape, {&cond->shape, &x->shape, &y->shape}, [&](int64_t k, const std::array<int64_t, 3>& ix) {
    const bool pick_x = cond->i[ix[0]] != 0;
    if (x->is_float()) o.f[k] = pick_x ? x->f[ix[1]] : y->f[ix[2]];
    else o.i[k] = pick_x ? x->i[ix[1]] : y->i[ix[2]];
  });
  return {};
}

// Max / Min / Sum over any number of inputs, broadcast together.
enum class Fold { kMax, kMin, kSum };
template <Fold OP>
Status fold(OpContext& c) {
  if (c.n_in() == 0 || !c.input(0)) return c.fail("needs at least one input");
  OnnxTensor acc = *c.input(0);
  for (size_t k = 1; k < c.n_in(); ++k) {
    const OnnxTensor* b = c.input(k);
    if (!b || b->type != acc.type) return c.fail("inputs must all have the same type");
    auto shape = broadcast_shapes({acc.shape, b->shape});
    if (!shape.ok()) return c.fail(shape.error().message);
    OnnxTensor next;
    next.type = acc.type;
    next.shape = *shape;
    auto f = [t = acc.type](auto x, auto y) {
      if constexpr (OP == Fold::kMax) return (x != x || y != y) ? x + y : std::max(x, y);
      else if constexpr (OP == Fold::kMin) return (x != x || y != y) ? x + y : std::min(x, y);
      else return x + y;
    };
    if (acc.is_float()) apply2(next.shape, acc, acc.f, *b, b->f, next.f, f);
    else apply2(next.shape, acc, acc.i, *b, b->i, next.i, f);
    if (!acc.is_float())
      for (int64_t& v : next.i) v = wrap_to_type(v, acc.type);
    acc = std::move(next);
  }
  c.out[0] = std::move(acc);
  return {};
}

}  // namespace

void add_elementwise_ops(OpTable& t) {
  t[":Add"] = arith<Arith::kAdd>;
  t[":Sub"] = arith<Arith::kSub>;
  t[":Mul"] = arith<Arith::kMul>;
  t[":Div"] = arith<Arith::kDiv>;
  t[":Pow"] = pow_op;
  t[":Equal"] = compare<Cmp::kEq>;
  t[":Less"] = compare<Cmp::kLt>;
  t[":Greater"] = compare<Cmp::kGt>;
  t[":LessOrEqual"] = compare<Cmp::kLe>;
  t[":GreaterOrEqual"] = compare<Cmp::kGe>;
  t[":And"] = logic<Logic::kAnd>;
  t[":Or"] = logic<Logic::kOr>;
  t[":Xor"] = logic<Logic::kXor>;
  t[":Not"] = not_op;
  t[":Relu"] = relu;
  t[":Sigmoid"] = sigmoid;
  t[":Tanh"] = tanh_op;
  t[":Sqrt"] = sqrt_op;
  t[":Exp"] = exp_op;
  t[":Log"] = log_op;
  t[":Reciprocal"] = reciprocal;
  t[":Floor"] = floor_op;
  t[":Ceil"] = ceil_op;
  t[":Erf"] = erf_op;
  t[":HardSigmoid"] = hard_sigmoid;
  t[":HardSwish"] = hard_swish;
  t[":LeakyRelu"] = leaky_relu;
  t[":Abs"] = sign_op<false>;
  t[":Neg"] = sign_op<true>;
  t[":Identity"] = identity;
  t[":Clip"] = clip;
  t[":Cast"] = cast;
  t[":Where"] = where;
  t[":Max"] = fold<Fold::kMax>;
  t[":Min"] = fold<Fold::kMin>;
  t[":Sum"] = fold<Fold::kSum>;
}

}  // namespace shrink::onnx_ops
