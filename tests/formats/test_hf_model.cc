// Hugging Face folder reader: config.json (fields, defaults, every failure class) and the
// tokenizer files, on hand-written folders in a TempDir; at the end of the file the real
// stories260K-hf folder and Llama 2's tokenizer.model compared with llama.cpp's own
// vocabulary file (../shared/data/tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf, made
// by convert_hf_to_gguf.py).
//
// Cases that need ../shared/data return early when it is absent and the program ends as
// skipped (exit 77) after the run; see the top of test_llama2c.cc. They come last.
#include <catch2/catch.hpp>

#include <cstring>
#include <map>
#include <tuple>

#include "formats/hf_model.h"
#include "formats/sentencepiece_model.h"
#include "tests/test_support.h"

namespace shrink::test {

// Defined in test_llama2c.cc (same test program): deferred skipping, and an independent GGUF
// reader's view of the tokenizer keys.
bool have_data(const fs::path& p, const std::string& what);
void gguf_oracle_tokenizer(const fs::path& path, std::vector<std::string>* tokens, std::vector<float>* scores,
                           std::vector<int32_t>* types, std::map<std::string, std::string>* scalars);

namespace {

using json = nlohmann::json;

const std::string kSp = "\xe2\x96\x81";  // U+2581
const std::string kG = "\xc4\xa0";       // U+0120, GPT-2's byte-level space

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

const char* kLlamaConfig = R"JSON({
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "hidden_size": 64,
  "intermediate_size": 172,
  "num_hidden_layers": 5,
  "num_attention_heads": 8,
  "num_key_value_heads": 4,
  "vocab_size": 512,
  "max_position_embeddings": 512,
  "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0,
  "tie_word_embeddings": true,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "torch_dtype": "float32"
})JSON";

Result<HfConfig> config_from(const TempDir& dir, const json& j) {
  write_text(dir / "config.json", j.dump(2));
  return read_hf_config(dir.path.string());
}

// Expects read_hf_config to fail; the message must name config.json and `field`.
std::string config_error(const TempDir& dir, const json& j, const std::string& field) {
  auto r = config_from(dir, j);
  REQUIRE_FALSE(r.ok());
  const std::string msg = r.error().message;
  INFO(msg);
  CHECK(contains(msg, (dir / "config.json").string()));
  CHECK(contains(msg, field));
  return msg;
}

}  // namespace

