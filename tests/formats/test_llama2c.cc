// llama2.c checkpoint and tokenizer reader: hand-built files (layout, views, every failure
// class) and, at the end of the file, the real stories260K / BabyLlama files checked against
// llama.cpp's own conversion (../shared/data/reference/stories260K-f32.llamacpp.gguf).
//
// Skipping when ../shared/data (or Python) is absent: shrink::test::skip_program ends the whole
// program, and all tests/formats/test_*.cc share one program, so a case calling it directly
// would also stop the self-contained cases of the files linked after it. The cases of
// test_llama2c.cc, test_sentencepiece_model.cc and test_hf_model.cc therefore ask
// have_data()/note_missing() (defined here), return early, and the listener below calls
// skip_program once the run has ended, if nothing failed (exit 77, or a failure under CI).
// Data-dependent cases also sit last in each file and check as late as possible.
#define CATCH_CONFIG_EXTERNAL_INTERFACES  // for the listener
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "formats/byte_reader.h"
#include "formats/llama2c.h"
#include "tests/test_support.h"

namespace shrink::test {

// ---- deferred skipping (see the top of this file) ----

namespace {
std::vector<std::string>& missing_things() {
  static std::vector<std::string> list;
  return list;
}
}  // namespace

void note_missing(const std::string& why) { missing_things().push_back(why); }

bool have_data(const fs::path& p, const std::string& what) {
  if (!p.empty() && fs::exists(p)) return true;
  note_missing(what + " not found at " + p.string());
  return false;
}

struct DeferredSkipListener : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testRunEnded(const Catch::TestRunStats& stats) override {
    if (missing_things().empty() || stats.totals.assertions.failed > 0 || stats.totals.testCases.failed > 0) return;
    std::set<std::string> seen;
    std::string why;
    for (const auto& m : missing_things())
      if (seen.insert(m).second) why += (why.empty() ? "" : "; ") + m;
    skip_program(why + " (the " + std::to_string(stats.totals.testCases.passed) +
                 " cases that ran passed; those needing it returned early)");
  }
};
CATCH_REGISTER_LISTENER(DeferredSkipListener)

// A minimal, independent GGUF reader used only as a test oracle for files llama.cpp wrote
// (spec: ggml docs/gguf.md): metadata values and tensor infos. It is deliberately not the
// project's reader. Also used by test_hf_model.cc (same test program).
namespace gguf_oracle {

struct Value {
  uint32_t type = 0;
  uint64_t u = 0;   // unsigned integers and bool
  int64_t i = 0;    // signed integers
  double f = 0.0;   // floats
  std::string s;    // strings
  std::vector<Value> arr;
};

struct Tensor {
  std::vector<uint64_t> ne;
  uint32_t type = 0;
  uint64_t offset = 0;
};

struct File {
  std::map<std::string, Value> kv;
  std::map<std::string, Tensor> tensors;
  std::vector<uint8_t> bytes;
  uint64_t data_start = 0;

