#include "model/onnx_export.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/fp16.h"
#include "kernels/kernels.h"

namespace shrink {
namespace {

// ONNX IR version that goes with each default-domain opset (onnx/helper.py VERSION_TABLE):
// opset 13-14 -> IR 7, 15-18 -> IR 8, 19-20 -> IR 9, 21-22 -> IR 10, 23-24 -> IR 11.
int64_t ir_version_for(int opset) {
  if (opset <= 14) return 7;
  if (opset <= 18) return 8;
  if (opset <= 20) return 9;
  if (opset <= 22) return 10;
  return 11;
}

// Appends nodes and initializers to a GraphProto with unique value names.
class GraphBuilder {
 public:
  GraphBuilder(onnx::GraphProto* g, int opset) : g_(g), opset_(opset) {}

  std::string fresh(const std::string& hint) { return hint + "_" + std::to_string(counter_++); }

  onnx::NodeProto* node(const std::string& op, std::vector<std::string> inputs, const std::string& output,
                        const std::string& domain = "") {
    onnx::NodeProto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(output + "/" + op);
    if (!domain.empty()) n->set_domain(domain);
    for (const std::string& i : inputs) n->add_input(i);
    n->add_output(output);
    return n;
  }
  // One-output node with a generated output name.
  std::string op(const std::string& op_type, std::vector<std::string> inputs, const std::string& hint = "") {
    const std::string out = fresh(hint.empty() ? op_type : hint);
    node(op_type, std::move(inputs), out);
    return out;
  }
  static void attr_int(onnx::NodeProto* n, const std::string& name, int64_t v) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void attr_ints(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }
  static void attr_float(onnx::NodeProto* n, const std::string& name, float v) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(v);
  }

  std::string init_raw(const std::string& name, int32_t dtype, const std::vector<int64_t>& dims, const void* data,
                       size_t bytes) {
    onnx::TensorProto* t = g_->add_initializer();
    t->set_name(name);
    t->set_data_type(dtype);
    for (int64_t d : dims) t->add_dims(d);
    t->set_raw_data(data, bytes);
    weight_bytes_ += bytes;
    return name;
  }
  std::string init_f32(const std::string& name, const std::vector<int64_t>& dims, const std::vector<float>& v) {
    return init_raw(name, onnx::TensorProto::FLOAT, dims, v.data(), v.size() * sizeof(float));
  }
  std::string const_i64(const std::vector<int64_t>& v, bool scalar = false) {
    const std::string name = fresh("const_i64");
    std::vector<int64_t> dims;
    if (!scalar) dims.push_back(static_cast<int64_t>(v.size()));
    return init_raw(name, onnx::TensorProto::INT64, dims, v.data(), v.size() * sizeof(int64_t));
  }
  std::string const_f32(float v) {
    const std::string name = fresh("const_f32");
    return init_raw(name, onnx::TensorProto::FLOAT, {}, &v, sizeof v);
  }

  // Operators whose signature changed across the supported opsets.
  std::string unsqueeze(const std::string& x, const std::vector<int64_t>& axes) {
    return op("Unsqueeze", {x, const_i64(axes)});  // axes an input since opset 13
  }
  std::string reduce_mean_last(const std::string& x) {
    if (opset_ >= 18) {  // axes became an input in ReduceMean-18
      const std::string out = fresh("ReduceMean");
      attr_int(node("ReduceMean", {x, const_i64({-1})}, out), "keepdims", 1);
      return out;
    }
    const std::string out = fresh("ReduceMean");
    onnx::NodeProto* n = node("ReduceMean", {x}, out);
    attr_ints(n, "axes", {-1});
    attr_int(n, "keepdims", 1);
    return out;
  }
  std::string transpose(const std::string& x, const std::vector<int64_t>& perm) {
    const std::string out = fresh("Transpose");
    attr_ints(node("Transpose", {x}, out), "perm", perm);
    return out;
  }
  std::string reshape(const std::string& x, const std::vector<int64_t>& shape) {
    return op("Reshape", {x, const_i64(shape)});
  }
  std::string slice_last(const std::string& x, int64_t axis, int64_t start, int64_t end) {
    return op("Slice", {x, const_i64({start}), const_i64({end}), const_i64({axis})});
  }

