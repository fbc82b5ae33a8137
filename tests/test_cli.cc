// The shrink binary end to end: quantize/convert/inspect on generated models, and every
// bad-input class: one line naming the file and the problem, non-zero exit, no output left,
// and an existing output file untouched.
#include <catch2/catch.hpp>
#include <fstream>
#include <random>
#include <nlohmann/json.hpp>

#include "formats/gguf.h"
#include "formats/imatrix_file.h"
#include "formats/safetensors.h"
#include "kernels/kernels.h"
#include "model/hf_writer.h"
#include "model/model_source.h"
#include "model/synthetic.h"
#include "tests/test_support.h"

using namespace shrink;
using namespace shrink::test;

namespace {

// A small generated model written as a Hugging Face folder.
fs::path make_hf(const TempDir& tmp, const std::string& name = "hf", int layers = 2) {
  LlamaConfig c = synthetic_config();
  c.n_layer = layers;
  ModelSource m = make_synthetic_model(c, seed());
  fs::path dir = tmp / name;
  REQUIRE(write_hf_folder(dir.string(), m).ok());
  return dir;
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream f(p);
  return nlohmann::json::parse(f);
}

void write_json(const fs::path& p, const nlohmann::json& j) {
  std::ofstream f(p);
  f << j.dump(2);
}

// Leftover temp files or outputs in a folder.
int files_in(const fs::path& dir) {
  int n = 0;
  for (auto& e : fs::directory_iterator(dir)) n += e.is_regular_file();
  return n;
}

// The failure contract: non-zero exit, one "shrink: error:" line mentioning `must_name` and
// `problem`, and the output folder holds nothing new.
void expect_refusal(const std::string& args, const fs::path& out_dir, const std::string& must_name,
                    const std::string& problem) {
  const int before = files_in(out_dir);
  RunResult r = run_shrink(args);
  INFO("shrink " << args << "\n" << r.out);
  CHECK(r.exit_code != 0);
  CHECK(r.out.find("shrink: error: ") != std::string::npos);
  CHECK(r.out.find(must_name) != std::string::npos);
  CHECK(r.out.find(problem) != std::string::npos);
  CHECK(files_in(out_dir) == before);
}

}  // namespace

TEST_CASE("quantize --algo ggml writes every type from an HF folder, and the bytes are the kernels' own") {
  TempDir tmp;
  fs::path hf = make_hf(tmp);
  auto src = open_model(hf.string());
  REQUIRE(src.ok());
  for (const char* type : {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"}) {
    fs::path out = tmp / (std::string(type) + ".gguf");
    RunResult r = run_shrink("quantize " + quote(hf.string()) + " -o " + quote(out.string()) + " --algo ggml --type " + type);
    INFO(r.out);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("bits per weight") != std::string::npos);
    auto f = GgufFile::open(out.string());
    REQUIRE(f.ok());
    TypeId want = *type_from_name(type);
    for (const WeightTensor& t : src->tensors) {
      const GgufTensorInfo* info = f->find_tensor(t.name);
      REQUIRE(info != nullptr);
      INFO(t.name << " as " << type);
      if (t.shape.size() == 1) {
        CHECK(info->type == TypeId::F32);  // norms stay f32, as in llama.cpp
        continue;
      }
      // llama.cpp's rule: the output projection gets Q6_K unless the mix is Q8_0.
      if (t.name == "output.weight" && traits(want).quantized && want != TypeId::Q8_0) CHECK(info->type == TypeId::Q6_K);
      else CHECK(info->type == want);
      std::vector<float> v;
      REQUIRE(t.read_f32(v).ok());
      std::vector<uint8_t> expect(info->n_bytes);
      kernels::quantize_rows(info->type, v.data(), expect.data(), t.n_rows(), t.shape[0]);
      CHECK(std::equal(expect.begin(), expect.end(), info->data));
    }
    CHECK(f->find("general.file_type") != nullptr);
  }
}