  const Value& at(const std::string& key) const {
    auto it = kv.find(key);
    if (it == kv.end()) FAIL("GGUF key " << key << " missing");
    return it->second;
  }
  // The raw bytes of an F32 tensor (type 0).
  const uint8_t* tensor_data(const std::string& name, uint64_t* n_floats) const {
    auto it = tensors.find(name);
    if (it == tensors.end()) FAIL("GGUF tensor " << name << " missing");
    REQUIRE(it->second.type == 0);
    uint64_t n = 1;
    for (uint64_t d : it->second.ne) n *= d;
    *n_floats = n;
    REQUIRE(data_start + it->second.offset + n * 4 <= bytes.size());
    return bytes.data() + data_start + it->second.offset;
  }
};

Value read_value(ByteReader& r, uint32_t type) {
  Value v;
  v.type = type;
  auto need = [](auto res) {
    REQUIRE(res.ok());
    return *res;
  };
  switch (type) {
    case 0: v.u = need(r.read<uint8_t>("u8")); break;
    case 1: v.i = need(r.read<int8_t>("i8")); break;
    case 2: v.u = need(r.read<uint16_t>("u16")); break;
    case 3: v.i = need(r.read<int16_t>("i16")); break;
    case 4: v.u = need(r.read<uint32_t>("u32")); break;
    case 5: v.i = need(r.read<int32_t>("i32")); break;
    case 6: v.f = need(r.read<float>("f32")); break;
    case 7: v.u = need(r.read<uint8_t>("bool")); break;
    case 8: v.s = need(r.string<uint64_t>("string")); break;
    case 9: {
      const uint32_t et = need(r.read<uint32_t>("array type"));
      const uint64_t n = need(r.read<uint64_t>("array length"));
      REQUIRE(n <= r.remaining());
      v.arr.reserve(n);
      for (uint64_t k = 0; k < n; ++k) v.arr.push_back(read_value(r, et));
      break;
    }
    case 10: v.u = need(r.read<uint64_t>("u64")); break;
    case 11: v.i = need(r.read<int64_t>("i64")); break;
    case 12: v.f = need(r.read<double>("f64")); break;
    default: FAIL("GGUF value type " << type);
  }
  return v;
}

File read(const fs::path& path) {
  File f;
  f.bytes = read_bytes(path);
  ByteReader r(f.bytes.data(), f.bytes.size(), path.string());
  auto need = [](auto res) {
    REQUIRE(res.ok());
    return *res;
  };
  REQUIRE(need(r.read<uint32_t>("magic")) == 0x46554747u);  // "GGUF"
  REQUIRE(need(r.read<uint32_t>("version")) == 3);
  const uint64_t n_tensors = need(r.read<uint64_t>("n_tensors"));
  const uint64_t n_kv = need(r.read<uint64_t>("n_kv"));
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = need(r.string<uint64_t>("key"));
    const uint32_t type = need(r.read<uint32_t>("type"));
    f.kv[key] = read_value(r, type);
  }
  for (uint64_t t = 0; t < n_tensors; ++t) {
    std::string name = need(r.string<uint64_t>("tensor name"));
    Tensor ti;
    const uint32_t n_dims = need(r.read<uint32_t>("n_dims"));
    for (uint32_t d = 0; d < n_dims; ++d) ti.ne.push_back(need(r.read<uint64_t>("ne")));
    ti.type = need(r.read<uint32_t>("tensor type"));
    ti.offset = need(r.read<uint64_t>("offset"));
    f.tensors[name] = ti;
  }
  uint64_t alignment = 32;
  if (auto it = f.kv.find("general.alignment"); it != f.kv.end()) alignment = it->second.u;
  f.data_start = (r.offset() + alignment - 1) / alignment * alignment;
  return f;
}

}  // namespace gguf_oracle