TEST_CASE("hf config: a Llama config.json and its defaults", "[hf][config]") {
  TempDir dir;
  json j = json::parse(kLlamaConfig);
  auto c = config_from(dir, j);
  INFO((c.ok() ? std::string() : c.error().message));
  REQUIRE(c.ok());
  CHECK(c->architecture == "LlamaForCausalLM");
  CHECK(c->model_type == "llama");
  CHECK(c->hidden_size == 64);
  CHECK(c->intermediate_size == 172);
  CHECK(c->num_hidden_layers == 5);
  CHECK(c->num_attention_heads == 8);
  CHECK(c->num_key_value_heads == 4);
  CHECK_FALSE(c->head_dim.has_value());
  CHECK(c->head_dim_or_default() == 8);
  CHECK(c->vocab_size == 512);
  CHECK(c->max_position_embeddings == 512);
  CHECK(c->rms_norm_eps == 1e-5);
  CHECK(c->rope_theta == 10000.0);
  CHECK(c->tie_word_embeddings);
  CHECK_FALSE(c->attention_bias);
  CHECK(c->torch_dtype == "float32");
  CHECK(c->bos_token_ids == std::vector<int64_t>{1});
  CHECK(c->eos_token_ids == std::vector<int64_t>{2});
  CHECK_FALSE(c->rope_scaling.has_value());
  CHECK_FALSE(c->sliding_window.has_value());
  CHECK(c->raw == j);

  SECTION("defaults: kv heads, rope_theta, tie, dtype key, null fields") {
    j.erase("num_key_value_heads");
    j.erase("rope_theta");
    j.erase("tie_word_embeddings");
    j.erase("torch_dtype");
    j["dtype"] = "bfloat16";
    j["head_dim"] = nullptr;
    j["sliding_window"] = nullptr;
    j["rope_scaling"] = nullptr;
    auto d = config_from(dir, j);
    INFO((d.ok() ? std::string() : d.error().message));
    REQUIRE(d.ok());
    CHECK(d->num_key_value_heads == 8);
    CHECK(d->rope_theta == 10000.0);
    CHECK_FALSE(d->tie_word_embeddings);
    CHECK(d->torch_dtype == "bfloat16");
    CHECK_FALSE(d->head_dim.has_value());
  }
  SECTION("Llama 3.1: list of eos ids, llama3 rope scaling, explicit head_dim, integer rope_theta") {
    j["eos_token_id"] = {128001, 128008, 128009};
    j["rope_theta"] = 500000;
    j["head_dim"] = 16;
    j["attention_bias"] = true;
    j["rope_scaling"] = {{"factor", 8.0},
                         {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 8192},
                         {"rope_type", "llama3"}};
    auto d = config_from(dir, j);
    INFO((d.ok() ? std::string() : d.error().message));
    REQUIRE(d.ok());
    CHECK(d->eos_token_ids == std::vector<int64_t>{128001, 128008, 128009});
    CHECK(d->rope_theta == 500000.0);
    CHECK(d->head_dim == 16);
    CHECK(d->head_dim_or_default() == 16);
    CHECK(d->attention_bias);
    REQUIRE(d->rope_scaling.has_value());
    CHECK(d->rope_scaling->type == "llama3");
    CHECK(d->rope_scaling->factor == 8.0);
    CHECK(d->rope_scaling->low_freq_factor == 1.0);
    CHECK(d->rope_scaling->high_freq_factor == 4.0);
    CHECK(d->rope_scaling->original_max_position_embeddings == 8192);
  }
  SECTION("older rope_scaling spelling: type + factor") {
    j["rope_scaling"] = {{"type", "linear"}, {"factor", 2}};
    auto d = config_from(dir, j);
    REQUIRE(d.ok());
    CHECK(d->rope_scaling->type == "linear");
    CHECK(d->rope_scaling->factor == 2.0);
  }
  SECTION("Mistral: sliding window in use when set") {
    j["architectures"] = {"MistralForCausalLM"};
    j["model_type"] = "mistral";
    j["sliding_window"] = 4096;
    auto d = config_from(dir, j);
    REQUIRE(d.ok());
    CHECK(d->sliding_window == 4096);
    CHECK(d->use_sliding_window);
    CHECK_FALSE(d->attention_bias);
  }
  SECTION("Qwen2: q/k/v biases always, sliding window only with use_sliding_window") {
    j["architectures"] = {"Qwen2ForCausalLM"};
    j["model_type"] = "qwen2";
    j["sliding_window"] = 32768;
    j["use_sliding_window"] = false;
    auto d = config_from(dir, j);
    REQUIRE(d.ok());
    CHECK(d->attention_bias);
    CHECK(d->sliding_window == 32768);
    CHECK_FALSE(d->use_sliding_window);
    j["use_sliding_window"] = true;
    auto e = config_from(dir, j);
    REQUIRE(e.ok());
    CHECK(e->use_sliding_window);
  }
}

