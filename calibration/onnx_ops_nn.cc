// Neural-network ops on FLOAT: Conv / ConvTranspose (1-D and 2-D, groups, dilations, auto_pad),
// Gemm, MatMul, BatchNormalization (inference), pooling, Softmax, ReduceMean, Resize.
// Convolutions are im2col + an Eigen GEMM per group, depthwise convolutions a direct loop.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>

#include "calibration/onnx_ops_util.h"

namespace shrink::onnx_ops {
namespace {
using onnx::TensorProto;
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapM = Eigen::Map<RowMat>;
using CMapM = Eigen::Map<const RowMat>;

Status need_float(const OpContext& c, std::initializer_list<size_t> ks) {
  for (size_t k : ks) {
    const OnnxTensor* t = c.input(k);
    if (t && !t->is_float()) return c.fail("input " + std::to_string(k) + " has type " + onnx_type_name(t->type) + "; FLOAT only");
  }
  return {};
}

// Spatial geometry shared by Conv and the pools: 1-D inputs are run as 2-D with height 1.
struct Window {
  int64_t ih = 1, iw = 1, kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1;
  int64_t pt = 0, pl = 0, pb = 0, pr = 0;  // pads top/left/bottom/right
  int64_t oh = 1, ow = 1;
};

// Reads kernel/strides/dilations/pads/auto_pad for `nsp` (1 or 2) spatial dims; `ceil_mode` for pools.
Result<Window> window(const OpContext& c, const std::vector<int64_t>& in_spatial, std::vector<int64_t> kernel,
                      bool ceil_mode) {
  const size_t nsp = in_spatial.size();
  if (nsp < 1 || nsp > 2) return c.fail("only 1-D and 2-D spatial inputs are supported, got " + std::to_string(nsp) + "-D");
  if (kernel.size() != nsp) return c.fail("kernel_shape " + shape_text(kernel) + " does not match the input's spatial rank");
  auto strides = attr_ints(c.node, "strides", std::vector<int64_t>(nsp, 1));
  auto dil = attr_ints(c.node, "dilations", std::vector<int64_t>(nsp, 1));
  auto pads = attr_ints(c.node, "pads", std::vector<int64_t>(2 * nsp, 0));
  const std::string auto_pad = attr_string(c.node, "auto_pad", "NOTSET");
  if (strides.size() != nsp || dil.size() != nsp || pads.size() != 2 * nsp) return c.fail("strides/dilations/pads have the wrong length");
  std::vector<int64_t> out(nsp), pb(nsp), pe(nsp);
  for (size_t d = 0; d < nsp; ++d) {
    const int64_t keff = (kernel[d] - 1) * dil[d] + 1;
    if (strides[d] < 1 || dil[d] < 1 || kernel[d] < 1) return c.fail("kernel/stride/dilation must be positive");
    if (auto_pad == "NOTSET") {
      pb[d] = pads[d];
      pe[d] = pads[d + nsp];
      const int64_t span = in_spatial[d] + pb[d] + pe[d] - keff;
      if (span < 0) return c.fail("the window is larger than the padded input");
      out[d] = (ceil_mode ? (span + strides[d] - 1) / strides[d] : span / strides[d]) + 1;
      // A window may not start inside the end padding (ONNX Runtime / PyTorch rule for ceil_mode).
      if (ceil_mode && (out[d] - 1) * strides[d] >= in_spatial[d] + pb[d]) --out[d];
    } else if (auto_pad == "VALID") {
      pb[d] = pe[d] = 0;
      out[d] = (in_spatial[d] - keff) / strides[d] + 1;
    } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      out[d] = (in_spatial[d] + strides[d] - 1) / strides[d];
      const int64_t total = std::max<int64_t>(0, (out[d] - 1) * strides[d] + keff - in_spatial[d]);
      pb[d] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      pe[d] = total - pb[d];
    } else {
      return c.fail("auto_pad '" + auto_pad + "' is not supported");
    }
    if (out[d] < 1) return c.fail("the output would be empty");
  }
  Window w;
  const size_t h = nsp == 2 ? 0 : SIZE_MAX, x = nsp - 1;
  if (h == 0) {
    w.ih = in_spatial[0]; w.kh = kernel[0]; w.sh = strides[0]; w.dh = dil[0]; w.pt = pb[0]; w.pb = pe[0]; w.oh = out[0];
  }
  w.iw = in_spatial[x]; w.kw = kernel[x]; w.sw = strides[x]; w.dw = dil[x]; w.pl = pb[x]; w.pr = pe[x]; w.ow = out[x];
  return w;
}

std::vector<int64_t> out_shape(int64_t n, int64_t c, const Window& w, size_t nsp) {
  if (nsp == 1) return {n, c, w.ow};
  return {n, c, w.oh, w.ow};
}

// cols (C*kh*kw, oh*ow) for one image's `C` channels starting at `x`.
void im2col(const float* x, int64_t C, const Window& w, float* cols) {
  const int64_t ohw = w.oh * w.ow;
#pragma omp parallel for if (C * w.kh * w.kw * ohw > (1 << 16))
  for (int64_t ch = 0; ch < C; ++ch)
    for (int64_t ky = 0; ky < w.kh; ++ky)
      for (int64_t kx = 0; kx < w.kw; ++kx) {
        float* row = cols + ((ch * w.kh + ky) * w.kw + kx) * ohw;
        const float* plane = x + ch * w.ih * w.iw;
        for (int64_t oy = 0; oy < w.oh; ++oy) {
          const int64_t iy = oy * w.sh - w.pt + ky * w.dh;
          float* r = row + oy * w.ow;
          if (iy < 0 || iy >= w.ih) {
            std::fill(r, r + w.ow, 0.0f);
            continue;
          }
          for (int64_t ox = 0; ox < w.ow; ++ox) {
            const int64_t ix = ox * w.sw - w.pl + kx * w.dw;
            r[ox] = (ix < 0 || ix >= w.iw) ? 0.0f : plane[iy * w.iw + ix];
          }
        }
      }
}

Status conv(OpContext& c) {
  SHRINK_CHECK(need_float(c, {0, 1, 2}));
  const OnnxTensor* X = c.input(0);
  const OnnxTensor* W = c.input(1);
  const OnnxTensor* B = c.input(2);
  if (!X || !W) return c.fail("needs X and W");
  if (X->shape.size() < 3 || W->shape.size() != X->shape.size()) return c.fail("X " + shape_text(X->shape) + " and W " + shape_text(W->shape) + " ranks do not fit");
  const size_t nsp = X->shape.size() - 2;
  const int64_t N = X->shape[0], C = X->shape[1], M = W->shape[0];
  const int64_t group = attr_int(c.node, "group", 1);
  if (group < 1 || C % group || M % group || W->shape[1] != C / group)
    return c.fail("group " + std::to_string(group) + " does not fit X " + shape_text(X->shape) + " and W " + shape_text(W->shape));
  std::vector<int64_t> kernel(W->shape.begin() + 2, W->shape.end());
  auto ks = attr_ints(c.node, "kernel_shape");
  if (!ks.empty() && ks != kernel) return c.fail("kernel_shape " + shape_text(ks) + " differs from W's " + shape_text(kernel));
  SHRINK_ASSIGN(Window w, window(c, std::vector<int64_t>(X->shape.begin() + 2, X->shape.end()), kernel, false));
  if (B && B->numel() != M) return c.fail("B has " + std::to_string(B->numel()) + " values for " + std::to_string(M) + " output channels");
  OnnxTensor& o = c.out[0];
  o.type = TensorProto::FLOAT;
  o.shape = out_shape(N, M, w, nsp);
  const int64_t ohw = w.oh * w.ow, cg = C / group, mg = M / group, kk = cg * w.kh * w.kw;
  o.f.assign(N * M * ohw, 0.0f);
  const bool depthwise = cg == 1 && mg == 1;
  const bool pointwise = w.kh == 1 && w.kw == 1 && w.sh == 1 && w.sw == 1 && w.pt == 0 && w.pl == 0 && w.pb == 0 && w.pr == 0;
  std::vector<float> cols;
  if (!depthwise && !pointwise) cols.resize(kk * ohw);
  for (int64_t n = 0; n < N; ++n) {
    const float* xn = X->f.data() + n * C * w.ih * w.iw;
    float* yn = o.f.data() + n * M * ohw;
    if (depthwise) {
#pragma omp parallel for
      for (int64_t ch = 0; ch < C; ++ch) {
        const float* plane = xn + ch * w.ih * w.iw;
        const float* k = W->f.data() + ch * w.kh * w.kw;
        float* y = yn + ch * ohw;
        for (int64_t oy = 0; oy < w.oh; ++oy)
          for (int64_t ox = 0; ox < w.ow; ++ox) {
            float s = 0;
            for (int64_t ky = 0; ky < w.kh; ++ky) {
              const int64_t iy = oy * w.sh - w.pt + ky * w.dh;
              if (iy < 0 || iy >= w.ih) continue;
              for (int64_t kx = 0; kx < w.kw; ++kx) {
                const int64_t ix = ox * w.sw - w.pl + kx * w.dw;
                if (ix >= 0 && ix < w.iw) s += plane[iy * w.iw + ix] * k[ky * w.kw + kx];
              }
            }
            y[oy * w.ow + ox] = s;
          }
      }
    } else {
      for (int64_t g = 0; g < group; ++g) {
        const float* xg = xn + g * cg * w.ih * w.iw;
        const float* src = xg;
        if (!pointwise) {
          im2col(xg, cg, w, cols.data());
          src = cols.data();
        }
        CMapM wm(W->f.data() + g * mg * kk, mg, kk);  // (M/g, C/g*kh*kw)
        CMapM xm(src, kk, ohw);                        // (C/g*kh*kw, oh*ow)
        MapM ym(yn + g * mg * ohw, mg, ohw);
        ym.noalias() = wm * xm;
      }
    }
    if (B)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t k = 0; k < ohw; ++k) yn[m * ohw + k] += B->f[m];
  }
  return {};
}

