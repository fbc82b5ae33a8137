#include "model/unicode.h"

#include <algorithm>
#include <array>
#include <map>
#include <regex>
#include <stdexcept>

namespace shrink::unicode {
namespace {

constexpr uint32_t kMaxCodepoint = 0x110000;
constexpr uint32_t kOutOfRange = 0xFFFFFFFF;

// <White_Space> of the UCD's PropList.txt (the same fixed list llama.cpp uses for \s).
bool is_whitespace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

uint8_t category_of(uint32_t cpt) {
  if (cpt >= kMaxCodepoint) return kUndefined;
  const detail::CategoryRange* begin = detail::kCategoryRanges;
  const detail::CategoryRange* end = begin + detail::kCategoryRangeCount;
  const detail::CategoryRange* it =
      std::upper_bound(begin, end, cpt, [](uint32_t c, const detail::CategoryRange& r) { return c < r.first; });
  return (it - 1)->category;
}

struct FlagCache {
  std::array<CpFlags, 256> low{};
  FlagCache() {
    for (uint32_t c = 0; c < 256; ++c) low[c] = CpFlags{category_of(c), is_whitespace(c)};
  }
};

// Decodes one code point at `offset` the way llama.cpp's unicode_cpt_from_utf8 does: no
// overlong or surrogate checks; a bad lead byte or a truncated sequence throws.
uint32_t decode_one(std::string_view s, size_t& offset) {
  const auto b = [&](size_t i) { return static_cast<uint8_t>(s[offset + i]); };
  const auto cont = [&](size_t i) { return offset + i < s.size() && (b(i) & 0xC0) == 0x80; };
  const uint8_t b0 = b(0);
  if (!(b0 & 0x80)) {
    offset += 1;
    return b0;
  }
  if (!(b0 & 0x40)) throw std::invalid_argument("invalid character");
  if (!(b0 & 0x20)) {
    if (!cont(1)) throw std::invalid_argument("invalid character");
    uint32_t r = ((b0 & 0x1Fu) << 6) | (b(1) & 0x3Fu);
    offset += 2;
    return r;
  }
  if (!(b0 & 0x10)) {
    if (!cont(1) || !cont(2)) throw std::invalid_argument("invalid character");
    uint32_t r = ((b0 & 0x0Fu) << 12) | ((b(1) & 0x3Fu) << 6) | (b(2) & 0x3Fu);
    offset += 3;
    return r;
  }
  if (!(b0 & 0x08)) {
    if (!cont(1) || !cont(2) || !cont(3)) throw std::invalid_argument("invalid character");
    uint32_t r = ((b0 & 0x07u) << 18) | ((b(1) & 0x3Fu) << 12) | ((b(2) & 0x3Fu) << 6) | (b(3) & 0x3Fu);
    offset += 4;
    return r;
  }
  throw std::invalid_argument("invalid character");
}

// ---- hand-written matchers for the three regexes llama.cpp special-cases ----

enum class Matcher { kGpt2, kLlama3, kQwen2 };

// GPT-2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// Qwen2:   the Llama 3 regex with \p{N} in place of \p{N}{1,3}.
// Each takes the previous split's word lengths (in code points) and refines them.
std::vector<size_t> split_custom(const std::vector<uint32_t>& cpts, const std::vector<size_t>& offsets, Matcher m) {
  std::vector<size_t> out;
  out.reserve(offsets.size());
  size_t start = 0;
  for (size_t offset : offsets) {
    const size_t ini = start, end = start + offset;
    start = end;
    auto cpt_at = [&](size_t pos) -> uint32_t { return (ini <= pos && pos < end) ? cpts[pos] : kOutOfRange; };
    auto flags_at = [&](size_t pos) -> CpFlags { return (ini <= pos && pos < end) ? flags(cpts[pos]) : CpFlags{}; };
    size_t prev_end = ini;
    auto add = [&](size_t e) -> size_t {
      size_t len = e - prev_end;
      if (len > 0) out.push_back(len);
      prev_end = e;
      return len;
    };
    auto lower = [&](uint32_t c) { return m == Matcher::kGpt2 ? c : tolower_ascii(c); };

    for (size_t pos = ini; pos < end;) {
      const uint32_t cpt = cpt_at(pos);
      const CpFlags f = flags_at(pos);

      // 's 't 're 've 'm 'll 'd (case-insensitive except for GPT-2)
      if (cpt == '\'' && pos + 1 < end) {
        uint32_t n1 = lower(cpt_at(pos + 1));
        if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
          pos += add(pos + 2);
          continue;
        }
        if (pos + 2 < end) {
          uint32_t n2 = lower(cpt_at(pos + 2));
          if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
            pos += add(pos + 3);
            continue;
          }
        }
      }

      if (m == Matcher::kGpt2) {
        CpFlags f2 = cpt == ' ' ? flags_at(pos + 1) : f;
        if (f2.is_letter()) {  // ' ?\p{L}+'
          pos += (cpt == ' ');
          while (f2.is_letter()) f2 = flags_at(++pos);
          add(pos);
          continue;
        }
        if (f2.is_number()) {  // ' ?\p{N}+'
          pos += (cpt == ' ');
          while (f2.is_number()) f2 = flags_at(++pos);
          add(pos);
          continue;
        }
        if (!(f2.whitespace || f2.is_letter() || f2.is_number()) && f2.any()) {  // ' ?[^\s\p{L}\p{N}]+'
          pos += (cpt == ' ');
          while (!(f2.whitespace || f2.is_letter() || f2.is_number()) && f2.any()) f2 = flags_at(++pos);
          add(pos);
          continue;
        }
        size_t n_ws = 0;
        while (flags_at(pos + n_ws).whitespace) ++n_ws;
        if (n_ws > 1 && cpt_at(pos + n_ws) != kOutOfRange) {  // '\s+(?!\S)'
          pos += n_ws - 1;
          add(pos);
          continue;
        }
        if (n_ws > 0) {  // '\s+'
          pos += n_ws;
          add(pos);
          continue;
        }
        add(++pos);
        continue;
      }

      // '[^\r\n\p{L}\p{N}]?\p{L}+'
      if (!(cpt == '\r' || cpt == '\n' || f.is_number())) {
        if (f.is_letter() || flags_at(pos + 1).is_letter()) {
          ++pos;
          while (flags_at(pos).is_letter()) ++pos;
          add(pos);
          continue;
        }
      }
      if (f.is_number()) {
        if (m == Matcher::kLlama3) {  // '\p{N}{1,3}'
          size_t first = pos;
          while (flags_at(pos).is_number()) {
            if (++pos - first >= 3) {
              add(pos);
              first = pos;
            }
          }
          add(pos);
        } else {  // '\p{N}'
          ++pos;
          add(pos);
        }
        continue;
      }
      // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
      CpFlags f2 = cpt == ' ' ? flags_at(pos + 1) : f;
      if (!(f2.whitespace || f2.is_letter() || f2.is_number()) && f.any()) {
        pos += (cpt == ' ');
        while (!(f2.whitespace || f2.is_letter() || f2.is_number()) && f2.any()) f2 = flags_at(++pos);
        uint32_t c2 = cpt_at(pos);
        while (c2 == '\r' || c2 == '\n') c2 = cpt_at(++pos);
        add(pos);
        continue;
      }
      size_t n_ws = 0, last_rn_end = 0;
      while (flags_at(pos + n_ws).whitespace) {
        uint32_t c2 = cpt_at(pos + n_ws);
        if (c2 == '\r' || c2 == '\n') last_rn_end = pos + n_ws + 1;
        ++n_ws;
      }
      if (last_rn_end > 0) {  // '\s*[\r\n]+'
        pos = last_rn_end;
        add(pos);
        continue;
      }
      if (n_ws > 1 && cpt_at(pos + n_ws) != kOutOfRange) {  // '\s+(?!\S)'
        pos += n_ws - 1;
        add(pos);
        continue;
      }
      if (n_ws > 0) {  // '\s+'
        pos += n_ws;
        add(pos);
        continue;
      }
      add(++pos);
    }
  }
  return out;
}

