// Byte-level BPE, as llama.cpp's llm_tokenizer_bpe_session: split the text into words with the
// pre-tokenizer regexes (bytes mapped to GPT-2's printable characters), then within each word
// repeatedly merge the adjacent pair with the lowest merge rank (ties: leftmost).
#include <queue>

#include "model/tokenizer_impl.h"
#include "model/unicode.h"

namespace shrink {
namespace {

struct Symbol {
  int prev, next;
  const char* text;
  size_t n;
};

struct Bigram {
  int left, right;
  std::string text;
  int rank;
  size_t size;
};

// Lowest rank first; equal ranks: smaller left index first (llm_bigram_bpe::comparator).
struct BigramGreater {
  bool operator()(const Bigram& l, const Bigram& r) const {
    return l.rank > r.rank || (l.rank == r.rank && l.left > r.left);
  }
};

}  // namespace

void Tokenizer::Impl::encode_bpe(const std::string& text, std::vector<int32_t>& out) const {
  const std::vector<std::string> words = unicode::regex_split(text, regexes, /*byte_encode=*/true);
  std::vector<Symbol> final_symbols;

  for (const std::string& word : words) {
    std::vector<Symbol> symbols;
    std::priority_queue<Bigram, std::vector<Bigram>, BigramGreater> queue;
    auto add_bigram = [&](int left, int right) {
      if (left == -1 || right == -1) return;
      std::string l(symbols[left].text, symbols[left].n);
      std::string r(symbols[right].text, symbols[right].n);
      const int rank = bpe_rank(l, r);
      if (rank < 0) return;
      Bigram b;
      b.left = left;
      b.right = right;
      b.text = l + r;
      b.size = b.text.size();
      b.rank = rank;
      queue.push(std::move(b));
    };

    size_t offset = 0;
    int index = 0;
    if (ignore_merges && text_to_token(word) != kNoToken) {
      symbols.push_back(Symbol{-1, -1, word.c_str(), word.size()});
      offset = word.size();
    }
    while (offset < word.size()) {
      Symbol sym;
      const size_t len = std::min(word.size() - offset, unicode::utf8_len(word[offset]));
      sym.text = word.c_str() + offset;
      sym.n = len;
      offset += len;
      sym.prev = index - 1;
      sym.next = offset == word.size() ? -1 : index + 1;
      ++index;
      symbols.push_back(sym);
    }
    for (int i = 1; i < static_cast<int>(symbols.size()); ++i) add_bigram(i - 1, i);

    while (!queue.empty()) {
      Bigram b = queue.top();
      queue.pop();
      Symbol& left = symbols[b.left];
      Symbol& right = symbols[b.right];
      if (left.n == 0 || right.n == 0) continue;
      if (std::string(left.text, left.n) + std::string(right.text, right.n) != b.text) continue;  // stale
      left.n += right.n;
      right.n = 0;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = b.left;
      add_bigram(left.prev, b.left);
      add_bigram(b.left, left.next);
    }
    for (const Symbol& s : symbols)
      if (s.n > 0) final_symbols.push_back(s);
  }

  for (const Symbol& s : final_symbols) {
    const std::string str(s.text, s.n);
    const int32_t id = text_to_token(str);
    if (id != kNoToken) {
      out.push_back(id);
      continue;
    }
    // Not in the vocabulary: each byte on its own, where the vocabulary has it (llama.cpp
    // looks the raw byte up, so bytes outside ASCII drop out).
    for (char c : str) {
      const int32_t b = text_to_token(std::string(1, c));
      if (b != kNoToken) out.push_back(b);
    }
  }
}

}  // namespace shrink