Status conv_transpose(OpContext& c) {
  SHRINK_CHECK(need_float(c, {0, 1, 2}));
  const OnnxTensor* X = c.input(0);
  const OnnxTensor* W = c.input(1);
  const OnnxTensor* B = c.input(2);
  if (!X || !W) return c.fail("needs X and W");
  if (X->shape.size() < 3 || X->shape.size() > 4 || W->shape.size() != X->shape.size())
    return c.fail("only 1-D and 2-D ConvTranspose is supported (X " + shape_text(X->shape) + ")");
  const size_t nsp = X->shape.size() - 2;
  const int64_t N = X->shape[0], C = X->shape[1];
  const int64_t group = attr_int(c.node, "group", 1);
  if (group < 1 || C % group || W->shape[0] != C) return c.fail("W " + shape_text(W->shape) + " does not fit X " + shape_text(X->shape));
  const int64_t mg = W->shape[1], M = mg * group;
  std::vector<int64_t> kernel(W->shape.begin() + 2, W->shape.end());
  auto strides = attr_ints(c.node, "strides", std::vector<int64_t>(nsp, 1));
  auto dil = attr_ints(c.node, "dilations", std::vector<int64_t>(nsp, 1));
  auto pads = attr_ints(c.node, "pads", std::vector<int64_t>(2 * nsp, 0));
  auto opad = attr_ints(c.node, "output_padding", std::vector<int64_t>(nsp, 0));
  auto oshape = attr_ints(c.node, "output_shape");
  const std::string auto_pad = attr_string(c.node, "auto_pad", "NOTSET");
  if (strides.size() != nsp || dil.size() != nsp || pads.size() != 2 * nsp || opad.size() != nsp)
    return c.fail("strides/dilations/pads/output_padding have the wrong length");
  if (!oshape.empty() && oshape.size() != nsp) return c.fail("output_shape must give the spatial dims only");
  std::vector<int64_t> in(X->shape.begin() + 2, X->shape.end()), out(nsp), pb(nsp), pe(nsp);
  for (size_t d = 0; d < nsp; ++d) {
    const int64_t keff = (kernel[d] - 1) * dil[d] + 1;
    const int64_t full = strides[d] * (in[d] - 1) + opad[d] + keff;
    if (!oshape.empty() || auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      out[d] = oshape.empty() ? in[d] * strides[d] : oshape[d];
      // A larger output_shape leaves the extra positions at the bias (ONNX Runtime clamps the padding at 0).
      const int64_t total = std::max<int64_t>(0, full - out[d]);
      // SAME_LOWER puts the odd pad at the start, otherwise it goes to the end.
      pb[d] = auto_pad == "SAME_LOWER" ? total - total / 2 : total / 2;
      pe[d] = total - pb[d];
    } else if (auto_pad == "NOTSET" || auto_pad == "VALID") {
      pb[d] = auto_pad == "VALID" ? 0 : pads[d];
      pe[d] = auto_pad == "VALID" ? 0 : pads[d + nsp];
      out[d] = full - pb[d] - pe[d];
    } else {
      return c.fail("auto_pad '" + auto_pad + "' is not supported");
    }
    if (out[d] < 1) return c.fail("the output would be empty");
  }
  if (B && B->numel() != M) return c.fail("B has the wrong length");
  const int64_t ih = nsp == 2 ? in[0] : 1, iw = in[nsp - 1];
  const int64_t oh = nsp == 2 ? out[0] : 1, ow = out[nsp - 1];
  const int64_t kh = nsp == 2 ? kernel[0] : 1, kw = kernel[nsp - 1];
  const int64_t sh = nsp == 2 ? strides[0] : 1, sw = strides[nsp - 1];
  const int64_t dh = nsp == 2 ? dil[0] : 1, dw = dil[nsp - 1];
  const int64_t pt = nsp == 2 ? pb[0] : 0, pl = pb[nsp - 1];
  OnnxTensor& o = c.out[0];
  o.type = TensorProto::FLOAT;
  o.shape = {N, M};
  o.shape.insert(o.shape.end(), out.begin(), out.end());
  o.f.assign(N * M * oh * ow, 0.0f);
  const int64_t cg = C / group, ihw = ih * iw, rows = mg * kh * kw;
  std::vector<float> cols(rows * ihw);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < group; ++g) {
      CMapM wm(W->f.data() + g * cg * rows, cg, rows);                 // (C/g, M/g*kh*kw)
      CMapM xm(X->f.data() + (n * C + g * cg) * ihw, cg, ihw);         // (C/g, ih*iw)
      MapM cm(cols.data(), rows, ihw);
      cm.noalias() = wm.transpose() * xm;
      float* y = o.f.data() + (n * M + g * mg) * oh * ow;
      for (int64_t m = 0; m < mg; ++m)
        for (int64_t ky = 0; ky < kh; ++ky)
          for (int64_t kx = 0; kx < kw; ++kx) {
            const float* row = cols.data() + ((m * kh + ky) * kw + kx) * ihw;
            for (int64_t iy = 0; iy < ih; ++iy) {
              const int64_t oy = iy * sh - pt + ky * dh;
              if (oy < 0 || oy >= oh) continue;
              for (int64_t ix = 0; ix < iw; ++ix) {
                const int64_t ox = ix * sw - pl + kx * dw;
                if (ox >= 0 && ox < ow) y[(m * oh + oy) * ow + ox] += row[iy * iw + ix];
              }
            }
          }
    }
  if (B)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t k = 0; k < oh * ow; ++k) o.f[(n * M + m) * oh * ow + k] += B->f[m];
  return {};
}