TEST_CASE("convert keeps the source precision and requantizing a GGUF warns") {
  TempDir tmp;
  fs::path hf = make_hf(tmp);
  fs::path f32 = tmp / "f32.gguf", q8 = tmp / "q8.gguf", q4 = tmp / "q4.gguf";
  REQUIRE(run_shrink("convert " + quote(hf.string()) + " -o " + quote(f32.string())).exit_code == 0);
  auto f = GgufFile::open(f32.string());
  REQUIRE(f.ok());
  CHECK(f->find_tensor("blk.0.attn_q.weight")->type == TypeId::F32);
  REQUIRE(run_shrink("quantize " + quote(f32.string()) + " -o " + quote(q8.string()) + " --type q8_0").exit_code == 0);
  RunResult r = run_shrink("quantize " + quote(q8.string()) + " -o " + quote(q4.string()) + " --type q4_0");
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("warning") != std::string::npos);
  // Metadata carried over from the GGUF input.
  auto g = GgufFile::open(q4.string());
  REQUIRE(g.ok());
  CHECK(*g->find("general.architecture")->as_string() == "llama");
  CHECK(g->find("tokenizer.ggml.tokens") != nullptr);
  CHECK(*g->find("general.file_type")->as_int() == 2);
}

// The requantizing warning belongs to quantize: eval and calibrate only read the blocks. Their
// stderr alone is captured (stdout goes to /dev/null), so any warning line there fails the case.
TEST_CASE("eval and calibrate on a quantized GGUF print no requantizing warning; quantize does") {
  TempDir tmp;
  fs::path hf = make_hf(tmp);
  fs::path q8 = tmp / "q8.gguf", q4 = tmp / "q4.gguf", ids = tmp / "ids.json", im = tmp / "im.gguf";
  REQUIRE(run_shrink("quantize " + quote(hf.string()) + " -o " + quote(q8.string()) + " --type q8_0").exit_code == 0);
  std::mt19937 rng(seed());
  std::vector<int> tokens(64);
  for (int& t : tokens) t = static_cast<int>(rng() % 256) + 3;  // byte tokens of the synthetic vocabulary (267)
  write_json(ids, tokens);
  // run() appends 2>&1 to the whole line: the subshell's stderr is shrink's, its stdout dropped.
  const std::string stderr_only = " 2>&1 >/dev/null)";
  RunResult e = run("(" + quote(SHRINK_BINARY) + " eval " + quote(q8.string()) + " --tokens " + quote(ids.string()) +
                    " --ctx 32 --json" + stderr_only);
  INFO("eval stderr:\n" << e.out);
  CHECK(e.exit_code == 0);
  CHECK(e.out.find("requantiz") == std::string::npos);
  CHECK(e.out.find("warning") == std::string::npos);
  RunResult c = run("(" + quote(SHRINK_BINARY) + " calibrate " + quote(q8.string()) + " --tokens " + quote(ids.string()) +
                    " --ctx 32 --no-ppl -o " + quote(im.string()) + stderr_only);
  INFO("calibrate stderr:\n" << c.out);
  CHECK(c.exit_code == 0);
  CHECK(c.out.find("calibrate: 2 chunks of 32 tokens") != std::string::npos);  // its progress line: stderr is captured
  CHECK(c.out.find("requantiz") == std::string::npos);
  CHECK(c.out.find("warning") == std::string::npos);
  RunResult q = run("(" + quote(SHRINK_BINARY) + " quantize " + quote(q8.string()) + " -o " + quote(q4.string()) +
                    " --type q4_0" + stderr_only);
  INFO("quantize stderr:\n" << q.out);
  CHECK(q.exit_code == 0);
  CHECK(q.out.find("requantizing them compounds the error") != std::string::npos);
}

TEST_CASE("inspect prints tensors and totals, and --json parses") {
  TempDir tmp;
  fs::path hf = make_hf(tmp);
  fs::path out = tmp / "m.gguf";
  REQUIRE(run_shrink("quantize " + quote(hf.string()) + " -o " + quote(out.string()) + " -t q4_0").exit_code == 0);
  RunResult text = run_shrink("inspect " + quote(out.string()));
  CHECK(text.exit_code == 0);
  CHECK(text.out.find("blk.1.ffn_down.weight") != std::string::npos);
  CHECK(text.out.find("total:") != std::string::npos);
  RunResult js = run_shrink("inspect --json " + quote(out.string()));
  REQUIRE(js.exit_code == 0);
  auto j = nlohmann::json::parse(js.out);
  CHECK(j["architecture"] == "llama");
  CHECK(j["tensors"].size() == 2 + 1 + 9 * 2);
  RunResult hfjs = run_shrink("inspect --json " + quote(hf.string()));
  REQUIRE(hfjs.exit_code == 0);
  CHECK(nlohmann::json::parse(hfjs.out)["config"]["n_layer"] == 2);
}

