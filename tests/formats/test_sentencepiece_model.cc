// SentencePiece tokenizer.model reader: hand-encoded protobufs (fields, defaults, special-id
// resolution, every failure class, truncation and garbage) and, at the end of the file, the
// real models compared piece by piece with Python's sentencepiece (Debian
// python3-sentencepiece, run as /usr/bin/python3).
//
// Cases that need ../shared/data or Python return early when it is absent and the program
// ends as skipped (exit 77) after the run; see the top of test_llama2c.cc. They come last.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstring>
#include <sstream>

#include "formats/sentencepiece_model.h"
#include "tests/test_support.h"

namespace shrink::test {

// Defined in test_llama2c.cc (same test program): deferred skipping.
bool have_data(const fs::path& p, const std::string& what);
void note_missing(const std::string& why);

namespace {

// ---- a tiny protobuf encoder for hand-crafted models ----

std::string varint(uint64_t v) {
  std::string out;
  do {
    uint8_t b = v & 0x7f;
    v >>= 7;
    if (v) b |= 0x80;
    out.push_back(static_cast<char>(b));
  } while (v);
  return out;
}
std::string key(uint32_t field, uint32_t wire) { return varint(uint64_t{field} << 3 | wire); }
std::string len_field(uint32_t field, const std::string& payload) {
  return key(field, 2) + varint(payload.size()) + payload;
}
std::string varint_field(uint32_t field, int64_t v) { return key(field, 0) + varint(static_cast<uint64_t>(v)); }
std::string f32_field(uint32_t field, float f) {
  std::string b(4, '\0');
  std::memcpy(b.data(), &f, 4);
  return key(field, 5) + b;
}

struct P {
  std::string piece;
  float score;
  int type;  // 0: leave the field out (default NORMAL)
};

std::string piece_msg(const P& p) {
  std::string m = len_field(1, p.piece) + f32_field(2, p.score);
  if (p.type != 0) m += varint_field(3, p.type);
  return m;
}

std::string model_bytes(const std::vector<P>& pieces, const std::string& trainer = "",
                        const std::string& normalizer = "") {
  std::string m;
  for (const P& p : pieces) m += len_field(1, piece_msg(p));
  if (!trainer.empty()) m += len_field(2, trainer);
  if (!normalizer.empty()) m += len_field(3, normalizer);
  return m;
}

const std::string kSp = "\xe2\x96\x81";  // U+2581

// A small model exercising every piece type, non-default special pieces and unknown fields.
std::vector<P> sample_pieces() {
  return {
      {"<unk>", 0.0f, 2}, {"<s>", 0.0f, 3},    {"</s>", 0.0f, 3},       {"[BOS]", 0.0f, 3},
      {"<pad>", 0.0f, 3}, {kSp + "a", -1.0f, 0}, {"b", -2.5f, 1},      {"<mask>", 0.0f, 4},
      {"zz", -3.0f, 5},   {"<s>", -4.0f, 1},   // a NORMAL piece may share a CONTROL piece's name
  };
}
std::string sample_trainer() {
  return varint_field(3, 1) + varint_field(4, 10) + varint_field(41, 3) + varint_field(43, -1) +
         len_field(46, "[BOS]") + varint_field(99, 12345) + len_field(100, "skipped");
}
std::string sample_normalizer() { return len_field(1, "identity") + varint_field(3, 0); }

std::string write(const TempDir& dir, const std::string& name, const std::string& bytes) {
  const fs::path p = dir / name;
  write_bytes(p, std::vector<uint8_t>(bytes.begin(), bytes.end()));
  return p.string();
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string parse_error(const std::string& bytes) {
  const std::string file = "model.bin";
  auto r = parse_sentencepiece_model(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), file);
  REQUIRE_FALSE(r.ok());
  INFO(r.error().message);
  CHECK(r.error().message.rfind(file + ": ", 0) == 0);  // names the file first
  return r.error().message;
}

}  // namespace

TEST_CASE("sentencepiece: hand-encoded model, fields and defaults", "[sentencepiece]") {
  TempDir dir;
  const std::string path = write(dir, "t.model", model_bytes(sample_pieces(), sample_trainer(), sample_normalizer()) +
                                                     len_field(5, "denormalizer spec, skipped") +
                                                     key(7, 1) + std::string(8, 'x') + key(8, 5) + "abcd");
  auto m = read_sentencepiece_model(path);
  INFO((m.ok() ? std::string() : m.error().message));
  REQUIRE(m.ok());
  REQUIRE(m->pieces.size() == 10);
  CHECK(m->pieces[5].piece == kSp + "a");
  CHECK(m->pieces[5].score == -1.0f);
  CHECK(m->pieces[5].type == SentencePieceType::NORMAL);  // field absent: the proto default
  CHECK(m->pieces[6].score == -2.5f);
  CHECK(m->pieces[7].type == SentencePieceType::USER_DEFINED);
  CHECK(m->pieces[8].type == SentencePieceType::UNUSED);
  CHECK(m->model_type == 1);
  CHECK(m->vocab_size == 10);
  CHECK(m->bos_id == 3);
  CHECK(m->pad_id == -1);  // a 10-byte negative varint
  CHECK(m->unk_id == 0);   // default
  CHECK(m->bos_piece == "[BOS]");
  CHECK_FALSE(m->byte_fallback);
  CHECK(m->normalizer_name == "identity");
  CHECK_FALSE(m->add_dummy_prefix);
  CHECK(m->remove_extra_whitespaces);  // default
  // SentencePieceProcessor's special ids: by piece name, checked against the piece type.
  CHECK(m->special_unk_id == 0);
  CHECK(m->special_bos_id == 3);  // bos_piece "[BOS]"
  CHECK(m->special_eos_id == 2);
  CHECK(m->special_pad_id == 4);  // "<pad>" is a CONTROL piece

  const Vocab v = sentencepiece_to_vocab(*m);
  CHECK(v.model == "llama");
  CHECK(v.pre == "default");
  REQUIRE(v.size() == 10);
  CHECK(v.tokens[7] == "<mask>");
  const std::vector<TokenType> want = {
      TokenType::UNKNOWN, TokenType::CONTROL, TokenType::CONTROL, TokenType::CONTROL, TokenType::CONTROL,
      TokenType::NORMAL,  TokenType::NORMAL,  TokenType::NORMAL,  TokenType::UNUSED,  TokenType::NORMAL,
  };
  CHECK(v.token_types == want);  // USER_DEFINED -> NORMAL, as convert_hf_to_gguf.py does
  CHECK(v.scores[6] == -2.5f);
  CHECK(v.unk_id == 0);
  CHECK(v.bos_id == 3);
  CHECK(v.eos_id == 2);
  CHECK(v.pad_id == 4);
  CHECK(v.add_space_prefix == false);  // add_dummy_prefix false must reach llama.cpp
}

TEST_CASE("sentencepiece: special ids follow SentencePieceProcessor's rules", "[sentencepiece]") {
  SECTION("defaults, no <pad>, add_dummy_prefix true leaves add_space_prefix unset") {
    const std::string b = model_bytes({{"<unk>", 0, 2}, {"<s>", 0, 3}, {"</s>", 0, 3}, {"x", -1, 1}});
    auto m = parse_sentencepiece_model(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "m");
    REQUIRE(m.ok());
    CHECK(m->special_unk_id == 0);
    CHECK(m->special_bos_id == 1);
    CHECK(m->special_eos_id == 2);
    CHECK(m->special_pad_id == -1);
    const Vocab v = sentencepiece_to_vocab(*m);
    CHECK_FALSE(v.pad_id.has_value());
    CHECK_FALSE(v.add_space_prefix.has_value());
  }
  SECTION("a special piece that is not CONTROL does not count") {
    const std::string b = model_bytes({{"x", 0, 1}, {"<unk>", 0, 2}, {"<s>", 0, 1}, {"</s>", 0, 5}});
    auto m = parse_sentencepiece_model(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "m");
    REQUIRE(m.ok());
    CHECK(m->special_unk_id == 1);
    CHECK(m->special_bos_id == -1);
    CHECK(m->special_eos_id == -1);
    const Vocab v = sentencepiece_to_vocab(*m);
    CHECK(v.unk_id == 1);
    CHECK_FALSE(v.bos_id.has_value());
    CHECK_FALSE(v.eos_id.has_value());
  }
  SECTION("the unknown piece answers for a renamed unk_piece that does not exist") {
    const std::string b =
        model_bytes({{"<unk>", 0, 2}, {"<s>", 0, 3}}, len_field(45, "<UNK>") + len_field(47, "<eos>"));
    auto m = parse_sentencepiece_model(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "m");
    REQUIRE(m.ok());
    CHECK(m->special_unk_id == 0);  // PieceToId falls back to the UNKNOWN piece
    CHECK(m->special_eos_id == -1);
  }
  SECTION("byte_fallback with all 256 byte pieces") {
    std::vector<P> pieces = {{"<unk>", 0, 2}};
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      pieces.push_back({name, 0, 6});
    }
    const std::string bytes = model_bytes(pieces, varint_field(35, 1));
    auto m = parse_sentencepiece_model(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "m");
    INFO((m.ok() ? std::string() : m.error().message));
    REQUIRE(m.ok());
    CHECK(m->byte_fallback);
    const Vocab v = sentencepiece_to_vocab(*m);
    CHECK(v.token_types[1] == TokenType::BYTE);
    CHECK(v.token_types[256] == TokenType::BYTE);
  }
  SECTION("repeated TrainerSpec messages merge, the later value winning") {
    std::string b = model_bytes({{"<unk>", 0, 2}, {"<s>", 0, 3}, {"<S>", 0, 3}});
    b += len_field(2, varint_field(4, 7) + len_field(46, "<S>"));
    b += len_field(2, varint_field(3, 2));
    auto m = parse_sentencepiece_model(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "m");
    REQUIRE(m.ok());
    CHECK(m->vocab_size == 7);
    CHECK(m->model_type == 2);
    CHECK(m->special_bos_id == 2);
  }
}

