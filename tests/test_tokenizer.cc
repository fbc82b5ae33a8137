// Tokenizers against llama.cpp's own test vectors (tests/test-tokenizer-0: each .inp string,
// tokenized with add_special = false and parse_special = false, must give the ids on the
// matching .out line), llama.cpp's round-trip guarantees (test-tokenizer-1-{spm,bpe}: every
// token's text and every code point come back from decode(encode(x))), and SentencePiece
// itself on the stories260K vocabulary.
#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <sstream>

#include "formats/gguf.h"
#include "model/gguf_metadata.h"
#include "model/model_source.h"
#include "model/tokenizer.h"
#include "model/unicode.h"
#include "tests/test_support.h"

using namespace shrink;
using namespace shrink::test;

namespace {

struct VocabCase {
  std::string text;
  std::vector<int32_t> ids;
};

// test-tokenizer-0's reader: strings separated by "\n__ggml_vocab_test__\n" (the newline
// before the marker belongs to the separator), one line of ids per string.
std::vector<VocabCase> read_cases(const fs::path& gguf) {
  const std::string raw = read_text(gguf.string() + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  for (size_t pos = 0; pos < raw.size();) {
    size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      inputs.push_back(raw.substr(pos));
      break;
    }
    inputs.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::ifstream out(gguf.string() + ".out");
  std::vector<VocabCase> cases;
  std::string line;
  for (size_t i = 0; std::getline(out, line); ++i) {
    VocabCase c;
    c.text = i < inputs.size() ? inputs[i] : std::string();
    std::istringstream ids(line);
    for (int32_t id; ids >> id;) c.ids.push_back(id);
    cases.push_back(std::move(c));
  }
  REQUIRE(cases.size() == inputs.size());
  return cases;
}

fs::path vocab_dir() { return data_dir() / "tokenizers/llama.cpp-vocab"; }

Tokenizer load_vocab_file(const std::string& name) {
  const fs::path p = vocab_dir() / ("ggml-vocab-" + name + ".gguf");
  if (!fs::exists(p)) skip_program(p.string() + " not found");
  auto f = GgufFile::open(p.string());
  REQUIRE(f.ok());
  auto v = vocab_from_gguf(*f);
  REQUIRE(v.ok());
  TokenizerOptions o;
  if (const GgufValue* n = f->find("general.name"); n && n->as_string()) o.model_name = *n->as_string();
  auto t = Tokenizer::from_vocab(*v, o);
  INFO((t.ok() ? std::string() : t.error().message));
  REQUIRE(t.ok());
  return std::move(t).value();
}

std::string show(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += std::to_string(id) + " ";
  return s;
}

// Strings the decoder's clean-up (" ," -> ",", " 's" -> "'s", ...) would change: for vocabularies
// with clean_spaces these cannot round-trip, in llama.cpp either.
bool clean_up_changes(const std::string& s) {
  for (const char* p : {" ?", " !", " .", " ,", " '"})
    if (s.find(p) != std::string::npos) return true;
  return false;
}

void check_vocab_file(const std::string& name, bool clean_spaces) {
  const Tokenizer tok = load_vocab_file(name);
  const auto cases = read_cases(vocab_dir() / ("ggml-vocab-" + name + ".gguf"));
  size_t passed = 0;
  for (const VocabCase& c : cases) {
    const std::vector<int32_t> got = tok.encode(c.text, /*add_special=*/false, /*parse_special=*/false);
    INFO(name << ": '" << c.text << "'\n expected " << show(c.ids) << "\n got      " << show(got));
    CHECK(got == c.ids);
    passed += got == c.ids;
    if (!clean_spaces || !clean_up_changes(c.text)) CHECK(tok.decode(got) == c.text);
  }
  WARN(name << ": " << passed << "/" << cases.size() << " llama.cpp test strings match");
}

bool valid_utf8(const std::string& s) {
  std::string again;
  for (uint32_t c : unicode::cpts_from_utf8(s)) again += unicode::cpt_to_utf8(c);
  return again == s;
}

// test-tokenizer-1: every token's text (special tokens rendered) re-tokenizes (special tokens
// parsed) to something that decodes to the same text, and every code point outside the
// surrogates and U+40000..U+E0000 round-trips (U+2581 excepted: SentencePiece's space).
void check_round_trips(const Tokenizer& tok) {
  int bad_tokens = 0;
  for (int32_t id = 0; id < tok.n_tokens(); ++id) {
    const std::string s = tok.decode({id}, false, true);
    if (!valid_utf8(s)) continue;  // a lone byte of a multi-byte character: nothing to guarantee
    const std::string back = tok.decode(tok.encode(s, false, true), false, true);
    if (back != s && bad_tokens++ < 5) FAIL_CHECK("token " << id << " '" << s << "' -> '" << back << "'");
  }
  CHECK(bad_tokens == 0);
  int bad_cpts = 0;
  for (uint32_t cp = 0; cp < 0x110000; ++cp) {
    if ((cp >= 0xD800 && cp <= 0xDFFF) || (cp >= 0x40000 && cp <= 0xE0000) || cp == 0x2581) continue;
    const std::string s = unicode::cpt_to_utf8(cp);
    const std::string back = tok.decode(tok.encode(s, false, false), false, true);
    if (back != s && bad_cpts++ < 5) FAIL_CHECK("code point " << cp << " -> '" << back << "'");
  }
  CHECK(bad_cpts == 0);
}

}  // namespace

// ---- self-contained ----

TEST_CASE("unicode: categories, UTF-8 and GPT-2 byte characters") {
  CHECK(unicode::flags('a').is_letter());
  CHECK(unicode::flags(0x4F60).is_letter());  // 你
  CHECK(unicode::flags('7').is_number());
  CHECK(unicode::flags(0x0663).is_number());  // ARABIC-INDIC DIGIT THREE
  CHECK(unicode::flags(' ').whitespace);
  CHECK(unicode::flags(0x3000).whitespace);
  CHECK(unicode::flags(0x1F999).category == unicode::kSymbol);  // 🦙
  CHECK(unicode::flags(0x0301).category == unicode::kMark);
  CHECK(unicode::flags(0x0378).category == unicode::kUndefined);  // unassigned
  CHECK(unicode::cpts_from_utf8("\xC3\xA9\xFF" "a") == std::vector<uint32_t>{0xE9, 0xFFFD, 'a'});
  CHECK(unicode::cpt_to_utf8(0x1F999) == "\xF0\x9F\xA6\x99");
  CHECK(unicode::byte_to_utf8(' ') == "\xC4\xA0");   // Ġ
  CHECK(unicode::byte_to_utf8('\n') == "\xC4\x8A");  // Ċ
  CHECK(unicode::byte_to_utf8('A') == "A");
  for (int b = 0; b < 256; ++b) {
    uint8_t back = 0;
    REQUIRE(unicode::utf8_to_byte(unicode::byte_to_utf8(static_cast<uint8_t>(b)), back));
    CHECK(back == b);
  }
}

TEST_CASE("unicode: pre-tokenizer splits") {
  using unicode::regex_split;
  const std::vector<std::string> gpt2 = {
      "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"};
  CHECK(regex_split("Hello world's  123!!", gpt2, false) ==
        std::vector<std::string>{"Hello", " world", "'s", " ", " 123", "!!"});
  const std::vector<std::string> llama3 = {
      "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
  CHECK(regex_split("I'LL pay 12345\n\n ok", llama3, false) ==
        std::vector<std::string>{"I", "'LL", " pay", " ", "123", "45", "\n\n", " ok"});
  // The general std::regex path (the "default" pre-tokenizer's first and last regexes).
  CHECK(regex_split("a+b==c 1234", {"[\\p{P}\\$\\+<=>\\^~\\|]+", "[0-9][0-9][0-9]"}, false) ==
        std::vector<std::string>{"a", "+", "b", "==", "c ", "123", "4"});
  CHECK(regex_split(" a", gpt2, true) == std::vector<std::string>{"\xC4\xA0" "a"});
}

TEST_CASE("tokenizer: unsupported vocabularies are refused with a reason") {
  Vocab v;
  v.model = "bert";
  v.tokens = {"a"};
  auto t = Tokenizer::from_vocab(v);
  REQUIRE_FALSE(t.ok());
  CHECK(t.error().message.find("bert") != std::string::npos);
  v.model = "gpt2";
  v.pre = "no-such-pre";
  v.merges = {"a b"};
  t = Tokenizer::from_vocab(v);
  REQUIRE_FALSE(t.ok());
  CHECK(t.error().message.find("no-such-pre") != std::string::npos);
}

TEST_CASE("tokenizer: a small SentencePiece vocabulary merges by score and falls back to bytes") {
  Vocab v;
  v.model = "llama";
  v.tokens = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "ab", "\xE2\x96\x81" "ab", "<0x63>", "<0xC3>", "<0xA9>"};
  v.scores = {0, 0, 0, -1, -2, -2, -1, -0.5f, 0, 0, 0};
  v.token_types = {TokenType::UNKNOWN, TokenType::CONTROL, TokenType::CONTROL, TokenType::NORMAL,
                   TokenType::NORMAL,  TokenType::NORMAL,  TokenType::NORMAL,  TokenType::NORMAL,
                   TokenType::BYTE,    TokenType::BYTE,    TokenType::BYTE};
  auto t = Tokenizer::from_vocab(v);
  REQUIRE(t.ok());
  CHECK(t->encode("ab", true, false) == std::vector<int32_t>{1, 7});
  CHECK(t->encode("ab c\xC3\xA9", false, false) == std::vector<int32_t>{7, 3, 8, 9, 10});
  CHECK(t->decode({7, 3, 8, 9, 10}) == "ab c\xC3\xA9");
  // No pieces and no byte tokens for '<', '/', 's', '>': each byte becomes <unk>.
  CHECK(t->encode("a</s>b", false, false) == std::vector<int32_t>{3, 4, 0, 0, 0, 0, 5});
  CHECK(t->encode("a</s>b", false, true) == std::vector<int32_t>{3, 4, 2, 3, 5});
  CHECK(t->token_text(7) == "\xE2\x96\x81" "ab");
  CHECK(t->token_piece(7) == " ab");
}

// ---- llama.cpp's vocabulary files ----

TEST_CASE("llama.cpp vocab llama-spm: test-tokenizer-0 strings and round trips", "[data]") {
  check_vocab_file("llama-spm", false);
  check_round_trips(load_vocab_file("llama-spm"));
}

TEST_CASE("llama.cpp vocab phi-3: test-tokenizer-0 strings and round trips", "[data]") {
  check_vocab_file("phi-3", false);
  check_round_trips(load_vocab_file("phi-3"));
}

TEST_CASE("llama.cpp vocab gpt-2: test-tokenizer-0 strings and round trips", "[data]") {
  check_vocab_file("gpt-2", true);
  check_round_trips(load_vocab_file("gpt-2"));
}

TEST_CASE("llama.cpp vocab llama-bpe: test-tokenizer-0 strings and round trips", "[data]") {
  check_vocab_file("llama-bpe", true);
  check_round_trips(load_vocab_file("llama-bpe"));
}

TEST_CASE("llama.cpp vocab qwen2: test-tokenizer-0 strings and round trips", "[data]") {
  check_vocab_file("qwen2", false);
  check_round_trips(load_vocab_file("qwen2"));
}

TEST_CASE("llama.cpp vocab llama-bpe: special tokens, BOS, and parse_special", "[data]") {
  const Tokenizer tok = load_vocab_file("llama-bpe");
  REQUIRE(tok.bos_id() == 128000);
  CHECK(tok.add_bos());
  CHECK(tok.encode("Hello", true, false) == std::vector<int32_t>{128000, 9906});
  // <|eot_id|> is a control token: plain text unless parse_special.
  CHECK(tok.encode("<|eot_id|>", false, true) == std::vector<int32_t>{128009});
  CHECK(tok.encode("<|eot_id|>", false, false).size() > 1);
  CHECK(tok.decode({128000, 9906}, false, false) == "Hello");
  CHECK(tok.decode({128000, 9906}, false, true) == "<|begin_of_text|>Hello");
}

// stories260K's tok512 through the llama2.c importer, against SentencePiece (ids from
// sentencepiece 0.1.99: `spm.SentencePieceProcessor(model_file="tok512.model").encode(s)`).
TEST_CASE("stories260K tok512 (llama2.c path) tokenizes like SentencePiece", "[data]") {
  const fs::path dir = data_dir() / "models/stories260K";
  if (!fs::exists(dir / "stories260K.bin")) skip_program(dir.string() + " not found");
  OpenOptions o;
  o.tokenizer = (dir / "tok512.model").string();
  auto m = open_model((dir / "stories260K.bin").string(), o);
  REQUIRE(m.ok());
  auto t = Tokenizer::from_vocab(m->vocab);
  REQUIRE(t.ok());
  const std::map<std::string, std::vector<int32_t>> expected = {
      {"Once upon a time, there was a little girl named Lily.",
       {403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426}},
      {"She loved to play outside in the park.",
       {338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426}},
      {"Tom said: \"Wow! Look at the big, red ball!\"",
       {274, 287, 336, 467, 313, 448, 327, 443, 307, 347, 433, 261, 413, 265, 370, 432, 352, 266, 268, 388, 443, 436}},
      {"The cat's toy was 3 feet long.",
       {291, 280, 294, 439, 419, 267, 422, 286, 410, 472, 272, 411, 316, 278, 289, 428, 426}},
      // Characters outside the 512 pieces fall back to <0xXX> bytes.
      {"Zebra quizzes jump over 42 lazy dogs; caf\xC3\xA9 na\xC3\xAFve \xE6\x97\xA5\xE6\x9C\xAC",
       {410, 469, 411, 430, 420, 412, 410, 456, 425, 417, 451, 451, 406, 410, 449, 425, 423, 427, 334, 330, 410, 484,
        479, 278, 412, 451, 422, 400, 428, 419, 474, 280, 412, 431, 485, 297, 412, 198, 178, 360, 410, 233, 154, 168,
        233, 159, 175}},
      {"\nnew\tline and tab", {410, 13, 416, 411, 424, 12, 421, 271, 411, 269, 259, 412, 430}},
  };
  for (const auto& [text, ids] : expected) {
    INFO("'" << text << "'");
    CHECK(t->encode(text, false, false) == ids);
    CHECK(t->decode(ids) == text);
  }
  CHECK(t->encode("Once upon a time", true, false).front() == 1);  // BOS
}

TEST_CASE("shrink tokenize: ids from a vocabulary-only GGUF and from a llama2.c checkpoint", "[data]") {
  const fs::path spm = vocab_dir() / "ggml-vocab-llama-spm.gguf";
  const fs::path bin = data_dir() / "models/stories260K/stories260K.bin";
  if (!fs::exists(spm) || !fs::exists(bin)) skip_program("../shared/data vocab files or stories260K not found");
  RunResult r = run_shrink("tokenize " + quote(spm.string()) + " --text 'Hello world' --ids-only");
  CHECK(r.exit_code == 0);
  CHECK(r.out == "1 15043 3186\n");
  r = run_shrink("tokenize " + quote(spm.string()) + " --text 'Hello world' --no-bos");
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("15043 -> ' Hello'") != std::string::npos);
  CHECK(r.out.find("2 tokens") != std::string::npos);
  r = run_shrink("tokenize " + quote((vocab_dir() / "ggml-vocab-llama-bpe.gguf").string()) +
                 " --text 'Hi<|eot_id|>' --parse-special --ids-only --no-bos");
  CHECK(r.out == "13347 128009\n");
  r = run_shrink("tokenize " + quote(bin.string()) + " --tokenizer " +
                 quote((bin.parent_path() / "tok512.bin").string()) + " --text 'Once upon a time' --ids-only");
  CHECK(r.exit_code == 0);
  CHECK(r.out == "1 403 407 261 378\n");
  r = run_shrink("tokenize " + quote(spm.string()));
  CHECK(r.exit_code != 0);
}