TEST_CASE("bad input: each failure class names the file and the problem, writes nothing") {
  TempDir tmp;
  fs::path out_dir = tmp / "out";
  fs::create_directories(out_dir);
  const std::string out = quote((out_dir / "x.gguf").string());
  fs::path good = make_hf(tmp, "good");

  SECTION("missing input") { expect_refusal("quantize " + quote((tmp / "nope").string()) + " -o " + out + " -t q8_0", out_dir, "nope", "no such file"); }
  SECTION("unknown type") { expect_refusal("quantize " + quote(good.string()) + " -o " + out + " -t q3_x", out_dir, "q3_x", "unknown"); }
  SECTION("truncated GGUF") {
    fs::path g = tmp / "g.gguf";
    REQUIRE(run_shrink("convert " + quote(good.string()) + " -o " + quote(g.string())).exit_code == 0);
    auto bytes = read_bytes(g);
    bytes.resize(bytes.size() / 2);
    write_bytes(tmp / "cut.gguf", bytes);
    expect_refusal("quantize " + quote((tmp / "cut.gguf").string()) + " -o " + out + " -t q8_0", out_dir, "cut.gguf", "");
  }
  SECTION("wrong magic") {
    write_bytes(tmp / "bad.gguf", {'G', 'G', 'U', 'X', 3, 0, 0, 0});
    expect_refusal("quantize " + quote((tmp / "bad.gguf").string()) + " -o " + out + " -t q8_0", out_dir, "bad.gguf", "");
  }
  SECTION("unsupported architecture") {
    auto cfg = read_json(good / "config.json");
    cfg["architectures"] = {"GPTNeoXForCausalLM"};
    cfg["model_type"] = "gpt_neox";
    write_json(good / "config.json", cfg);
    expect_refusal("quantize " + quote(good.string()) + " -o " + out + " -t q8_0", out_dir, "config.json", "GPTNeoXForCausalLM");
  }
  SECTION("shape mismatch with config") {
    auto cfg = read_json(good / "config.json");
    cfg["intermediate_size"] = 512;
    write_json(good / "config.json", cfg);
    expect_refusal("quantize " + quote(good.string()) + " -o " + out + " -t q8_0", out_dir, "mlp.", "config.json implies");
  }
  SECTION("missing tensor") {
    auto cfg = read_json(good / "config.json");
    cfg["num_hidden_layers"] = 3;
    write_json(good / "config.json", cfg);
    expect_refusal("quantize " + quote(good.string()) + " -o " + out + " -t q8_0", out_dir, "model.layers.2.", "missing");
  }
  SECTION("extra tensor") {
    auto cfg = read_json(good / "config.json");
    cfg["num_hidden_layers"] = 1;
    write_json(good / "config.json", cfg);
    expect_refusal("quantize " + quote(good.string()) + " -o " + out + " -t q8_0", out_dir, "model.layers.1.", "not expected");
  }
  SECTION("unknown dtype in safetensors") {
    auto bytes = read_bytes(good / "model.safetensors");
    std::string s(bytes.begin(), bytes.end());
    size_t at = s.find("\"F32\"");
    REQUIRE(at != std::string::npos);
    s.replace(at, 5, "\"F33\"");
    write_bytes(good / "model.safetensors", std::vector<uint8_t>(s.begin(), s.end()));
    expect_refusal("quantize " + quote(good.string()) + " -o " + out + " -t q8_0", out_dir, "model.safetensors", "F33");
  }
  SECTION("NaN weight refused unless allowed; an existing output survives the refusal") {
    auto bytes = read_bytes(good / "model.safetensors");
    uint64_t header_len;
    std::memcpy(&header_len, bytes.data(), 8);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(bytes.data() + 8 + header_len + 4 * 100, &nan, 4);  // inside the first tensor
    write_bytes(good / "model.safetensors", bytes);
    write_bytes(out_dir / "x.gguf", {'o', 'l', 'd'});
    expect_refusal("quantize " + quote(good.string()) + " -o " + out + " -t q8_0", out_dir, "model.safetensors", "NaN");
    CHECK(read_bytes(out_dir / "x.gguf") == std::vector<uint8_t>{'o', 'l', 'd'});
    RunResult r = run_shrink("quantize " + quote(good.string()) + " -o " + out + " -t q8_0 --allow-nonfinite");
    CHECK(r.exit_code == 0);
  }
  SECTION("unwritable output") {
    expect_refusal("quantize " + quote(good.string()) + " -o " + quote((tmp / "no/such/dir/x.gguf").string()) + " -t q8_0",
                   out_dir, "no/such/dir/x.gguf", "cannot create output");
  }
  SECTION("llama2.c checkpoint without a tokenizer, and truncated") {
    fs::path bin = data_dir() / "models/stories260K/stories260K.bin";
    if (!fs::exists(bin)) skip_program("../shared/data/models/stories260K not found");
    fs::copy_file(bin, tmp / "lone.bin");
    expect_refusal("quantize " + quote((tmp / "lone.bin").string()) + " -o " + out + " -t q8_0", out_dir, "lone.bin", "--tokenizer");
    auto bytes = read_bytes(bin);
    bytes.resize(bytes.size() - 100);
    write_bytes(tmp / "cut.bin", bytes);
    expect_refusal("quantize " + quote((tmp / "cut.bin").string()) + " -o " + out + " -t q8_0 --tokenizer " +
                       quote((data_dir() / "models/stories260K/tok512.bin").string()),
                   out_dir, "cut.bin", "bytes");
  }
}

