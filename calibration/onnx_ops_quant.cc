// Quantized ops: QuantizeLinear / DequantizeLinear (per-tensor, per-axis, opset-21 blocked, int4),
// DynamicQuantizeLinear, MatMulInteger, ConvInteger, and com.microsoft.MatMulNBits (ORT contrib).
#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "calibration/onnx_ops_util.h"

namespace shrink::onnx_ops {
namespace {
using onnx::TensorProto;
constexpr int32_t kUint4 = 21, kInt4 = 22;

void type_range(int32_t type, int64_t& lo, int64_t& hi) {
  switch (type) {
    case TensorProto::INT8: lo = -128; hi = 127; break;
    case TensorProto::UINT8: lo = 0; hi = 255; break;
    case TensorProto::INT16: lo = -32768; hi = 32767; break;
    case TensorProto::UINT16: lo = 0; hi = 65535; break;
    case TensorProto::INT32: lo = INT32_MIN; hi = INT32_MAX; break;
    case kInt4: lo = -8; hi = 7; break;
    case kUint4: lo = 0; hi = 15; break;
    default: lo = 0; hi = 255;
  }
}

// For each element of `x`, the index into a scale / zero-point tensor that is per-tensor (one value),
// per-axis (1-D over `axis`) or blocked (same rank, `axis` divided into blocks of `block`).
Result<std::vector<int64_t>> param_index(const OpContext& c, const OnnxTensor& x, const OnnxTensor& scale) {
  const int64_t n = x.numel(), r = static_cast<int64_t>(x.shape.size());
  std::vector<int64_t> idx(n, 0);
  if (scale.numel() == 1 && scale.shape.size() <= 1) return idx;
  SHRINK_ASSIGN(int64_t axis, norm_axis(c, attr_int(c.node, "axis", 1), std::max<int64_t>(r, 1)));
  const int64_t block = attr_int(c.node, "block_size", 0);
  int64_t inner = 1;
  for (int64_t d = axis + 1; d < r; ++d) inner *= x.shape[d];
  if (block <= 0) {
    if (scale.shape.size() != 1 || scale.shape[0] != x.shape[axis])
      return c.fail("scale " + shape_text(scale.shape) + " is neither per-tensor nor per-axis for axis " + std::to_string(axis) +
                    " of " + shape_text(x.shape));
    for (int64_t k = 0; k < n; ++k) idx[k] = (k / inner) % x.shape[axis];
    return idx;
  }
  if (static_cast<int64_t>(scale.shape.size()) != r) return c.fail("blocked scale must have the input's rank");
  for (int64_t d = 0; d < r; ++d) {
    const int64_t want = d == axis ? (x.shape[d] + block - 1) / block : x.shape[d];
    if (scale.shape[d] != want) return c.fail("blocked scale " + shape_text(scale.shape) + " does not fit " + shape_text(x.shape) + " with block_size " + std::to_string(block));
  }
  std::vector<int64_t> pos(r, 0), sst(r, 1);
  for (int64_t d = r - 2; d >= 0; --d) sst[d] = sst[d + 1] * scale.shape[d + 1];
  for (int64_t k = 0; k < n; ++k) {
    int64_t s = 0;
    for (int64_t d = 0; d < r; ++d) s += (d == axis ? pos[d] / block : pos[d]) * sst[d];
    idx[k] = s;
    for (int64_t d = r - 1; d >= 0; --d) {
      if (++pos[d] < x.shape[d]) break;
      pos[d] = 0;
    }
  }
  return idx;
}

Status check_zero_point(const OpContext& c, const OnnxTensor* zp, const OnnxTensor& scale) {
  if (!zp) return {};
  if (zp->shape != scale.shape && !(zp->numel() == 1 && scale.numel() == 1)) return c.fail("zero point shape differs from the scale's");
  return {};
}

Status quantize_linear(OpContext& c) {
  const OnnxTensor* x = c.input(0);
  const OnnxTensor* scale = c.input(1);
  const OnnxTensor* zp = c.input(2);
  if (!x || !scale || !x->is_float() || !scale->is_float()) return c.fail("needs FLOAT x and y_scale");
  SHRINK_CHECK(check_zero_point(c, zp, *scale));
  int32_t type = zp ? zp->type : static_cast<int32_t>(attr_int(c.node, "output_dtype", TensorProto::UINT8));
  if (type == 0) type = TensorProto::UINT8;
  if (type != TensorProto::UINT8 && type != TensorProto::INT8 && type != TensorProto::INT16 && type != TensorProto::UINT16 &&
      type != kInt4 && type != kUint4)
    return c.fail("output type " + onnx_type_name(type) + " is not supported");
  SHRINK_ASSIGN(std::vector<int64_t> idx, param_index(c, *x, *scale));
  int64_t lo, hi;
  type_range(type, lo, hi);
  OnnxTensor& o = c.out[0];
  o.type = type;
  o.shape = x->shape;
  const int64_t n = x->numel();
  o.i.resize(n);
  for (int64_t k = 0; k < n; ++k) {
    // Round half to even (ONNX spec; std::nearbyint in the default rounding mode), then saturate.
    const float q = std::nearbyint(x->f[k] / scale->f[idx[k]]);
    const double v = static_cast<double>(q) + (zp ? zp->i[idx[k]] : 0);
    o.i[k] = std::isnan(q) ? 0 : static_cast<int64_t>(std::clamp(v, static_cast<double>(lo), static_cast<double>(hi)));
  }
  return {};
}

Status dequantize_linear(OpContext& c) {
  const OnnxTensor* x = c.input(0);
  const OnnxTensor* scale = c.input(1);
  const OnnxTensor* zp = c.input(2);
  if (!x || !scale || x->is_float() || !scale->is_float()) return c.fail("needs an integer x and a FLOAT x_scale");
  SHRINK_CHECK(check_zero_point(c, zp, *scale));
  if (zp && zp->type != x->type) return c.fail("zero point type differs from x's");
  SHRINK_ASSIGN(std::vector<int64_t> idx, param_index(c, *x, *scale));
  OnnxTensor& o = c.out[0];
  o.type = TensorProto::FLOAT;
  o.shape = x->shape;
  const int64_t n = x->numel();
  o.f.resize(n);
  for (int64_t k = 0; k < n; ++k)
    o.f[k] = static_cast<float>(x->i[k] - (zp ? zp->i[idx[k]] : 0)) * scale->f[idx[k]];
  return {};
}

Status dynamic_quantize_linear(OpContext& c) {
  const OnnxTensor* x = c.input(0);
  if (!x || !x->is_float()) return c.fail("needs a FLOAT input");
  // Range always includes 0 so zero is exact; uint8 [0, 255] (ONNX spec).
  float mn = 0, mx = 0;
  for (float v : x->f) {
    mn = std::min(mn, v);
    mx = std::max(mx, v);
  }
  const float scale = (mx - mn) / 255.0f;
  const float zpf = scale == 0 ? 0.0f : std::clamp(std::nearbyint(0.0f - mn / scale), 0.0f, 255.0f);
  const int64_t zp = static_cast<int64_t>(zpf);
  OnnxTensor& y = c.out[0];
  y.type = TensorProto::UINT8;
  y.shape = x->shape;
  y.i.resize(x->f.size());
  for (size_t k = 0; k < x->f.size(); ++k) {
    const float q = scale == 0 ? 0.0f : std::nearbyint(x->f[k] / scale);
    y.i[k] = static_cast<int64_t>(std::clamp(q + zpf, 0.0f, 255.0f));
  }
  c.out[1] = OnnxTensor::floats({}, {scale});
  if (c.out.size() > 2) c.out[2] = OnnxTensor::ints(TensorProto::UINT8, {}, {zp});
  return {};
}

Status matmul_integer(OpContext& c) {
  const OnnxTensor* A = c.input(0);
  const OnnxTensor* B = c.input(1);
  const OnnxTensor* azp = c.input(2);
  const OnnxTensor* bzp = c.input(3);
  if (!A || !B || A->is_float() || B->is_float()) return c.fail("needs integer A and B");
  if (A->shape.size() < 2 || B->shape.size() < 2) return c.fail("A and B must have rank >= 2");
  const int64_t M = A->shape[A->shape.size() - 2], K = A->shape.back(), N = B->shape.back();
  if (B->shape[B->shape.size() - 2] != K) return c.fail("A " + shape_text(A->shape) + " and B " + shape_text(B->shape) + " do not multiply");
  if (azp && azp->numel() != 1) return c.fail("only a per-tensor a_zero_point is supported");
  if (bzp && bzp->numel() != 1 && bzp->numel() != N) return c.fail("b_zero_point must be per-tensor or per-column");
  std::vector<int64_t> abatch(A->shape.begin(), A->shape.end() - 2), bbatch(B->shape.begin(), B->shape.end() - 2);
  auto batch = broadcast_shapes({abatch, bbatch});
  if (!batch.ok()) return c.fail(batch.error().message);
  OnnxTensor& o = c.out[0];
  o.type = TensorProto::INT32;
  o.shape = *batch;
  o.shape.push_back(M);
  o.shape.push_back(N);
  const int64_t nb = shape_numel(*batch);
  o.i.resize(nb * M * N);
  using DMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  // Doubles hold every int32 sum exactly (53-bit mantissa), and Eigen makes it fast.
  int64_t k = 0;
  std::vector<std::array<int64_t, 2>> pairs;
  broadcast_for_each<2>(*batch, {&abatch, &bbatch}, [&](int64_t, const std::array<int64_t, 2>& ix) { pairs.push_back(ix); });
  for (const auto& ix : pairs) {
    DMat a(M, K), b(K, N);
    for (int64_t p = 0; p < M * K; ++p) a(p / K, p % K) = static_cast<double>(A->i[ix[0] * M * K + p] - (azp ? azp->i[0] : 0));
    for (int64_t p = 0; p < K * N; ++p)
      b(p / N, p % N) = static_cast<double>(B->i[ix[1] * K * N + p] - (bzp ? bzp->i[bzp->numel() == 1 ? 0 : p % N] : 0));
    DMat y = a * b;
    for (int64_t p = 0; p < M * N; ++p) o.i[k * M * N + p] = wrap_to_type(static_cast<int64_t>(y(p / N, p % N)), TensorProto::INT32);
    ++k;
  }
  return {};
}

Status conv_integer(OpContext& c) {
  const OnnxTensor* X = c.input(0);
  const OnnxTensor* W = c.input(1);
  const OnnxTensor* xzp = c.input(2);
  const OnnxTensor* wzp = c.input(3);
  if (!X || !W || X->is_float() || W->is_float()) return c.fail("needs integer X and W");
  if (X->shape.size() != 4 || W->shape.size() != 4) return c.fail("only 2-D ConvInteger is supported");
  if (xzp && xzp->numel() != 1) return c.fail("x_zero_point must be per-tensor");
  const int64_t N = X->shape[0], C = X->shape[1], H = X->shape[2], Wd = X->shape[3];
  const int64_t M = W->shape[0], kh = W->shape[2], kw = W->shape[3];
  const int64_t group = attr_int(c.node, "group", 1);
  if (group < 1 || C % group || M % group || W->shape[1] != C / group) return c.fail("group does not fit the shapes");
  if (wzp && wzp->numel() != 1 && wzp->numel() != M) return c.fail("w_zero_point must be per-tensor or per-output-channel");
  auto strides = attr_ints(c.node, "strides", {1, 1});
  auto dil = attr_ints(c.node, "dilations", {1, 1});
  auto pads = attr_ints(c.node, "pads", {0, 0, 0, 0});
  if (attr_string(c.node, "auto_pad", "NOTSET") != "NOTSET") return c.fail("auto_pad is not supported");
  if (strides.size() != 2 || dil.size() != 2 || pads.size() != 4) return c.fail("strides/dilations/pads have the wrong length");
  const int64_t oh = (H + pads[0] + pads[2] - ((kh - 1) * dil[0] + 1)) / strides[0] + 1;
  const int64_t ow = (Wd + pads[1] + pads[3] - ((kw - 1) * dil[1] + 1)) / strides[1] + 1;
  if (oh < 1 || ow < 1) return c.fail("the output would be empty");
  OnnxTensor& o = c.out[0];
  o.type = TensorProto::INT32;
  o.shape = {N, M, oh, ow};
  o.i.assign(N * M * oh * ow, 0);
  const int64_t cg = C / group, mg = M / group, x0 = xzp ? xzp->i[0] : 0;
  // Padding holds x_zero_point, i.e. contributes zero after the subtraction.
#pragma omp parallel for collapse(2)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m) {
      const int64_t g = m / mg, w0 = wzp ? wzp->i[wzp->numel() == 1 ? 0 : m] : 0;
      for (int64_t y = 0; y < oh; ++y)
        for (int64_t x = 0; x < ow; ++x) {
          int64_t s = 0;
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t ky = 0; ky < kh; ++ky) {
              const int64_t iy = y * strides[0] - pads[0] + ky * dil[0];
              if (iy < 0 || iy >= H) continue;
              for (int64_t kx = 0; kx < kw; ++kx) {
                const int64_t ix = x * strides[1] - pads[1] + kx * dil[1];
                if (ix < 0 || ix >= Wd) continue;
                s += (X->i[((n * C + g * cg + ci) * H + iy) * Wd + ix] - x0) * (W->i[((m * cg + ci) * kh + ky) * kw + kx] - w0);
              }
            }
          o.i[((n * M + m) * oh + y) * ow + x] = wrap_to_type(s, TensorProto::INT32);
        }
    }
  return {};
}

