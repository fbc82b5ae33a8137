#include "formats/llama2c.h"

#include <cctype>
#include <cstring>

#include "formats/byte_reader.h"

namespace shrink {

namespace {

constexpr uint64_t kHeaderBytes = 7 * sizeof(int32_t);

// llama2.c's export.py "version 1/2" files start with this magic (uint32 0x616b3432, "ak42");
// read as a legacy header it shows up as an absurd dim.
constexpr int32_t kExportMagic = 0x616b3432;

// Generous upper bounds, far above any published Llama-family model (the largest have
// dim 16384, hidden 53248, 126 layers, vocab 256000), low enough that every size product below
// stays far from 2^64 even before the checked arithmetic.
constexpr int32_t kMaxDim = 1 << 20;
constexpr int32_t kMaxHidden = 1 << 22;
constexpr int32_t kMaxLayers = 1 << 12;
constexpr int32_t kMaxVocab = 1 << 24;
constexpr int32_t kMaxSeqLen = 1 << 24;

const char* const kWeightNames[12] = {
    "token_embedding", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3", "rms_final", "wcls",
};

Error header_error(const std::string& file, const std::string& field, int64_t value, const std::string& rule) {
  return make_error(file + ": llama2.c header field " + field + " = " + std::to_string(value) + ": " + rule);
}

// Shapes of the 12 weights in file order; wcls last (only stored when not shared).
std::array<std::array<int64_t, 3>, 12> shapes_of(const Llama2cHeader& h, std::array<int, 12>* ranks) {
  const int64_t L = h.n_layers, d = h.dim, f = h.hidden_dim, v = h.vocab_size, kv = h.kv_dim();
  std::array<std::array<int64_t, 3>, 12> s = {{
      {v, d, 0},   // token_embedding
      {L, d, 0},   // rms_att
      {L, d, d},   // wq
      {L, kv, d},  // wk
      {L, kv, d},  // wv
      {L, d, d},   // wo
      {L, d, 0},   // rms_ffn
      {L, f, d},   // w1
      {L, d, f},   // w2
      {L, f, d},   // w3
      {d, 0, 0},   // rms_final
      {v, d, 0},   // wcls
  }};
  *ranks = {2, 2, 3, 3, 3, 3, 2, 3, 3, 3, 1, 2};
  return s;
}

bool product(const std::array<int64_t, 3>& shape, int rank, uint64_t* out) {
  uint64_t n = 1;
  for (int i = 0; i < rank; ++i)
    if (!checked_mul(n, static_cast<uint64_t>(shape[i]), &n)) return false;
  *out = n;
  return true;
}

}  // namespace

const char* llama2c_weight_name(Llama2cWeight w) { return kWeightNames[static_cast<int>(w)]; }

bool llama2c_weight_is_per_layer(Llama2cWeight w) {
  return w != Llama2cWeight::token_embedding && w != Llama2cWeight::rms_final && w != Llama2cWeight::wcls;
}

Result<Llama2cHeader> parse_llama2c_header(const uint8_t* data, size_t size, const std::string& file) {
  ByteReader r(data, size, file);
  int32_t f[7];
  static const char* const names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size",
                                       "seq_len"};
  for (int i = 0; i < 7; ++i) {
    auto v = r.read<int32_t>(names[i]);
    if (!v.ok())
      return make_error(file + ": too short for a llama2.c checkpoint (" + std::to_string(size) +
                        " bytes; the header alone is 28 bytes)");
    f[i] = *v;
  }
  if (f[0] == kExportMagic)
    return make_error(file + ": starts with the llama2.c export magic \"ak42\" (a version 1/2 export); only the "
                             "legacy (version 0) checkpoint format is supported");
  Llama2cHeader h;
  h.dim = f[0];
  h.hidden_dim = f[1];
  h.n_layers = f[2];
  h.n_heads = f[3];
  h.n_kv_heads = f[4];
  h.seq_len = f[6];
  // vocab_size < 0 flags an unshared classifier (llama2.c run.c: shared_weights = vocab_size > 0).
  if (f[5] == INT32_MIN) return header_error(file, "vocab_size", f[5], "out of range");
  h.shared_classifier = f[5] > 0;
  h.vocab_size = f[5] < 0 ? -f[5] : f[5];