Status gemm(OpContext& c) {
  SHRINK_CHECK(need_float(c, {0, 1, 2}));
  const OnnxTensor* A = c.input(0);
  const OnnxTensor* Bt = c.input(1);
  const OnnxTensor* C = c.input(2);
  if (!A || !Bt || A->shape.size() != 2 || Bt->shape.size() != 2) return c.fail("A and B must be 2-D");
  const bool ta = attr_int(c.node, "transA", 0) != 0, tb = attr_int(c.node, "transB", 0) != 0;
  const float alpha = attr_float(c.node, "alpha", 1.0f), beta = attr_float(c.node, "beta", 1.0f);
  const int64_t M = ta ? A->shape[1] : A->shape[0], K = ta ? A->shape[0] : A->shape[1];
  const int64_t K2 = tb ? Bt->shape[1] : Bt->shape[0], N = tb ? Bt->shape[0] : Bt->shape[1];
  if (K != K2) return c.fail("A " + shape_text(A->shape) + " and B " + shape_text(Bt->shape) + " do not multiply");
  CMapM a(A->f.data(), A->shape[0], A->shape[1]);
  CMapM b(Bt->f.data(), Bt->shape[0], Bt->shape[1]);
  OnnxTensor& o = c.out[0];
  o.type = TensorProto::FLOAT;
  o.shape = {M, N};
  o.f.assign(M * N, 0.0f);
  MapM y(o.f.data(), M, N);
  if (ta && tb) y.noalias() = a.transpose() * b.transpose();
  else if (ta) y.noalias() = a.transpose() * b;
  else if (tb) y.noalias() = a * b.transpose();
  else y.noalias() = a * b;
  if (alpha != 1.0f) y *= alpha;
  if (C && beta != 0.0f) {
    auto s = broadcast_shapes({C->shape, o.shape});
    if (!s.ok() || *s != o.shape) return c.fail("C " + shape_text(C->shape) + " does not broadcast to " + shape_text(o.shape));
    broadcast_for_each<1>(o.shape, {&C->shape}, [&](int64_t k, const std::array<int64_t, 1>& ix) { o.f[k] += beta * C->f[ix[0]]; });
  }
  return {};
}