TEST_CASE("hf config: hostile config.json files name the file, the field and the problem", "[hf][config][hostile]") {
  TempDir dir;
  const json base = json::parse(kLlamaConfig);

  SECTION("no config.json") {
    auto r = read_hf_config(dir.path.string());
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error().message, "config.json"));
  }
  SECTION("invalid JSON") {
    write_text(dir / "config.json", "{\"hidden_size\": 64,");
    auto r = read_hf_config(dir.path.string());
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error().message, (dir / "config.json").string() + ": invalid JSON"));
  }
  SECTION("empty file and invalid UTF-8 are invalid JSON") {
    write_text(dir / "config.json", "");
    CHECK_FALSE(read_hf_config(dir.path.string()).ok());
    write_text(dir / "config.json", "{\"model_type\": \"\xff\"}");
    auto r = read_hf_config(dir.path.string());
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error().message, "invalid JSON"));
  }
  SECTION("top level not an object") {
    CHECK(contains(config_error(dir, json::array({1, 2}), "config.json"), "expected a JSON object"));
  }
  SECTION("deeply nested JSON does not exhaust the stack") {
    write_text(dir / "config.json", std::string(100000, '[') + std::string(100000, ']'));
    auto r = read_hf_config(dir.path.string());
    CHECK_FALSE(r.ok());
  }
  SECTION("unsupported architecture") {
    json j = base;
    j["architectures"] = {"GPT2LMHeadModel"};
    auto r = config_from(dir, j);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error().message, "unsupported architecture GPT2LMHeadModel (supported: LlamaForCausalLM, "
                                      "MistralForCausalLM, Qwen2ForCausalLM)"));
  }
  SECTION("architectures missing, empty, or of the wrong type") {
    for (json bad : {json(), json::array(), json("LlamaForCausalLM"), json::array({7})}) {
      json j = base;
      if (bad.is_null())
        j.erase("architectures");
      else
        j["architectures"] = bad;
      config_error(dir, j, "architectures");
    }
  }
  SECTION("each required field missing") {
    for (const char* f : {"model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "vocab_size", "max_position_embeddings", "rms_norm_eps"}) {
      json j = base;
      j.erase(f);
      CHECK(contains(config_error(dir, j, f), "missing (required)"));
    }
  }
  SECTION("wrong types") {
    struct Bad {
      const char* field;
      json value;
      const char* says;
    };
    const Bad bads[] = {
        {"hidden_size", "64", "expected an integer, got string \"64\""},
        {"hidden_size", 64.5, "expected an integer, got number 64.5"},
        {"num_hidden_layers", true, "expected an integer, got boolean"},
        {"vocab_size", json::array({512}), "expected an integer, got array"},
        {"num_key_value_heads", "4", "expected an integer"},
        {"rms_norm_eps", "1e-5", "expected a number, got string"},
        {"rope_theta", json::object(), "expected a number, got object"},
        {"tie_word_embeddings", "true", "expected true or false, got string"},
        {"attention_bias", 1, "expected true or false, got integer"},
        {"model_type", 3, "expected a string, got integer"},
        {"torch_dtype", false, "expected a string"},
        {"bos_token_id", "1", "expected an integer"},
        {"eos_token_id", json::array({2, "x"}), "eos_token_id[1]"},
        {"rope_scaling", "llama3", "expected an object or null"},
        {"max_position_embeddings", 18446744073709551615ull, "out of range"},
    };
    for (const Bad& b : bads) {
      json j = base;
      j[b.field] = b.value;
      CHECK(contains(config_error(dir, j, b.field), b.says));
    }
  }
  SECTION("zero, negative and absurd values") {
    for (const char* f : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                          "num_key_value_heads", "vocab_size", "max_position_embeddings", "head_dim"}) {
      for (int64_t bad : {int64_t{0}, int64_t{-8}}) {
        json j = base;
        j[f] = bad;
        CHECK(contains(config_error(dir, j, f), "must be positive, got " + std::to_string(bad)));
      }
    }
    json j = base;
    j["num_hidden_layers"] = int64_t{1} << 40;
    CHECK(contains(config_error(dir, j, "num_hidden_layers"), "sanity limit"));
    j = base;
    j["rms_norm_eps"] = -1e-5;
    CHECK(contains(config_error(dir, j, "rms_norm_eps"), "must be positive"));
    j = base;
    j["rope_theta"] = 0;
    CHECK(contains(config_error(dir, j, "rope_theta"), "must be positive"));
  }
  SECTION("inconsistent head counts and sizes") {
    json j = base;
    j["num_key_value_heads"] = 3;
    CHECK(contains(config_error(dir, j, "num_key_value_heads"), "must divide num_attention_heads = 8"));
    j["num_key_value_heads"] = 16;
    config_error(dir, j, "num_key_value_heads");
    j = base;
    j["hidden_size"] = 60;
    CHECK(contains(config_error(dir, j, "hidden_size"), "not divisible by num_attention_heads = 8"));
    j["head_dim"] = 8;  // an explicit head_dim makes it legal
    CHECK(config_from(dir, j).ok());
    j["head_dim"] = 7;
    CHECK(contains(config_error(dir, j, "head_dim"), "is odd"));
  }
  SECTION("incomplete or degenerate llama3 rope scaling") {
    json j = base;
    j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
    CHECK(contains(config_error(dir, j, "rope_scaling"), "needs factor, low_freq_factor"));
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", 8.0},
                         {"low_freq_factor", 2.0},
                         {"high_freq_factor", 2.0},
                         {"original_max_position_embeddings", 8192}};
    CHECK(contains(config_error(dir, j, "rope_scaling"), "low_freq_factor equals high_freq_factor"));
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", -2.0}};
    CHECK(contains(config_error(dir, j, "rope_scaling.factor"), "must be positive"));
  }
}

// ---- tokenizers ----

namespace {

// Llama 3's pre-tokenizer and post-processor as tokenizer.json spells them (JSON-escaped).
const char* kLlama3Pre = R"JSON({"type": "Sequence", "pretokenizers": [
  {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
  {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})JSON";
const char* kQwen2Pre = R"JSON({"type": "Sequence", "pretokenizers": [
  {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
  {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]})JSON";
