// GGUF files written by llama.cpp itself (../shared/data/reference, build de3ff81) and by its
// gguf-py writer (tokenizers/llama.cpp-vocab): we must read them, and re-writing what we read
// must reproduce llama.cpp's bytes exactly.
//
// Missing data: these cases share the test_formats program with the self-contained tests, so
// they cannot exit 77 for the whole program. Under CI (CI set) absence fails the case; outside
// CI the case warns "SKIPPED" and checks nothing.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>

#include "formats/gguf.h"
#include "tests/test_support.h"

namespace {

using namespace shrink;
namespace fs = std::filesystem;

// Missing data skips the program (exit 77, reported by ctest as skipped; a failure under CI).
// These cases carry the [reference] tag, which ctest runs as its own test (test_formats_data).
bool have(const fs::path& p) {
  if (!fs::exists(p)) shrink::test::skip_program("test data not found at " + p.string() + " (keep ../shared beside the repo)");
  return true;
}

Status rewrite(const GgufFile& f, const std::string& out_path) {
  GgufWriter w(out_path, f.alignment());
  for (const GgufKV& kv : f.metadata()) w.set(kv.key, kv.value);
  for (const GgufTensorInfo& t : f.tensors()) w.add_tensor(t.name, t.shape, t.type);
  SHRINK_CHECK(w.begin());
  for (size_t i = 0; i < f.tensors().size(); ++i)
    SHRINK_CHECK(w.write_tensor_data(i, f.tensors()[i].data, f.tensors()[i].n_bytes));
  return w.finish();
}

GgufFile open_ok(const fs::path& p) {
  auto f = GgufFile::open(p.string());
  INFO((f.ok() ? std::string() : f.error().message));
  REQUIRE(f.ok());
  return std::move(f).value();
}

std::string str_of(const GgufFile& f, const std::string& key) {
  const GgufValue* v = f.find(key);
  REQUIRE(v != nullptr);
  REQUIRE(v->as_string() != nullptr);
  return *v->as_string();
}

int64_t int_of(const GgufFile& f, const std::string& key) {
  const GgufValue* v = f.find(key);
  REQUIRE(v != nullptr);
  REQUIRE(v->as_int().has_value());
  return *v->as_int();
}

struct Reference {
  const char* file;
  TypeId q_type;      // blk.N.attn_q.weight
  TypeId down_type;   // blk.N.ffn_down.weight (172-wide rows: no 32-block type fits)
  TypeId embd_type;   // token_embd.weight
  int64_t file_type;  // general.file_type, -1 when absent
};

}  // namespace