  struct Limit {
    const char* name;
    int32_t value;
    int32_t max;
  };
  const Limit limits[] = {
      {"dim", h.dim, kMaxDim},           {"hidden_dim", h.hidden_dim, kMaxHidden},
      {"n_layers", h.n_layers, kMaxLayers}, {"n_heads", h.n_heads, kMaxDim},
      {"n_kv_heads", h.n_kv_heads, kMaxDim}, {"vocab_size", h.vocab_size, kMaxVocab},
      {"seq_len", h.seq_len, kMaxSeqLen},
  };
  for (const Limit& l : limits) {
    if (l.value <= 0) return header_error(file, l.name, l.value, "must be positive (not a llama2.c checkpoint?)");
    if (l.value > l.max)
      return header_error(file, l.name, l.value,
                          "exceeds the sanity limit " + std::to_string(l.max) + " (not a llama2.c checkpoint?)");
  }
  if (h.dim % h.n_heads != 0)
    return header_error(file, "dim", h.dim, "not divisible by n_heads = " + std::to_string(h.n_heads));
  if (h.n_kv_heads > h.n_heads || h.n_heads % h.n_kv_heads != 0)
    return header_error(file, "n_kv_heads", h.n_kv_heads,
                        "must divide n_heads = " + std::to_string(h.n_heads));
  // RoPE rotates pairs of a head's elements, and the legacy tables hold head_size/2 entries
  // per position.
  if (h.head_size() % 2 != 0)
    return header_error(file, "dim", h.dim,
                        "head size dim/n_heads = " + std::to_string(h.head_size()) + " is odd (RoPE needs pairs)");
  return h;
}

Result<uint64_t> llama2c_expected_file_size(const Llama2cHeader& h) {
  std::array<int, 12> ranks;
  auto shapes = shapes_of(h, &ranks);
  uint64_t floats = 0;
  for (int i = 0; i < 12; ++i) {
    if (i == static_cast<int>(Llama2cWeight::wcls) && h.shared_classifier) continue;
    uint64_t n;
    if (!product(shapes[i], ranks[i], &n) || !checked_add(floats, n, &floats))
      return make_error("llama2.c checkpoint size overflows 64 bits");
  }
  // Two legacy RoPE tables (freq_cis_real, freq_cis_imag) of seq_len * head_size / 2 floats.
  uint64_t rope = 0;
  if (!checked_mul(static_cast<uint64_t>(h.seq_len), static_cast<uint64_t>(h.head_size()), &rope) ||
      !checked_add(floats, rope, &floats))  // 2 tables * head_size/2 = head_size per position
    return make_error("llama2.c checkpoint size overflows 64 bits");
  uint64_t bytes;
  if (!checked_mul(floats, sizeof(float), &bytes) || !checked_add(bytes, kHeaderBytes, &bytes))
    return make_error("llama2.c checkpoint size overflows 64 bits");
  return bytes;
}

Result<Llama2cCheckpoint> Llama2cCheckpoint::open(const std::string& path) {
  SHRINK_ASSIGN(std::shared_ptr<MappedFile> file, MappedFile::open(path));
  SHRINK_ASSIGN(Llama2cHeader h, parse_llama2c_header(file->data(), file->size(), path));
  auto expected = llama2c_expected_file_size(h);
  if (!expected.ok()) return make_error(path + ": " + expected.error().message);
  if (*expected != file->size()) {
    return make_error(path + ": file size " + std::to_string(file->size()) + " bytes does not match the " +
                      std::to_string(*expected) + " bytes its llama2.c header implies (dim=" +
                      std::to_string(h.dim) + " hidden_dim=" + std::to_string(h.hidden_dim) +
                      " n_layers=" + std::to_string(h.n_layers) + " n_heads=" + std::to_string(h.n_heads) +
                      " n_kv_heads=" + std::to_string(h.n_kv_heads) + " vocab_size=" +
                      std::to_string(h.vocab_size) + " seq_len=" + std::to_string(h.seq_len) + ", classifier " +
                      (h.shared_classifier ? "shared" : "not shared") + "); truncated or not a legacy checkpoint?");
  }

  Llama2cCheckpoint c;
  c.file_ = std::move(file);
  c.header_ = h;
  std::array<int, 12> ranks;
  auto shapes = shapes_of(h, &ranks);
  // Every product below was already checked by llama2c_expected_file_size and the whole
  // layout fits inside the mapping, so offsets cannot overflow or leave the file.
  uint64_t offset = kHeaderBytes;
  const uint64_t rope_floats = static_cast<uint64_t>(h.seq_len) * static_cast<uint64_t>(h.head_size());
  for (int i = 0; i < 12; ++i) {
    Llama2cView& v = c.views_[i];
    v.shape = shapes[i];
    v.rank = ranks[i];
    uint64_t n = 0;
    (void)product(shapes[i], ranks[i], &n);
    v.count = n;
    if (i == static_cast<int>(Llama2cWeight::wcls)) {
      if (h.shared_classifier) {
        v.data = c.views_[0].data;
        continue;
      }
      offset += rope_floats * sizeof(float);  // skip freq_cis_real and freq_cis_imag
    }
    // The mapping is page-aligned and every offset is a multiple of 4, so the floats are
    // naturally aligned.
    v.data = reinterpret_cast<const float*>(c.file_->data() + offset);
    offset += n * sizeof(float);
  }
  return c;
}

Llama2cView Llama2cCheckpoint::weight(Llama2cWeight w) const { return views_[static_cast<int>(w)]; }

