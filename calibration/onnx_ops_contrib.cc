// ONNX Runtime contrib ops (domain com.microsoft) beyond the quantized matrix product:
// GatherBlockQuantized, the row lookup into a block-quantized table that weight-only 4-bit models use
// for their token embedding.
//
// Semantics as ONNX Runtime 1.30's CPU kernel runs them (contrib_ops/cpu/quantization/
// gather_block_quantized.cc; every form below is checked against it in tests/test_onnx_executor.cc):
//   inputs   data (uint8 | int4 | uint4), indices (int32 | int64), scales (float), zero_points (data's type)
//   attrs    gather_axis (0), quantize_axis (1), block_size (128; a power of two >= 16), bits (4)
//   output   Gather(dequantized data, indices, gather_axis): data's shape with the gather axis replaced
//            by the indices' shape; value (code - zero_point) * scale in float.
//   uint8    MatMulNBits' packing: `bits` 2, 4 or 8 codes per element, 8 / bits codes per byte along the
//            last axis (lowest bits first), so the logical last dim is 8 / bits times the stored one;
//            gather_axis must be 0 and quantize_axis the last axis; zero points packed the same way
//            along the last axis, default 2^(bits - 1).
//   int4 / uint4   one code per logical element, any gather and quantize axes (distinct); zero points
//            with the scales' shape, default 0.
//   scales   the data's rank; on quantize_axis ceil(dim / block_size) blocks, other dims equal.
// Indices may be negative (counted from the end). Out-of-range indices: ONNX Runtime writes zeros for
// that row; the executor refuses them instead (an id past the vocabulary is a bug upstream), naming it.
#include <algorithm>
#include <cstdint>

#include "calibration/onnx_ops_util.h"