namespace {

// ---- builders for hand-crafted files ----

// Byte by byte: GCC 12 warns falsely (-Wstringop-overflow) on a range insert into a fresh vector.
template <class T>
void put4(std::vector<uint8_t>& b, T v) {
  static_assert(sizeof(T) == 4);
  uint8_t x[4];
  std::memcpy(x, &v, 4);
  for (uint8_t byte : x) b.push_back(byte);
}
void put_i32(std::vector<uint8_t>& b, int32_t v) { put4(b, v); }
void put_f32(std::vector<uint8_t>& b, float v) { put4(b, v); }

struct Dims {
  int32_t dim = 8, hidden = 12, layers = 2, heads = 2, kv_heads = 1, vocab = 5, seq_len = 3;
  bool shared = true;
};

uint64_t float_count(const Dims& d) {
  const uint64_t head = d.dim / d.heads, kv = head * d.kv_heads, L = d.layers;
  uint64_t n = uint64_t(d.vocab) * d.dim + L * d.dim * 2 + L * d.dim * d.dim * 2 + L * kv * d.dim * 2 +
               L * d.hidden * d.dim * 3 + d.dim + uint64_t(d.seq_len) * head;
  if (!d.shared) n += uint64_t(d.vocab) * d.dim;
  return n;
}

// A checkpoint whose float at index i (counting from the first float after the header) holds
// the value i, so every view's position in the file can be read off its values.
std::vector<uint8_t> checkpoint_bytes(const Dims& d, int64_t extra_floats = 0) {
  std::vector<uint8_t> b;
  for (int32_t v : {d.dim, d.hidden, d.layers, d.heads, d.kv_heads, d.shared ? d.vocab : -d.vocab, d.seq_len})
    put_i32(b, v);
  const int64_t n = static_cast<int64_t>(float_count(d)) + extra_floats;
  for (int64_t i = 0; i < n; ++i) put_f32(b, static_cast<float>(i));
  return b;
}

std::vector<uint8_t> header_bytes(std::initializer_list<int32_t> fields) {
  std::vector<uint8_t> b;
  for (int32_t v : fields) put_i32(b, v);
  return b;
}

// Writes `bytes` to dir/name and opens it, expecting failure; returns the message.
std::string open_error(const TempDir& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
  const fs::path p = dir / name;
  write_bytes(p, bytes);
  auto r = Llama2cCheckpoint::open(p.string());
  REQUIRE_FALSE(r.ok());
  const std::string msg = r.error().message;
  INFO(msg);
  CHECK(msg.find(p.string()) != std::string::npos);  // every error names the file
  return msg;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("llama2c: hand-built checkpoint, shared classifier, views land where the layout says", "[llama2c]") {
  TempDir dir;
  Dims d;
  const fs::path p = dir / "tiny.bin";
  write_bytes(p, checkpoint_bytes(d));
  auto c = Llama2cCheckpoint::open(p.string());
  INFO((c.ok() ? std::string() : c.error().message));
  REQUIRE(c.ok());
  const Llama2cHeader& h = c->header();
  CHECK(h.dim == 8);
  CHECK(h.hidden_dim == 12);
  CHECK(h.n_layers == 2);
  CHECK(h.n_heads == 2);
  CHECK(h.n_kv_heads == 1);
  CHECK(h.vocab_size == 5);
  CHECK(h.seq_len == 3);
  CHECK(h.shared_classifier);
  CHECK(h.head_size() == 4);
  CHECK(h.kv_dim() == 4);
  CHECK(llama2c_expected_file_size(h).value() == fs::file_size(p));

  // Expected (offset in floats, shape) of each weight in file order.
  struct Expect {
    Llama2cWeight w;
    int64_t first;
    std::array<int64_t, 3> shape;
    int rank;
  };
  const int64_t V = 5, D = 8, F = 12, L = 2, KV = 4;
  int64_t at = 0;
  std::vector<Expect> expect;
  auto add = [&](Llama2cWeight w, std::array<int64_t, 3> s, int rank) {
    expect.push_back({w, at, s, rank});
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= s[i];
    at += n;
  };
  add(Llama2cWeight::token_embedding, {V, D, 0}, 2);
  add(Llama2cWeight::rms_att, {L, D, 0}, 2);
  add(Llama2cWeight::wq, {L, D, D}, 3);
  add(Llama2cWeight::wk, {L, KV, D}, 3);
  add(Llama2cWeight::wv, {L, KV, D}, 3);
  add(Llama2cWeight::wo, {L, D, D}, 3);
  add(Llama2cWeight::rms_ffn, {L, D, 0}, 2);
  add(Llama2cWeight::w1, {L, F, D}, 3);
  add(Llama2cWeight::w2, {L, D, F}, 3);
  add(Llama2cWeight::w3, {L, F, D}, 3);
  add(Llama2cWeight::rms_final, {D, 0, 0}, 1);
  for (const Expect& e : expect) {
    INFO(llama2c_weight_name(e.w));
    const Llama2cView v = c->weight(e.w);
    CHECK(v.rank == e.rank);
    CHECK(v.shape == e.shape);
    REQUIRE(v.data != nullptr);
    CHECK(v.data[0] == static_cast<float>(e.first));
    CHECK(v.data[v.count - 1] == static_cast<float>(e.first + static_cast<int64_t>(v.count) - 1));
  }
  // Shared classifier: the same memory as the embedding.
  CHECK(c->wcls().data == c->token_embedding().data);
  CHECK(c->wcls().count == c->token_embedding().count);
  CHECK(c->wcls().shape == c->token_embedding().shape);
  // Named accessors agree with weight().
  CHECK(c->w2().data == c->weight(Llama2cWeight::w2).data);
  CHECK(c->rms_final().count == 8);

  SECTION("layer slices") {
    auto wk1 = c->layer(Llama2cWeight::wk, 1);
    REQUIRE(wk1.ok());
    CHECK(wk1->rank == 2);
    CHECK(wk1->shape == std::array<int64_t, 3>{KV, D, 0});
    CHECK(wk1->count == uint64_t(KV * D));
    CHECK(wk1->data == c->wk().data + KV * D);
    auto att0 = c->layer(Llama2cWeight::rms_att, 0);
    REQUIRE(att0.ok());
    CHECK(att0->rank == 1);
    CHECK(att0->count == uint64_t(D));
    CHECK(att0->data == c->rms_att().data);
    auto w2last = c->layer(Llama2cWeight::w2, 1);
    REQUIRE(w2last.ok());
    CHECK(w2last->shape == std::array<int64_t, 3>{D, F, 0});
    CHECK(w2last->data + w2last->count == c->w2().data + c->w2().count);

    auto bad_layer = c->layer(Llama2cWeight::wq, 2);
    REQUIRE_FALSE(bad_layer.ok());
    CHECK(contains(bad_layer.error().message, "layer 2 out of range [0, 2)"));
    CHECK_FALSE(c->layer(Llama2cWeight::wq, -1).ok());
    auto not_per_layer = c->layer(Llama2cWeight::token_embedding, 0);
    REQUIRE_FALSE(not_per_layer.ok());
    CHECK(contains(not_per_layer.error().message, "token_embedding has no layer dimension"));
  }
}

TEST_CASE("llama2c: unshared classifier follows the two RoPE tables", "[llama2c]") {
  TempDir dir;
  Dims d;
  d.shared = false;
  const fs::path p = dir / "unshared.bin";
  write_bytes(p, checkpoint_bytes(d));
  auto c = Llama2cCheckpoint::open(p.string());
  INFO((c.ok() ? std::string() : c.error().message));
  REQUIRE(c.ok());
  CHECK_FALSE(c->header().shared_classifier);
  CHECK(c->header().vocab_size == 5);
  const Llama2cView cls = c->wcls();
  CHECK(cls.data != c->token_embedding().data);
  CHECK(cls.count == 5u * 8u);
  // rms_final ends at float f; the RoPE tables take seq_len * head_size = 3 * 4 floats.
  const float after_final = c->rms_final().data[7] + 1.0f;
  CHECK(cls.data[0] == after_final + 12.0f);
  CHECK(cls.data[cls.count - 1] == static_cast<float>(float_count(d) - 1));
}

TEST_CASE("llama2c: a checkpoint with the smallest legal dims and one layer opens", "[llama2c]") {
  TempDir dir;
  Dims d;
  d.dim = 2;
  d.hidden = 1;
  d.layers = 1;
  d.heads = 1;
  d.kv_heads = 1;
  d.vocab = 1;
  d.seq_len = 1;
  write_bytes(dir / "min.bin", checkpoint_bytes(d));
  auto c = Llama2cCheckpoint::open((dir / "min.bin").string());
  INFO((c.ok() ? std::string() : c.error().message));
  REQUIRE(c.ok());
  CHECK(c->w2().shape == std::array<int64_t, 3>{1, 2, 1});
}

TEST_CASE("llama2c: hostile checkpoints fail with the file, the field and the rule", "[llama2c][hostile]") {
  TempDir dir;
  Dims d;

  SECTION("missing file") {
    auto r = Llama2cCheckpoint::open((dir / "nope.bin").string());
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error().message, "nope.bin"));
  }
  SECTION("empty file") {
    CHECK(contains(open_error(dir, "empty.bin", {}), "too short for a llama2.c checkpoint"));
  }
  SECTION("truncated header") {
    auto b = checkpoint_bytes(d);
    b.resize(10);
    CHECK(contains(open_error(dir, "short.bin", b), "too short"));
  }
  SECTION("negative and zero dims, field by field") {
    const char* names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    for (int field = 0; field < 7; ++field) {
      for (int32_t bad : {0, -4}) {
        if (field == 5 && bad < 0) continue;  // negative vocab_size is the unshared flag
        int32_t f[7] = {8, 12, 2, 2, 1, 5, 3};
        f[field] = bad;
        auto b = header_bytes({f[0], f[1], f[2], f[3], f[4], f[5], f[6]});
        const std::string msg = open_error(dir, "bad" + std::to_string(field) + ".bin", b);
        INFO(msg);
        CHECK(contains(msg, std::string("field ") + names[field] + " = " + std::to_string(bad)));
        CHECK(contains(msg, "must be positive"));
      }
    }
  }
  SECTION("vocab_size INT32_MIN has no absolute value") {
    const std::string msg = open_error(dir, "min.bin", header_bytes({8, 12, 2, 2, 1, INT32_MIN, 3}));
    CHECK(contains(msg, "vocab_size = -2147483648"));
  }
  SECTION("absurd sizes hit the sanity limits before any arithmetic") {
    CHECK(contains(open_error(dir, "huge.bin", header_bytes({1 << 30, 12, 2, 2, 1, 5, 3})), "sanity limit"));
    CHECK(contains(open_error(dir, "huge2.bin", header_bytes({8, 12, 1 << 20, 2, 1, 5, 3})),
                   "n_layers = 1048576: exceeds the sanity limit"));
    CHECK(contains(open_error(dir, "huge3.bin", header_bytes({8, 12, 2, 2, 1, INT32_MAX, 3})), "vocab_size"));
  }
  SECTION("largest legal dims: sizes computed without overflow, file size mismatch reported") {
    const std::string msg =
        open_error(dir, "max.bin", header_bytes({1 << 20, 1 << 22, 1 << 12, 1 << 10, 1 << 10, 1 << 24, 1 << 24}));
    CHECK(contains(msg, "does not match"));
  }
  SECTION("dim not divisible by n_heads") {
    CHECK(contains(open_error(dir, "div.bin", header_bytes({8, 12, 2, 3, 1, 5, 3})),
                   "dim = 8: not divisible by n_heads = 3"));
  }
  SECTION("n_kv_heads must divide n_heads") {
    CHECK(contains(open_error(dir, "kv.bin", header_bytes({12, 12, 2, 4, 3, 5, 3})), "n_kv_heads = 3: must divide"));
    CHECK(contains(open_error(dir, "kv2.bin", header_bytes({8, 12, 2, 2, 4, 5, 3})), "n_kv_heads = 4: must divide"));
  }
  SECTION("odd head size") {
    CHECK(contains(open_error(dir, "odd.bin", header_bytes({6, 12, 2, 2, 1, 5, 3})), "is odd"));
  }
  SECTION("llama2.c version 1/2 export magic") {
    CHECK(contains(open_error(dir, "v1.bin", header_bytes({0x616b3432, 1, 0, 0, 0, 0, 0})), "ak42"));
  }
  SECTION("truncated data: the message names expected and actual bytes") {
    auto b = checkpoint_bytes(d);
    const uint64_t expected = b.size();
    b.resize(b.size() - 4);
    const std::string msg = open_error(dir, "trunc.bin", b);
    CHECK(contains(msg, "file size " + std::to_string(expected - 4) + " bytes"));
    CHECK(contains(msg, std::to_string(expected) + " bytes its llama2.c header implies"));
  }
  SECTION("trailing data") {
    auto b = checkpoint_bytes(d, 1);
    CHECK(contains(open_error(dir, "long.bin", b), "does not match"));
  }
  SECTION("header claims an unshared classifier the file does not hold") {
    Dims u = d;
    u.shared = false;
    auto b = checkpoint_bytes(d);                 // sized for shared
    auto h = checkpoint_bytes(u);                 // header says unshared
    std::copy(h.begin(), h.begin() + 28, b.begin());
    const std::string msg = open_error(dir, "cls.bin", b);
    CHECK(contains(msg, "does not match"));
    CHECK(contains(msg, "classifier not shared"));
  }
  SECTION("dims inconsistent with the file size (n_layers off by one)") {
    auto b = checkpoint_bytes(d);
    int32_t three = 3;
    std::memcpy(b.data() + 8, &three, 4);
    CHECK(contains(open_error(dir, "layers.bin", b), "does not match"));
  }
}

