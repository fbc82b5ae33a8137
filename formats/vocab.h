// Vocab: a tokenizer's tables as GGUF's `tokenizer.ggml.*` keys carry them. Filled by the
// readers of tokenizer.model (SentencePiece), tokenizer.json (+ tokenizer_config.json),
// llama2.c tok*.bin and GGUF metadata; written to GGUF by the model layer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace shrink {

// llama.cpp's token attributes as stored in tokenizer.ggml.token_type (llama-vocab.h).
enum class TokenType : int32_t {
  UNDEFINED = 0, NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6,
};

struct Vocab {
  std::string model;  // tokenizer.ggml.model: "llama" (SentencePiece), "gpt2" (byte-level BPE)
  std::string pre;    // tokenizer.ggml.pre: "default", "llama-bpe", "qwen2", "gpt-2", ... (BPE only)
  std::vector<std::string> tokens;
  std::vector<float> scores;            // empty when the source has none
  std::vector<TokenType> token_types;
  std::vector<std::string> merges;      // BPE: "a b" pairs, rank order
  std::optional<int64_t> bos_id, eos_id, unk_id, pad_id;
  std::optional<bool> add_bos, add_eos, add_space_prefix;
  std::optional<std::string> chat_template;
  size_t size() const { return tokens.size(); }
};

}  // namespace shrink