namespace shrink::onnx_ops {
namespace {
using onnx::TensorProto;
constexpr int32_t kUint4 = 21, kInt4 = 22;

Status gather_block_quantized(OpContext& c) {
  const OnnxTensor* data = c.input(0);
  const OnnxTensor* indices = c.input(1);
  const OnnxTensor* scales = c.input(2);
  const OnnxTensor* zp = c.input(3);
  if (!data || !indices || !scales) return c.fail("needs data, indices and scales");
  const bool packed = data->type == TensorProto::UINT8;
  if (!packed && data->type != kInt4 && data->type != kUint4)
    return c.fail("data type " + onnx_type_name(data->type) + " is not uint8, int4 or uint4");
  if (indices->type != TensorProto::INT32 && indices->type != TensorProto::INT64)
    return c.fail("indices type " + onnx_type_name(indices->type) + " is not int32 or int64");
  if (!scales->is_float()) return c.fail("scales must be FLOAT (the executor holds no FLOAT16)");
  if (zp && zp->type != data->type) return c.fail("zero_points type differs from data's");
  const int64_t block = attr_int(c.node, "block_size", 128), bits = attr_int(c.node, "bits", 4);
  if (block < 16 || (block & (block - 1)) != 0)
    return c.fail("block_size " + std::to_string(block) + " is not a power of two >= 16");
  if (packed ? (bits != 2 && bits != 4 && bits != 8) : bits != 4)
    return c.fail("bits " + std::to_string(bits) + " is not supported for " + onnx_type_name(data->type) + " data");
  const int64_t rank = static_cast<int64_t>(data->shape.size());
  if (rank < 1) return c.fail("data must have rank >= 1");
  SHRINK_ASSIGN(const int64_t gax, norm_axis(c, attr_int(c.node, "gather_axis", 0), rank));
  SHRINK_ASSIGN(const int64_t qax, norm_axis(c, attr_int(c.node, "quantize_axis", 1), rank));
  if (gax == qax) return c.fail("gather_axis and quantize_axis are both " + std::to_string(gax));
  if (packed && (gax != 0 || qax != rank - 1))
    return c.fail("uint8 data needs gather_axis 0 and quantize_axis " + std::to_string(rank - 1) + " (the last)");

  // Logical shape: the packed last axis holds 8 / bits codes per byte.
  const int64_t per_byte = packed ? 8 / bits : 1;
  std::vector<int64_t> dims = data->shape;
  dims.back() *= per_byte;
  if (static_cast<int64_t>(scales->shape.size()) != rank) return c.fail("scales must have data's rank");
  for (int64_t d = 0; d < rank; ++d) {
    const int64_t want = d == qax ? (dims[d] + block - 1) / block : dims[d];
    if (scales->shape[d] != want)
      return c.fail("scales " + shape_text(scales->shape) + " do not fit data " + shape_text(dims) + " with block_size " +
                    std::to_string(block) + " on axis " + std::to_string(qax));
  }
  const int64_t n_blocks = scales->shape[qax];
  const int64_t zp_row = (n_blocks * bits + 7) / 8;  // uint8 zero points: bytes per scales row
  if (zp) {
    std::vector<int64_t> want = scales->shape;
    if (packed) want.back() = zp_row;
    if (zp->shape != want) return c.fail("zero_points " + shape_text(zp->shape) + " must be " + shape_text(want));
  }

  // Row-major strides of the logical data and of the scales.
  std::vector<int64_t> dstride(rank, 1), sstride(rank, 1);
  for (int64_t d = rank - 2; d >= 0; --d) {
    dstride[d] = dstride[d + 1] * dims[d + 1];
    sstride[d] = sstride[d + 1] * scales->shape[d + 1];
  }
  const int64_t outer = dstride[0] * dims[0] / (dims[gax] * dstride[gax]);  // product of dims before gax
  const int64_t inner = dstride[gax];                                       // product of dims after gax
  const int64_t n_idx = indices->numel();

  OnnxTensor& o = c.out[0];
  o.type = TensorProto::FLOAT;
  o.shape.assign(dims.begin(), dims.begin() + gax);
  o.shape.insert(o.shape.end(), indices->shape.begin(), indices->shape.end());
  o.shape.insert(o.shape.end(), dims.begin() + gax + 1, dims.end());
  o.f.resize(static_cast<size_t>(outer * n_idx * inner));

  const int64_t mask = (int64_t{1} << bits) - 1;
  auto code_at = [&](int64_t flat) -> int64_t {
    if (!packed) return data->i[flat];  // int4 / uint4 are held unpacked (and sign-extended for int4)
    const int64_t bit = flat * bits;
    return (data->i[bit / 8] >> (bit % 8)) & mask;
  };
  auto zero_point_at = [&](int64_t s) -> int64_t {
    if (!zp) return packed ? int64_t{1} << (bits - 1) : 0;
    if (!packed) return zp->i[s];
    const int64_t row = s / n_blocks, bit = (s % n_blocks) * bits;
    return (zp->i[row * zp_row + bit / 8] >> (bit % 8)) & mask;
  };
  for (int64_t m = 0; m < outer; ++m)
    for (int64_t j = 0; j < n_idx; ++j) {
      int64_t row = indices->i[j];
      if (row < -dims[gax] || row >= dims[gax])
        return c.fail("index " + std::to_string(row) + " (position " + std::to_string(j) + ") is outside [" +
                      std::to_string(-dims[gax]) + ", " + std::to_string(dims[gax]) + ")");
      if (row < 0) row += dims[gax];
      const int64_t base = (m * dims[gax] + row) * inner;
      float* out = o.f.data() + (m * n_idx + j) * inner;
      for (int64_t e = 0; e < inner; ++e) {
        const int64_t flat = base + e;
        int64_t s = 0, rest = flat;
        for (int64_t d = 0; d < rank; ++d) {
          const int64_t p = rest / dstride[d];
          rest -= p * dstride[d];
          s += (d == qax ? p / block : p) * sstride[d];
        }
        // The same float operation as ONNX Runtime: (float)(code - zero_point) * scale.
        out[e] = static_cast<float>(code_at(flat) - zero_point_at(s)) * scales->f[s];
      }
    }
  return {};
}

}  // namespace

void add_contrib_ops(OpTable& t) { t["com.microsoft:GatherBlockQuantized"] = gather_block_quantized; }

}  // namespace shrink::onnx_ops
