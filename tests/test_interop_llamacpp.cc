// Interop with llama.cpp: GGUF files written by `shrink convert` / `shrink quantize` must load and
// run in llama.cpp unchanged (DESIGN.md, convention 10). llama.cpp is the build inside the npm
// package node-llama-cpp, driven by tests/interop/llama_generate.mjs and llama_tokenize.mjs.
//
// What is compared, exactly:
//  - Generation: llama.cpp evaluates BOS + the prompt "Once upon a time" and decodes greedily
//    (argmax, no repeat penalty) kContinuationTokens tokens. For F32 outputs the detokenized
//    continuation must equal kContinuation byte for byte (no trimming: the first generated token
//    is "," and the last ends "high."), and the generated and prompt token ids must equal those
//    llama.cpp produces from its own conversion of the same model (reference/, run in the same
//    process). Quantized and 16-bit outputs must load, pass llama.cpp's tensor validation and
//    decode to non-blank text.
//  - Tokenization: llama.cpp's ids for a set of strings (with BOS, as llama.cpp evaluates them)
//    must equal SentencePiece's ids from the model's tokenizer.model with BOS prepended.
//    tok512.model was trained with SentencePiece's default remove_extra_whitespaces, which
//    collapses and strips runs of spaces before encoding; llama.cpp never does that (for no
//    vocabulary), so the reference is SentencePiece with that one normalizer flag turned off.
//    Strings without leading, trailing or repeated spaces are also checked against the
//    unmodified SentencePiece model.
#include <catch2/catch.hpp>
#include <cctype>
#include <fstream>
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "model/hf_writer.h"
#include "model/model_source.h"
#include "model/synthetic.h"
#include "quantizer/mixes.h"
#include "tests/test_support.h"

namespace {

using namespace shrink::test;
using nlohmann::json;

constexpr const char* kPrompt = "Once upon a time";
// Greedy continuation of kPrompt recorded with llama.cpp on the F32 model (../shared/data/README.md).
constexpr const char* kContinuation =
    ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red "
    "ball. She wanted to play with it, but it was too high.";
// kContinuation is exactly this many tokens of the stories260K vocabulary (the next one is "\n").
constexpr int kContinuationTokens = 57;

constexpr const char* kPython = "/usr/bin/python3";  // Debian's python: it has python3-sentencepiece

struct Data {
  fs::path llama2c_model;   // stories260K.bin (llama2.c checkpoint)
  fs::path llama2c_tok;     // tok512.bin (llama2.c tokenizer)
  fs::path sp_model;        // tok512.model (SentencePiece, same vocabulary)
  fs::path hf_dir;          // stories260K-hf (Hugging Face folder, rotate-half q/k)
  fs::path reference_f32;   // llama.cpp's own conversion of stories260K
};

// Checked once, before the first test does any work, so a missing runtime skips the whole
// program instead of failing halfway.
const Data& data() {
  static const Data d = [] {
    Data r;
    const fs::path models = data_dir() / "models";
    r.llama2c_model = require(models / "stories260K" / "stories260K.bin", "shared test data (stories260K.bin)");
    r.llama2c_tok = require(models / "stories260K" / "tok512.bin", "shared test data (tok512.bin)");
    r.sp_model = require(models / "stories260K" / "tok512.model", "shared test data (tok512.model)");
    r.hf_dir = require(models / "stories260K-hf", "shared test data (stories260K-hf)");
    r.reference_f32 = require(data_dir() / "reference" / "stories260K-f32.llamacpp.gguf",
                              "shared test data (reference/stories260K-f32.llamacpp.gguf)");
    require(interop_dir() / "node_modules" / "node-llama-cpp" / "package.json", "npm package node-llama-cpp");
    require(interop_dir() / "node_modules" / "@node-llama-cpp" / "linux-x64" / "package.json",
            "npm package @node-llama-cpp/linux-x64 (llama.cpp's prebuilt CPU binaries)");
    if (run("node --version").exit_code != 0) skip_program("node (v20+) not found on PATH");
    if (run(std::string(kPython) + " -c 'import sentencepiece'").exit_code != 0)
      skip_program(std::string(kPython) + " with the sentencepiece module (Debian python3-sentencepiece)");
    return r;
  }();
  return d;
}

// One run of a node script from tests/interop: stdout lines that are JSON, and stderr (llama.cpp's
// log) split at the scripts' "--- model: PATH" markers.
struct NodeRun {
  int exit_code = -1;
  std::string command;
  std::string out;
  std::vector<json> lines;
  std::string log;
  std::map<std::string, std::string> log_by_model;