TEST_CASE("sentencepiece: hostile models fail cleanly, naming the file", "[sentencepiece][hostile]") {
  const std::string good = model_bytes(sample_pieces(), sample_trainer(), sample_normalizer());

  SECTION("missing file") {
    auto r = read_sentencepiece_model("no/such/tokenizer.model");
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error().message, "no/such/tokenizer.model"));
  }
  SECTION("empty") { CHECK(contains(parse_error(""), "file is empty")); }
  SECTION("no pieces") { CHECK(contains(parse_error(len_field(2, varint_field(4, 8))), "has no pieces")); }
  SECTION("truncated at every length") {
    for (size_t cut = 1; cut < good.size(); ++cut) {
      const std::string b = good.substr(0, cut);
      auto r = parse_sentencepiece_model(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "cut.model");
      // A cut at a message boundary may still be a valid (shorter) model; anything else fails.
      if (!r.ok()) {
        INFO(r.error().message);
        CHECK(r.error().message.rfind("cut.model: ", 0) == 0);
      }
    }
  }
  SECTION("a length running past the end") {
    const std::string msg = parse_error(key(1, 2) + varint(1000) + "abc");
    CHECK(contains(msg, "length 1000 exceeds the 3 bytes left"));
    CHECK(contains(msg, "at offset 1"));
  }
  SECTION("a length running past the end of its enclosing message") {
    const std::string inner = key(1, 2) + varint(50) + "<unk>";
    CHECK(contains(parse_error(len_field(1, inner)), "SentencePiece 0"));
  }
  SECTION("varint overflow and unterminated varint") {
    CHECK(contains(parse_error(key(9, 0) + std::string(10, '\xff') + "\x01"), "overflows 64 bits"));
    CHECK(contains(parse_error(key(9, 0) + std::string(9, '\xff') + "\x7f"), "overflows 64 bits"));
    CHECK(contains(parse_error(key(9, 0) + std::string(3, '\x80')), "runs past the end"));
  }
  SECTION("field number 0 and invalid wire types") {
    CHECK(contains(parse_error(std::string("\x00\x01", 2)), "invalid field number 0"));
    CHECK(contains(parse_error(key(9, 6) + "x"), "invalid wire type 6"));
    CHECK(contains(parse_error(key(9, 3) + key(9, 4)), "group"));
  }
  SECTION("a known field with the wrong wire type") {
    CHECK(contains(parse_error(key(1, 0) + varint(3)), "pieces (field 1) has wire type varint"));
    CHECK(contains(parse_error(len_field(1, key(2, 0) + varint(1))), "score (field 2)"));
    CHECK(contains(parse_error(len_field(2, len_field(40, "x"))), "unk_id (field 40)"));
  }
  SECTION("fixed-width values cut short") {
    CHECK(contains(parse_error(len_field(1, key(2, 5) + "ab")), "32-bit value runs past"));
    CHECK(contains(parse_error(key(9, 1) + "abc"), "64-bit value runs past"));
  }
  SECTION("piece type outside the enum") {
    CHECK(contains(parse_error(model_bytes({{"<unk>", 0, 2}, {"x", 0, 7}})), "piece type 7"));
    CHECK(contains(parse_error(model_bytes({{"<unk>", 0, 2}, {"x", 0, -1}})), "piece type -1"));
  }
  SECTION("SentencePiece's own loader rules") {
    CHECK(contains(parse_error(model_bytes({{"<unk>", 0, 2}, {"", 0, 1}})), "piece 1 is empty"));
    CHECK(contains(parse_error(model_bytes({{"<unk>", 0, 2}, {"a", 0, 1}, {"a", 0, 4}})),
                   "piece 2 \"a\" is already defined as piece 1"));
    CHECK(contains(parse_error(model_bytes({{"<unk>", 0, 2}, {"<s>", 0, 3}, {"<s>", 0, 6}})), "already defined"));
    CHECK(contains(parse_error(model_bytes({{"a", 0, 1}, {"<s>", 0, 3}})), "no piece has type UNKNOWN"));
    CHECK(contains(parse_error(model_bytes({{"<unk>", 0, 2}, {"<unk2>", 0, 2}})), "second UNKNOWN piece"));
    CHECK(contains(parse_error(model_bytes({{"<unk>", 0, 2}, {"<0x41>", 0, 6}})), "byte_fallback is false"));
    CHECK(contains(parse_error(model_bytes({{"<unk>", 0, 2}, {"<0x4g>", 0, 6}}, varint_field(35, 1))),
                   "not spelled <0xXX>"));
    CHECK(contains(parse_error(model_bytes({{"<unk>", 0, 2}, {"<0x41>", 0, 6}}, varint_field(35, 1))),
                   "no BYTE piece for byte 0"));
  }
  SECTION("control characters in a reported piece are escaped") {
    const std::string msg = parse_error(model_bytes({{"<unk>", 0, 2}, {"\n\x01", 0, 1}, {"\n\x01", 0, 1}}));
    CHECK(contains(msg, "\"\\x0a\\x01\""));
  }
  SECTION("random garbage and bit flips never crash") {
    std::mt19937 rng(seed());
    for (int round = 0; round < 500; ++round) {
      std::string b;
      if (round % 2 == 0) {
        b.resize(rng() % 96);
        for (auto& c : b) c = static_cast<char>(rng());
      } else {
        b = good;
        for (int k = 0; k < 3; ++k) b[rng() % b.size()] ^= static_cast<char>(1u << (rng() % 8));
      }
      auto r = parse_sentencepiece_model(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "fuzz.model");
      if (!r.ok()) CHECK(r.error().message.rfind("fuzz.model: ", 0) == 0);
    }
  }
}