Status matmul(OpContext& c) {
  SHRINK_CHECK(need_float(c, {0, 1}));
  const OnnxTensor* A = c.input(0);
  const OnnxTensor* B = c.input(1);
  if (!A || !B || A->shape.empty() || B->shape.empty()) return c.fail("needs two inputs of rank >= 1");
  std::vector<int64_t> as = A->shape, bs = B->shape;
  const bool a1 = as.size() == 1, b1 = bs.size() == 1;
  if (a1) as.insert(as.begin(), 1);
  if (b1) bs.push_back(1);
  const int64_t M = as[as.size() - 2], K = as.back(), K2 = bs[bs.size() - 2], N = bs.back();
  if (K != K2) return c.fail("A " + shape_text(A->shape) + " and B " + shape_text(B->shape) + " do not multiply");
  std::vector<int64_t> abatch(as.begin(), as.end() - 2), bbatch(bs.begin(), bs.end() - 2);
  auto batch = broadcast_shapes({abatch, bbatch});
  if (!batch.ok()) return c.fail(batch.error().message);
  std::vector<int64_t> shape = *batch;
  if (!a1) shape.push_back(M);
  if (!b1) shape.push_back(N);
  OnnxTensor& o = c.out[0];
  o.type = TensorProto::FLOAT;
  o.shape = shape;
  const int64_t nb = shape_numel(*batch);
  o.f.assign(nb * M * N, 0.0f);
  std::vector<int64_t> ia(nb), ib(nb);
  broadcast_for_each<2>(*batch, {&abatch, &bbatch}, [&](int64_t k, const std::array<int64_t, 2>& ix) {
    ia[k] = ix[0];
    ib[k] = ix[1];
  });
  for (int64_t k = 0; k < nb; ++k) {
    CMapM a(A->f.data() + ia[k] * M * K, M, K);
    CMapM b(B->f.data() + ib[k] * K * N, K, N);
    MapM y(o.f.data() + k * M * N, M, N);
    y.noalias() = a * b;
  }
  return {};
}