  uint64_t weight_bytes() const { return weight_bytes_; }
  int opset() const { return opset_; }

 private:
  onnx::GraphProto* g_;
  int opset_;
  int64_t counter_ = 0;
  uint64_t weight_bytes_ = 0;
};

void add_value_info(onnx::ValueInfoProto* v, const std::string& name, int32_t elem,
                    const std::vector<std::string>& dims_sym, const std::vector<int64_t>& dims_fixed) {
  v->set_name(name);
  onnx::TypeProto_Tensor* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(elem);
  onnx::TensorShapeProto* s = t->mutable_shape();
  for (size_t i = 0; i < dims_sym.size(); ++i) {
    onnx::TensorShapeProto_Dimension* d = s->add_dim();
    if (!dims_sym[i].empty()) d->set_dim_param(dims_sym[i]);
    else d->set_dim_value(dims_fixed[i]);
  }
}

// The weight matrix's values as F32 rows (n_rows, n_cols).
std::vector<float> matrix_f32(const WeightMatrix& w) {
  std::vector<float> out(static_cast<size_t>(w.n_rows * w.n_cols));
  kernels::dequantize_rows(w.type, w.data, out.data(), w.n_rows, w.n_cols);
  return out;
}

// Row order that turns GGUF "llama" interleaved RoPE pairs into rotate-half pairs within each
// head: new row h*hd + i takes old row h*hd + 2i, new row h*hd + hd/2 + i takes old h*hd + 2i + 1.
std::vector<int64_t> rope_row_order(int64_t n_heads, int64_t hd) {
  std::vector<int64_t> order(static_cast<size_t>(n_heads * hd));
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t i = 0; i < hd / 2; ++i) {
      order[static_cast<size_t>(h * hd + i)] = h * hd + 2 * i;
      order[static_cast<size_t>(h * hd + hd / 2 + i)] = h * hd + 2 * i + 1;
    }
  return order;
}

template <class T>
std::vector<T> permute_rows(const std::vector<T>& v, const std::vector<int64_t>& order, size_t row_len) {
  if (order.empty()) return v;
  std::vector<T> out(v.size());
  for (size_t r = 0; r < order.size(); ++r)
    std::memcpy(out.data() + r * row_len, v.data() + static_cast<size_t>(order[r]) * row_len, row_len * sizeof(T));
  return out;
}

struct Exporter {
  const LlamaModel& m;
  const OnnxExportOptions& opt;
  GraphBuilder& b;
  OnnxExportReport& rep;

  // The blocks of a (n_rows, n_cols) matrix in MatMulNBits' layout for opt.bits / opt.block (n_cols a
  // multiple of the block): ggml's Q4_0 (Q8_0) blocks copied exactly when the options match them, else
  // round-to-nearest from the dequantized values. `how` gets "q4_0-exact", "q8_0-exact" or "rtn".
  NBitsMatrix nbits_blocks(const WeightMatrix& w, std::string* how) {
    if (opt.map_ggml_blocks && opt.bits == 4 && opt.block == 32 && w.type == TypeId::Q4_0) {
      *how = "q4_0-exact";
      return q4_0_to_nbits(w.data, w.n_rows, w.n_cols);
    }
    if (opt.map_ggml_blocks && opt.bits == 8 && opt.block == 32 && w.type == TypeId::Q8_0) {
      *how = "q8_0-exact";
      return q8_0_to_nbits(w.data, w.n_rows, w.n_cols);
    }
    *how = "rtn";
    const std::vector<float> rows = matrix_f32(w);
    return quantize_nbits_rtn(rows.data(), w.n_rows, w.n_cols, opt.bits, opt.block);
  }