// Mistral Nemo (Tekken): the "original regex from tokenizer.json" llama.cpp quotes.
const char* kTekkenPre = R"JSON({"type": "Sequence", "pretokenizers": [
  {"type": "Split", "pattern": {"Regex": "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
  {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})JSON";
const char* kGpt2Pre = R"JSON({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true})JSON";
const char* kSmolPre = R"JSON({"type": "Sequence", "pretokenizers": [
  {"type": "Digits", "individual_digits": true},
  {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]})JSON";

const char* kLlama3Post = R"JSON({"type": "Sequence", "processors": [
  {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
  {"type": "TemplateProcessing",
   "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
   "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
   "special_tokens": {}}]})JSON";

json added(int64_t id, const std::string& content, bool special) {
  return {{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", !special}, {"special", special}};
}

// A small byte-level BPE tokenizer.json.
json bpe_tokenizer(const char* pre, const json& merges) {
  json t;
  t["version"] = "1.0";
  t["added_tokens"] = json::array({added(6, "<|begin_of_text|>", true), added(7, "<|end_of_text|>", true),
                                   added(8, "<|im_start|>", false), added(9, "hello" + kSp + "world", false),
                                   added(3, "ab", false)});
  t["normalizer"] = nullptr;
  t["pre_tokenizer"] = json::parse(pre);
  t["post_processor"] = json::parse(kLlama3Post);
  t["decoder"] = {{"type", "ByteLevel"}};
  t["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"ignore_merges", true},
                {"byte_fallback", false},
                {"vocab", {{"a", 0}, {"b", 1}, {kG, 2}, {"ab", 3}, {kG + "a", 4}, {kG + "ab", 5}}},
                {"merges", merges}};
  return t;
}

struct Folder {
  TempDir dir;
  void put(const std::string& name, const json& j) { write_text(dir / name, j.dump(1)); }
  void put_text(const std::string& name, const std::string& s) { write_text(dir / name, s); }
  Result<Vocab> read() { return read_hf_tokenizer(dir.path.string()); }
  std::string error(const std::string& file, const std::string& part) {
    auto r = read();
    REQUIRE_FALSE(r.ok());
    const std::string msg = r.error().message;
    INFO(msg);
    CHECK(contains(msg, (dir / file).string()));
    CHECK(contains(msg, part));
    return msg;
  }
};

// ---- SentencePiece model bytes (protobuf) for the tokenizer.model path ----

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
std::string len_field(uint32_t field, const std::string& payload) {
  return varint(uint64_t{field} << 3 | 2) + varint(payload.size()) + payload;
}
std::string spm_bytes(const std::vector<std::tuple<std::string, float, int>>& pieces) {
  std::string m;
  for (const auto& [p, score, type] : pieces) {
    std::string f(4, '\0');
    std::memcpy(f.data(), &score, 4);
    m += len_field(1, len_field(1, p) + varint(2 << 3 | 5) + f + varint(3 << 3) + varint(static_cast<uint64_t>(type)));
  }
  return m;
}

}  // namespace

TEST_CASE("hf tokenizer: Llama 3 style byte-level BPE", "[hf][tokenizer]") {
  Folder f;
  f.put("tokenizer.json", bpe_tokenizer(kLlama3Pre, json::array({"a b", kG + " a", kG + "a b"})));
  f.put("config.json", {{"vocab_size", 12}, {"bos_token_id", 6}, {"eos_token_id", {7, 8}}});
  f.put("tokenizer_config.json",
        {{"bos_token", "<|begin_of_text|>"},
         {"eos_token", {{"content", "<|end_of_text|>"}, {"lstrip", false}}},
         {"chat_template", json::array({{{"name", "tool_use"}, {"template", "T2"}},
                                        {{"name", "default"}, {"template", "T1"}}})}});
  auto v = f.read();
  INFO((v.ok() ? std::string() : v.error().message));
  REQUIRE(v.ok());
  CHECK(v->model == "gpt2");
  CHECK(v->pre == "llama-bpe");
  const std::vector<std::string> want_tokens = {"a",  "b", kG, "ab", kG + "a", kG + "ab", "<|begin_of_text|>",
                                                "<|end_of_text|>", "<|im_start|>", "hello world", "[PAD10]",
                                                "[PAD11]"};
  CHECK(v->tokens == want_tokens);
  const std::vector<TokenType> want_types = {
      TokenType::NORMAL,  TokenType::NORMAL,  TokenType::NORMAL,  TokenType::USER_DEFINED,
      TokenType::NORMAL,  TokenType::NORMAL,  TokenType::CONTROL, TokenType::CONTROL,
      TokenType::CONTROL,  // not "special", but looks special (<|...|>)
      TokenType::USER_DEFINED, TokenType::UNUSED, TokenType::UNUSED,
  };
  CHECK(v->token_types == want_types);
  CHECK(v->scores.empty());
  CHECK(v->merges == std::vector<std::string>{"a b", kG + " a", kG + "a b"});
  CHECK(v->bos_id == 6);  // tokenizer_config bos_token looked up in added_tokens
  CHECK(v->eos_id == 7);  // from {"content": ...}; config.json's list is not used
  CHECK_FALSE(v->unk_id.has_value());
  CHECK_FALSE(v->pad_id.has_value());
  CHECK(v->add_bos == true);  // TemplateProcessing starts with the bos token
  CHECK_FALSE(v->add_eos.has_value());
  CHECK(v->chat_template == "T1");
  CHECK_FALSE(v->add_space_prefix.has_value());

  SECTION("tokenizer_config add_bos_token overrides the post-processor") {
    json tc = {{"bos_token", "<|begin_of_text|>"}, {"add_bos_token", false}, {"add_eos_token", true}};
    f.put("tokenizer_config.json", tc);
    auto w = f.read();
    REQUIRE(w.ok());
    CHECK(w->add_bos == false);
    CHECK(w->add_eos == true);
    CHECK_FALSE(w->chat_template.has_value());
    CHECK_FALSE(w->eos_id.has_value());  // no eos_token, and config.json's eos is a list
  }
  SECTION("without tokenizer_config.json, ids come from config.json and the template") {
    std::error_code ec;
    fs::remove(f.dir / "tokenizer_config.json", ec);
    auto w = f.read();
    REQUIRE(w.ok());
    CHECK(w->bos_id == 6);
    CHECK_FALSE(w->eos_id.has_value());  // config.json has a list
    CHECK(w->add_bos == true);
  }
  SECTION("without config.json the vocabulary size is the number of distinct tokens") {
    std::error_code ec;
    fs::remove(f.dir / "config.json", ec);
    auto w = f.read();
    REQUIRE(w.ok());
    CHECK(w->size() == 10);
  }
  SECTION("special ids outside the vocabulary are skipped") {
    f.put("config.json", {{"vocab_size", 12}, {"bos_token_id", 99}, {"eos_token_id", 11}, {"pad_token_id", -1}});
    f.put("tokenizer_config.json", json::object());
    auto w = f.read();
    REQUIRE(w.ok());
    CHECK_FALSE(w->bos_id.has_value());
    CHECK(w->eos_id == 11);
    CHECK_FALSE(w->pad_id.has_value());
  }
  SECTION("chat template from chat_template.jinja") {
    f.put("tokenizer_config.json", {{"bos_token", "<|begin_of_text|>"}});
    f.put_text("chat_template.jinja", "{{ messages }}");
    auto w = f.read();
    REQUIRE(w.ok());
    CHECK(w->chat_template == "{{ messages }}");
  }
}

TEST_CASE("hf tokenizer: Qwen2 style, merges as pairs, add_prefix_space", "[hf][tokenizer]") {
  Folder f;
  f.put("tokenizer.json",
        bpe_tokenizer(kQwen2Pre, json::array({json::array({"a", "b"}), json::array({kG, "a"}),
                                              json::array({"x y", "z"})})));
  f.put("tokenizer_config.json", {{"bos_token", nullptr},
                                  {"eos_token", "<|end_of_text|>"},
                                  {"pad_token", "<|im_start|>"},
                                  {"add_bos_token", false},
                                  {"add_prefix_space", false},
                                  {"chat_template", "{% for m in messages %}{% endfor %}"}});
  auto v = f.read();
  INFO((v.ok() ? std::string() : v.error().message));
  REQUIRE(v.ok());
  CHECK(v->pre == "qwen2");
  CHECK(v->size() == 10);
  // gguf-py writes a space inside a merge part as U+0120.
  CHECK(v->merges == std::vector<std::string>{"a b", kG + " a", "x" + kG + "y z"});
  CHECK_FALSE(v->bos_id.has_value());
  CHECK(v->eos_id == 7);
  CHECK(v->pad_id == 8);
  CHECK(v->add_bos == false);
  CHECK(v->add_space_prefix == false);
  CHECK(v->chat_template == "{% for m in messages %}{% endfor %}");
}

TEST_CASE("hf tokenizer: pre-tokenizer recognition", "[hf][tokenizer]") {
  struct Case {
    const char* pre;
    const char* name;
  };
  for (const Case& c : {Case{kLlama3Pre, "llama-bpe"}, Case{kQwen2Pre, "qwen2"}, Case{kTekkenPre, "tekken"},
                        Case{kGpt2Pre, "gpt-2"}, Case{kSmolPre, "smollm"}}) {
    Folder f;
    f.put("tokenizer.json", bpe_tokenizer(c.pre, json::array({"a b"})));
    auto v = f.read();
    INFO(c.name << ": " << (v.ok() ? std::string() : v.error().message));
    REQUIRE(v.ok());
    CHECK(v->pre == c.name);
  }
  SECTION("unknown pre-tokenizers are refused, naming the pre-tokenizer") {
    const std::vector<std::string> unknown = {
        R"({"type": "Whitespace"})",
        R"({"type": "ByteLevel", "add_prefix_space": true, "use_regex": true})",
        R"({"type": "Metaspace", "replacement": "_"})",
        "null",
        // the Llama 3 regex with a digit-group change
        std::string(kLlama3Pre).replace(std::string(kLlama3Pre).find("{1,3}"), 5, "{1,4}"),
        // the right regex but Removed instead of Isolated
        std::string(kLlama3Pre).replace(std::string(kLlama3Pre).find("Isolated"), 8, "Removed"),
    };
    for (const auto& pre : unknown) {
      Folder f;
      f.put("tokenizer.json", bpe_tokenizer(pre.c_str(), json::array({"a b"})));
      const std::string msg = f.error("tokenizer.json", "unrecognised pre-tokenizer");
      CHECK(contains(msg, "\"pre_tokenizer\""));
      if (pre != "null") CHECK(contains(msg, json::parse(pre)["type"].get<std::string>()));
    }
  }
}

TEST_CASE("hf tokenizer: hostile tokenizer folders", "[hf][tokenizer][hostile]") {
  SECTION("no folder, no tokenizer files") {
    CHECK_FALSE(read_hf_tokenizer("/nonexistent/shrink/folder").ok());
    Folder f;
    f.put("config.json", json::parse(kLlamaConfig));
    auto r = f.read();
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error().message, "no tokenizer.model or tokenizer.json"));
  }
  SECTION("invalid JSON in each side file names that file") {
    for (const char* name : {"tokenizer.json", "tokenizer_config.json", "config.json"}) {
      Folder f;
      f.put("tokenizer.json", bpe_tokenizer(kLlama3Pre, json::array({"a b"})));
      f.put_text(name, "{\"x\": [1, 2");
      f.error(name, "invalid JSON");
    }
  }
  SECTION("not a BPE model, or a byte-fallback BPE") {
    Folder f;
    json t = bpe_tokenizer(kLlama3Pre, json::array({"a b"}));
    t["model"]["type"] = "WordPiece";
    f.put("tokenizer.json", t);
    f.error("tokenizer.json", "\"WordPiece\" is not supported");
    t["model"]["type"] = "BPE";
    t["model"]["byte_fallback"] = true;
    f.put("tokenizer.json", t);
    f.error("tokenizer.json", "tokenizer.model");
    t.erase("model");
    f.put("tokenizer.json", t);
    f.error("tokenizer.json", "\"model\"");
  }
  SECTION("bad vocabularies") {
    Folder f;
    json t = bpe_tokenizer(kLlama3Pre, json::array({"a b"}));
    t["model"]["vocab"]["dup"] = 1;
    f.put("tokenizer.json", t);
    f.error("tokenizer.json", "id 1 is used by both");
    t = bpe_tokenizer(kLlama3Pre, json::array({"a b"}));
    t["model"]["vocab"]["neg"] = -3;
    f.put("tokenizer.json", t);
    f.error("tokenizer.json", "has invalid id -3");
    t["model"]["vocab"]["neg"] = "3";
    f.put("tokenizer.json", t);
    f.error("tokenizer.json", "has invalid id \"3\"");
    t = bpe_tokenizer(kLlama3Pre, json::array({"a b"}));
    t["model"]["vocab"]["far"] = 50;  // a hole: ids are not contiguous
    f.put("tokenizer.json", t);
    f.error("tokenizer.json", "not contiguous");
    f.put("config.json", {{"vocab_size", 20}});
    f.error("tokenizer.json", "does not fit the vocabulary size 20 of config.json");
    f.put("config.json", {{"vocab_size", "20"}});
    f.error("config.json", "vocab_size");
  }
  SECTION("bad added tokens") {
    Folder f;
    json t = bpe_tokenizer(kLlama3Pre, json::array({"a b"}));
    t["added_tokens"] = json::object();
    f.put("tokenizer.json", t);
    f.error("tokenizer.json", "\"added_tokens\"");
    t["added_tokens"] = json::array({{{"id", 1}}});
    f.put("tokenizer.json", t);
    f.error("tokenizer.json", "added_tokens[0].content");
    t["added_tokens"] = json::array({{{"id", -1}, {"content", "x"}}});
    f.put("tokenizer.json", t);
    f.error("tokenizer.json", "added_tokens[0].id");
  }
  SECTION("bad merges") {
    for (const json& merges : {json::array({"ab"}), json::array({"a "}), json::array({json::array({1, 2})}),
                               json::array({json::array({"a"})}), json::array({json::array({"", "b"})}),
                               json("a b"), json::array({"a b", json::array({"a", "b"}), 3})}) {
      Folder f;
      f.put("tokenizer.json", bpe_tokenizer(kLlama3Pre, merges));
      f.error("tokenizer.json", "merges");
    }
  }
  SECTION("bad chat_template and add_prefix_space types") {
    Folder f;
    f.put("tokenizer.json", bpe_tokenizer(kLlama3Pre, json::array({"a b"})));
    f.put("tokenizer_config.json", {{"chat_template", 42}});
    f.error("tokenizer_config.json", "chat_template");
    f.put("tokenizer_config.json", {{"add_prefix_space", "no"}});
    f.error("tokenizer_config.json", "add_prefix_space");
  }
}