// ---- Python sentencepiece as the oracle (skipped when absent; keep these last). ----

namespace {

// For each id: the piece (hex of its UTF-8), the score (hex of its float32 bits) and the
// GGUF token type exactly as convert_hf_to_gguf.py `_create_vocab_sentencepiece` derives it.
const char* kOracleScript = R"PY(
import struct, sys
import sentencepiece as spm
s = spm.SentencePieceProcessor(model_file=sys.argv[1])
print("ids", s.vocab_size(), s.unk_id(), s.bos_id(), s.eos_id(), s.pad_id())
for i in range(s.vocab_size()):
    t = 1
    if s.IsUnknown(i): t = 2
    elif s.IsControl(i): t = 3
    elif s.IsUnused(i): t = 5
    elif s.IsByte(i): t = 6
    print(i, s.IdToPiece(i).encode("utf-8").hex(), struct.pack("<f", s.GetScore(i)).hex(), t)
)PY";

std::string hex(const std::string& bytes) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}

// The interpreter, or "" (noted as missing) when it cannot import sentencepiece.
std::string python() {
  static const std::string py = "/usr/bin/python3";
  const RunResult probe = run(quote(py) + " -c 'import sentencepiece'");
  if (probe.exit_code != 0) {
    note_missing("Python sentencepiece (Debian python3-sentencepiece, /usr/bin/python3) not available: " + probe.out);
    return "";
  }
  return py;
}

