// Unicode helpers for the tokenizers: UTF-8 <-> code points the way llama.cpp's unicode.cpp
// does them (invalid bytes become U+FFFD one byte at a time), general-category flags from
// the generated table in unicode_data.cc, GPT-2's byte <-> printable-character map, and the
// pre-tokenizer split (the regexes llama.cpp's BPE vocabularies use).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace shrink::unicode {

// General-category flags, one bit per class (same bits as llama.cpp's unicode_cpt_flags).
enum CategoryFlag : uint8_t {
  kUndefined = 0x01,    // Cn (unassigned), and anything past U+10FFFF
  kNumber = 0x02,       // \p{N}
  kLetter = 0x04,       // \p{L}
  kSeparator = 0x08,    // \p{Z}
  kMark = 0x10,         // \p{M}
  kPunctuation = 0x20,  // \p{P}
  kSymbol = 0x40,       // \p{S}
  kControl = 0x80,      // \p{C}
};

struct CpFlags {
  uint8_t category = 0;  // one CategoryFlag; 0 only for "no code point" (outside the text)
  bool whitespace = false;
  bool is_letter() const { return category & kLetter; }
  bool is_number() const { return category & kNumber; }
  bool any() const { return category != 0 || whitespace; }
};

CpFlags flags(uint32_t cpt);
// Simple lowercase mapping, ASCII only: the contraction rules ('s 't 're 've 'm 'll 'd) compare
// the result with ASCII letters, and no non-ASCII code point lowercases to one of those.
uint32_t tolower_ascii(uint32_t cpt);

// Length of the UTF-8 sequence a lead byte announces (1 for continuation bytes).
size_t utf8_len(char lead);
std::vector<uint32_t> cpts_from_utf8(std::string_view utf8);
std::string cpt_to_utf8(uint32_t cpt);

// GPT-2 bytes_to_unicode(): every byte to one printable code point, as UTF-8.
const std::string& byte_to_utf8(uint8_t byte);
// The inverse; false when `utf8` is not one of the 256 characters.
bool utf8_to_byte(std::string_view utf8, uint8_t& byte);

// Splits text into pre-tokenizer words with each regex in turn (each one refines the
// previous split), then maps each word's bytes through byte_to_utf8 when byte_encode.
// The GPT-2, Llama 3 and Qwen2 regexes run as hand-written matchers (as in llama.cpp);
// others run through std::regex over a text where each non-ASCII code point is collapsed
// to one byte standing for its category.
std::vector<std::string> regex_split(const std::string& text, const std::vector<std::string>& regexes,
                                     bool byte_encode);

namespace detail {
struct CategoryRange {
  uint32_t first;
  uint8_t category;
};
extern const CategoryRange kCategoryRanges[];
extern const size_t kCategoryRangeCount;
}  // namespace detail

}  // namespace shrink::unicode
