// llama2.c "legacy" checkpoints (karpathy/llama2.c, run.c `read_checkpoint`) and its
// tokenizer files (tok*.bin, run.c `build_tokenizer`).
//
// Checkpoint layout, all little-endian: a header of 7 int32
//   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
// (a negative vocab_size means the classifier is NOT shared with the token embedding), then
// float32 arrays in this order:
//   token_embedding (vocab, dim)        rms_att (L, dim)
//   wq (L, dim, dim)                    wk (L, kv_dim, dim)       wv (L, kv_dim, dim)
//   wo (L, dim, dim)                    rms_ffn (L, dim)
//   w1 (L, hidden, dim)                 w2 (L, dim, hidden)       w3 (L, hidden, dim)
//   rms_final (dim)
//   freq_cis_real, freq_cis_imag        (seq_len * head_size / 2 each; unused, skipped)
//   wcls (vocab, dim)                   only when not shared
// where head_size = dim / n_heads and kv_dim = head_size * n_kv_heads. The q/k rows are in the
// interleaved-pair RoPE order GGUF "llama" uses, so they need no permutation.
//
// The reader maps the file and hands out views; it does no arithmetic on the values.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"
#include "formats/mapped_file.h"
#include "formats/vocab.h"

namespace shrink {

struct Llama2cHeader {
  int32_t dim = 0;
  int32_t hidden_dim = 0;
  int32_t n_layers = 0;
  int32_t n_heads = 0;
  int32_t n_kv_heads = 0;
  int32_t vocab_size = 0;  // absolute value of the stored field
  int32_t seq_len = 0;
  bool shared_classifier = true;  // stored vocab_size > 0

  int32_t head_size() const { return dim / n_heads; }
  int32_t kv_dim() const { return head_size() * n_kv_heads; }
};

// The weights of a checkpoint, in file order.
enum class Llama2cWeight {
  token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, wcls,
};
const char* llama2c_weight_name(Llama2cWeight w);
// True for the weights stored with a leading n_layers dimension.
bool llama2c_weight_is_per_layer(Llama2cWeight w);

// A read-only view of float32 values inside the mapped checkpoint. `shape` lists the first
// `rank` dimensions, outermost first (row-major, as llama2.c stores them).
struct Llama2cView {
  const float* data = nullptr;
  uint64_t count = 0;  // number of floats
  std::array<int64_t, 3> shape{0, 0, 0};
  int rank = 0;
};

// The 7-int32 header, validated: every field positive, dim % n_heads == 0,
// n_heads % n_kv_heads == 0, head_size even (RoPE pairs), and each field under a generous
// limit so that no size computation can overflow. `file` names the file in errors.
Result<Llama2cHeader> parse_llama2c_header(const uint8_t* data, size_t size, const std::string& file);

// Exact file size the header implies, in bytes (overflow-checked).
Result<uint64_t> llama2c_expected_file_size(const Llama2cHeader& h);

class Llama2cCheckpoint {
 public:
  // Maps `path`, validates the header and requires the file size to equal exactly the size
  // the header implies (a mismatch error names both byte counts).
  static Result<Llama2cCheckpoint> open(const std::string& path);

  const Llama2cHeader& header() const { return header_; }
  const std::string& path() const { return file_->path(); }
  // The mapping the views point into; hold it to keep the views valid.
  const std::shared_ptr<MappedFile>& file() const { return file_; }

  Llama2cView weight(Llama2cWeight w) const;
  Llama2cView token_embedding() const { return weight(Llama2cWeight::token_embedding); }  // (vocab, dim)
  Llama2cView rms_att() const { return weight(Llama2cWeight::rms_att); }                  // (L, dim)
  Llama2cView wq() const { return weight(Llama2cWeight::wq); }                            // (L, dim, dim)
  Llama2cView wk() const { return weight(Llama2cWeight::wk); }                            // (L, kv_dim, dim)
  Llama2cView wv() const { return weight(Llama2cWeight::wv); }                            // (L, kv_dim, dim)
  Llama2cView wo() const { return weight(Llama2cWeight::wo); }                            // (L, dim, dim)
  Llama2cView rms_ffn() const { return weight(Llama2cWeight::rms_ffn); }                  // (L, dim)
  Llama2cView w1() const { return weight(Llama2cWeight::w1); }                            // (L, hidden, dim)
  Llama2cView w2() const { return weight(Llama2cWeight::w2); }                            // (L, dim, hidden)
  Llama2cView w3() const { return weight(Llama2cWeight::w3); }                            // (L, hidden, dim)
  Llama2cView rms_final() const { return weight(Llama2cWeight::rms_final); }              // (dim)
  // (vocab, dim); the same memory as token_embedding() when the classifier is shared.
  Llama2cView wcls() const { return weight(Llama2cWeight::wcls); }

  // Layer `layer`'s slice of a per-layer weight: the leading L dimension dropped, e.g. wq ->
  // (dim, dim). Errors for a weight without a layer dimension or a layer out of range.
  Result<Llama2cView> layer(Llama2cWeight w, int32_t layer) const;

 private:
  Llama2cCheckpoint() = default;
  std::shared_ptr<MappedFile> file_;
  Llama2cHeader header_;
  std::array<Llama2cView, 12> views_{};
};

// A llama2.c tokenizer file (tok*.bin): int32 max_token_length, then per token
// float32 score, int32 length, `length` bytes. Exactly `expected_vocab_size` tokens must be
// present and nothing may follow them.
//
// Mapped to a Vocab the way llama.cpp's examples/convert-llama2c-to-ggml `load_vocab` does:
// id 0 becomes "<unk>" (UNKNOWN), id 1 "<s>" (CONTROL), id 2 "</s>" (CONTROL) whatever their
// stored text; an empty text is CONTROL; a text that sscanf("<0x%02hhX>") accepts is BYTE;
// everything else NORMAL; every ' ' becomes U+2581. Scores are kept as stored. unk/bos/eos
// ids are 0/1/2; model "llama"; `pre` stays empty and pad unset, as that converter writes no
// pre key and pad = -1 (none).
Result<Vocab> read_llama2c_tokenizer(const std::string& path, int64_t expected_vocab_size);

}  // namespace shrink