  std::string log_of(const std::string& model) const {
    const auto it = log_by_model.find(model);
    return it == log_by_model.end() ? std::string() : it->second;
  }
};

NodeRun run_node(const std::string& script, const std::string& args, const std::string& stdin_text = "") {
  TempDir tmp;
  write_text(tmp / "stdin", stdin_text);
  NodeRun r;
  r.command = "node " + quote((interop_dir() / script).string()) + " " + args;
  // stderr to a file, so stdout carries only the scripts' JSON lines.
  RunResult rr = run("( " + r.command + " < " + quote((tmp / "stdin").string()) + " 2> " +
                     quote((tmp / "stderr").string()) + " )");
  r.exit_code = rr.exit_code;
  r.out = rr.out;
  r.log = read_text(tmp / "stderr");
  std::istringstream lines(rr.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || (line[0] != '{' && line[0] != '[')) continue;
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_discarded()) r.lines.push_back(std::move(j));
  }
  std::istringstream log(r.log);
  std::string current;
  const std::string marker = "--- model: ";
  for (std::string line; std::getline(log, line);) {
    if (line.rfind(marker, 0) == 0) {
      current = line.substr(marker.size());
      continue;
    }
    r.log_by_model[current] += line + "\n";
  }
  return r;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Joins already-quoted command-line arguments with spaces.
std::string join(const std::vector<std::string>& args) {
  std::string r;
  for (const std::string& a : args) {
    if (!r.empty()) r += ' ';
    r += a;
  }
  return r;
}

bool blank(const std::string& s) {
  for (unsigned char c : s)
    if (!std::isspace(c)) return false;
  return true;
}

// A GGUF to put through llama.cpp and what to expect of it.
struct Output {
  std::string label;      // e.g. "llama2.c -> q4_0"
  fs::path gguf;
  bool exact = false;     // must reproduce kContinuation and the reference's token ids
};

// Runs `shrink ARGS` that should write `out`; on success adds it to `outputs`.
void shrink_to(const std::string& label, const std::string& args, const fs::path& out, bool exact,
               std::vector<Output>& outputs) {
  RunResult r = run_shrink(args);
  INFO("shrink " << args << "\nexit code " << r.exit_code << ", output:\n" << r.out);
  CHECK(r.exit_code == 0);
  if (r.exit_code != 0) return;
  CHECK(fs::exists(out));
  if (fs::exists(out)) outputs.push_back({label, out, exact});
}

