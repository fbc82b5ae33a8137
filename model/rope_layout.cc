#include "model/rope_layout.h"

#include <algorithm>

namespace shrink {
namespace {

// Moves rows between the two orders; `to_gguf` picks the direction.
std::vector<float> permute(const std::vector<float>& in, int64_t n_head, int64_t row_len, bool to_gguf) {
  const int64_t n_rows = static_cast<int64_t>(in.size()) / row_len;
  const int64_t hd = n_rows / n_head;
  const int64_t half = hd / 2;
  std::vector<float> out(in.size());
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < half; ++i)
      for (int64_t j = 0; j < 2; ++j) {
        const int64_t gguf_row = h * hd + 2 * i + j;
        const int64_t hf_row = h * hd + j * half + i;
        const int64_t src = to_gguf ? hf_row : gguf_row;
        const int64_t dst = to_gguf ? gguf_row : hf_row;
        std::copy_n(in.begin() + src * row_len, row_len, out.begin() + dst * row_len);
      }
  return out;
}

}  // namespace

std::vector<float> permute_rows_hf_to_gguf(const std::vector<float>& hf, int64_t n_head, int64_t row_len) {
  return permute(hf, n_head, row_len, true);
}

std::vector<float> permute_rows_gguf_to_hf(const std::vector<float>& gguf, int64_t n_head, int64_t row_len) {
  return permute(gguf, n_head, row_len, false);
}

}  // namespace shrink
