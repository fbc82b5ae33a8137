// SentencePiece BPE, as llama.cpp's llm_tokenizer_spm_session: start from UTF-8 characters,
// repeatedly merge the adjacent pair whose concatenation is the highest-scoring vocabulary
// token (ties: leftmost), then emit each symbol as its token, or split it back along the
// merges that built it, or as <0xXX> byte tokens.
#include <map>
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
  float score;
  size_t size;
};

// Highest score first; equal scores: smaller left index first (llm_bigram_spm::comparator).
struct BigramLess {
  bool operator()(const Bigram& l, const Bigram& r) const {
    return l.score < r.score || (l.score == r.score && l.left > r.left);
  }
};

class SpmSession {
 public:
  explicit SpmSession(const Tokenizer::Impl& t) : t_(t) {}

  void tokenize(const std::string& text, std::vector<int32_t>& out) {
    int index = 0;
    size_t offs = 0;
    while (offs < text.size()) {
      Symbol sym;
      const size_t len = unicode::utf8_len(text[offs]);
      sym.text = text.c_str() + offs;
      sym.n = std::min(len, text.size() - offs);
      offs += sym.n;
      sym.prev = index - 1;
      sym.next = offs == text.size() ? -1 : index + 1;
      ++index;
      symbols_.push_back(sym);
    }
    for (int i = 1; i < static_cast<int>(symbols_.size()); ++i) try_add_bigram(i - 1, i);

    while (!queue_.empty()) {
      const Bigram b = queue_.top();
      queue_.pop();
      Symbol& left = symbols_[b.left];
      Symbol& right = symbols_[b.right];
      // Stale: one side was merged away or grew since the pair was queued.
      if (left.n == 0 || right.n == 0 || left.n + right.n != b.size) continue;
      left.n += right.n;
      right.n = 0;
      left.next = right.next;
      if (right.next >= 0) symbols_[right.next].prev = b.left;
      try_add_bigram(left.prev, b.left);
      try_add_bigram(b.left, left.next);
    }
    if (symbols_.empty()) return;
    for (int i = 0; i != -1; i = symbols_[i].next) resegment(symbols_[i], out);
  }

 private:
  void resegment(const Symbol& sym, std::vector<int32_t>& out) {
    const std::string text(sym.text, sym.n);
    const int32_t id = t_.text_to_token(text);
    if (id != kNoToken) {
      out.push_back(id);
      return;
    }
    auto it = rev_merge_.find(text);
    if (it == rev_merge_.end()) {
      for (size_t j = 0; j < sym.n; ++j) {
        int32_t b = t_.spm_byte_token(static_cast<uint8_t>(sym.text[j]));
        if (b != kNoToken) out.push_back(b);
      }
      return;
    }
    resegment(symbols_[it->second.first], out);
    resegment(symbols_[it->second.second], out);
  }

  void try_add_bigram(int left, int right) {
    if (left == -1 || right == -1) return;
    const std::string text(symbols_[left].text, symbols_[left].n + symbols_[right].n);
    const int32_t id = t_.text_to_token(text);
    if (id == kNoToken || id >= static_cast<int32_t>(t_.text.size())) return;
    queue_.push(Bigram{left, right, t_.score[id], text.size()});
    rev_merge_[text] = {left, right};
  }

  const Tokenizer::Impl& t_;
  std::vector<Symbol> symbols_;
  std::priority_queue<Bigram, std::vector<Bigram>, BigramLess> queue_;
  std::map<std::string, std::pair<int, int>> rev_merge_;
};

}  // namespace

void Tokenizer::Impl::encode_spm(const std::string& text, std::vector<int32_t>& out) const {
  SpmSession(*this).tokenize(text, out);
}

}  // namespace shrink