  // The token embedding (n_vocab, n_embd) looked up by `ids` (B, S) -> (B, S, n_embd). With bits 4 or 8 and
  // n_embd a multiple of the block: ONNX Runtime's com.microsoft.GatherBlockQuantized in its uint8 form,
  // which shares MatMulNBits' conventions (the CPU kernel requires gather_axis 0 and quantize_axis last):
  //   data        uint8 (n_vocab, n_embd * bits / 8): row v's codes, low nibble first for 4 bits
  //   scales      float (n_vocab, n_embd / block)
  //   zero_points uint8 (n_vocab, ceil(n_blocks * bits / 8)), absent for ggml's exact blocks (default
  //               zero point 2^(bits-1) = ggml's offset 8 / 128)
  // so a Q4_0 (Q8_0) table looks up exactly the values shrink's engine dequantizes. A tied output
  // projection is exported separately by linear() and keeps its MatMulNBits.
  std::string embedding(const std::string& ids) {
    const WeightMatrix& w = m.token_embd;
    const int64_t V = w.n_rows, d = w.n_cols;
    OnnxExportReport::Matrix info{w.name, w.type, "f32", ""};
    const std::string out = b.fresh("embed");
    if (opt.bits != 0 && d % opt.block != 0)
      info.note = "n_embd = " + std::to_string(d) + " is not a multiple of the block " + std::to_string(opt.block);
    if (opt.bits != 0 && d % opt.block == 0) {
      std::string how;
      const NBitsMatrix q = nbits_blocks(w, &how);
      info.encoding = "gatherblockquantized-" + how;
      const int64_t n_blocks = d / opt.block;
      std::vector<std::string> in = {
          b.init_raw("model.embed_tokens.qweight", onnx::TensorProto::UINT8, {V, d * opt.bits / 8}, q.packed.data(),
                     q.packed.size()),
          ids, b.init_f32("model.embed_tokens.scales", {V, n_blocks}, q.scales)};
      if (!q.zero_points.empty())
        in.push_back(b.init_raw("model.embed_tokens.qzeros", onnx::TensorProto::UINT8,
                                {V, (n_blocks * opt.bits + 7) / 8}, q.zero_points.data(), q.zero_points.size()));
      onnx::NodeProto* n = b.node("GatherBlockQuantized", in, out, "com.microsoft");
      GraphBuilder::attr_int(n, "gather_axis", 0);
      GraphBuilder::attr_int(n, "quantize_axis", 1);
      GraphBuilder::attr_int(n, "block_size", opt.block);
      GraphBuilder::attr_int(n, "bits", opt.bits);
    } else {
      b.node("Gather", {b.init_f32("model.embed_tokens.weight", {V, d}, matrix_f32(w)), ids}, out);
    }
    rep.matrices.push_back(std::move(info));
    return out;
  }

  // y = x W^T (+ bias) for a (n_rows = N, n_cols = K) weight matrix; `row_order` permutes W's rows.
  std::string linear(const std::string& x, const WeightMatrix& w, const std::string& onnx_name,
                     const std::vector<float>& bias, const std::vector<int64_t>& row_order) {
    const int64_t N = w.n_rows, K = w.n_cols;
    OnnxExportReport::Matrix info{w.name, w.type, "f32", ""};
    std::string y;
    const bool nbits = opt.bits != 0 && K % opt.block == 0;
    if (opt.bits != 0 && !nbits)
      info.note = "K = " + std::to_string(K) + " is not a multiple of the block " + std::to_string(opt.block);
    if (nbits) {
      std::string how;
      NBitsMatrix q = nbits_blocks(w, &how);
      info.encoding = "matmulnbits-" + how;
      const int64_t n_blocks = K / opt.block, blob = opt.block * opt.bits / 8;
      q.packed = permute_rows(q.packed, row_order, static_cast<size_t>(n_blocks * blob));
      q.scales = permute_rows(q.scales, row_order, static_cast<size_t>(n_blocks));
      std::vector<std::string> in = {
          x,
          b.init_raw(onnx_name + ".qweight", onnx::TensorProto::UINT8, {N, n_blocks, blob}, q.packed.data(),
                     q.packed.size()),
          b.init_f32(onnx_name + ".scales", {N, n_blocks}, q.scales)};
      if (!q.zero_points.empty()) {
        const int64_t zp_row = (n_blocks * opt.bits + 7) / 8;
        q.zero_points = permute_rows(q.zero_points, row_order, static_cast<size_t>(zp_row));
        in.push_back(b.init_raw(onnx_name + ".qzeros", onnx::TensorProto::UINT8, {N, zp_row},
                                q.zero_points.data(), q.zero_points.size()));
      }
      y = b.fresh(onnx_name + ".out");
      onnx::NodeProto* n = b.node("MatMulNBits", in, y, "com.microsoft");
      GraphBuilder::attr_int(n, "K", K);
      GraphBuilder::attr_int(n, "N", N);
      GraphBuilder::attr_int(n, "bits", opt.bits);
      GraphBuilder::attr_int(n, "block_size", opt.block);
      // 0 (unset): the CPU kernel dequantizes B and multiplies in F32, so results depend only on
      // the stored weights, not on an activation quantization.
      GraphBuilder::attr_int(n, "accuracy_level", 0);
    } else {
      const std::vector<float> rows = permute_rows(matrix_f32(w), row_order, static_cast<size_t>(K));
      std::vector<float> wt(rows.size());  // (K, N): MatMul computes x (.., K) times (K, N)
      for (int64_t r = 0; r < N; ++r)
        for (int64_t c = 0; c < K; ++c) wt[static_cast<size_t>(c * N + r)] = rows[static_cast<size_t>(r * K + c)];
      y = b.op("MatMul", {x, b.init_f32(onnx_name + ".weight_t", {K, N}, wt)}, onnx_name + ".out");
    }
    rep.matrices.push_back(std::move(info));
    if (!bias.empty())
      y = b.op("Add", {y, b.init_f32(onnx_name + ".bias", {N}, permute_rows(bias, row_order, 1))}, onnx_name + ".biased");
    return y;
  }

