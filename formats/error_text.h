// Names read from untrusted files go into error messages quoted, with control bytes escaped
// (\xNN) and long names cut, so a hostile file cannot garble the terminal or flood the log.
#pragma once

#include <cstdio>
#include <string>

namespace shrink {

inline std::string quote_untrusted(const std::string& s, size_t max_len) {
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < max_len; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > max_len) out += "...";
  return out + "'";
}

}  // namespace shrink