Status batch_norm(OpContext& c) {
  SHRINK_CHECK(need_float(c, {0, 1, 2, 3, 4}));
  if (attr_int(c.node, "training_mode", 0) != 0) return c.fail("training_mode=1 is not supported (inference only)");
  if (c.opset < 7 && attr_int(c.node, "spatial", 1) != 1) return c.fail("spatial=0 is not supported");
  for (int k = 1; k < c.node.output_size(); ++k)
    if (!c.node.output(k).empty()) return c.fail("the training outputs (mean/var) are not supported");
  const OnnxTensor* X = c.input(0);
  if (!X || X->shape.size() < 2) return c.fail("X must have rank >= 2");
  const int64_t N = X->shape[0], C = X->shape[1], inner = X->numel() / std::max<int64_t>(N * C, 1);
  for (size_t k = 1; k <= 4; ++k)
    if (!c.input(k) || c.input(k)->numel() != C) return c.fail("scale/B/mean/var must each hold C=" + std::to_string(C) + " values");
  const float eps = attr_float(c.node, "epsilon", 1e-5f);
  OnnxTensor& o = c.out[0];
  o = *X;
  for (int64_t ch = 0; ch < C; ++ch) {
    const float mul = c.input(1)->f[ch] / std::sqrt(c.input(4)->f[ch] + eps);
    const float mean = c.input(3)->f[ch], add = c.input(2)->f[ch];
    for (int64_t n = 0; n < N; ++n) {
      float* p = o.f.data() + (n * C + ch) * inner;
      for (int64_t k = 0; k < inner; ++k) p[k] = (p[k] - mean) * mul + add;
    }
  }
  return {};
}

Status global_average_pool(OpContext& c) {
  SHRINK_CHECK(need_float(c, {0}));
  const OnnxTensor* X = c.input(0);
  if (!X || X->shape.size() < 3) return c.fail("X must have rank >= 3");
  const int64_t NC = X->shape[0] * X->shape[1], inner = X->numel() / std::max<int64_t>(NC, 1);
  OnnxTensor& o = c.out[0];
  o.type = TensorProto::FLOAT;
  o.shape = X->shape;
  for (size_t d = 2; d < o.shape.size(); ++d) o.shape[d] = 1;
  o.f.resize(NC);
  for (int64_t k = 0; k < NC; ++k) {
    double s = 0;
    for (int64_t j = 0; j < inner; ++j) s += X->f[k * inner + j];
    o.f[k] = static_cast<float>(s / inner);
  }
  return {};
}