  // x * rsqrt(mean(x^2) + eps) * w over the last axis (llama.cpp's rms_norm then mul).
  std::string rms_norm(const std::string& x, const std::vector<float>& w, const std::string& name, float eps_const) {
    const std::string sq = b.op("Mul", {x, x});
    const std::string ms = b.reduce_mean_last(sq);
    const std::string rs = b.op("Reciprocal", {b.op("Sqrt", {b.op("Add", {ms, b.const_f32(eps_const)})})});
    const std::string normed = b.op("Mul", {x, rs});
    return b.op("Mul", {normed, b.init_f32(name, {static_cast<int64_t>(w.size())}, w)}, name + ".out");
  }

  // Rotate-half RoPE on (B, H, S, hd) with cos/sin of shape (B, 1, S, hd/2).
  std::string rope(const std::string& x, const std::string& cos, const std::string& sin, int64_t hd) {
    const std::string x1 = b.slice_last(x, 3, 0, hd / 2), x2 = b.slice_last(x, 3, hd / 2, hd);
    const std::string o1 = b.op("Sub", {b.op("Mul", {x1, cos}), b.op("Mul", {x2, sin})});
    const std::string o2 = b.op("Add", {b.op("Mul", {x1, sin}), b.op("Mul", {x2, cos})});
    const std::string out = b.fresh("rope");
    GraphBuilder::attr_int(b.node("Concat", {o1, o2}, out), "axis", 3);
    return out;
  }
};

}  // namespace