TEST_CASE("quantize --imatrix: weighted quantization, entries listed, mismatched files refused") {
  TempDir tmp;
  fs::path hf = make_hf(tmp);
  auto src = open_model(hf.string());
  REQUIRE(src.ok());
  // An importance matrix for every 2-D tensor but one, heavy-tailed like real activations.
  Imatrix m;
  m.datasets = {"generated"};
  m.chunk_count = 4;
  m.chunk_size = 512;
  std::mt19937 rng(seed());
  std::lognormal_distribution<float> heavy(0.0f, 1.5f);
  for (const WeightTensor& t : src->tensors) {
    if (t.shape.size() < 2 || t.name == "blk.1.ffn_up.weight") continue;
    ImatrixEntry e;
    e.name = t.name;
    e.n_cols = t.shape[0];
    e.in_sum2.resize(static_cast<size_t>(t.shape[0]));
    for (float& x : e.in_sum2) x = heavy(rng) * 2048;
    e.counts = {2048};
    m.entries.push_back(std::move(e));
  }
  REQUIRE(write_imatrix_gguf((tmp / "imatrix.gguf").string(), m).ok());
  fs::path out = tmp / "weighted.gguf";
  RunResult r = run_shrink("quantize " + quote(hf.string()) + " -o " + quote(out.string()) + " -t q4_k_m --algo ggml --imatrix " +
                           quote((tmp / "imatrix.gguf").string()));
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("quantized unweighted: 1 tensors: blk.1.ffn_up.weight") != std::string::npos);
  // The weighted bytes are ggml's with the same importance (kernels are byte-exact with ggml).
  auto f = GgufFile::open(out.string());
  REQUIRE(f.ok());
  const GgufTensorInfo* q = f->find_tensor("blk.0.attn_q.weight");
  REQUIRE(q != nullptr);
  std::vector<float> v;
  REQUIRE(src->find("blk.0.attn_q.weight")->read_f32(v).ok());
  std::vector<float> w = imatrix_weights(*m.find("blk.0.attn_q.weight"));
  std::vector<uint8_t> weighted(q->n_bytes), plain(q->n_bytes);
  kernels::quantize_rows(q->type, v.data(), weighted.data(), q->shape[1], q->shape[0], w.data());
  kernels::quantize_rows(q->type, v.data(), plain.data(), q->shape[1], q->shape[0]);
  CHECK(std::equal(weighted.begin(), weighted.end(), q->data));
  CHECK(weighted != plain);

  // An imatrix made for another model: sizes differ -> refused, naming the file and tensor.
  Imatrix other = m;
  other.entries[1].n_cols = 128;
  other.entries[1].in_sum2.resize(128);
  REQUIRE(write_imatrix_gguf((tmp / "other.gguf").string(), other).ok());
  fs::path out_dir = tmp / "refused";
  fs::create_directories(out_dir);
  expect_refusal("quantize " + quote(hf.string()) + " -o " + quote((out_dir / "x.gguf").string()) + " -t q4_k_m --imatrix " +
                     quote((tmp / "other.gguf").string()),
                 out_dir, "other.gguf", other.entries[1].name);
}

TEST_CASE("demo runs from nothing and writes GGUFs that read back") {
  TempDir tmp;
  RunResult r = run_shrink("demo --dir " + quote((tmp / "demo").string()));
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  for (const char* name : {"model-f32.gguf", "model-q8_0-best.gguf", "model-q4_k_m-best.gguf", "model-q4_0-ggml.gguf",
                           "model-q4_0-best.gguf"}) {
    INFO(name);
    auto f = GgufFile::open((tmp / "demo" / name).string());
    CHECK(f.ok());
  }
  CHECK(fs::exists(tmp / "demo/model/config.json"));
  CHECK(fs::exists(tmp / "demo/model/model.safetensors"));
}
