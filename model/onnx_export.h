// A Llama-family decoder ("llama" and "qwen2" as GGUF names them) written as an ONNX graph that
// ONNX Runtime runs: prompt processing and incremental decoding with a KV cache, in the input and
// output names Hugging Face optimum and ONNX Runtime GenAI use for decoder-only models.
//
// Graph interface (B = batch_size, S = sequence_length, P = past_sequence_length, T = P + S):
//   inputs   input_ids                    int64 (B, S)
//            attention_mask               int64 (B, T)    1 = attend, 0 = padding
//            position_ids                 int64 (B, S)    RoPE position of each new token
//            past_key_values.{i}.key      float (B, n_head_kv, P, head_dim)   P may be 0
//            past_key_values.{i}.value    float (B, n_head_kv, P, head_dim)
//   outputs  logits                       float (B, S, n_vocab)
//            present.{i}.key / .value     float (B, n_head_kv, T, head_dim)
// The query at index s attends to key j when j <= P + s and attention_mask[b, j] == 1.
//
// Only standard ONNX operators (opset 13..24) are used for the layers, so every runtime with those
// opsets runs the F32 graph: Gather, MatMul, Mul/Add/Sub/Div, ReduceMean, Sqrt, Sigmoid, Softmax,
// Cos/Sin, Slice/Concat, Reshape/Transpose/Unsqueeze, Range/LessOrEqual/And/Where for the mask.
// With bits 4 or 8 the weight products become ONNX Runtime's com.microsoft.MatMulNBits (blocked,
// (q - zero_point) * scale per block of `block` weights along K), and the token embedding lookup becomes
// com.microsoft.GatherBlockQuantized with the same blocks along n_embd.
//
// RoPE: the graph rotates halves (x_i with x_{i + head_dim/2}, Hugging Face's rotate_half). For
// GGUF "llama", whose q/k rows pair adjacent elements (2i, 2i+1), the exporter permutes the rows of
// attn_q/attn_k (and their biases) within each head so that old 2i -> new i and old 2i+1 ->
// new i + head_dim/2; q.k is unchanged by a permutation applied to both, so the logits are
// llama.cpp's. The keys in present.* are therefore in rotate-half order (as optimum's are).
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "model/llama_model.h"

namespace shrink {

struct OnnxExportOptions {
  int bits = 0;     // 0: F32 weights and MatMul; 4 or 8: com.microsoft.MatMulNBits
  int block = 32;   // weights per quantization block along K: a power of two in 16..256
  int opset = 21;   // default-domain opset, 13..24
  // Block 32 with bits 4 (8): matrices stored as ggml Q4_0 (Q8_0) are copied block for block
  // (scale = d, the default zero point 8 (128) = ggml's offset), so the ONNX weights equal the
  // GGUF's exactly instead of being re-quantized from the dequantized values.
  bool map_ggml_blocks = true;
  std::string source_name;  // recorded in the model's doc_string
};

// What became of each weight matrix (for the command's summary and the tests).
struct OnnxExportReport {
  struct Matrix {
    std::string name;      // GGUF name, e.g. "blk.0.attn_q.weight"
    TypeId source_type = TypeId::F32;
    std::string encoding;  // "f32", "matmulnbits-rtn", "matmulnbits-q4_0-exact", "matmulnbits-q8_0-exact",
                           // "gatherblockquantized-rtn" / "-q4_0-exact" / "-q8_0-exact" (the token embedding)
    std::string note;      // why a matrix stayed F32 under --bits
  };
  std::vector<Matrix> matrices;
  uint64_t weight_bytes = 0;  // bytes of all initializers
};

// Builds the decoder graph for `model`. Errors name the option or tensor and the rule broken.
Result<onnx::ModelProto> export_llama_onnx(const LlamaModel& model, const OnnxExportOptions& options,
                                           OnnxExportReport* report = nullptr);

// Round-to-nearest blocked quantization in MatMulNBits' layout, from row-major F32 rows
// (n_rows = N outputs, n_cols = K inputs, n_cols a multiple of block). Asymmetric per block: the
// range [min(0, lo), max(0, hi)] maps to codes 0 .. 2^bits - 1, zero point = round(-min / scale).
// packed:      (N, K / block, block * bits / 8) bytes, codes low-nibble first for 4 bits
// scales:      (N, K / block)
// zero_points: (N, ceil((K / block) * bits / 8)) bytes, packed like the codes
struct NBitsMatrix {
  std::vector<uint8_t> packed;
  std::vector<float> scales;
  std::vector<uint8_t> zero_points;  // empty: the default zero point 2^(bits-1)
};
NBitsMatrix quantize_nbits_rtn(const float* rows, int64_t n_rows, int64_t n_cols, int bits, int block);
// ggml Q4_0 rows (n_cols a multiple of 32) re-packed for MatMulNBits bits=4, block_size=32 with
// the default zero point 8: scale = d, codes in order (ggml stores weight j and j+16 in one byte).
NBitsMatrix q4_0_to_nbits(const uint8_t* q4_0_rows, int64_t n_rows, int64_t n_cols);
// ggml Q8_0 rows re-packed for bits=8, block_size=32 with the default zero point 128: scale = d,
// code = q + 128 (q in [-127, 127]).
NBitsMatrix q8_0_to_nbits(const uint8_t* q8_0_rows, int64_t n_rows, int64_t n_cols);
// Values a MatMulNBits matrix stands for, (n_rows, n_cols) row-major.
std::vector<float> dequantize_nbits(const NBitsMatrix& m, int64_t n_rows, int64_t n_cols, int bits, int block);

}  // namespace shrink