// Decodes kPrompt with every output and with llama.cpp's own F32 conversion in one node process,
// then checks each output against the expectations above.
void check_generation(const std::vector<Output>& outputs) {
  if (outputs.empty()) return;  // every conversion failed; shrink_to already reported why
  std::vector<std::string> args = {quote(data().reference_f32.string())};
  for (const Output& o : outputs) args.push_back(quote(o.gguf.string()));
  args.push_back(quote(kPrompt));
  args.push_back(std::to_string(kContinuationTokens));
  const NodeRun run = run_node("llama_generate.mjs", join(args));

  std::map<std::string, json> by_model;
  for (const json& line : run.lines)
    if (line.is_object() && line.contains("model")) by_model[line["model"].get<std::string>()] = line;

  const std::string ref_path = data().reference_f32.string();
  INFO("command: " << run.command << "\nexit code " << run.exit_code);
  REQUIRE(by_model.count(ref_path) == 1);
  const json& reference = by_model[ref_path];
  {
    INFO("llama.cpp on its own conversion (the oracle itself):\n" << run.log_of(ref_path));
    REQUIRE_FALSE(reference.contains("error"));
    REQUIRE(reference["text"].get<std::string>() == kContinuation);
  }
  const std::vector<std::string> reference_lines = lines_of(run.log_of(ref_path));
  const std::set<std::string> reference_log(reference_lines.begin(), reference_lines.end());

  for (const Output& o : outputs) {
    const std::string path = o.gguf.string();
    INFO(o.label << ": " << o.gguf.filename().string() << "\nllama.cpp log for this file:\n"
                 << run.log_of(path));
    const auto it = by_model.find(path);
    CHECK(it != by_model.end());  // missing: the node process died on an earlier file (see log)
    if (it == by_model.end()) continue;
    const json& result = it->second;
    if (result.contains("error")) {
      FAIL_CHECK("llama.cpp could not load or run it: " << result["error"].get<std::string>());
      continue;
    }
    // llama.cpp's complaints about this file that it does not make about its own conversion
    // (e.g. a missing metadata key or a mistyped special token) are shown even when it runs.
    for (const std::string& line : lines_of(run.log_of(path)))
      if (line.rfind("[llama.cpp", 0) == 0 && reference_log.count(line) == 0)
        WARN(o.label << ": " << line);
    const std::string text = result["text"].get<std::string>();
    INFO("continuation: \"" << text << "\"");
    CHECK(result["bos_added"] == true);
    CHECK(result["prompt_tokens"] == reference["prompt_tokens"]);
    CHECK_FALSE(blank(text));
    if (o.exact) {
      CHECK(text == kContinuation);
      CHECK(result["tokens"] == reference["tokens"]);
    }
  }
  CHECK(run.exit_code == 0);
}

// Token ids from SentencePiece for `strings`, as {"bos": id, "keep_whitespace": [[ids]...],
// "default": [[ids]...]}. "keep_whitespace" is the same model with
// normalizer_spec.remove_extra_whitespaces set to false (patched in the serialized ModelProto, so
// no protobuf module is needed).
constexpr const char* kSentencePieceScript = R"PY(
import json, sys
import sentencepiece as spm

def varint(b, i):
    v = shift = 0
    while True:
        c = b[i]; i += 1
        v |= (c & 0x7F) << shift; shift += 7
        if c < 0x80:
            return v, i

def enc_varint(v):
    out = bytearray()
    while True:
        c = v & 0x7F; v >>= 7
        out.append(c | (0x80 if v else 0))
        if not v:
            return bytes(out)

def fields(b):  # (field number, wire type, raw bytes of the whole field)
    i = 0
    while i < len(b):
        start = i
        key, i = varint(b, i)
        wire = key & 7
        if wire == 0: _, i = varint(b, i)
        elif wire == 1: i += 8
        elif wire == 5: i += 4
        elif wire == 2:
            n, i = varint(b, i); i += n
        else: raise ValueError("unexpected wire type %d" % wire)
        yield key >> 3, wire, b[start:i]

def payload(raw):
    _, i = varint(raw, 0)
    n, i = varint(raw, i)
    return raw[i:i + n]

def keep_whitespace(model):
    # sentencepiece_model.proto: ModelProto.normalizer_spec = 3, NormalizerSpec.remove_extra_whitespaces = 4
    out = bytearray()
    for num, wire, raw in fields(model):
        if num == 3 and wire == 2:
            inner = b"".join(r for n, w, r in fields(payload(raw)) if n != 4) + bytes([4 << 3, 0])
            raw = bytes([3 << 3 | 2]) + enc_varint(len(inner)) + inner
        out += raw
    return bytes(out)

proto = open(sys.argv[1], "rb").read()
strings = json.load(sys.stdin)
default = spm.SentencePieceProcessor(model_proto=proto)
kept = spm.SentencePieceProcessor(model_proto=keep_whitespace(proto))
print(json.dumps({"bos": default.bos_id(),
                  "default": [default.encode(s) for s in strings],
                  "keep_whitespace": [kept.encode(s) for s in strings]}))
)PY";

struct TokenCase {
  std::string text;
  bool plain_whitespace;  // no leading/trailing/repeated spaces: default SentencePiece must agree too
};