// ---- general regexes through std::regex ----

template <typename CharT>
std::vector<size_t> split_stl(const std::basic_string<CharT>& text, const std::basic_string<CharT>& regex,
                              const std::vector<size_t>& offsets) {
  using It = typename std::basic_string<CharT>::const_iterator;
  std::basic_regex<CharT> expr(regex, std::regex_constants::optimize | std::regex_constants::nosubs);
  std::vector<size_t> out;
  out.reserve(offsets.size());
  size_t start = 0;
  for (size_t offset : offsets) {
    std::regex_iterator<It> it(text.begin() + static_cast<std::ptrdiff_t>(start),
                               text.begin() + static_cast<std::ptrdiff_t>(start + offset), expr);
    std::regex_iterator<It> end;
    int64_t start_idx = 0;
    for (; it != end; ++it) {
      const auto& match = *it;
      if (match.position() > start_idx) out.push_back(static_cast<size_t>(match.position() - start_idx));
      out.push_back(static_cast<size_t>(match.length()));
      start_idx = match.position() + match.length();
    }
    if (start_idx < static_cast<int64_t>(offset)) out.push_back(offset - static_cast<size_t>(start_idx));
    start += offset;
  }
  return out;
}

// The collapsed-text scheme (llama.cpp PR 6920): each non-ASCII code point becomes one byte
// naming its category, and each \p{..} in the regex a bracket of that byte plus the ASCII
// members of the category, so std::regex (bytes only) can run category regexes.
struct CollapsedCategory {
  const char* pattern;
  uint8_t category;
};
constexpr CollapsedCategory kCollapsedPatterns[] = {
    {"\\p{N}", kNumber}, {"\\p{L}", kLetter}, {"\\p{P}", kPunctuation}, {"\\p{M}", kMark}, {"\\p{S}", kSymbol},
    {"\\p{Lu}", kLetter}, {"\\p{Ll}", kLetter}, {"\\p{Lt}", kLetter}, {"\\p{Lm}", kLetter}, {"\\p{Lo}", kLetter},
};