NBitsMatrix quantize_nbits_rtn(const float* rows, int64_t n_rows, int64_t n_cols, int bits, int block) {
  const int64_t n_blocks = n_cols / block, blob = block * bits / 8, zp_row = (n_blocks * bits + 7) / 8;
  const int qmax = (1 << bits) - 1;
  NBitsMatrix m;
  m.packed.assign(static_cast<size_t>(n_rows * n_blocks * blob), 0);
  m.scales.assign(static_cast<size_t>(n_rows * n_blocks), 0.0f);
  m.zero_points.assign(static_cast<size_t>(n_rows * zp_row), 0);
  for (int64_t r = 0; r < n_rows; ++r) {
    for (int64_t bi = 0; bi < n_blocks; ++bi) {
      const float* x = rows + r * n_cols + bi * block;
      float lo = 0.0f, hi = 0.0f;  // the range always holds 0, so the zero point is a valid code
      for (int i = 0; i < block; ++i) {
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
      }
      float scale = (hi - lo) / static_cast<float>(qmax);
      int zp = 0;
      if (scale > 0) zp = std::clamp(static_cast<int>(std::lround(-lo / scale)), 0, qmax);
      else scale = 1.0f;  // an all-zero block: every code equals the zero point 0
      const float inv = 1.0f / scale;
      m.scales[static_cast<size_t>(r * n_blocks + bi)] = scale;
      uint8_t* out = m.packed.data() + (r * n_blocks + bi) * blob;
      for (int i = 0; i < block; ++i) {
        const int q = std::clamp(static_cast<int>(std::lround(x[i] * inv)) + zp, 0, qmax);
        if (bits == 8) out[i] = static_cast<uint8_t>(q);
        else out[i / 2] |= static_cast<uint8_t>(q << ((i % 2) * 4));
      }
      uint8_t* zrow = m.zero_points.data() + r * zp_row;
      if (bits == 8) zrow[bi] = static_cast<uint8_t>(zp);
      else zrow[bi / 2] |= static_cast<uint8_t>(zp << ((bi % 2) * 4));
    }
  }
  return m;
}

NBitsMatrix q4_0_to_nbits(const uint8_t* q4_0_rows, int64_t n_rows, int64_t n_cols) {
  const int64_t n_blocks = n_cols / QK4_0;
  NBitsMatrix m;
  m.packed.assign(static_cast<size_t>(n_rows * n_blocks * 16), 0);
  m.scales.resize(static_cast<size_t>(n_rows * n_blocks));
  for (int64_t bi = 0; bi < n_rows * n_blocks; ++bi) {
    block_q4_0 blk;
    std::memcpy(&blk, q4_0_rows + bi * static_cast<int64_t>(sizeof(block_q4_0)), sizeof blk);
    m.scales[static_cast<size_t>(bi)] = kernels::fp16_to_fp32(blk.d);
    uint8_t codes[QK4_0];
    for (int j = 0; j < 16; ++j) {
      codes[j] = blk.qs[j] & 0x0F;   // weight j
      codes[j + 16] = blk.qs[j] >> 4;  // weight j + 16
    }
    uint8_t* out = m.packed.data() + bi * 16;
    for (int i = 0; i < 16; ++i) out[i] = static_cast<uint8_t>(codes[2 * i] | (codes[2 * i + 1] << 4));
  }
  return m;
}

NBitsMatrix q8_0_to_nbits(const uint8_t* q8_0_rows, int64_t n_rows, int64_t n_cols) {
  const int64_t n_blocks = n_cols / QK8_0;
  NBitsMatrix m;
  m.packed.resize(static_cast<size_t>(n_rows * n_blocks * QK8_0));
  m.scales.resize(static_cast<size_t>(n_rows * n_blocks));
  for (int64_t bi = 0; bi < n_rows * n_blocks; ++bi) {
    block_q8_0 blk;
    std::memcpy(&blk, q8_0_rows + bi * static_cast<int64_t>(sizeof(block_q8_0)), sizeof blk);
    m.scales[static_cast<size_t>(bi)] = kernels::fp16_to_fp32(blk.d);
    for (int i = 0; i < QK8_0; ++i)
      m.packed[static_cast<size_t>(bi * QK8_0 + i)] = static_cast<uint8_t>(static_cast<int>(blk.qs[i]) + 128);
  }
  return m;
}

std::vector<float> dequantize_nbits(const NBitsMatrix& m, int64_t n_rows, int64_t n_cols, int bits, int block) {
  const int64_t n_blocks = n_cols / block, blob = block * bits / 8, zp_row = (n_blocks * bits + 7) / 8;
  std::vector<float> out(static_cast<size_t>(n_rows * n_cols));
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t bi = 0; bi < n_blocks; ++bi) {
      int zp = 1 << (bits - 1);
      if (!m.zero_points.empty()) {
        const uint8_t z = m.zero_points[static_cast<size_t>(r * zp_row + (bits == 8 ? bi : bi / 2))];
        zp = bits == 8 ? z : (z >> ((bi % 2) * 4)) & 0x0F;
      }
      const float s = m.scales[static_cast<size_t>(r * n_blocks + bi)];
      const uint8_t* q = m.packed.data() + (r * n_blocks + bi) * blob;
      for (int64_t i = 0; i < block; ++i) {
        const int code = bits == 8 ? q[i] : (q[i / 2] >> ((i % 2) * 4)) & 0x0F;
        out[static_cast<size_t>(r * n_cols + bi * block + i)] = static_cast<float>(code - zp) * s;
      }
    }
  return out;
}