const std::vector<TokenCase>& token_cases() {
  static const std::vector<TokenCase> cases = {
      {"Once upon a time", true},
      {"Hello, world! \"Yes,\" she said... (quietly); then: 'no?'", true},
      {"Lily's dog ran 3 miles; it's 10:30 now.", true},
      {"digits 0123456789 and 3.14159, 2024-01-01", true},
      {" one leading space", false},
      {"   three leading spaces", false},
      {"two  inner  spaces and a trailing one ", false},
      {"line one\nline two\n\nline four\n", true},
      {"tab\tseparated", true},
      {"caf\xC3\xA9 cr\xC3\xA8me br\xC3\xBBl\xC3\xA9" "e", true},           // café crème brûlée
      {"emoji \xF0\x9F\x98\x80 and \xF0\x9F\xA6\x99!", true},                // 😀, 🦙 (byte fallback)
      {"\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", true},                        // 日本語
      {"<s> and </s> are plain text here", true},
      {"", true},
  };
  return cases;
}

json sentencepiece_ids(const fs::path& model) {
  TempDir tmp;
  json strings = json::array();
  for (const TokenCase& c : token_cases()) strings.push_back(c.text);
  write_text(tmp / "sp_ids.py", kSentencePieceScript);
  write_text(tmp / "strings.json", strings.dump());
  RunResult r = run(std::string(kPython) + " " + quote((tmp / "sp_ids.py").string()) + " " +
                    quote(model.string()) + " < " + quote((tmp / "strings.json").string()));
  INFO("SentencePiece helper, exit code " << r.exit_code << ":\n" << r.out);
  REQUIRE(r.exit_code == 0);
  json j = json::parse(r.out, nullptr, false);
  REQUIRE(j.is_object());
  return j;
}

json with_bos(int bos, const json& ids) {
  json r = json::array({bos});
  for (const json& id : ids) r.push_back(id);
  return r;
}

// Tokenizes token_cases() with llama.cpp on the reference file and each of `ggufs` (one node
// process) and compares with SentencePiece on `sp_model`.
void check_tokenization(const std::vector<Output>& ggufs, const fs::path& sp_model) {
  if (ggufs.empty()) return;
  const json sp = sentencepiece_ids(sp_model);
  const int bos = sp["bos"].get<int>();

  json strings = json::array();
  for (const TokenCase& c : token_cases()) strings.push_back(c.text);
  std::vector<std::string> args = {"--bos", quote(data().reference_f32.string())};
  for (const Output& o : ggufs) args.push_back(quote(o.gguf.string()));
  const NodeRun run = run_node("llama_tokenize.mjs", join(args), strings.dump());
  INFO("command: " << run.command << "\nexit code " << run.exit_code << "\nllama.cpp log:\n" << run.log);
  REQUIRE(run.exit_code == 0);
  REQUIRE(run.lines.size() == ggufs.size() + 1);

  std::vector<std::string> labels = {"llama.cpp's own conversion (reference)"};
  for (const Output& o : ggufs) labels.push_back(o.label);
  for (size_t m = 0; m < labels.size(); ++m) {
    const json& got = run.lines[m];
    REQUIRE(got.size() == token_cases().size());
    for (size_t i = 0; i < token_cases().size(); ++i) {
      const TokenCase& c = token_cases()[i];
      INFO(labels[m] << ", string " << i << ": " << json(c.text).dump());
      INFO("llama.cpp:                      " << got[i].dump());
      INFO("SentencePiece, spaces kept:     " << with_bos(bos, sp["keep_whitespace"][i]).dump());
      INFO("SentencePiece, default model:   " << with_bos(bos, sp["default"][i]).dump());
      CHECK(got[i] == with_bos(bos, sp["keep_whitespace"][i]));
      if (c.plain_whitespace) CHECK(got[i] == with_bos(bos, sp["default"][i]));
    }
  }
}

// Arguments naming the llama2.c checkpoint with its tokenizer.
std::string llama2c_input() {
  return quote(data().llama2c_model.string()) + " --tokenizer " + quote(data().llama2c_tok.string());
}

}  // namespace