char collapsed_byte(uint8_t category) {
  switch (category) {
    case kNumber: return static_cast<char>(0xD1);
    case kLetter: return static_cast<char>(0xD2);
    case kPunctuation: return static_cast<char>(0xD3);
    case kMark: return static_cast<char>(0xD4);
    case kSymbol: return static_cast<char>(0xD5);
    default: return static_cast<char>(0xD0);
  }
}

const char* ascii_members(uint8_t category) {
  switch (category) {
    case kNumber: return "\x30-\x39";
    case kLetter: return "\x41-\x5A\x61-\x7A";
    case kPunctuation: return "\x21-\x23\x25-\x2A\x2C-\x2F\x3A-\x3B\x3F-\x40\\\x5B-\\\x5D\x5F\\\x7B\\\x7D";
    case kSymbol: return "\\\x24\\\x2B\x3C-\x3E\x5E\x60\\\x7C\\\x7E";
    default: return "";
  }
}

bool uses_categories(const std::string& regex) {
  for (const CollapsedCategory& c : kCollapsedPatterns)
    if (regex.find(c.pattern) != std::string::npos) return true;
  return false;
}

std::string collapse_regex(const std::string& regex) {
  for (uint32_t c : cpts_from_utf8(regex))
    if (c >= 128) throw std::runtime_error("regex mixes unicode categories and non-ASCII characters: " + regex);
  std::string out;
  bool inside = false;
  for (size_t i = 0; i < regex.size(); ++i) {
    if (regex[i] == '[' && (i == 0 || regex[i - 1] != '\\')) {
      out += '[';
      inside = true;
      continue;
    }
    if (inside && regex[i] == ']' && regex[i - 1] != '\\') {
      out += ']';
      inside = false;
      continue;
    }
    if (regex[i] == '\\' && i + 3 < regex.size() && regex[i + 1] == 'p' && regex[i + 2] == '{') {
      size_t close = regex.find('}', i + 3);
      if (close != std::string::npos && close <= i + 10) {
        const std::string pat = regex.substr(i, close - i + 1);
        for (const CollapsedCategory& c : kCollapsedPatterns) {
          if (pat != c.pattern) continue;
          if (!inside) out += '[';
          out += collapsed_byte(c.category);
          out += ascii_members(c.category);
          if (!inside) out += ']';
          i = close;
          goto next;
        }
      }
    }
    out += regex[i];
  next:;
  }
  return out;
}

}  // namespace

CpFlags flags(uint32_t cpt) {
  static const FlagCache cache;
  if (cpt < 256) return cache.low[cpt];
  return CpFlags{category_of(cpt), is_whitespace(cpt)};
}

uint32_t tolower_ascii(uint32_t cpt) { return (cpt >= 'A' && cpt <= 'Z') ? cpt + 32 : cpt; }

size_t utf8_len(char lead) {
  static constexpr size_t kLookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLookup[static_cast<uint8_t>(lead) >> 4];
}

std::vector<uint32_t> cpts_from_utf8(std::string_view utf8) {
  std::vector<uint32_t> out;
  out.reserve(utf8.size());
  size_t offset = 0;
  while (offset < utf8.size()) {
    try {
      out.push_back(decode_one(utf8, offset));
    } catch (const std::invalid_argument&) {
      ++offset;
      out.push_back(0xFFFD);  // replacement character, one per bad byte
    }
  }
  return out;
}