// Compares our reading of `model` with Python's, piece by piece.
void compare_with_python(const std::string& model, const std::string& py, const TempDir& dir) {
  INFO(model);
  auto m = read_sentencepiece_model(model);
  INFO((m.ok() ? std::string() : m.error().message));
  REQUIRE(m.ok());
  const Vocab v = sentencepiece_to_vocab(*m);

  const fs::path script = dir / "oracle.py";
  write_bytes(script, std::vector<uint8_t>(kOracleScript, kOracleScript + std::strlen(kOracleScript)));
  const RunResult r = run(quote(py) + " " + quote(script.string()) + " " + quote(model));
  INFO(r.out.substr(0, 2000));
  REQUIRE(r.exit_code == 0);

  std::istringstream in(r.out);
  std::string tag;
  int64_t n = 0, unk = 0, bos = 0, eos = 0, pad = 0;
  in >> tag >> n >> unk >> bos >> eos >> pad;
  REQUIRE(tag == "ids");
  REQUIRE(static_cast<int64_t>(v.size()) == n);
  CHECK(m->special_unk_id == unk);
  CHECK(m->special_bos_id == bos);
  CHECK(m->special_eos_id == eos);
  CHECK(m->special_pad_id == pad);
  CHECK(v.unk_id.value_or(-1) == unk);
  CHECK(v.bos_id.value_or(-1) == bos);
  CHECK(v.eos_id.value_or(-1) == eos);
  CHECK(v.pad_id.value_or(-1) == pad);

  int mismatches = 0;
  for (int64_t i = 0; i < n; ++i) {
    int64_t id = -1;
    int type = 0;
    std::string piece_hex, score_hex;
    in >> id >> piece_hex >> score_hex >> type;
    REQUIRE(id == i);
    const std::string sb(reinterpret_cast<const char*>(&v.scores[i]), 4);
    const bool same = hex(v.tokens[i]) == piece_hex && hex(sb) == score_hex &&
                      static_cast<int>(v.token_types[i]) == type;
    if (!same && ++mismatches <= 5) {
      INFO("id " << i << ": ours " << hex(v.tokens[i]) << " " << hex(sb) << " " << static_cast<int>(v.token_types[i])
                 << ", python " << piece_hex << " " << score_hex << " " << type);
      CHECK(same);
    }
  }
  CHECK(mismatches == 0);
}

}  // namespace