namespace {

struct TokSpec {
  float score;
  std::string text;
};

std::vector<uint8_t> tokenizer_bytes(int32_t max_len, const std::vector<TokSpec>& toks) {
  std::vector<uint8_t> b;
  put_i32(b, max_len);
  for (const auto& t : toks) {
    put_f32(b, t.score);
    put_i32(b, static_cast<int32_t>(t.text.size()));
    for (char ch : t.text) b.push_back(static_cast<uint8_t>(ch));
  }
  return b;
}

std::string tok_error(const TempDir& dir, const std::string& name, const std::vector<uint8_t>& bytes, int64_t n) {
  const fs::path p = dir / name;
  write_bytes(p, bytes);
  auto r = read_llama2c_tokenizer(p.string(), n);
  REQUIRE_FALSE(r.ok());
  const std::string msg = r.error().message;
  INFO(msg);
  CHECK(contains(msg, p.string()));
  return msg;
}

}  // namespace

TEST_CASE("llama2c tokenizer: mapped like convert-llama2c-to-ggml load_vocab", "[llama2c][tokenizer]") {
  TempDir dir;
  const std::vector<TokSpec> toks = {
      {0.0f, "<unk>"},   {0.0f, "\n<s>\n"}, {0.0f, "\n</s>\n"}, {0.0f, "<0x0A>"}, {-1.5f, " the"},
      {-2.0f, ""},       {-3.0f, "<0x4"},   {-4.0f, "<0xZZ>"},  {-5.0f, "a b "},  {-6.0f, "<0x -1>"},
  };
  write_bytes(dir / "tok.bin", tokenizer_bytes(7, toks));
  auto v = read_llama2c_tokenizer((dir / "tok.bin").string(), static_cast<int64_t>(toks.size()));
  INFO((v.ok() ? std::string() : v.error().message));
  REQUIRE(v.ok());
  const std::string sp = "\xe2\x96\x81";
  const std::vector<std::string> want_tokens = {"<unk>", "<s>",          "</s>",   "<0x0A>", sp + "the",
                                                "",      "<0x4",         "<0xZZ>", "a" + sp + "b" + sp,
                                                "<0x" + sp + "-1>"};
  const std::vector<TokenType> want_types = {
      TokenType::UNKNOWN, TokenType::CONTROL, TokenType::CONTROL, TokenType::BYTE,   TokenType::NORMAL,
      TokenType::CONTROL, TokenType::BYTE,    TokenType::NORMAL,  TokenType::NORMAL, TokenType::BYTE,
  };
  CHECK(v->tokens == want_tokens);
  CHECK(v->token_types == want_types);
  REQUIRE(v->scores.size() == toks.size());
  for (size_t i = 0; i < toks.size(); ++i) CHECK(v->scores[i] == toks[i].score);
  CHECK(v->model == "llama");
  CHECK(v->pre.empty());
  CHECK(v->unk_id == 0);
  CHECK(v->bos_id == 1);
  CHECK(v->eos_id == 2);
  CHECK_FALSE(v->pad_id.has_value());
  CHECK(v->merges.empty());

  SECTION("a one-token vocabulary only has an unk id") {
    write_bytes(dir / "one.bin", tokenizer_bytes(5, {{0.0f, "<unk>"}}));
    auto one = read_llama2c_tokenizer((dir / "one.bin").string(), 1);
    REQUIRE(one.ok());
    CHECK(one->unk_id == 0);
    CHECK_FALSE(one->bos_id.has_value());
    CHECK_FALSE(one->eos_id.has_value());
  }
}