Result<Llama2cView> Llama2cCheckpoint::layer(Llama2cWeight w, int32_t l) const {
  if (!llama2c_weight_is_per_layer(w))
    return make_error(path() + ": llama2.c weight " + llama2c_weight_name(w) + " has no layer dimension");
  if (l < 0 || l >= header_.n_layers)
    return make_error(path() + ": layer " + std::to_string(l) + " out of range [0, " +
                      std::to_string(header_.n_layers) + ")");
  const Llama2cView& all = views_[static_cast<int>(w)];
  Llama2cView v;
  v.rank = all.rank - 1;
  v.shape = {all.shape[1], all.rank > 2 ? all.shape[2] : 0, 0};
  v.count = all.count / static_cast<uint64_t>(header_.n_layers);
  v.data = all.data + static_cast<uint64_t>(l) * v.count;
  return v;
}

namespace {

// What glibc's sscanf(text, "<0x%02hhX>", &byte) == 1 accepts: the literal "<0x", then the
// %X conversion, which skips white space and needs (within its width of 2) an optional sign
// followed by at least one hex digit. The closing '>' is not checked by the return value.
bool scanf_accepts_byte_token(const std::string& t) {
  if (t.size() < 3 || t.compare(0, 3, "<0x") != 0) return false;
  size_t i = 3;
  while (i < t.size() && std::isspace(static_cast<unsigned char>(t[i]))) ++i;
  if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
  return i < t.size() && std::isxdigit(static_cast<unsigned char>(t[i]));
}

std::string escape_whitespaces(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == ' ')
      out += "\xe2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's space marker
    else
      out += c;
  }
  return out;
}

}  // namespace

Result<Vocab> read_llama2c_tokenizer(const std::string& path, int64_t expected_vocab_size) {
  if (expected_vocab_size <= 0 || expected_vocab_size > kMaxVocab)
    return make_error(path + ": expected vocabulary size " + std::to_string(expected_vocab_size) +
                      " is out of range (1.." + std::to_string(kMaxVocab) + ")");
  SHRINK_ASSIGN(std::shared_ptr<MappedFile> file, MappedFile::open(path));
  ByteReader r(file->data(), file->size(), path);
  SHRINK_ASSIGN(int32_t max_token_length, r.read<int32_t>("max_token_length"));
  if (max_token_length < 0)
    return r.error("max_token_length", "negative value " + std::to_string(max_token_length));

  // Token ids llama.cpp's convert-llama2c-to-ggml hard-codes (UNKNOWN_TOKEN_ID, BOS_TOKEN_ID,
  // EOS_TOKEN_ID).
  constexpr int64_t kUnk = 0, kBos = 1, kEos = 2;

  Vocab v;
  v.model = "llama";
  const size_t n = static_cast<size_t>(expected_vocab_size);
  // Each token needs at least 8 bytes; refuse early instead of reserving for a vocabulary
  // the file cannot hold.
  if (r.remaining() / 8 < n)
    return make_error(path + ": holds at most " + std::to_string(r.remaining() / 8) +
                      " tokens but the model's vocabulary has " + std::to_string(n) + " (truncated file?)");
  v.tokens.reserve(n);
  v.scores.reserve(n);
  v.token_types.reserve(n);
  for (size_t id = 0; id < n; ++id) {
    const std::string field = "token " + std::to_string(id);
    auto score = r.read<float>((field + " score").c_str());
    if (!score.ok()) return score.error();
    const size_t len_at = r.offset();
    auto len = r.read<int32_t>((field + " length").c_str());
    if (!len.ok()) return len.error();
    if (*len < 0 || *len > max_token_length) {
      ByteReader at(file->data(), file->size(), path);
      (void)at.seek(len_at, "");
      return at.error(field + " length", "value " + std::to_string(*len) + " outside 0..max_token_length (" +
                                             std::to_string(max_token_length) + ")");
    }
    auto bytes = r.bytes(static_cast<uint64_t>(*len), (field + " text").c_str());
    if (!bytes.ok()) return bytes.error();
    std::string text(reinterpret_cast<const char*>(*bytes), static_cast<size_t>(*len));

    TokenType type;
    if (static_cast<int64_t>(id) == kUnk) {
      text = "<unk>";
      type = TokenType::UNKNOWN;
    } else if (static_cast<int64_t>(id) == kBos) {
      text = "<s>";
      type = TokenType::CONTROL;
    } else if (static_cast<int64_t>(id) == kEos) {
      text = "</s>";
      type = TokenType::CONTROL;
    } else if (text.empty()) {
      type = TokenType::CONTROL;
    } else if (scanf_accepts_byte_token(text)) {
      type = TokenType::BYTE;  // already spelled "<0xXX>", as GGUF wants
    } else {
      type = TokenType::NORMAL;
    }
    v.tokens.push_back(escape_whitespaces(text));
    v.scores.push_back(*score);
    v.token_types.push_back(type);
  }
  if (r.remaining() != 0)
    return r.error("end of tokens", std::to_string(r.remaining()) + " bytes follow the " + std::to_string(n) +
                                        " tokens the model's vocabulary has (tokenizer for a different model?)");
  if (expected_vocab_size > kUnk) v.unk_id = kUnk;
  if (expected_vocab_size > kBos) v.bos_id = kBos;
  if (expected_vocab_size > kEos) v.eos_id = kEos;
  return v;
}

}  // namespace shrink
