// Loading (llama_vocab::impl::load), special-token splitting (tokenizer_st_partition),
// token pieces and decoding (token_to_piece, detokenize) — following llama.cpp's
// src/llama-vocab.cpp so ids and text come out the same.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "model/tokenizer_impl.h"
#include "model/unicode.h"

namespace shrink {
namespace {

// ---- pre-tokenizers (llm_tokenizer_bpe's regex_exprs) ----

const char* const kRegexGpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const char* const kRegexLlama3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kRegexQwen2 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

enum class PreFamily { kDefault, kGpt2, kLlama3, kQwen2 };

struct PreType {
  const char* name;
  PreFamily family;
  bool clean_spaces;
  bool ignore_merges;
  bool add_bos;
};

// tokenizer.ggml.pre names llama.cpp maps to one of these four regex sets, with the flags its
// loader sets for each name.
constexpr PreType kPreTypes[] = {
    {"default", PreFamily::kDefault, true, false, false},
    {"llama3", PreFamily::kLlama3, true, true, true},
    {"llama-v3", PreFamily::kLlama3, true, true, true},
    {"llama-bpe", PreFamily::kLlama3, true, true, true},
    {"falcon3", PreFamily::kLlama3, true, true, true},
    {"falcon-h1", PreFamily::kLlama3, true, true, true},
    {"pixtral", PreFamily::kLlama3, true, true, true},
    {"midm-2.0", PreFamily::kLlama3, true, true, true},
    {"lfm2", PreFamily::kLlama3, true, true, true},
    {"jina-v5-nano", PreFamily::kLlama3, true, true, true},
    {"dbrx", PreFamily::kLlama3, true, false, false},
    {"smaug-bpe", PreFamily::kLlama3, true, false, false},
    {"gpt-2", PreFamily::kGpt2, true, false, false},
    {"phi-2", PreFamily::kGpt2, true, false, false},
    {"jina-es", PreFamily::kGpt2, true, false, false},
    {"jina-de", PreFamily::kGpt2, true, false, false},
    {"gigachat", PreFamily::kGpt2, true, false, false},
    {"jina-v2-es", PreFamily::kGpt2, true, false, false},
    {"jina-v2-de", PreFamily::kGpt2, true, false, false},
    {"a.x-4.0", PreFamily::kGpt2, true, false, false},
    {"mellum", PreFamily::kGpt2, true, false, false},
    {"modern-bert", PreFamily::kGpt2, true, false, false},
    {"jina-v1-en", PreFamily::kGpt2, true, false, false},
    {"jina-v2-code", PreFamily::kGpt2, true, false, false},
    {"roberta-bpe", PreFamily::kGpt2, true, false, false},
    {"exaone4", PreFamily::kGpt2, true, false, false},
    {"mpt", PreFamily::kGpt2, true, false, false},
    {"olmo", PreFamily::kGpt2, true, false, false},
    {"jais", PreFamily::kGpt2, true, false, false},
    {"trillion", PreFamily::kGpt2, false, false, false},
    {"granite-docling", PreFamily::kGpt2, false, false, false},
    {"qwen2", PreFamily::kQwen2, false, false, false},
    {"deepseek-r1-qwen", PreFamily::kQwen2, false, false, false},
    {"kormo", PreFamily::kQwen2, false, false, false},
    {"f2llmv2", PreFamily::kQwen2, false, false, false},
    {"megrez", PreFamily::kQwen2, true, false, false},
    {"stablelm2", PreFamily::kQwen2, true, false, false},
    {"hunyuan", PreFamily::kQwen2, false, false, false},
    {"grok-2", PreFamily::kQwen2, false, false, false},
    {"solar-open", PreFamily::kQwen2, false, false, false},
};

std::vector<std::string> regexes_for(PreFamily f) {
  switch (f) {
    case PreFamily::kGpt2: return {kRegexGpt2};
    case PreFamily::kLlama3: return {kRegexLlama3};
    case PreFamily::kQwen2: return {kRegexQwen2};
    case PreFamily::kDefault:
    default:
      return {"[\\p{P}\\$\\+<=>\\^~\\|]+", kRegexGpt2, "\\p{N}+", "[0-9][0-9][0-9]"};
  }
}

uint32_t attr_from_type(TokenType t) {
  switch (t) {
    case TokenType::UNKNOWN: return kAttrUnknown;
    case TokenType::UNUSED: return kAttrUnused;
    case TokenType::NORMAL: return kAttrNormal;
    case TokenType::CONTROL: return kAttrControl;
    case TokenType::USER_DEFINED: return kAttrUserDefined;
    case TokenType::BYTE: return kAttrByte;
    default: return kAttrUndefined;
  }
}

bool c_isspace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out.append(to);
  }
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

// llama_decode_text: GPT-2 byte characters back to bytes.
std::string bpe_decode_text(const std::string& text) {
  std::string out;
  for (uint32_t cpt : unicode::cpts_from_utf8(text)) {
    const std::string utf8 = unicode::cpt_to_utf8(cpt);
    uint8_t byte;
    if (unicode::utf8_to_byte(utf8, byte)) {
      out.push_back(static_cast<char>(byte));
    } else {
      out += "[UNK_BYTE_0x";
      static const char* hex = "0123456789abcdef";
      for (char c : utf8) {
        out.push_back(hex[static_cast<uint8_t>(c) >> 4]);
        out.push_back(hex[static_cast<uint8_t>(c) & 15]);
      }
      out += text + "]";
    }
  }
  return out;
}

uint8_t byte_token_value(const std::string& text) {  // "<0xAB>" -> 0xAB
  std::string hex = text.size() >= 5 ? text.substr(3, 2) : std::string();
  return static_cast<uint8_t>(std::strtol(hex.c_str(), nullptr, 16));
}

struct Fragment {
  int32_t token = kNoToken;  // kNoToken: raw text [offset, offset + length)
  size_t offset = 0, length = 0;
};

}  // namespace