TEST_CASE("hf tokenizer: tokenizer.model with Hugging Face side files", "[hf][tokenizer]") {
  Folder f;
  f.put_text("tokenizer.model", spm_bytes({{"<unk>", 0.0f, 2},
                                           {"<s>", 0.0f, 3},
                                           {"</s>", 0.0f, 3},
                                           {kSp + "a", -1.0f, 1},
                                           {"b", -2.0f, 4}}));
  f.put("config.json", {{"vocab_size", 9}, {"bos_token_id", 1}, {"eos_token_id", 2}});
  f.put("added_tokens.json", {{"<extra>", 5}, {"<far>", 100}});
  f.put("tokenizer_config.json",
        {{"add_bos_token", true},
         {"add_eos_token", false},
         {"add_prefix_space", false},
         {"added_tokens_decoder",
          {{"1", {{"content", "<s>"}, {"special", true}}},
           {"6", {{"content", "<|im_start|>"}, {"special", false}}},
           {"7", {{"content", kSp + "x"}, {"special", false}}}}}});
  auto v = f.read();
  INFO((v.ok() ? std::string() : v.error().message));
  REQUIRE(v.ok());
  CHECK(v->model == "llama");
  CHECK(v->pre == "default");
  const std::vector<std::string> want_tokens = {"<unk>", "<s>", "</s>", kSp + "a", "b", "<extra>", "<|im_start|>",
                                                " x", "[PAD8]"};
  CHECK(v->tokens == want_tokens);
  const std::vector<TokenType> want_types = {TokenType::UNKNOWN,      TokenType::CONTROL, TokenType::CONTROL,
                                             TokenType::NORMAL,       TokenType::NORMAL,  TokenType::USER_DEFINED,
                                             TokenType::CONTROL,      TokenType::USER_DEFINED, TokenType::UNUSED};
  CHECK(v->token_types == want_types);
  const std::vector<float> want_scores = {0.0f, -1000.0f, 0.0f, -1.0f, -2.0f, -1000.0f, -1000.0f, -1000.0f, -10000.0f};
  CHECK(v->scores == want_scores);
  CHECK(v->bos_id == 1);  // config.json
  CHECK(v->eos_id == 2);
  CHECK(v->unk_id == 0);  // from the SentencePiece model
  CHECK_FALSE(v->pad_id.has_value());
  CHECK(v->add_bos == true);
  CHECK(v->add_eos == false);
  CHECK(v->add_space_prefix == false);

  SECTION("config.json vocab_size below the piece count") {
    f.put("config.json", {{"vocab_size", 3}});
    f.error("config.json", "smaller than the 5 pieces");
  }
  SECTION("added_tokens_decoder outside the vocabulary or malformed") {
    f.put("tokenizer_config.json", {{"added_tokens_decoder", {{"9", {{"content", "x"}}}}}});
    f.error("tokenizer_config.json", "outside the vocabulary of 9");
    f.put("tokenizer_config.json", {{"added_tokens_decoder", {{"x1", {{"content", "x"}}}}}});
    f.error("tokenizer_config.json", "not a non-negative token id");
    f.put("tokenizer_config.json", {{"added_tokens_decoder", {{"3", {{"special", true}}}}}});
    f.error("tokenizer_config.json", "added_tokens_decoder.3.content");
  }
  SECTION("added_tokens.json with a bad id") {
    f.put("added_tokens.json", {{"<x>", "5"}});
    f.error("added_tokens.json", "<x>");
  }
  SECTION("a broken tokenizer.model names itself") {
    f.put_text("tokenizer.model", "\x0a\xff\xff\xff\xff\x0f");
    f.error("tokenizer.model", "SentencePiece model");
  }
}

