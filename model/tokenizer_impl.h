// Internal state of a Tokenizer, shared by tokenizer.cc (loading, special tokens, decoding),
// tokenizer_spm.cc and tokenizer_bpe.cc. Not part of the model/ interface.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/tokenizer.h"

namespace shrink {

// llama.h LLAMA_TOKEN_ATTR_* bits.
enum TokenAttr : uint32_t {
  kAttrUndefined = 0,
  kAttrUnknown = 1u << 0,
  kAttrUnused = 1u << 1,
  kAttrNormal = 1u << 2,
  kAttrControl = 1u << 3,
  kAttrUserDefined = 1u << 4,
  kAttrByte = 1u << 5,
  kAttrNormalized = 1u << 6,
  kAttrLstrip = 1u << 7,
  kAttrRstrip = 1u << 8,
  kAttrSingleWord = 1u << 9,
};

constexpr int32_t kNoToken = -1;  // LLAMA_TOKEN_NULL

struct Tokenizer::Impl {
  bool spm = true;
  std::vector<std::string> regexes;  // BPE pre-tokenizer, applied in order
  bool ignore_merges = false;        // BPE: a word that is a whole token is taken as is (Llama 3)
  bool add_space_prefix = false;
  bool add_bos = false, add_eos = false;
  bool clean_spaces = false;  // decode: clean_up_tokenization_spaces
  int32_t bos = kNoToken, eos = kNoToken, unk = kNoToken;

  std::vector<std::string> text;  // id -> vocabulary string
  std::vector<float> score;
  std::vector<uint32_t> attr;
  std::unordered_map<std::string, int32_t> to_id;
  std::unordered_map<std::string, int32_t> bpe_ranks;  // "left right" -> rank (first listed wins)
  std::vector<int32_t> special_tokens;                 // control/user-defined/unknown, longest text first
  std::vector<std::string> piece_cache;                // token_to_piece(id, special = true)

  int32_t text_to_token(const std::string& s) const {
    auto it = to_id.find(s);
    return it == to_id.end() ? kNoToken : it->second;
  }
  int bpe_rank(const std::string& left, const std::string& right) const;
  int32_t spm_byte_token(uint8_t byte) const;

  void encode_spm(const std::string& text, std::vector<int32_t>& out) const;  // tokenizer_spm.cc
  void encode_bpe(const std::string& text, std::vector<int32_t>& out) const;  // tokenizer_bpe.cc
};

}  // namespace shrink