TEST_CASE("llama.cpp oracle: its own conversions of stories260K decode as recorded", "[interop][llamacpp]") {
  const fs::path ref = data().reference_f32.parent_path();
  const NodeRun run = run_node("llama_generate.mjs",
                               join({quote((ref / "stories260K-f32.llamacpp.gguf").string()),
                                     quote((ref / "stories260K-q8_0.llamacpp.gguf").string()),
                                     quote((ref / "stories260K-q4_0.llamacpp.gguf").string()), quote(kPrompt),
                                     std::to_string(kContinuationTokens)}));
  INFO("command: " << run.command << "\nstdout:\n" << run.out << "\nllama.cpp log:\n" << run.log);
  REQUIRE(run.exit_code == 0);
  REQUIRE(run.lines.size() == 3);
  CHECK(run.lines[0]["prompt_tokens"] == json::array({1, 403, 407, 261, 378}));  // BOS "▁Once" "▁upon" "▁a" "▁time"
  CHECK(run.lines[0]["text"] == kContinuation);
  CHECK(run.lines[0]["tokens"].size() == static_cast<size_t>(kContinuationTokens));
  CHECK_FALSE(blank(run.lines[1]["text"].get<std::string>()));
  CHECK_FALSE(blank(run.lines[2]["text"].get<std::string>()));
}

TEST_CASE("llama.cpp runs GGUF converted from the llama2.c checkpoint", "[interop][llamacpp]") {
  TempDir tmp;
  std::vector<Output> outputs;
  const fs::path f32 = tmp / "llama2c-convert.gguf";
  shrink_to("llama2.c -> convert (f32)", "convert " + llama2c_input() + " -o " + quote(f32.string()), f32,
            /*exact=*/true, outputs);
  struct Type {
    const char* name;
    bool exact;
  };
  for (const Type& t : {Type{"f32", true}, Type{"q8_0", false}, Type{"q4_0", false}, Type{"q4_1", false},
                        Type{"q5_0", false}, Type{"q5_1", false}, Type{"f16", false}, Type{"bf16", false}}) {
    const fs::path out = tmp / ("llama2c-" + std::string(t.name) + ".gguf");
    shrink_to(std::string("llama2.c -> quantize --type ") + t.name,
              "quantize " + llama2c_input() + " -o " + quote(out.string()) + " --type " + t.name, out, t.exact,
              outputs);
  }
  // A GGUF input: re-quantize shrink's own F32 file.
  if (fs::exists(f32)) {
    const fs::path out = tmp / "gguf-q8_0.gguf";
    shrink_to("shrink's f32 GGUF -> quantize --type q8_0",
              "quantize " + quote(f32.string()) + " -o " + quote(out.string()) + " --type q8_0", out, false, outputs);
  }
  check_generation(outputs);
}

TEST_CASE("llama.cpp runs GGUF converted from the Hugging Face folder", "[interop][llamacpp]") {
  TempDir tmp;
  std::vector<Output> outputs;
  const std::string in = quote(data().hf_dir.string());
  const fs::path f32 = tmp / "hf-convert.gguf";
  shrink_to("HF folder -> convert (f32)", "convert " + in + " -o " + quote(f32.string()), f32, /*exact=*/true,
            outputs);
  for (const char* type : {"q8_0", "q4_0"}) {
    const fs::path out = tmp / ("hf-" + std::string(type) + ".gguf");
    shrink_to(std::string("HF folder -> quantize --type ") + type,
              "quantize " + in + " -o " + quote(out.string()) + " --type " + type, out, false, outputs);
  }
  check_generation(outputs);
}

