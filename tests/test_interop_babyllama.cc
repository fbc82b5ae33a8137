// Interop with llama.cpp through its C API, prompt given as token ids: every mix `shrink quantize`
// writes for a llama2.c checkpoint must load in llama.cpp and decode greedily.
//
// Why not the node scripts (test_interop_llamacpp.cc): BabyLlama's vocabulary is 105 characters
// with no byte tokens and no "\n" token. node-llama-cpp tokenizes "\n" while it loads a model, and
// llama.cpp's SentencePiece byte_to_token() then throws std::out_of_range, uncaught, which aborts
// the process. The model itself is fine for llama.cpp's core; this test talks to libllama (from the
// npm package @node-llama-cpp/linux-x64, loaded with dlopen) directly and feeds it token ids, so no
// text is ever tokenized inside llama.cpp. Loading it, llama.cpp only warns ("SPM vocabulary, but
// newline token not found ... Using special_pad_id instead"); that warning is printed, not failed.
//
// For each model and every mix in all_mixes():
//   shrink quantize MODEL.bin --tokenizer TOK.bin -o X.gguf --type MIX
//   llama.cpp: load X.gguf (check_tensors on), evaluate the prompt ids, then 32 times take the
//   argmax of the last logits and evaluate that token (no sampling, no repeat penalty, EOS does
//   not stop the run).
// Asserted: every file loads and every decode succeeds with 32 tokens out; the F32 tokens read as
// story text; q8_0's tokens equal F32's for at least the first kQ8MinAgree. Printed per mix: how
// many of the 32 tokens equal F32's at the same position, how long the common prefix is, timings,
// and any warning or error llama.cpp logged.
//
// Prompt ids are hard-coded: BOS (1) followed by SentencePiece's ids for "Once upon a time"
// (sentencepiece's encode() on tok105.model / tok512.model, add_dummy_prefix as trained).
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "formats/llama2c.h"
#include "formats/vocab.h"
#include "quantizer/mixes.h"
#include "tests/libllama_api.h"
#include "tests/test_support.h"

using namespace shrink;
using namespace shrink::test;

namespace {

using namespace shrink::libllama;

// Loaded once; the program skips (exit 77) when the npm package or a symbol is missing.
Api& llama() {
  std::string e;
  if (Api* a = process_api(interop_dir() / kBinsUnderInterop, &e)) return *a;
  skip_program("llama.cpp's libllama (npm package @node-llama-cpp/linux-x64): " + e);
}

// ---- One greedy run ----

struct Greedy {
  bool loaded = false;
  std::string error;  // empty when every step succeeded
  int32_t n_vocab = 0;
  std::vector<llama_token> tokens;
  double ms = 0;
};

Greedy greedy_decode(const fs::path& gguf, std::vector<llama_token> prompt, int n_new) {
  Api& l = llama();
  Greedy g;
  const auto t0 = std::chrono::steady_clock::now();
  llama_model_params mp = l.model_default_params();
  mp.n_gpu_layers = 0;
  mp.check_tensors = true;  // llama.cpp validates every block (NaN/Inf scales, ...) while loading
  llama_model* model = l.model_load_from_file(gguf.c_str(), mp);
  if (model == nullptr) {
    g.error = "llama_model_load_from_file failed";
    return g;
  }
  g.loaded = true;
  g.n_vocab = l.vocab_n_tokens(l.model_get_vocab(model));
  llama_context_params cp = l.context_default_params();
  cp.n_ctx = 128;  // prompt + 32 tokens fit with room to spare
  cp.n_batch = 128;
  cp.n_ubatch = 128;
  cp.n_threads = 1;
  cp.n_threads_batch = 1;
  cp.no_perf = true;
  llama_context* ctx = l.init_from_model(model, cp);
  if (ctx == nullptr) {
    g.error = "llama_init_from_model failed";
    l.model_free(model);
    return g;
  }
  std::vector<llama_token> step = std::move(prompt);
  for (int i = 0; i < n_new; ++i) {
    const int32_t rc = l.decode(ctx, l.batch_get_one(step.data(), static_cast<int32_t>(step.size())));
    if (rc != 0) {
      g.error = "llama_decode returned " + std::to_string(rc) + " at step " + std::to_string(i);
      break;
    }
    const float* logits = l.get_logits_ith(ctx, -1);
    if (logits == nullptr) {
      g.error = "llama_get_logits_ith(-1) returned null at step " + std::to_string(i);
      break;
    }
    llama_token best = 0;
    for (llama_token t = 1; t < g.n_vocab; ++t)
      if (logits[t] > logits[best]) best = t;
    g.tokens.push_back(best);
    step.assign(1, best);
  }
  l.free(ctx);
  l.model_free(model);
  g.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return g;
}

// ---- Text of tokens, from the vocabulary's pieces ----

std::string detokenize(const Vocab& v, const std::vector<llama_token>& tokens) {
  std::string s;
  for (llama_token t : tokens) {
    if (t < 0 || static_cast<size_t>(t) >= v.size()) {
      s += "<?" + std::to_string(t) + ">";
      continue;
    }
    const std::string& piece = v.tokens[t];
    for (size_t i = 0; i < piece.size(); ++i) {
      if (piece.compare(i, 3, "\xE2\x96\x81") == 0) {  // U+2581 stands for a space
        s += ' ';
        i += 2;
      } else {
        s += piece[i];
      }
    }
  }
  return s;
}

// Share of bytes that are ASCII letters or spaces.
double letters_and_spaces(const std::string& s) {
  if (s.empty()) return 0;
  size_t n = 0;
  for (unsigned char c : s)
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == ' ') ++n;
  return static_cast<double>(n) / static_cast<double>(s.size());
}