std::string cpt_to_utf8(uint32_t cpt) {
  std::string r;
  if (cpt <= 0x7F) {
    r.push_back(static_cast<char>(cpt));
  } else if (cpt <= 0x7FF) {
    r.push_back(static_cast<char>(0xC0 | ((cpt >> 6) & 0x1F)));
    r.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else if (cpt <= 0xFFFF) {
    r.push_back(static_cast<char>(0xE0 | ((cpt >> 12) & 0x0F)));
    r.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    r.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else if (cpt <= 0x10FFFF) {
    r.push_back(static_cast<char>(0xF0 | ((cpt >> 18) & 0x07)));
    r.push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
    r.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    r.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else {
    // A 4-byte sequence can spell up to 0x1FFFFF; there is no UTF-8 for it, so it is written
    // as U+FFFD (llama.cpp throws here).
    return cpt_to_utf8(0xFFFD);
  }
  return r;
}

namespace {
struct ByteMaps {
  std::array<std::string, 256> to_utf8;
  std::map<std::string, uint8_t, std::less<>> from_utf8;
  // GPT-2 bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68 bytes to
  // U+0100.. in byte order.
  ByteMaps() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      uint32_t cpt = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + n++);
      to_utf8[b] = cpt_to_utf8(cpt);
      from_utf8.emplace(to_utf8[b], static_cast<uint8_t>(b));
    }
  }
};
const ByteMaps& byte_maps() {
  static const ByteMaps maps;
  return maps;
}
}  // namespace

const std::string& byte_to_utf8(uint8_t byte) { return byte_maps().to_utf8[byte]; }

bool utf8_to_byte(std::string_view utf8, uint8_t& byte) {
  const auto& m = byte_maps().from_utf8;
  auto it = m.find(utf8);
  if (it == m.end()) return false;
  byte = it->second;
  return true;
}

std::vector<std::string> regex_split(const std::string& text, const std::vector<std::string>& regexes,
                                     bool byte_encode) {
  static const std::string kGpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
  static const std::string kLlama3a =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  static const std::string kLlama3b =
      "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  static const std::string kQwen2 =
      "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

  const std::vector<uint32_t> cpts = cpts_from_utf8(text);

  bool need_collapse = false;
  for (const std::string& r : regexes) need_collapse = need_collapse || uses_categories(r);
  std::string collapsed;
  if (need_collapse) {
    collapsed.resize(cpts.size());
    for (size_t i = 0; i < cpts.size(); ++i) {
      if (cpts[i] < 128) {
        collapsed[i] = static_cast<char>(cpts[i]);
        continue;
      }
      CpFlags f = flags(cpts[i]);
      // std::regex's \s knows ASCII only: other white space becomes a vertical tab.
      collapsed[i] = f.whitespace ? '\x0B' : collapsed_byte(f.category);
    }
  }

  std::vector<size_t> offsets = {cpts.size()};
  for (const std::string& r : regexes) {
    if (r == kGpt2) {
      offsets = split_custom(cpts, offsets, Matcher::kGpt2);
    } else if (r == kLlama3a || r == kLlama3b) {
      offsets = split_custom(cpts, offsets, Matcher::kLlama3);
    } else if (r == kQwen2) {
      offsets = split_custom(cpts, offsets, Matcher::kQwen2);
    } else if (uses_categories(r)) {
      offsets = split_stl(collapsed, collapse_regex(r), offsets);
    } else {
      std::wstring wregex;
      for (uint32_t c : cpts_from_utf8(r)) wregex.push_back(static_cast<wchar_t>(c));
      std::wstring wtext;
      wtext.reserve(cpts.size());
      for (uint32_t c : cpts) wtext.push_back(static_cast<wchar_t>(c > 0x7F && flags(c).whitespace ? 0x0B : c));
      offsets = split_stl(wtext, wregex, offsets);
    }
  }

  std::vector<std::string> words;
  words.reserve(offsets.size());
  size_t start = 0;
  for (size_t n : offsets) {
    std::string word;
    for (size_t i = start; i < start + n; ++i) word += cpt_to_utf8(cpts[i]);
    start += n;
    if (byte_encode) {
      std::string encoded;
      for (char c : word) encoded += byte_to_utf8(static_cast<uint8_t>(c));
      word = std::move(encoded);
    }
    words.push_back(std::move(word));
  }
  return words;
}

}  // namespace shrink::unicode