template <bool MAX>
Status pool(OpContext& c) {
  SHRINK_CHECK(need_float(c, {0}));
  const OnnxTensor* X = c.input(0);
  if (!X || X->shape.size() < 3) return c.fail("X must have rank >= 3");
  if (MAX && c.node.output_size() > 1 && !c.node.output(1).empty()) return c.fail("the Indices output is not supported");
  if (!MAX && c.opset < 19 && find_attr(c.node, "dilations")) return c.fail("dilations are not an AveragePool attribute before opset 19");
  const size_t nsp = X->shape.size() - 2;
  const bool ceil_mode = attr_int(c.node, "ceil_mode", 0) != 0;
  const bool include_pad = attr_int(c.node, "count_include_pad", 0) != 0;
  SHRINK_ASSIGN(Window w, window(c, std::vector<int64_t>(X->shape.begin() + 2, X->shape.end()), attr_ints(c.node, "kernel_shape"), ceil_mode));
  const int64_t N = X->shape[0], C = X->shape[1];
  OnnxTensor& o = c.out[0];
  o.type = TensorProto::FLOAT;
  o.shape = out_shape(N, C, w, nsp);
  o.f.resize(N * C * w.oh * w.ow);
#pragma omp parallel for if (N * C > 8)
  for (int64_t p = 0; p < N * C; ++p) {
    const float* plane = X->f.data() + p * w.ih * w.iw;
    float* y = o.f.data() + p * w.oh * w.ow;
    for (int64_t oy = 0; oy < w.oh; ++oy)
      for (int64_t ox = 0; ox < w.ow; ++ox) {
        float best = -std::numeric_limits<float>::infinity();
        double sum = 0;
        int64_t count = 0, padded_count = 0;
        for (int64_t ky = 0; ky < w.kh; ++ky) {
          const int64_t iy = oy * w.sh - w.pt + ky * w.dh;
          for (int64_t kx = 0; kx < w.kw; ++kx) {
            const int64_t ix = ox * w.sw - w.pl + kx * w.dw;
            // count_include_pad counts pad cells, but not cells past the end padding (ceil_mode overhang).
            if (iy < w.ih + w.pb && ix < w.iw + w.pr) ++padded_count;
            if (iy < 0 || iy >= w.ih || ix < 0 || ix >= w.iw) continue;
            const float v = plane[iy * w.iw + ix];
            best = std::max(best, v);
            sum += v;
            ++count;
          }
        }
        if (MAX) y[oy * w.ow + ox] = best;
        else y[oy * w.ow + ox] = static_cast<float>(sum / std::max<int64_t>(1, include_pad ? padded_count : count));
      }
  }
  return {};
}

Status softmax(OpContext& c) {
  SHRINK_CHECK(need_float(c, {0}));
  const OnnxTensor* X = c.input(0);
  if (!X) return c.fail("needs an input");
  const int64_t r = static_cast<int64_t>(X->shape.size());
  const int64_t axis_attr = attr_int(c.node, "axis", c.opset < 13 ? 1 : -1);
  SHRINK_ASSIGN(int64_t axis, norm_axis(c, axis_attr, std::max<int64_t>(r, 1)));
  // Before opset 13 the input is flattened to 2-D at `axis` and normalized over the whole second part.
  int64_t outer = 1, len = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= X->shape[d];
  if (c.opset < 13) {
    for (int64_t d = axis; d < r; ++d) len *= X->shape[d];
  } else {
    len = r ? X->shape[axis] : 1;
    for (int64_t d = axis + 1; d < r; ++d) inner *= X->shape[d];
  }
  OnnxTensor& o = c.out[0];
  o = *X;
  for (int64_t b = 0; b < outer; ++b)
    for (int64_t q = 0; q < inner; ++q) {
      float* p = o.f.data() + b * len * inner + q;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t k = 0; k < len; ++k) mx = std::max(mx, p[k * inner]);
      double s = 0;
      for (int64_t k = 0; k < len; ++k) {
        p[k * inner] = std::exp(p[k * inner] - mx);
        s += p[k * inner];
      }
      for (int64_t k = 0; k < len; ++k) p[k * inner] = static_cast<float>(p[k * inner] / s);
    }
  return {};
}