TEST_CASE("llama.cpp runs GGUF converted from a Hugging Face folder shrink writes from the llama2.c checkpoint",
          "[interop][llamacpp]") {
  // llama2.c (interleaved q/k) -> shrink's HF writer (rotate-half q/k, safetensors, config.json,
  // tokenizer.model) -> shrink's HF importer -> GGUF: both permutations and both formats in one loop.
  TempDir tmp;
  shrink::OpenOptions open;
  open.tokenizer = data().llama2c_tok.string();
  auto model = shrink::open_model(data().llama2c_model.string(), open);
  REQUIRE(model.ok());
  shrink::HfWriteOptions hf_options;
  hf_options.sentencepiece_model = data().sp_model.string();
  const fs::path hf = tmp / "stories260K-hf-by-shrink";
  shrink::Status written = shrink::write_hf_folder(hf.string(), *model, hf_options);
  INFO(written.message());
  REQUIRE(written.ok());
  REQUIRE(fs::exists(hf / "model.safetensors"));
  REQUIRE(fs::exists(hf / "config.json"));
  REQUIRE(fs::exists(hf / "tokenizer.model"));
  std::vector<Output> outputs;
  const std::string in = quote(hf.string());
  const fs::path f32 = tmp / "own-hf-convert.gguf";
  shrink_to("shrink-written HF folder -> convert (f32)", "convert " + in + " -o " + quote(f32.string()), f32,
            /*exact=*/true, outputs);
  for (const char* type : {"q8_0", "q4_0"}) {
    const fs::path out = tmp / ("own-hf-" + std::string(type) + ".gguf");
    shrink_to(std::string("shrink-written HF folder -> quantize --type ") + type,
              "quantize " + in + " -o " + quote(out.string()) + " --type " + type, out, false, outputs);
  }
  check_generation(outputs);
}

TEST_CASE("llama.cpp runs generated llama and qwen2 models with 256-wide rows and byte-level BPE vocabularies",
          "[interop][llamacpp]") {
  // Shapes the shared data lacks: every row a multiple of 256, GQA, a gpt2-style vocabulary;
  // qwen2 adds q/k/v biases, tied embeddings and no q/k permutation.
  TempDir tmp;
  std::vector<std::string> args;
  std::vector<std::string> models;
  for (const char* arch : {"llama", "qwen2"}) {
    shrink::LlamaConfig c = shrink::synthetic_config();
    c.arch = arch;
    c.n_layer = 2;
    if (c.arch == "qwen2") {
      c.qkv_bias = true;
      c.tied_embeddings = true;
    }
    shrink::ModelSource m = shrink::make_synthetic_model(c, seed());
    const fs::path hf = tmp / arch;
    REQUIRE(shrink::write_hf_folder(hf.string(), m).ok());
    for (const char* type : {"f32", "q8_0", "q4_0", "q5_1"}) {
      const fs::path out = tmp / (std::string(arch) + "-" + type + ".gguf");
      RunResult r = run_shrink("quantize " + quote(hf.string()) + " -o " + quote(out.string()) + " --type " + type);
      INFO(r.out);
      REQUIRE(r.exit_code == 0);
      args.push_back(quote(out.string()));
      models.push_back(out.string());
    }
  }
  constexpr int kTokens = 16;
  const NodeRun run = run_node("llama_generate.mjs", join(args) + " " + quote("hello world") + " " + std::to_string(kTokens));
  INFO("command: " << run.command << "\nstdout:\n" << run.out << "\nllama.cpp log:\n" << run.log);
  CHECK(run.exit_code == 0);
  REQUIRE(run.lines.size() == models.size());
  for (size_t i = 0; i < models.size(); ++i) {
    INFO(models[i] << "\n" << run.log_of(models[i]));
    CHECK_FALSE(run.lines[i].contains("error"));
    // Random weights may pick the end-of-generation token early, so only the bound is fixed.
    CHECK(run.lines[i]["tokens"].size() <= static_cast<size_t>(kTokens));
    // BOS(264) + "hello world" through the generated vocabulary's BPE: "h e" merges to 257, the
    // other bytes stay byte tokens (space is byte 32, GPT-2's U+0120).
    CHECK(run.lines[i]["prompt_tokens"] == json::array({264, 257, 108, 108, 111, 32, 119, 111, 114, 108, 100}));
  }
}