// ---- Real data (skipped when absent; keep them last). ----

TEST_CASE("hf: the stories260K-hf folder", "[hf][data]") {
  const fs::path folder = data_dir() / "models/stories260K-hf";
  const fs::path tok512 = data_dir() / "models/stories260K/tok512.model";
  if (!have_data(folder / "config.json", "stories260K-hf folder") ||
      !have_data(tok512, "stories260K SentencePiece model"))
    return;

  auto c = read_hf_config(folder.string());
  INFO((c.ok() ? std::string() : c.error().message));
  REQUIRE(c.ok());
  CHECK(c->architecture == "LlamaForCausalLM");
  CHECK(c->hidden_size == 64);
  CHECK(c->intermediate_size == 172);
  CHECK(c->num_hidden_layers == 5);
  CHECK(c->num_attention_heads == 8);
  CHECK(c->num_key_value_heads == 4);
  CHECK(c->vocab_size == 512);
  CHECK(c->max_position_embeddings == 512);
  CHECK(c->rms_norm_eps == 1e-5);
  CHECK(c->tie_word_embeddings);
  CHECK(c->torch_dtype == "float32");

  auto v = read_hf_tokenizer(folder.string());
  INFO((v.ok() ? std::string() : v.error().message));
  REQUIRE(v.ok());
  auto base = read_sentencepiece_vocab(tok512.string());
  REQUIRE(base.ok());
  CHECK(v->tokens == base->tokens);
  CHECK(v->scores == base->scores);
  CHECK(v->token_types == base->token_types);
  CHECK(v->bos_id == 1);
  CHECK(v->eos_id == 2);
  CHECK(v->unk_id == 0);
  CHECK(v->model == "llama");
}