TEST_CASE("llama2c tokenizer: hostile files", "[llama2c][tokenizer][hostile]") {
  TempDir dir;
  const std::vector<TokSpec> toks = {{0.0f, "<unk>"}, {0.0f, "<s>"}, {0.0f, "</s>"}, {-1.0f, "abc"}};
  const auto good = tokenizer_bytes(5, toks);

  SECTION("missing file") {
    auto r = read_llama2c_tokenizer((dir / "missing.bin").string(), 4);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error().message, "missing.bin"));
  }
  SECTION("empty file") { CHECK(contains(tok_error(dir, "e.bin", {}, 4), "max_token_length")); }
  SECTION("truncated at every byte") {
    for (size_t cut = 0; cut < good.size(); ++cut) {
      std::vector<uint8_t> b(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(cut));
      tok_error(dir, "t.bin", b, 4);
    }
  }
  SECTION("truncated inside a token's text names the token") {
    std::vector<uint8_t> b(good.begin(), good.end() - 1);
    CHECK(contains(tok_error(dir, "t.bin", b, 4), "token 3 text"));
  }
  SECTION("absurd length") {
    auto b = good;
    const int32_t huge = INT32_MAX;
    std::memcpy(b.data() + 4 + 4, &huge, 4);  // token 0 length
    const std::string msg = tok_error(dir, "huge.bin", b, 4);
    CHECK(contains(msg, "token 0 length at offset 8"));
    CHECK(contains(msg, "2147483647"));
  }
  SECTION("negative length") {
    auto b = good;
    const int32_t neg = -1;
    std::memcpy(b.data() + 8, &neg, 4);
    CHECK(contains(tok_error(dir, "neg.bin", b, 4), "value -1 outside 0..max_token_length"));
  }
  SECTION("length beyond max_token_length") {
    CHECK(contains(tok_error(dir, "long.bin", tokenizer_bytes(2, toks), 4), "outside 0..max_token_length (2)"));
  }
  SECTION("negative max_token_length") {
    CHECK(contains(tok_error(dir, "neg_max.bin", tokenizer_bytes(-3, toks), 4), "max_token_length"));
  }
  SECTION("more tokens in the file than the model has") {
    CHECK(contains(tok_error(dir, "more.bin", good, 3), "bytes follow the 3 tokens"));
  }
  SECTION("fewer tokens in the file than the model has") {
    CHECK(contains(tok_error(dir, "fewer.bin", good, 5), "token 4 score"));
  }
  SECTION("a vocabulary far larger than the file is refused before reading") {
    CHECK(contains(tok_error(dir, "big.bin", good, 1000000), "holds at most"));
  }
  SECTION("nonsensical expected vocabulary sizes") {
    write_bytes(dir / "g.bin", good);
    CHECK_FALSE(read_llama2c_tokenizer((dir / "g.bin").string(), 0).ok());
    CHECK_FALSE(read_llama2c_tokenizer((dir / "g.bin").string(), -5).ok());
    CHECK_FALSE(read_llama2c_tokenizer((dir / "g.bin").string(), int64_t{1} << 40).ok());
  }
  SECTION("random garbage never crashes") {
    std::mt19937 rng(seed());
    for (int round = 0; round < 200; ++round) {
      std::vector<uint8_t> b(rng() % 64);
      for (auto& x : b) x = static_cast<uint8_t>(rng());
      write_bytes(dir / "r.bin", b);
      auto r = read_llama2c_tokenizer((dir / "r.bin").string(), 1 + rng() % 8);
      if (!r.ok()) CHECK(contains(r.error().message, "r.bin"));
      auto c = Llama2cCheckpoint::open((dir / "r.bin").string());
      CHECK_FALSE(c.ok());
    }
  }
}