TEST_CASE("sentencepiece: a hand-encoded model reads as Python sentencepiece reads it", "[sentencepiece][python]") {
  TempDir dir;
  const std::string path = write(dir, "t.model", model_bytes(sample_pieces(), sample_trainer(), sample_normalizer()));
  const std::string py = python();
  if (py.empty()) return;
  compare_with_python(path, py, dir);
}

TEST_CASE("sentencepiece: real models equal Python sentencepiece, piece by piece", "[sentencepiece][python][data]") {
  const fs::path d = data_dir();
  const std::vector<fs::path> models = {
      d / "models/stories260K/tok512.model",
      d / "models/babyllama-105/tok105.model",
      d / "tokenizers/llama2/tokenizer.model",
  };
  for (const auto& m : models)
    if (!have_data(m, "SentencePiece model")) return;
  const std::string py = python();
  if (py.empty()) return;
  TempDir dir;
  for (const auto& m : models) compare_with_python(m.string(), py, dir);

  // Facts the llama.cpp conversion relies on, spelled out for the Llama 2 model.
  auto llama2 = read_sentencepiece_model((d / "tokenizers/llama2/tokenizer.model").string());
  REQUIRE(llama2.ok());
  CHECK(llama2->pieces.size() == 32000);
  CHECK(llama2->model_type == 2);  // BPE
  CHECK(llama2->byte_fallback);
  CHECK(llama2->add_dummy_prefix);
  CHECK(llama2->pieces[3].piece == "<0x00>");
}

}  // namespace shrink::test