int Tokenizer::Impl::bpe_rank(const std::string& left, const std::string& right) const {
  std::string key;
  key.reserve(left.size() + 1 + right.size());
  key.append(left).push_back(' ');
  key.append(right);
  auto it = bpe_ranks.find(key);
  return it == bpe_ranks.end() ? -1 : it->second;
}

// llama_vocab::byte_to_token for SPM: "<0xXX>", else the byte itself as a token. llama.cpp
// throws when neither exists; here the unknown token stands in.
int32_t Tokenizer::Impl::spm_byte_token(uint8_t byte) const {
  static const char* hex = "0123456789ABCDEF";
  const char buf[7] = {'<', '0', 'x', hex[byte >> 4], hex[byte & 15], '>', 0};
  int32_t id = text_to_token(buf);
  if (id != kNoToken) return id;
  id = text_to_token(std::string(1, static_cast<char>(byte)));
  return id != kNoToken ? id : unk;
}

Result<Tokenizer> Tokenizer::from_vocab(const Vocab& vocab, const TokenizerOptions& options) {
  auto impl = std::make_shared<Impl>();
  Impl& t = *impl;
  const size_t n = vocab.tokens.size();
  if (n == 0) return make_error("tokenizer: the vocabulary has no tokens");
  if (n > static_cast<size_t>(INT32_MAX)) return make_error("tokenizer: the vocabulary has too many tokens");
  if (!vocab.scores.empty() && vocab.scores.size() < n)
    return make_error("tokenizer: " + std::to_string(vocab.scores.size()) + " scores for " + std::to_string(n) +
                      " tokens");
  if (!vocab.token_types.empty() && vocab.token_types.size() < n)
    return make_error("tokenizer: " + std::to_string(vocab.token_types.size()) + " token types for " +
                      std::to_string(n) + " tokens");

  // Vocabulary kind and the defaults llama.cpp's loader gives it.
  int32_t bos = kNoToken, eos = kNoToken, unk = kNoToken;
  if (vocab.model == "llama") {
    t.spm = true;
    bos = 1, eos = 2, unk = 0;
    t.add_space_prefix = true;
    t.clean_spaces = false;
    t.add_bos = true;
    t.add_eos = false;
  } else if (vocab.model == "gpt2") {
    t.spm = false;
    bos = 11, eos = 11;
    t.add_space_prefix = false;
    t.clean_spaces = true;
    const std::string pre = vocab.pre.empty() ? "default" : vocab.pre;
    const PreType* found = nullptr;
    for (const PreType& p : kPreTypes)
      if (pre == p.name) found = &p;
    if (found == nullptr)
      return make_error("tokenizer: pre-tokenizer '" + vocab.pre +
                        "' (tokenizer.ggml.pre) is not supported; supported: the default, gpt-2, llama-bpe (Llama 3) "
                        "and qwen2 regexes and their aliases");
    t.regexes = regexes_for(found->family);
    t.clean_spaces = found->clean_spaces;
    t.ignore_merges = found->ignore_merges;
    t.add_bos = found->add_bos;
    for (size_t i = 0; i < vocab.merges.size(); ++i) {
      const std::string& m = vocab.merges[i];
      const size_t sp = m.find(' ', 1);
      if (sp == std::string::npos) continue;  // llama.cpp files such a line under ("", ""), never looked up
      t.bpe_ranks.try_emplace(m, static_cast<int32_t>(i));
    }
    if (vocab.merges.empty()) return make_error("tokenizer: a gpt2 (byte-level BPE) vocabulary needs merges");
  } else {
    return make_error("tokenizer: vocabulary kind '" + vocab.model +
                      "' (tokenizer.ggml.model) is not supported; supported: llama (SentencePiece), gpt2 (byte-level BPE)");
  }
  if (vocab.add_space_prefix) t.add_space_prefix = *vocab.add_space_prefix;

  t.text.resize(n);
  t.score.assign(n, 0.0f);
  t.attr.assign(n, kAttrNormal);
  t.to_id.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    std::string word = vocab.tokens[i];
    if (word.empty()) word = "[EMPTY_" + std::to_string(i) + "]";
    t.to_id[word] = static_cast<int32_t>(i);
    t.text[i] = std::move(word);
    if (!vocab.scores.empty()) t.score[i] = vocab.scores[i];
    if (!vocab.token_types.empty()) t.attr[i] = attr_from_type(vocab.token_types[i]);
  }

  // Special ids: a default outside the vocabulary is dropped; a stored id outside it is ignored.
  const auto n32 = static_cast<int64_t>(n);
  auto settle = [&](int32_t dflt, const std::optional<int64_t>& stored) {
    int32_t id = (dflt >= 0 && dflt < n32) ? dflt : kNoToken;
    if (stored && *stored >= 0 && *stored < n32) id = static_cast<int32_t>(*stored);
    return id;
  };
  t.bos = settle(bos, vocab.bos_id);
  t.eos = settle(eos, vocab.eos_id);
  t.unk = settle(unk, vocab.unk_id);
  if (vocab.add_bos) t.add_bos = *vocab.add_bos;
  if (vocab.add_eos) t.add_eos = *vocab.add_eos;

  // Tokens llama.cpp recognises by their text and forces to CONTROL (end-of-turn, fill-in-the-
  // middle, end-of-generation). llama.cpp takes the first hit of each FIM/EOT list in hash
  // order; here the first in id order.
  auto find_text = [&](const std::string& s) { return t.text_to_token(s); };
  auto make_control = [&](int32_t id) { t.attr[id] |= kAttrControl; };
  std::vector<int32_t> eog;
  auto first_of = [&](std::initializer_list<const char*> names) {
    int32_t best = kNoToken;
    for (const char* s : names) {
      int32_t id = find_text(s);
      if (id != kNoToken && (best == kNoToken || id < best)) best = id;
    }
    if (best != kNoToken) make_control(best);
    return best;
  };
  const int32_t eot = first_of({"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
                                "<end_of_utterance>"});
  const int32_t eom = first_of({"<|eom_id|>"});
  first_of({"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>", "<PRE>",
            "\xE2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>"});
  first_of({"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81hole\xEF\xBD\x9C>", "<SUF>",
            "\xE2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>"});
  first_of({"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>", "<MID>",
            "\xE2\x96\x81<MID>", "<|code_middle|>", "<|middle|>"});
  const int32_t fim_pad = first_of({"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"});
  const int32_t fim_rep = first_of({"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"});
  const int32_t fim_sep = first_of({"<|file_sep|>"});
  for (int32_t id : {fim_pad, fim_rep, fim_sep})
    if (id != kNoToken) eog.push_back(id);
  for (size_t i = 0; i < n; ++i)
    if ((t.attr[i] & kAttrControl) && t.text[i].find("unused") != std::string::npos) t.attr[i] |= kAttrUnused;
  for (const char* s : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
                        "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
                        "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
                        "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", "[e~["}) {
    int32_t id = find_text(s);
    if (id == kNoToken) continue;
    eog.push_back(id);
    make_control(id);
  }
  for (const char* s : {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"})  // gpt-oss: always rendered
    if (int32_t id = find_text(s); id != kNoToken) t.attr[id] = kAttrUserDefined;
  for (int32_t id : {t.eos, eot, eom})
    if (id != kNoToken) eog.push_back(id);
  auto eog_has = [&](const char* s) {
    for (int32_t id : eog)
      if (t.text[id] == s) return true;
    return false;
  };
  if (((eog_has("<|return|>") && eog_has("<|call|>")) || ((eog_has("<|call|>") || eog_has("<|calls|>")) && eog_has("<|flush|>"))) &&
      eog_has("<|end|>"))
    t.attr[find_text("<|end|>")] = kAttrUserDefined;
  if (eog_has("<|tool_response>") && eog_has("</s>")) t.attr[find_text("</s>")] = kAttrNormal;

  // Texts split out before tokenizing, longest first (the same std::sort as llama.cpp, so ties
  // land in the same order).
  for (int32_t id = 0; id < static_cast<int32_t>(n); ++id)
    if (t.attr[id] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) t.special_tokens.push_back(id);
  std::sort(t.special_tokens.begin(), t.special_tokens.end(),
            [&](int32_t a, int32_t b) { return t.text[a].size() > t.text[b].size(); });

  // token_to_piece(id, special = true), computed with the attributes as they stand now.
  t.piece_cache.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t a = t.attr[i];
    std::string& piece = t.piece_cache[i];
    if (a & (kAttrUnknown | kAttrControl | kAttrUserDefined)) {
      piece = t.text[i];
    } else if (a & kAttrNormal) {
      if (t.spm) {
        piece = t.text[i];
        replace_all(piece, kSpmSpace, " ");
      } else {
        piece = bpe_decode_text(t.text[i]);
      }
    } else if (a & kAttrByte) {
      piece = std::string(1, static_cast<char>(byte_token_value(t.text[i])));
    }
  }

  // Attributes llama.cpp sets by model or pre-tokenizer name.
  std::string name = options.model_name;
  std::transform(name.begin(), name.end(), name.begin(), [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); });
  auto contains = [](const std::string& s, std::initializer_list<const char*> subs) {
    for (const char* x : subs)
      if (s.find(x) != std::string::npos) return true;
    return false;
  };
  if (contains(vocab.pre, {"jina-v2-de", "jina-v2-es", "jina-v2-code"})) {
    if (int32_t id = find_text("<mask>"); id != kNoToken) t.attr[id] |= kAttrLstrip;
  } else if (contains(name, {"phi-3", "phi3"})) {
    for (int32_t id : t.special_tokens) t.attr[id] |= kAttrRstrip;
    if (int32_t id = find_text("</s>"); id != kNoToken) t.attr[id] |= kAttrRstrip;
    for (const char* s : {"<unk>", "<s>", "<|endoftext|>"})
      if (int32_t id = find_text(s); id != kNoToken) t.attr[id] &= ~kAttrRstrip;
  } else if (contains(name, {"modern-bert"})) {
    if (int32_t id = find_text("[MASK]"); id != kNoToken) t.attr[id] |= kAttrLstrip;
  }

  Tokenizer tok;
  tok.impl_ = std::move(impl);
  return tok;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text_in, bool add_special, bool parse_special) const {
  const Impl& t = *impl_;
  const std::string raw(text_in);
  std::vector<int32_t> out;

  // tokenizer_st_partition: cut the text at every special token's text, longest tokens first.
  std::vector<Fragment> frags;
  if (!raw.empty()) frags.push_back({kNoToken, 0, raw.size()});
  for (int32_t special : t.special_tokens) {
    const uint32_t a = t.attr[special];
    if (!parse_special && (a & (kAttrControl | kAttrUnknown))) continue;  // user-defined texts split always
    const std::string& s = t.text[special];
    std::vector<Fragment> next;
    next.reserve(frags.size());
    for (const Fragment& f : frags) {
      if (f.token != kNoToken) {
        next.push_back(f);
        continue;
      }
      size_t off = f.offset, len = f.length;
      while (true) {
        const size_t match = std::string_view(raw.data(), off + len).find(s, off);
        if (match == std::string_view::npos) {
          if (len > 0) next.push_back({kNoToken, off, len});
          break;
        }
        if (match > off) {
          size_t left_len = match - off;
          if (a & kAttrLstrip)
            while (left_len > 0 && c_isspace(raw[off + left_len - 1])) --left_len;
          if (left_len > 0) next.push_back({kNoToken, off, left_len});
        }
        next.push_back({special, 0, 0});
        if (match + s.size() < off + len) {
          size_t right_off = match + s.size();
          size_t right_len = len - ((match - off) + s.size());
          if (a & kAttrRstrip)
            while (right_len > 0 && c_isspace(raw[right_off])) ++right_off, --right_len;
          off = right_off;
          len = right_len;
          if (len == 0) break;
        } else {
          break;
        }
      }
    }
    frags = std::move(next);
  }

  if (t.spm) {
    bool prev_special = true;  // a space goes in front of the first text
    if (add_special && t.add_bos && t.bos != kNoToken) out.push_back(t.bos);
    for (const Fragment& f : frags) {
      if (f.token != kNoToken) {
        out.push_back(f.token);
        prev_special = true;
        continue;
      }
      std::string text;
      if (t.add_space_prefix && prev_special) text = " ";
      text.append(raw, f.offset, f.length);
      replace_all(text, " ", kSpmSpace);
      t.encode_spm(text, out);
      prev_special = false;
    }
    if (add_special && t.add_eos && t.eos != kNoToken) out.push_back(t.eos);
  } else {
    if (add_special && t.add_bos && t.bos != kNoToken) out.push_back(t.bos);
    for (const Fragment& f : frags) {
      if (f.token != kNoToken)
        out.push_back(f.token);
      else
        t.encode_bpe(raw.substr(f.offset, f.length), out);
    }
    if (add_special && t.add_eos && t.eos != kNoToken) out.push_back(t.eos);
  }
  return out;
}

