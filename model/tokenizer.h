// Tokenizer: text <-> token ids exactly as llama.cpp's llama_vocab does it (src/llama-vocab.cpp),
// for the two vocabulary kinds shrink writes:
//   "llama" — SentencePiece BPE (llm_tokenizer_spm): spaces become U+2581, a space is put in
//             front of the text (add_space_prefix), adjacent symbols merge highest score first,
//             pieces outside the vocabulary fall back to <0xXX> byte tokens;
//   "gpt2"  — byte-level BPE (llm_tokenizer_bpe): a pre-tokenizer regex splits the text into
//             words (pre types "default", "gpt-2", "llama-bpe"/Llama 3, "qwen2" and their
//             aliases), each word's bytes map through GPT-2's bytes_to_unicode, merges apply in
//             rank order.
// Control, unknown and user-defined token texts are split out before either runs (user-defined
// ones always, control/unknown ones only when parse_special), as llama.cpp does.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "formats/vocab.h"

namespace shrink {

struct TokenizerOptions {
  // general.name of the model. llama.cpp gives some tokens extra attributes by model name
  // (Phi-3: control and user-defined tokens swallow the white space after them).
  std::string model_name;
};

class Tokenizer {
 public:
  // Errors name the vocabulary kind or pre-tokenizer that is not supported, or a table that
  // does not fit (scores/types shorter than tokens, no tokens).
  static Result<Tokenizer> from_vocab(const Vocab& vocab, const TokenizerOptions& options = {});

  // add_special: BOS/EOS as the vocabulary's add_bos/add_eos flags say.
  // parse_special: control/unknown token texts in `text` become those tokens.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

  // llama_detokenize: remove_special drops a leading BOS / trailing EOS the vocabulary adds;
  // unparse_special renders control/unknown tokens as their text (otherwise they vanish).
  std::string decode(const std::vector<int32_t>& ids, bool remove_special = false,
                     bool unparse_special = false) const;

  // The token's string as stored in the vocabulary ("▁the", "Ġthe", "<0x0A>", "<s>").
  std::string token_text(int32_t id) const;
  // The bytes the token stands for (llama_token_to_piece with special = true): "▁" -> " ",
  // GPT-2 byte characters -> bytes, <0xXX> -> that byte, control tokens -> their text.
  std::string token_piece(int32_t id, bool special = true) const;

  int32_t n_tokens() const;
  bool is_spm() const;  // "llama" vocabulary (else byte-level BPE)
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  bool add_bos() const;
  bool add_eos() const;
  // llama.cpp's token attributes (LLAMA_TOKEN_ATTR_* bits) after its load-time fix-ups.
  uint32_t token_attr(int32_t id) const;

  struct Impl;

 private:
  std::shared_ptr<const Impl> impl_;
};

}  // namespace shrink
