// Row order of the q and k projections. Hugging Face Llama checkpoints rotate halves
// (RoPE pairs element i with i + head_dim/2); GGUF "llama" and llama2.c rotate adjacent
// pairs (2i, 2i+1). Converting a checkpoint means permuting the output rows of q_proj and
// k_proj (and their biases) within each head; llama.cpp's convert_hf_to_gguf.py does the same.
#pragma once

#include <cstdint>
#include <vector>

namespace shrink {

// rows: n_head * head_dim rows of `row_len` values each (row_len = 1 for a bias).
// GGUF row h*hd + 2*i + j  <-  HF row h*hd + j*(hd/2) + i,  for j in {0,1}, i < hd/2.
std::vector<float> permute_rows_hf_to_gguf(const std::vector<float>& hf, int64_t n_head, int64_t row_len);
// The inverse: GGUF/llama2.c interleaved order back to Hugging Face's rotate-half order.
std::vector<float> permute_rows_gguf_to_hf(const std::vector<float>& gguf, int64_t n_head, int64_t row_len);

}  // namespace shrink