// ---- Real data (skipped when absent, see the top of this file; keep them last). ----

TEST_CASE("llama2c: stories260K matches llama.cpp's own conversion tensor by tensor", "[llama2c][data]") {
  const fs::path model = data_dir() / "models/stories260K/stories260K.bin";
  const fs::path ref = data_dir() / "reference/stories260K-f32.llamacpp.gguf";
  if (!have_data(model, "stories260K checkpoint") || !have_data(ref, "llama.cpp reference conversion of stories260K"))
    return;

  auto c = Llama2cCheckpoint::open(model.string());
  INFO((c.ok() ? std::string() : c.error().message));
  REQUIRE(c.ok());
  const Llama2cHeader& h = c->header();
  CHECK(h.dim == 64);
  CHECK(h.hidden_dim == 172);
  CHECK(h.n_layers == 5);
  CHECK(h.n_heads == 8);
  CHECK(h.n_kv_heads == 4);
  CHECK(h.vocab_size == 512);
  CHECK(h.seq_len == 512);
  CHECK(h.shared_classifier);
  // 260,032 parameters (data README), wcls shared.
  uint64_t params = 0;
  for (int w = 0; w < 11; ++w) params += c->weight(static_cast<Llama2cWeight>(w)).count;
  CHECK(params == 260032);

  const gguf_oracle::File g = gguf_oracle::read(ref);
  CHECK(g.at("llama.embedding_length").u == 64);
  CHECK(g.at("llama.feed_forward_length").u == 172);
  CHECK(g.at("llama.block_count").u == 5);
  CHECK(g.at("llama.attention.head_count_kv").u == 4);

  // convert-llama2c-to-ggml copies the floats unchanged (ggml order == llama2.c row-major).
  auto same = [&](const std::string& name, const Llama2cView& v) {
    INFO(name);
    uint64_t n = 0;
    const uint8_t* p = g.tensor_data(name, &n);
    REQUIRE(n == v.count);
    CHECK(std::memcmp(p, v.data, n * 4) == 0);
  };
  same("token_embd.weight", c->token_embedding());
  same("output.weight", c->wcls());
  same("output_norm.weight", c->rms_final());
  struct Pair {
    const char* gguf;
    Llama2cWeight w;
  };
  const Pair pairs[] = {
      {"attn_norm", Llama2cWeight::rms_att}, {"attn_q", Llama2cWeight::wq},     {"attn_k", Llama2cWeight::wk},
      {"attn_v", Llama2cWeight::wv},         {"attn_output", Llama2cWeight::wo}, {"ffn_norm", Llama2cWeight::rms_ffn},
      {"ffn_gate", Llama2cWeight::w1},       {"ffn_down", Llama2cWeight::w2},   {"ffn_up", Llama2cWeight::w3},
  };
  for (int l = 0; l < h.n_layers; ++l) {
    for (const Pair& pr : pairs) {
      auto v = c->layer(pr.w, l);
      REQUIRE(v.ok());
      same("blk." + std::to_string(l) + "." + pr.gguf + ".weight", *v);
    }
  }
}