TEST_CASE("gguf reference: llama.cpp's stories260K files read and re-write byte for byte", "[gguf][reference]") {
  const fs::path dir = shrink::test::data_dir() / "reference";
  if (!have(dir)) return;
  // Types as llama-quantize chose them (ffn_down has 172-element rows, which no 32- or
  // 256-block type divides, so it falls back to f16; q4_k_m falls back to q5_0 for 64-wide rows).
  const Reference refs[] = {
      {"stories260K-f32.llamacpp.gguf", TypeId::F32, TypeId::F32, TypeId::F32, -1},
      {"stories260K-q8_0.llamacpp.gguf", TypeId::Q8_0, TypeId::F16, TypeId::Q8_0, 7},
      {"stories260K-q4_0.llamacpp.gguf", TypeId::Q4_0, TypeId::F16, TypeId::Q4_0, 2},
      {"stories260K-q4_k_m.llamacpp.gguf", TypeId::Q5_0, TypeId::F16, TypeId::Q5_0, 15},
  };
  for (const Reference& ref : refs) {
    const fs::path p = dir / ref.file;
    INFO(p.string());
    if (!have(p)) continue;
    GgufFile f = open_ok(p);
    CHECK(f.version() == 3);
    CHECK(f.alignment() == 32);
    CHECK(str_of(f, "general.architecture") == "llama");
    CHECK(int_of(f, "llama.block_count") == 5);
    CHECK(int_of(f, "llama.embedding_length") == 64);
    CHECK(int_of(f, "llama.attention.head_count_kv") == 4);
    if (ref.file_type >= 0) {
      CHECK(int_of(f, "general.file_type") == ref.file_type);
      CHECK(int_of(f, "general.quantization_version") == 2);
    }
    const GgufValue* tokens = f.find("tokenizer.ggml.tokens");
    REQUIRE(tokens);
    REQUIRE(tokens->as_array());
    CHECK(tokens->as_array()->items.size() == 512);
    CHECK(*tokens->as_array()->items[1].as_string() == "<s>");

    // 2 global tensors + output.weight + 9 per block x 5 blocks.
    CHECK(f.tensors().size() == 48);
    for (const char* name : {"token_embd.weight", "output_norm.weight", "output.weight", "blk.0.attn_q.weight",
                             "blk.0.attn_k.weight", "blk.0.attn_v.weight", "blk.0.attn_output.weight",
                             "blk.0.attn_norm.weight", "blk.0.ffn_gate.weight", "blk.0.ffn_down.weight",
                             "blk.0.ffn_up.weight", "blk.0.ffn_norm.weight", "blk.4.ffn_norm.weight"}) {
      INFO(name);
      CHECK(f.find_tensor(name) != nullptr);
    }
    const GgufTensorInfo* q = f.find_tensor("blk.0.attn_q.weight");
    const GgufTensorInfo* k = f.find_tensor("blk.0.attn_k.weight");
    const GgufTensorInfo* down = f.find_tensor("blk.3.ffn_down.weight");
    const GgufTensorInfo* embd = f.find_tensor("token_embd.weight");
    const GgufTensorInfo* norm = f.find_tensor("blk.2.attn_norm.weight");
    REQUIRE((q && k && down && embd && norm));
    CHECK(q->shape == std::vector<int64_t>{64, 64});
    CHECK(k->shape == std::vector<int64_t>{64, 32});      // (n_embd, n_embd_kv): 4 kv heads of 8
    CHECK(down->shape == std::vector<int64_t>{172, 64});  // (n_ff, n_embd) in ggml order
    CHECK(embd->shape == std::vector<int64_t>{64, 512});  // (n_embd, n_vocab)
    CHECK(norm->shape == std::vector<int64_t>{64});
    CHECK(q->type == ref.q_type);
    CHECK(down->type == ref.down_type);
    CHECK(embd->type == ref.embd_type);
    CHECK(norm->type == TypeId::F32);
    for (const GgufTensorInfo& t : f.tensors()) CHECK(t.offset % f.alignment() == 0);

    // The strong oracle: llama.cpp's writer and ours agree on every byte.
    shrink::test::TempDir tmp;
    const std::string out = (tmp / "rewritten.gguf").string();
    Status s = rewrite(f, out);
    INFO(s.message());
    REQUIRE(s.ok());
    const auto a = shrink::test::read_bytes(p);
    const auto b = shrink::test::read_bytes(out);
    REQUIRE(a.size() == b.size());
    CHECK(a == b);
  }
}

TEST_CASE("gguf reference: gguf-py vocabulary files read and re-write", "[gguf][reference]") {
  const fs::path dir = shrink::test::data_dir() / "tokenizers" / "llama.cpp-vocab";
  if (!have(dir)) return;
  struct Vocab {
    const char* file;
    const char* model;
    size_t n_tokens;
  };
  const Vocab vocabs[] = {
      {"ggml-vocab-llama-spm.gguf", "llama", 32000}, {"ggml-vocab-phi-3.gguf", "llama", 32064},
      {"ggml-vocab-gpt-2.gguf", "gpt2", 50257},      {"ggml-vocab-llama-bpe.gguf", "gpt2", 128256},
      {"ggml-vocab-qwen2.gguf", "gpt2", 151936},
  };
  for (const Vocab& v : vocabs) {
    const fs::path p = dir / v.file;
    INFO(p.string());
    if (!have(p)) continue;
    GgufFile f = open_ok(p);
    CHECK(f.tensors().empty());
    CHECK(str_of(f, "tokenizer.ggml.model") == v.model);
    const GgufValue* tokens = f.find("tokenizer.ggml.tokens");
    REQUIRE(tokens);
    REQUIRE(tokens->as_array());
    CHECK(tokens->as_array()->elem_type == GgufType::STRING);
    CHECK(tokens->as_array()->items.size() == v.n_tokens);
    if (std::string(v.model) == "gpt2") {
      const GgufValue* merges = f.find("tokenizer.ggml.merges");
      REQUIRE(merges);
      CHECK(merges->as_array()->items.size() > 10000);
    }

    // gguf-py does not pad the header when no tensor data follows; llama.cpp's writer (and
    // ours) always pads to the alignment. Otherwise the bytes agree.
    shrink::test::TempDir tmp;
    const std::string out = (tmp / "rewritten.gguf").string();
    Status s = rewrite(f, out);
    INFO(s.message());
    REQUIRE(s.ok());
    auto a = shrink::test::read_bytes(p);
    const auto b = shrink::test::read_bytes(out);
    while (a.size() % f.alignment() != 0) a.push_back(0);
    REQUIRE(a.size() == b.size());
    CHECK(a == b);
  }
}