std::string Tokenizer::token_piece(int32_t id, bool special) const {
  const Impl& t = *impl_;
  if (id < 0 || id >= static_cast<int32_t>(t.text.size())) return {};
  if (!special && (t.attr[id] & (kAttrUnknown | kAttrControl))) return {};
  return t.piece_cache[id];
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool remove_special, bool unparse_special) const {
  const Impl& t = *impl_;
  size_t begin = 0, end = ids.size();
  bool remove_space = t.add_space_prefix;  // drop the space the encoder put in front
  if (remove_special && t.add_bos && end > begin && ids[begin] == t.bos) {
    remove_space = false;
    ++begin;
  }
  if (remove_special && t.add_eos && end > begin && ids[end - 1] == t.eos) --end;

  std::string text;
  for (size_t i = begin; i < end; ++i) {
    std::string piece = token_piece(ids[i], unparse_special);
    size_t skip = 0;
    if (remove_space && !piece.empty() && piece[0] == ' ') skip = 1;
    text.append(piece, skip, std::string::npos);
    remove_space = false;
  }

  if (t.clean_spaces && !text.empty()) {
    // 1: " ?", " !", " .", " ," lose the space.
    std::string a(1, text[0]);
    for (size_t i = 1; i < text.size(); ++i) {
      const char x = text[i];
      if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) a.pop_back();
      a.push_back(x);
    }
    // 2: a lone apostrophe between spaces loses both spaces.
    // llama.cpp blanks the skipped space in place, so the character after it never sees a
    // space before it.
    std::string b(1, a[0]);
    bool prev_blanked = false;
    for (size_t i = 1; i < a.size(); ++i) {
      const char x = a[i];
      const char prev = prev_blanked ? '\0' : a[i - 1];
      prev_blanked = false;
      if (x == '\'' && i + 1 < a.size() && prev == ' ' && a[i + 1] == ' ') {
        b.pop_back();
        b.push_back(x);
        ++i;  // skip the next space
        prev_blanked = true;
        continue;
      }
      b.push_back(x);
    }
    // 3: " 's", " 'm", " 're", " 've" lose the space (" 't", " 'd", " 'll" keep it).
    std::string c(1, b[0]);
    for (size_t i = 1; i < b.size(); ++i) {
      const char x = b[i];
      if (b[i - 1] == ' ' && x == '\'' && i + 1 < b.size()) {
        const char x1 = b[i + 1];
        if (x1 == 's' || x1 == 'm') {
          c.pop_back();
        } else if (x1 != 't' && x1 != 'd' && i + 2 < b.size()) {
          const char x2 = b[i + 2];
          if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) c.pop_back();
        }
      }
      c.push_back(x);
    }
    text = std::move(c);
  }
  return text;
}

std::string Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= n_tokens()) return {};
  return impl_->text[id];
}

int32_t Tokenizer::n_tokens() const { return static_cast<int32_t>(impl_->text.size()); }
bool Tokenizer::is_spm() const { return impl_->spm; }
std::optional<int32_t> Tokenizer::bos_id() const {
  return impl_->bos == kNoToken ? std::nullopt : std::optional<int32_t>(impl_->bos);
}
std::optional<int32_t> Tokenizer::eos_id() const {
  return impl_->eos == kNoToken ? std::nullopt : std::optional<int32_t>(impl_->eos);
}
bool Tokenizer::add_bos() const { return impl_->add_bos; }
bool Tokenizer::add_eos() const { return impl_->add_eos; }
uint32_t Tokenizer::token_attr(int32_t id) const {
  return (id < 0 || id >= n_tokens()) ? 0u : impl_->attr[id];
}

}  // namespace shrink