TEST_CASE("llama2c tokenizer: tok512.bin equals the vocabulary llama.cpp wrote", "[llama2c][tokenizer][data]") {
  const fs::path tok = data_dir() / "models/stories260K/tok512.bin";
  const fs::path ref = data_dir() / "reference/stories260K-f32.llamacpp.gguf";
  if (!have_data(tok, "stories260K tokenizer") || !have_data(ref, "llama.cpp reference conversion of stories260K"))
    return;

  auto v = read_llama2c_tokenizer(tok.string(), 512);
  INFO((v.ok() ? std::string() : v.error().message));
  REQUIRE(v.ok());
  const gguf_oracle::File g = gguf_oracle::read(ref);
  const auto& tokens = g.at("tokenizer.ggml.tokens").arr;
  const auto& scores = g.at("tokenizer.ggml.scores").arr;
  const auto& types = g.at("tokenizer.ggml.token_type").arr;
  REQUIRE(tokens.size() == 512);
  REQUIRE(v->size() == 512);
  int mismatches = 0;
  for (size_t i = 0; i < 512; ++i) {
    const bool ok = v->tokens[i] == tokens[i].s && v->scores[i] == static_cast<float>(scores[i].f) &&
                    static_cast<int64_t>(v->token_types[i]) == types[i].i;
    if (!ok && ++mismatches < 5) {
      INFO("token " << i << ": ours '" << v->tokens[i] << "' " << v->scores[i] << " "
                    << static_cast<int>(v->token_types[i]) << ", llama.cpp '" << tokens[i].s << "' " << scores[i].f
                    << " " << types[i].i);
      CHECK(ok);
    }
  }
  CHECK(mismatches == 0);
  CHECK(g.at("tokenizer.ggml.model").s == v->model);
  CHECK(static_cast<int64_t>(g.at("tokenizer.ggml.unknown_token_id").u) == *v->unk_id);
  CHECK(static_cast<int64_t>(g.at("tokenizer.ggml.bos_token_id").u) == *v->bos_id);
  CHECK(static_cast<int64_t>(g.at("tokenizer.ggml.eos_token_id").u) == *v->eos_id);
  CHECK(g.kv.count("tokenizer.ggml.pre") == 0);  // v->pre empty: nothing to write either
  CHECK(v->pre.empty());
}