std::string ids(const std::vector<llama_token>& t) {
  std::ostringstream o;
  for (size_t i = 0; i < t.size(); ++i) o << (i ? " " : "") << t[i];
  return o.str();
}

// ---- The check, for one llama2.c model ----

constexpr int kNewTokens = 32;
constexpr int kQ8MinAgree = 8;  // q8_0 must equal F32 at least this far

struct ModelCase {
  std::string name;
  fs::path checkpoint;  // llama2.c .bin
  fs::path tokenizer;   // llama2.c tok*.bin
  int64_t vocab_size = 0;
  std::vector<llama_token> prompt;  // BOS + SentencePiece ids of "Once upon a time"
  std::string f32_continuation;     // when known: the F32 text must start with this (or be its prefix)
};

void check_all_mixes(const ModelCase& mc) {
  require(mc.checkpoint, "shared test data (" + mc.checkpoint.filename().string() + ")");
  require(mc.tokenizer, "shared test data (" + mc.tokenizer.filename().string() + ")");
  Api& l = llama();
  auto vocab = read_llama2c_tokenizer(mc.tokenizer.string(), mc.vocab_size);
  REQUIRE(vocab.ok());

  TempDir dir;
  struct Row {
    std::string mix;
    Greedy g;
    double quantize_ms = 0;
    size_t bytes = 0;
    std::string warnings;
  };
  std::vector<Row> rows;
  for (const MixSpec& mix : all_mixes()) {
    Row row;
    row.mix = mix.name;
    const fs::path out = dir / (mc.name + "-" + mix.name + ".gguf");
    const auto t0 = std::chrono::steady_clock::now();
    const RunResult q = run_shrink("quantize " + quote(mc.checkpoint.string()) + " --tokenizer " +
                                   quote(mc.tokenizer.string()) + " -o " + quote(out.string()) + " --type " + mix.name);
    row.quantize_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    INFO(mc.name << " " << mix.name << ": shrink quantize output:\n" << q.out);
    REQUIRE(q.exit_code == 0);
    row.bytes = static_cast<size_t>(fs::file_size(out));

    l.log.clear();
    l.warnings.clear();
    row.g = greedy_decode(out, mc.prompt, kNewTokens);
    row.warnings = l.warnings;
    INFO("llama.cpp log:\n" << l.log);
    CHECK(row.g.loaded);
    CHECK(row.g.error == "");
    CHECK(row.g.n_vocab == mc.vocab_size);
    CHECK(row.g.tokens.size() == static_cast<size_t>(kNewTokens));
    rows.push_back(std::move(row));
    fs::remove(out);
  }

  const Row* f32 = nullptr;
  const Row* q8 = nullptr;
  for (const Row& r : rows) {
    if (r.mix == "f32") f32 = &r;
    if (r.mix == "q8_0") q8 = &r;
  }
  REQUIRE(f32 != nullptr);
  REQUIRE(q8 != nullptr);
  REQUIRE(f32->g.tokens.size() == static_cast<size_t>(kNewTokens));

  const std::string text = detokenize(*vocab, f32->g.tokens);
  std::cout << "\n" << mc.name << ": F32 greedy continuation of \"Once upon a time\" (" << kNewTokens
            << " tokens): \"" << text << "\"\n  ids: " << ids(f32->g.tokens) << "\n";

  auto prefix_agree = [&](const Row& r) {
    size_t n = 0;
    while (n < r.g.tokens.size() && n < f32->g.tokens.size() && r.g.tokens[n] == f32->g.tokens[n]) ++n;
    return n;
  };
  auto same_position = [&](const Row& r) {
    size_t n = 0;
    for (size_t i = 0; i < r.g.tokens.size() && i < f32->g.tokens.size(); ++i) n += r.g.tokens[i] == f32->g.tokens[i];
    return n;
  };
  std::cout << "  " << std::left << std::setw(8) << "mix" << std::right << std::setw(10) << "bytes" << std::setw(10)
            << "same pos" << std::setw(8) << "prefix" << std::setw(13) << "quantize ms" << std::setw(10) << "llama ms"
            << "  llama.cpp warnings\n";
  for (const Row& r : rows) {
    std::string w = r.warnings;
    for (char& c : w)
      if (c == '\n') c = ' ';
    std::cout << "  " << std::left << std::setw(8) << r.mix << std::right << std::setw(10) << r.bytes << std::setw(7)
              << same_position(r) << "/" << kNewTokens << std::setw(8) << prefix_agree(r) << std::fixed
              << std::setprecision(0) << std::setw(13) << r.quantize_ms << std::setw(10) << r.g.ms << "  "
              << (w.empty() ? "-" : w) << "\n";
    if (r.mix != "f32") std::cout << "           " << detokenize(*vocab, r.g.tokens) << "\n";
  }
  std::cout << std::flush;

  // Story text: mostly letters and spaces, several words.
  INFO(mc.name << " F32 text: \"" << text << "\"");
  CHECK(letters_and_spaces(text) >= 0.8);
  CHECK(std::count(text.begin(), text.end(), ' ') >= 4);
  if (!mc.f32_continuation.empty()) {
    const size_t n = std::min(text.size(), mc.f32_continuation.size());
    CHECK(text.substr(0, n) == mc.f32_continuation.substr(0, n));
  }
  INFO("q8_0 ids: " << ids(q8->g.tokens));
  CHECK(prefix_agree(*q8) >= static_cast<size_t>(kQ8MinAgree));
}

}  // namespace