TEST_CASE("hf tokenizer: Llama 2 tokenizer.model gives llama.cpp's llama-spm vocabulary", "[hf][tokenizer][data]") {
  const fs::path model = data_dir() / "tokenizers/llama2/tokenizer.model";
  const fs::path ref = data_dir() / "tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf";
  if (!have_data(model, "Llama 2 tokenizer.model") || !have_data(ref, "llama.cpp llama-spm vocabulary")) return;

  // The side files a meta-llama/Llama-2-7b-hf folder carries that matter here.
  TempDir dir;
  fs::copy_file(model, dir / "tokenizer.model");
  write_text(dir / "config.json",
             R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 32000, "bos_token_id": 1, "eos_token_id": 2})");
  write_text(dir / "tokenizer_config.json",
             R"({"add_bos_token": true, "add_eos_token": false,
                 "bos_token": {"__type": "AddedToken", "content": "<s>"}, "eos_token": "</s>", "unk_token": "<unk>"})");
  auto v = read_hf_tokenizer(dir.path.string());
  INFO((v.ok() ? std::string() : v.error().message));
  REQUIRE(v.ok());

  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  std::map<std::string, std::string> kv;
  gguf_oracle_tokenizer(ref, &tokens, &scores, &types, &kv);
  REQUIRE(tokens.size() == 32000);
  REQUIRE(v->size() == 32000);
  CHECK(v->tokens == tokens);
  CHECK(v->scores == scores);
  std::vector<int32_t> ours;
  for (TokenType t : v->token_types) ours.push_back(static_cast<int32_t>(t));
  CHECK(ours == types);
  CHECK(kv["tokenizer.ggml.model"] == v->model);
  CHECK(kv["tokenizer.ggml.pre"] == v->pre);
  CHECK(kv["tokenizer.ggml.bos_token_id"] == std::to_string(*v->bos_id));
  CHECK(kv["tokenizer.ggml.eos_token_id"] == std::to_string(*v->eos_id));
  CHECK(kv["tokenizer.ggml.unknown_token_id"] == std::to_string(*v->unk_id));
  CHECK(kv["tokenizer.ggml.add_bos_token"] == (*v->add_bos ? "true" : "false"));
  CHECK(kv["tokenizer.ggml.add_eos_token"] == (*v->add_eos ? "true" : "false"));
  CHECK(kv.count("tokenizer.ggml.padding_token_id") == 0);
  CHECK_FALSE(v->pad_id.has_value());
  CHECK(kv.count("tokenizer.ggml.add_space_prefix") == 0);
  CHECK_FALSE(v->add_space_prefix.has_value());
}

}  // namespace shrink::test