TEST_CASE("llama2c: BabyLlama checkpoint and its 105-token tokenizer", "[llama2c][data]") {
  const fs::path model = data_dir() / "models/babyllama-105/model5000.bin";
  const fs::path tok = data_dir() / "models/babyllama-105/tok105.bin";
  if (!have_data(model, "BabyLlama checkpoint") || !have_data(tok, "BabyLlama tokenizer")) return;
  auto c = Llama2cCheckpoint::open(model.string());
  INFO((c.ok() ? std::string() : c.error().message));
  REQUIRE(c.ok());
  CHECK(c->header().dim == 128);
  CHECK(c->header().hidden_dim == 352);
  CHECK(c->header().vocab_size == 105);
  CHECK(c->header().seq_len == 256);
  uint64_t params = 0;
  for (int w = 0; w < 11; ++w) params += c->weight(static_cast<Llama2cWeight>(w)).count;
  CHECK(params == 936448);
  for (float x : {c->rms_final().data[0], c->wo().data[c->wo().count - 1]}) CHECK(std::isfinite(x));

  auto v = read_llama2c_tokenizer(tok.string(), c->header().vocab_size);
  INFO((v.ok() ? std::string() : v.error().message));
  REQUIRE(v.ok());
  CHECK(v->size() == 105);
  CHECK(v->tokens[3] == "\xe2\x96\x81");  // the space token, escaped
  // The wrong vocabulary size is caught.
  CHECK_FALSE(read_llama2c_tokenizer(tok.string(), 512).ok());
  CHECK_FALSE(read_llama2c_tokenizer(tok.string(), 104).ok());
}

}  // namespace shrink::test

namespace shrink::test {

// The tokenizer keys of a GGUF file, through the oracle reader above, in plain std types so
// that other test files of this program can declare and use it: token strings, scores and
// types (empty when absent), and every scalar tokenizer.* key rendered as text (integers in
// decimal, booleans as true/false, strings as is).
void gguf_oracle_tokenizer(const fs::path& path, std::vector<std::string>* tokens, std::vector<float>* scores,
                           std::vector<int32_t>* types, std::map<std::string, std::string>* scalars) {
  const gguf_oracle::File g = gguf_oracle::read(path);
  tokens->clear();
  scores->clear();
  types->clear();
  scalars->clear();
  for (const auto& [key, v] : g.kv) {
    if (key == "tokenizer.ggml.tokens") {
      for (const auto& x : v.arr) tokens->push_back(x.s);
    } else if (key == "tokenizer.ggml.scores") {
      for (const auto& x : v.arr) scores->push_back(static_cast<float>(x.f));
    } else if (key == "tokenizer.ggml.token_type") {
      for (const auto& x : v.arr) types->push_back(static_cast<int32_t>(x.i));
    } else if (key.rfind("tokenizer.", 0) == 0 && v.type != 9) {
      std::string text;
      switch (v.type) {
        case 7: text = v.u ? "true" : "false"; break;
        case 8: text = v.s; break;
        case 1: case 3: case 5: case 11: text = std::to_string(v.i); break;
        case 6: case 12: text = std::to_string(v.f); break;
        default: text = std::to_string(v.u);
      }
      (*scalars)[key] = text;
    }
  }
}

}  // namespace shrink::test