// com.microsoft.MatMulNBits: Y = A @ dequant(B)^T (+ bias). B is (N, k_blocks, blob) uint8 with
// `bits`-bit values packed low bits first; scales (N * k_blocks); zero points either packed uint8
// (N, ceil(k_blocks * bits / 8)) or float like the scales; default zero point 2^(bits-1).
// accuracy_level is ignored: the product is always F32 activations times the dequantized weights, which
// is what ONNX Runtime computes at levels 0 (unset) and 1; at 4 it quantizes A to int8 per block first,
// so its results differ from these by that rounding. g_idx (act-order) is refused. Float zero points are
// refused with bits 8: ONNX Runtime 1.30 computes them for bits 2 and 4 only, so nothing checks them.
Status matmul_nbits(OpContext& c) {
  const OnnxTensor* A = c.input(0);
  const OnnxTensor* B = c.input(1);
  const OnnxTensor* S = c.input(2);
  const OnnxTensor* Z = c.input(3);
  if (c.input(4)) return c.fail("g_idx is not supported");
  const OnnxTensor* bias = c.input(5);
  if (!A || !B || !S || !A->is_float() || !S->is_float() || B->type != TensorProto::UINT8)
    return c.fail("needs FLOAT A, UINT8 B and FLOAT scales");
  const int64_t K = attr_int(c.node, "K", 0), N = attr_int(c.node, "N", 0), bits = attr_int(c.node, "bits", 4);
  const int64_t block = attr_int(c.node, "block_size", 0);
  if (bits != 2 && bits != 4 && bits != 8) return c.fail("bits=" + std::to_string(bits) + " is not supported");
  if (K <= 0 || N <= 0 || block < 16 || (block & (block - 1))) return c.fail("bad K/N/block_size attributes");
  const int64_t kb = (K + block - 1) / block, blob = block * bits / 8;
  if (B->numel() != N * kb * blob) return c.fail("B has " + std::to_string(B->numel()) + " bytes, expected " + std::to_string(N * kb * blob));
  if (S->numel() != N * kb) return c.fail("scales must hold N * k_blocks values");
  if (A->shape.empty() || A->shape.back() != K) return c.fail("A's last dim must be K=" + std::to_string(K));
  const int64_t per_byte = 8 / bits, mask = (1 << bits) - 1;
  const int64_t zp_row = (kb * bits + 7) / 8;
  if (Z && Z->is_float() && Z->numel() != N * kb) return c.fail("float zero points must match the scales");
  if (Z && Z->is_float() && bits == 8) return c.fail("float zero points with bits=8 are not supported");
  if (Z && !Z->is_float() && Z->numel() != N * zp_row) return c.fail("packed zero points must be (N, ceil(k_blocks*bits/8))");
  if (bias && bias->numel() != N) return c.fail("bias must hold N values");
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  RowMat w(N, K);  // dequantized, (N, K)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t b = 0; b < kb; ++b) {
      const float s = S->f[n * kb + b];
      float zp = static_cast<float>(1 << (bits - 1));
      if (Z && Z->is_float()) zp = Z->f[n * kb + b];
      else if (Z) {
        const int64_t bit = b * bits;
        zp = static_cast<float>((Z->i[n * zp_row + bit / 8] >> (bit % 8)) & mask);
      }
      for (int64_t j = 0; j < block && b * block + j < K; ++j) {
        const int64_t byte = B->i[(n * kb + b) * blob + j / per_byte];
        const int64_t q = (byte >> ((j % per_byte) * bits)) & mask;
        w(n, b * block + j) = (static_cast<float>(q) - zp) * s;
      }
    }
  const int64_t rows = A->numel() / K;
  OnnxTensor& o = c.out[0];
  o.type = TensorProto::FLOAT;
  o.shape = A->shape;
  o.shape.back() = N;
  o.f.resize(rows * N);
  Eigen::Map<const RowMat> a(A->f.data(), rows, K);
  Eigen::Map<RowMat> y(o.f.data(), rows, N);
  y.noalias() = a * w.transpose();
  if (bias)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t n = 0; n < N; ++n) y(r, n) += bias->f[n];
  return {};
}

}  // namespace

void add_quant_ops(OpTable& t) {
  t[":QuantizeLinear"] = quantize_linear;
  t[":DequantizeLinear"] = dequantize_linear;
  t[":DynamicQuantizeLinear"] = dynamic_quantize_linear;
  t[":MatMulInteger"] = matmul_integer;
  t[":ConvInteger"] = conv_integer;
  t["com.microsoft:MatMulNBits"] = matmul_nbits;
  // Also accepted under the contrib domain, as ORT's quantizer writes them there for some opsets.
  t["com.microsoft:QuantizeLinear"] = quantize_linear;
  t["com.microsoft:DequantizeLinear"] = dequantize_linear;
}

}  // namespace shrink::onnx_ops