Status reduce_mean(OpContext& c) {
  SHRINK_CHECK(need_float(c, {0}));
  const OnnxTensor* X = c.input(0);
  if (!X) return c.fail("needs an input");
  const int64_t r = static_cast<int64_t>(X->shape.size());
  std::vector<int64_t> axes;
  if (c.opset < 18) axes = attr_ints(c.node, "axes");
  else if (c.input(1)) { SHRINK_ASSIGN(axes, int_values(c, 1)); }
  const bool keep = attr_int(c.node, "keepdims", 1) != 0;
  if (axes.empty() && c.opset >= 18 && attr_int(c.node, "noop_with_empty_axes", 0)) {
    c.out[0] = *X;
    return {};
  }
  std::vector<bool> red(r, axes.empty());
  for (int64_t a : axes) {
    SHRINK_ASSIGN(int64_t n, norm_axis(c, a, r));
    red[n] = true;
  }
  std::vector<int64_t> kept_shape(r), shape;
  for (int64_t d = 0; d < r; ++d) {
    kept_shape[d] = red[d] ? 1 : X->shape[d];
    if (!red[d]) shape.push_back(X->shape[d]);
    else if (keep) shape.push_back(1);
  }
  const int64_t n_out = shape_numel(kept_shape);
  std::vector<double> sum(n_out, 0.0);
  // Accumulate each input element into its reduced position.
  std::vector<int64_t> ost(r, 1);
  for (int64_t d = r - 2; d >= 0; --d) ost[d] = ost[d + 1] * kept_shape[d + 1];
  std::vector<int64_t> pos(r, 0);
  const int64_t n = X->numel();
  for (int64_t k = 0; k < n; ++k) {
    int64_t oi = 0;
    for (int64_t d = 0; d < r; ++d) oi += (red[d] ? 0 : pos[d]) * ost[d];
    sum[oi] += X->f[k];
    for (int64_t d = r - 1; d >= 0; --d) {
      if (++pos[d] < X->shape[d]) break;
      pos[d] = 0;
    }
  }
  const double cnt = n_out ? static_cast<double>(n) / n_out : 0;
  OnnxTensor& o = c.out[0];
  o.type = TensorProto::FLOAT;
  o.shape = shape;
  o.f.resize(n_out);
  for (int64_t k = 0; k < n_out; ++k) o.f[k] = static_cast<float>(sum[k] / cnt);
  return {};
}