TEST_CASE("llama.cpp runs every mix shrink writes for stories260K", "[interop][llamacpp][mixes]") {
  // The model has 64/128-wide rows, so every k-quant mix goes through the fallback path:
  // shrink's lowest-error choice by default, and llama.cpp's own with --fallback llama.
  TempDir tmp;
  std::vector<Output> stories;
  for (const shrink::MixSpec& mix : shrink::all_mixes()) {
    for (const char* fallback : {"lowest-error", "llama"}) {
      if (std::string(fallback) == "llama" && !shrink::traits(mix.default_type).quantized) continue;
      const fs::path out = tmp / ("stories-" + mix.name + "-" + fallback + ".gguf");
      shrink_to("stories260K -> " + mix.name + " (" + fallback + " fallback)",
                "quantize " + llama2c_input() + " -o " + quote(out.string()) + " --type " + mix.name + " --fallback " + fallback,
                out, false, stories);
    }
  }
  check_generation(stories);

  // BabyLlama's mixes are checked through libllama's C API in test_interop_babyllama.cc: its
  // character vocabulary has neither byte tokens nor a newline token, and node-llama-cpp's
  // model loading tokenizes "\n", which makes llama.cpp's byte_to_token throw.
}

TEST_CASE("stories260K q4_k_m: no larger than llama.cpp's and lower KL divergence, measured by llama.cpp",
          "[interop][llamacpp][kld]") {
  // The k-quant target: llama.cpp's own q4_k_m of stories260K is 304,096 bytes; shrink's default
  // (best search + lowest-error fallback for the 64-wide rows) must be no larger and closer to F32.
  // KLD is computed from llama.cpp's logits for both files (llama_kld.mjs, as llama-perplexity
  // --kl-divergence: ctx 512, second half of each chunk) on the first 60 KB of WikiText-2.
  TempDir tmp;
  const fs::path ours = tmp / "q4_k_m.gguf";
  RunResult r = run_shrink("quantize " + llama2c_input() + " -o " + quote(ours.string()) + " --type q4_k_m");
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  const fs::path ref_dir = data().reference_f32.parent_path();
  const fs::path theirs = ref_dir / "stories260K-q4_k_m.llamacpp.gguf";
  CHECK(fs::file_size(theirs) == 304096);
  CHECK(fs::file_size(ours) <= fs::file_size(theirs));
  const fs::path text = data().llama2c_model.parent_path().parent_path().parent_path() / "corpus/wikitext2_wiki.test.raw";
  const NodeRun run = run_node("llama_kld.mjs", join({quote(data().reference_f32.string()), quote(theirs.string()),
                                                      quote(ours.string()), "--text", quote(text.string()), "--bytes",
                                                      "61440", "--ctx", "512"}));
  INFO("command: " << run.command << "\nstdout:\n" << run.out);
  REQUIRE(run.exit_code == 0);
  REQUIRE(run.lines.size() == 2);
  const double kld_theirs = run.lines[0]["kld_mean"].get<double>();
  const double kld_ours = run.lines[1]["kld_mean"].get<double>();
  WARN("q4_k_m mean KLD vs F32: llama.cpp " << kld_theirs << " (" << fs::file_size(theirs) << " bytes), shrink "
                                            << kld_ours << " (" << fs::file_size(ours) << " bytes)");
  CHECK(run.lines[0]["count"].get<int>() > 10000);
  CHECK(kld_ours < kld_theirs);
}

TEST_CASE("llama.cpp tokenizes like SentencePiece with shrink's vocabulary", "[interop][llamacpp]") {
  TempDir tmp;
  SECTION("vocabulary from the llama2.c tokenizer (tok512.bin)") {
    std::vector<Output> outputs;
    const fs::path out = tmp / "llama2c-f32.gguf";
    shrink_to("llama2.c -> convert (f32)", "convert " + llama2c_input() + " -o " + quote(out.string()), out, true,
              outputs);
    check_tokenization(outputs, data().sp_model);
  }
  SECTION("vocabulary from the Hugging Face folder (tokenizer.model)") {
    std::vector<Output> outputs;
    const fs::path out = tmp / "hf-f32.gguf";
    shrink_to("HF folder -> convert (f32)", "convert " + quote(data().hf_dir.string()) + " -o " + quote(out.string()),
              out, true, outputs);
    check_tokenization(outputs, data().hf_dir / "tokenizer.model");
  }
}