TEST_CASE("BabyLlama: every mix loads in llama.cpp and decodes from token ids", "[data]") {
  const fs::path d = data_dir() / "models" / "babyllama-105";
  ModelCase mc;
  mc.name = "babyllama-105";
  mc.checkpoint = d / "model5000.bin";
  mc.tokenizer = d / "tok105.bin";
  mc.vocab_size = 105;
  // BOS, then sentencepiece's encode("Once upon a time") on tok105.model: one id per character
  // (3 = U+2581, 34 = 'O', 9 = 'n', 22 = 'c', 4 = 'e', ...).
  mc.prompt = {1, 3, 34, 9, 22, 4, 3, 18, 20, 7, 9, 3, 5, 3, 6, 10, 16, 4};
  check_all_mixes(mc);
}

TEST_CASE("stories260K: every mix loads in llama.cpp and decodes from token ids", "[data]") {
  const fs::path d = data_dir() / "models" / "stories260K";
  ModelCase mc;
  mc.name = "stories260K";
  mc.checkpoint = d / "stories260K.bin";
  mc.tokenizer = d / "tok512.bin";
  mc.vocab_size = 512;
  // BOS, then sentencepiece's encode("Once upon a time") on tok512.model.
  mc.prompt = {1, 403, 407, 261, 378};
  // Known greedy continuation in llama.cpp, F32 (../shared/data/README.md); 32 tokens end at "she saw".
  mc.f32_continuation =
      ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red "
      "ball. She wanted to play with it, but it was too high.";
  check_all_mixes(mc);
}