Status resize(OpContext& c) {
  SHRINK_CHECK(need_float(c, {0}));
  const OnnxTensor* X = c.input(0);
  if (!X) return c.fail("needs an input");
  const int64_t r = static_cast<int64_t>(X->shape.size());
  const std::string mode = attr_string(c.node, "mode", "nearest");
  std::string ctm = attr_string(c.node, "coordinate_transformation_mode", "half_pixel");
  std::string nearest_mode = attr_string(c.node, "nearest_mode", "round_prefer_floor");
  if (mode != "nearest" && mode != "linear") return c.fail("mode '" + mode + "' is not supported");
  if (attr_int(c.node, "antialias", 0) || find_attr(c.node, "axes") ||
      attr_string(c.node, "keep_aspect_ratio_policy", "stretch") != "stretch")
    return c.fail("antialias / axes / keep_aspect_ratio_policy (opset 18) are not supported");
  const OnnxTensor* scales_t;
  const OnnxTensor* sizes_t = nullptr;
  if (c.opset < 11) {
    scales_t = c.input(1);
    ctm = "asymmetric";
    nearest_mode = "simple";
  } else {
    scales_t = c.input(2);
    sizes_t = c.input(3);
  }
  if (ctm != "half_pixel" && ctm != "asymmetric" && ctm != "align_corners" && ctm != "pytorch_half_pixel" &&
      ctm != "tf_half_pixel_for_nn")
    return c.fail("coordinate_transformation_mode '" + ctm + "' is not supported");
  std::vector<double> scale(r, 1.0);
  std::vector<int64_t> shape(r);
  if (scales_t && scales_t->numel() > 0) {
    if (scales_t->numel() != r || !scales_t->is_float()) return c.fail("scales must hold one FLOAT per dim");
    for (int64_t d = 0; d < r; ++d) {
      scale[d] = scales_t->f[d];
      shape[d] = static_cast<int64_t>(std::floor(X->shape[d] * static_cast<double>(scales_t->f[d])));
    }
  } else if (sizes_t && sizes_t->numel() == r) {
    for (int64_t d = 0; d < r; ++d) {
      shape[d] = sizes_t->i[d];
      scale[d] = static_cast<double>(shape[d]) / X->shape[d];
    }
  } else {
    return c.fail("needs scales or sizes with one value per dim");
  }
  // Per dim and output coordinate: two source indices and the weight of the second.
  struct Tap { int64_t i0, i1; float w; };
  std::vector<std::vector<Tap>> taps(r);
  for (int64_t d = 0; d < r; ++d) {
    const int64_t in = X->shape[d];
    for (int64_t x = 0; x < shape[d]; ++x) {
      double s;
      if (scale[d] == 1.0 && shape[d] == in) s = static_cast<double>(x);
      else if (ctm == "half_pixel") s = (x + 0.5) / scale[d] - 0.5;
      else if (ctm == "pytorch_half_pixel") s = shape[d] > 1 ? (x + 0.5) / scale[d] - 0.5 : 0.0;
      // The spec divides by the unrounded resized length in * scale, not by the output size.
      else if (ctm == "align_corners") s = shape[d] == 1 ? 0.0 : x * static_cast<double>(in - 1) / (in * scale[d] - 1);
      else if (ctm == "tf_half_pixel_for_nn") s = (x + 0.5) / scale[d];
      else s = x / scale[d];
      Tap t;
      if (mode == "nearest") {
        double v;
        const double fl = std::floor(s);
        if (nearest_mode == "round_prefer_floor") v = (s - fl == 0.5) ? fl : std::round(s);
        else if (nearest_mode == "round_prefer_ceil") v = (s - fl == 0.5) ? fl + 1 : std::round(s);
        else if (nearest_mode == "floor") v = fl;
        else if (nearest_mode == "ceil") v = std::ceil(s);
        else if (nearest_mode == "simple") v = scale[d] < 1 ? std::ceil(s) : fl;  // opset-10 Upsample rule
        else return c.fail("nearest_mode '" + nearest_mode + "' is not supported");
        t.i0 = t.i1 = std::clamp<int64_t>(static_cast<int64_t>(v), 0, in - 1);
        t.w = 0;
      } else {
        s = std::clamp(s, 0.0, static_cast<double>(in - 1));
        t.i0 = static_cast<int64_t>(std::floor(s));
        t.i1 = std::min(t.i0 + 1, in - 1);
        t.w = static_cast<float>(s - t.i0);
      }
      taps[d].push_back(t);
    }
  }
  std::vector<int64_t> st(r, 1);
  for (int64_t d = r - 2; d >= 0; --d) st[d] = st[d + 1] * X->shape[d + 1];
  OnnxTensor& o = c.out[0];
  o.type = TensorProto::FLOAT;
  o.shape = shape;
  const int64_t n = shape_numel(shape);
  o.f.resize(n);
  std::vector<int64_t> interp;  // dims that interpolate between two taps
  for (int64_t d = 0; d < r; ++d)
    for (const Tap& t : taps[d])
      if (t.w != 0 && t.i0 != t.i1) {
        interp.push_back(d);
        break;
      }
  std::vector<int64_t> pos(r, 0);
  for (int64_t k = 0; k < n; ++k) {
    int64_t base = 0;
    for (int64_t d = 0; d < r; ++d) base += taps[d][pos[d]].i0 * st[d];
    float v = 0;
    const int64_t corners = int64_t{1} << interp.size();
    for (int64_t m = 0; m < corners; ++m) {
      int64_t off = base;
      float wt = 1;
      for (size_t j = 0; j < interp.size(); ++j) {
        const int64_t d = interp[j];
        const Tap& t = taps[d][pos[d]];
        if (m >> j & 1) {
          off += (t.i1 - t.i0) * st[d];
          wt *= t.w;
        } else {
          wt *= 1 - t.w;
        }
      }
      if (wt != 0) v += wt * X->f[off];
    }
    o.f[k] = v;
    for (int64_t d = r - 1; d >= 0; --d) {
      if (++pos[d] < shape[d]) break;
      pos[d] = 0;
    }
  }
  return {};
}

}  // namespace

void add_nn_ops(OpTable& t) {
  t[":Conv"] = conv;
  t[":ConvTranspose"] = conv_transpose;
  t[":Gemm"] = gemm;
  t[":MatMul"] = matmul;
  t[":BatchNormalization"] = batch_norm;
  t[":GlobalAveragePool"] = global_average_pool;
  t[":AveragePool"] = pool<false>;
  t[":MaxPool"] = pool<true>;
  t[":Softmax"] = softmax;
  t[":ReduceMean"] = reduce_mean;
  t[":Resize"] = resize;
}

}  // namespace shrink::onnx_ops