Result<onnx::ModelProto> export_llama_onnx(const LlamaModel& model, const OnnxExportOptions& opt,
                                           OnnxExportReport* report) {
  const LlamaConfig& c = model.config;
  if (opt.bits != 0 && opt.bits != 4 && opt.bits != 8)
    return make_error("onnx export: bits must be 4 or 8 (or 0 for F32 weights), got " + std::to_string(opt.bits));
  if (opt.block < 16 || opt.block > 256 || (opt.block & (opt.block - 1)) != 0)
    return make_error("onnx export: block must be a power of two from 16 to 256 (MatMulNBits block_size), got " +
                      std::to_string(opt.block));
  if (opt.opset < 13 || opt.opset > 24)
    return make_error("onnx export: opset must be 13..24, got " + std::to_string(opt.opset));
  if (c.arch != "llama" && c.arch != "qwen2")
    return make_error("onnx export: architecture \"" + c.arch + "\" is not a Llama-family decoder (llama, qwen2)");
  if (c.head_dim % 2 != 0) return make_error("onnx export: head_dim " + std::to_string(c.head_dim) + " is odd");
  if (c.rope_scaling && c.rope_scaling->type != "linear" && model.rope_freq_factors.empty())
    return make_error("onnx export: rope scaling \"" + c.rope_scaling->type + "\" without rope_freqs factors");

  OnnxExportReport local;
  OnnxExportReport& rep = report ? *report : local;
  rep = {};

  onnx::ModelProto mp;
  mp.set_ir_version(ir_version_for(opt.opset));
  mp.set_producer_name("shrink");
  mp.set_producer_version("0.1.0");
  mp.set_doc_string("Llama-family decoder (" + c.arch + ") exported from " + opt.source_name);
  onnx::OperatorSetIdProto* os = mp.add_opset_import();
  os->set_domain("");
  os->set_version(opt.opset);
  if (opt.bits != 0) {
    onnx::OperatorSetIdProto* ms = mp.add_opset_import();
    ms->set_domain("com.microsoft");
    ms->set_version(1);
  }
  auto meta = [&](const std::string& k, const std::string& v) {
    onnx::StringStringEntryProto* e = mp.add_metadata_props();
    e->set_key(k);
    e->set_value(v);
  };
  meta("architecture", c.arch);
  meta("num_hidden_layers", std::to_string(c.n_layer));
  meta("num_attention_heads", std::to_string(c.n_head));
  meta("num_key_value_heads", std::to_string(c.n_head_kv));
  meta("head_dim", std::to_string(c.head_dim));
  meta("vocab_size", std::to_string(c.n_vocab));
  meta("rope_layout", "rotate_half");

  onnx::GraphProto* g = mp.mutable_graph();
  g->set_name(c.name.empty() ? "llama_decoder" : c.name);
  GraphBuilder b(g, opt.opset);
  Exporter ex{model, opt, b, rep};

  const int64_t hd = c.head_dim, H = c.n_head, Hkv = c.n_head_kv, group = H / Hkv;
  const int64_t dq = c.n_embd_q();
  add_value_info(g->add_input(), "input_ids", onnx::TensorProto::INT64, {"batch_size", "sequence_length"}, {});
  add_value_info(g->add_input(), "attention_mask", onnx::TensorProto::INT64, {"batch_size", "total_sequence_length"},
                 {});
  add_value_info(g->add_input(), "position_ids", onnx::TensorProto::INT64, {"batch_size", "sequence_length"}, {});
  for (int64_t i = 0; i < c.n_layer; ++i)
    for (const char* kv : {"key", "value"})
      add_value_info(g->add_input(), "past_key_values." + std::to_string(i) + "." + kv, onnx::TensorProto::FLOAT,
                     {"batch_size", "", "past_sequence_length", ""}, {0, Hkv, 0, hd});
  add_value_info(g->add_output(), "logits", onnx::TensorProto::FLOAT, {"batch_size", "sequence_length", ""},
                 {0, 0, c.n_vocab});
  for (int64_t i = 0; i < c.n_layer; ++i)
    for (const char* kv : {"key", "value"})
      add_value_info(g->add_output(), "present." + std::to_string(i) + "." + kv, onnx::TensorProto::FLOAT,
                     {"batch_size", "", "total_sequence_length", ""}, {0, Hkv, 0, hd});

  // Embedding rows (n_vocab, n_embd): Gather (F32) or GatherBlockQuantized (--bits) gives (B, S, d).
  std::string x = ex.embedding("input_ids");

  // Attention mask (B, 1, 1, S, T): 0 where key j is visible to query s (j <= P + s and
  // attention_mask[b, j] == 1), the lowest float elsewhere (exp underflows to 0 after the max
  // is subtracted; a row with no visible key stays finite).
  const std::string S = b.op("Gather", {b.op("Shape", {"input_ids"}), b.const_i64({1}, true)}, "S");
  const std::string T = b.op("Gather", {b.op("Shape", {"attention_mask"}), b.const_i64({1}, true)}, "T");
  const std::string P = b.op("Sub", {T, S}, "P");
  const std::string one = b.const_i64({1}, true);
  const std::string rows = b.op("Range", {P, T, one}, "query_pos");            // (S)
  const std::string cols = b.op("Range", {b.const_i64({0}, true), T, one}, "key_pos");  // (T)
  const std::string causal =
      b.op("LessOrEqual", {b.unsqueeze(cols, {0}), b.unsqueeze(rows, {1})}, "causal");  // (S, T)
  const std::string pad_bool = b.fresh("pad_bool");
  GraphBuilder::attr_int(b.node("Cast", {"attention_mask"}, pad_bool), "to", onnx::TensorProto::BOOL);
  const std::string visible = b.op("And", {causal, b.unsqueeze(pad_bool, {1})}, "visible");  // (B, S, T)
  const std::string mask = b.unsqueeze(
      b.op("Where", {visible, b.const_f32(0.0f), b.const_f32(std::numeric_limits<float>::lowest())}, "mask"),
      {1, 2});  // (B, 1, 1, S, T)

  // RoPE angles: position * freq_scale * theta_base^(-2i/hd) / freq_factor_i, i < hd/2, with the
  // per-pair frequency computed in float by repeated multiplication as ggml's rope cache does.
  std::vector<float> inv_freq(static_cast<size_t>(hd / 2));
  {
    const float theta_scale = std::pow(static_cast<float>(c.rope_theta), -2.0f / static_cast<float>(hd));
    const float freq_scale =
        c.rope_scaling && c.rope_scaling->type == "linear" ? static_cast<float>(1.0 / c.rope_scaling->factor) : 1.0f;
    float f = 1.0f;
    for (int64_t i = 0; i < hd / 2; ++i) {
      const float ff = model.rope_freq_factors.empty() ? 1.0f : model.rope_freq_factors[static_cast<size_t>(i)];
      inv_freq[static_cast<size_t>(i)] = freq_scale * (f / ff);
      f *= theta_scale;
    }
  }
  const std::string pos_f = b.fresh("pos_f");
  GraphBuilder::attr_int(b.node("Cast", {"position_ids"}, pos_f), "to", onnx::TensorProto::FLOAT);
  const std::string angles =
      b.op("Mul", {b.unsqueeze(pos_f, {2}), b.init_f32("rope.inv_freq", {hd / 2}, inv_freq)}, "angles");  // (B,S,hd/2)
  const std::string cos = b.unsqueeze(b.op("Cos", {angles}), {1});  // (B, 1, S, hd/2)
  const std::string sin = b.unsqueeze(b.op("Sin", {angles}), {1});

  const std::vector<int64_t> q_order = c.arch == "llama" ? rope_row_order(H, hd) : std::vector<int64_t>{};
  const std::vector<int64_t> k_order = c.arch == "llama" ? rope_row_order(Hkv, hd) : std::vector<int64_t>{};
  const float eps = static_cast<float>(c.rms_eps);
  const float kq_scale = 1.0f / std::sqrt(static_cast<float>(hd));

  for (int64_t il = 0; il < c.n_layer; ++il) {
    const LlamaLayer& L = model.layers[static_cast<size_t>(il)];
    const std::string p = "model.layers." + std::to_string(il) + ".";
    const std::string h = ex.rms_norm(x, L.attn_norm, p + "input_layernorm.weight", eps);
    const std::string q = ex.linear(h, L.wq, p + "self_attn.q_proj", L.bq, q_order);  // (B, S, dq)
    const std::string k = ex.linear(h, L.wk, p + "self_attn.k_proj", L.bk, k_order);  // (B, S, dkv)
    const std::string v = ex.linear(h, L.wv, p + "self_attn.v_proj", L.bv, {});

    const std::string qh = ex.rope(b.transpose(b.reshape(q, {0, 0, H, hd}), {0, 2, 1, 3}), cos, sin, hd);  // (B,H,S,hd)
    const std::string kh = ex.rope(b.transpose(b.reshape(k, {0, 0, Hkv, hd}), {0, 2, 1, 3}), cos, sin, hd);
    const std::string vh = b.transpose(b.reshape(v, {0, 0, Hkv, hd}), {0, 2, 1, 3});  // (B, Hkv, S, hd)
    const std::string pk = "present." + std::to_string(il) + ".key", pv = "present." + std::to_string(il) + ".value";
    GraphBuilder::attr_int(b.node("Concat", {"past_key_values." + std::to_string(il) + ".key", kh}, pk), "axis", 2);
    GraphBuilder::attr_int(b.node("Concat", {"past_key_values." + std::to_string(il) + ".value", vh}, pv), "axis", 2);

    // Grouped-query attention without copying keys: query heads as (Hkv, group), keys and values
    // as (Hkv, 1) so MatMul broadcasts each kv head over its group (head h uses kv head h / group).
    const std::string q5 = b.reshape(qh, {0, Hkv, group, -1, hd});                     // (B, Hkv, g, S, hd)
    const std::string kt5 = b.transpose(b.unsqueeze(pk, {2}), {0, 1, 2, 4, 3});        // (B, Hkv, 1, hd, T)
    const std::string scores = b.op("Mul", {b.op("MatMul", {q5, kt5}), b.const_f32(kq_scale)});  // (B,Hkv,g,S,T)
    const std::string probs = b.fresh("probs");
    GraphBuilder::attr_int(b.node("Softmax", {b.op("Add", {scores, mask})}, probs), "axis", -1);
    const std::string ctx5 = b.op("MatMul", {probs, b.unsqueeze(pv, {2})});            // (B, Hkv, g, S, hd)
    const std::string ctx = b.reshape(b.transpose(b.reshape(ctx5, {0, H, -1, hd}), {0, 2, 1, 3}), {0, 0, dq});
    const std::string attn_out = ex.linear(ctx, L.wo, p + "self_attn.o_proj", {}, {});
    x = b.op("Add", {x, attn_out}, p + "attn_residual");

    const std::string h2 = ex.rms_norm(x, L.ffn_norm, p + "post_attention_layernorm.weight", eps);
    const std::string gate = ex.linear(h2, L.ffn_gate, p + "mlp.gate_proj", {}, {});
    const std::string up = ex.linear(h2, L.ffn_up, p + "mlp.up_proj", {}, {});
    const std::string act = b.op("Mul", {b.op("Mul", {gate, b.op("Sigmoid", {gate})}), up}, p + "mlp.act");  // silu*up
    x = b.op("Add", {x, ex.linear(act, L.ffn_down, p + "mlp.down_proj", {}, {})}, p + "ffn_residual");
  }
  const std::string hf = ex.rms_norm(x, model.output_norm, "model.norm.weight", eps);
  const std::string logits = ex.linear(hf, model.output, "lm_head", {}, {});
  b.node("Identity", {logits}, "logits");
  rep.weight_bytes = b.weight_bytes();
  return mp;
}

}  // namespace shrink
