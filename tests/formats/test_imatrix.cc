// Importance-matrix files: GGUF round trips (dense and expert entries), a legacy .dat built by
// hand per llama-imatrix's save_imatrix_legacy, the per-column weight formula of llama-quantize,
// the model-size check, and one hand-crafted bad file per failure class.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>

#include "formats/gguf.h"
#include "formats/imatrix_file.h"
#include "tests/test_support.h"

namespace {

using namespace shrink;
namespace fs = std::filesystem;
using shrink::test::TempDir;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// Little-endian byte builder for hand-made .dat files.
struct Bytes {
  std::vector<uint8_t> b;
  Bytes& append(const void* p, size_t n) {
    if (n == 0) return *this;
    size_t at = b.size();
    b.resize(at + n);
    std::memcpy(b.data() + at, p, n);
    return *this;
  }
  Bytes& i32(int32_t v) { return append(&v, 4); }
  Bytes& f32(float v) { return append(&v, 4); }
  Bytes& chars(const std::string& s) { return append(s.data(), s.size()); }
  Bytes& name(const std::string& s) { return i32(static_cast<int32_t>(s.size())).chars(s); }
};

// One legacy entry: name, ncall, nval, values (imatrix.cpp save_imatrix_legacy).
Bytes& dat_entry(Bytes& f, const std::string& name, int32_t ncall, const std::vector<float>& values) {
  f.name(name).i32(ncall).i32(static_cast<int32_t>(values.size()));
  for (float v : values) f.f32(v);
  return f;
}

void expect_refused(const Result<Imatrix>& r, const fs::path& path, std::initializer_list<std::string> parts) {
  REQUIRE_FALSE(r.ok());
  const std::string& m = r.error().message;
  INFO("error: " << m);
  CHECK(m.rfind(path.string() + ": ", 0) == 0);
  CHECK(m.find('\n') == std::string::npos);
  for (const std::string& p : parts) CHECK(m.find(p) != std::string::npos);
}

Result<Imatrix> read_bytes_as(const TempDir& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
  shrink::test::write_bytes(dir / name, bytes);
  return read_imatrix((dir / name).string());
}

ImatrixEntry entry(std::string name, int64_t n_cols, int64_t n_mat, std::mt19937& rng) {
  ImatrixEntry e;
  e.name = std::move(name);
  e.n_cols = n_cols;
  e.n_mat = n_mat;
  std::uniform_real_distribution<float> u(0.0f, 50.0f);
  for (int64_t i = 0; i < n_cols * n_mat; ++i) e.in_sum2.push_back(u(rng));
  for (int64_t j = 0; j < n_mat; ++j) e.counts.push_back(static_cast<float>(512 * (j + 1)));
  return e;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// A valid imatrix, written with GgufWriter directly so tests can break one thing at a time.
struct RawGguf {
  std::vector<GgufKV> kv = {{"general.type", GgufValue::str("imatrix")},
                            {"imatrix.datasets", GgufValue::array_str({"calib.txt"})},
                            {"imatrix.chunk_count", GgufValue::u32(4)},
                            {"imatrix.chunk_size", GgufValue::u32(512)}};
  struct T {
    std::string name;
    std::vector<int64_t> shape;
    TypeId type = TypeId::F32;
    std::vector<float> data;
  };
  std::vector<T> tensors = {{"blk.0.attn_q.weight.in_sum2", {4}, TypeId::F32, {1, 2, 3, 4}},
                            {"blk.0.attn_q.weight.counts", {1}, TypeId::F32, {2048}}};

  void drop_key(const std::string& k) {
    std::erase_if(kv, [&](const GgufKV& x) { return x.key == k; });
  }
  void set_key(const std::string& k, GgufValue v) {
    for (GgufKV& x : kv)
      if (x.key == k) {
        x.value = std::move(v);
        return;
      }
    kv.push_back({k, std::move(v)});
  }
  void write(const fs::path& p) const {
    GgufWriter w(p.string());
    for (const GgufKV& x : kv) w.set(x.key, x.value);
    for (const T& t : tensors) w.add_tensor(t.name, t.shape, t.type);
    REQUIRE(w.begin().ok());
    for (size_t i = 0; i < tensors.size(); ++i) {
      const T& t = tensors[i];
      int64_t n = 1;
      for (int64_t d : t.shape) n *= d;
      // Zero-padded (or cut) to the declared size, so a test can change a shape alone.
      std::vector<uint8_t> bytes(row_size(t.type, n), 0);
      size_t copy = std::min(bytes.size(), t.data.size() * sizeof(float));
      if (copy) std::memcpy(bytes.data(), t.data.data(), copy);
      REQUIRE(w.write_tensor_data(i, bytes.data(), bytes.size()).ok());
    }
    REQUIRE(w.finish().ok());
  }
};

Result<Imatrix> read_raw(const TempDir& dir, const std::string& name, const RawGguf& g) {
  g.write(dir / name);
  return read_imatrix((dir / name).string());
}

// ---- GGUF form ----

TEST_CASE("imatrix: GGUF write -> read is the identity, dense and expert entries", "[imatrix]") {
  TempDir dir;
  std::mt19937 rng(shrink::test::seed());
  Imatrix m;
  m.datasets = {"wiki.train.raw", "code \xe2\x96\x81mix.txt"};
  m.chunk_count = 123;
  m.chunk_size = 512;
  // Out of name order on purpose: the file is written in name order.
  m.entries.push_back(entry("blk.1.ffn_down_exps.weight", 7, 4, rng));  // MoE: (4, 7)
  m.entries.push_back(entry("blk.0.attn_q.weight", 33, 1, rng));
  m.entries.push_back(entry("output.weight", 1, 1, rng));
  m.entries[0].counts[2] = 0;  // an expert no token reached (partial data, written as-is)
  const fs::path p = dir / "imatrix.gguf";
  Status s = write_imatrix_gguf(p.string(), m);
  INFO(s.message());
  REQUIRE(s.ok());

  auto r = read_imatrix(p.string());
  INFO((r.ok() ? "" : r.error().message));
  REQUIRE(r.ok());
  CHECK(r->format == ImatrixFormat::kGguf);
  CHECK(r->datasets == m.datasets);
  CHECK(r->chunk_count == 123);
  CHECK(r->chunk_size == 512);
  REQUIRE(r->entries.size() == 3);
  CHECK(r->entries[0].name == "blk.0.attn_q.weight");
  CHECK(r->entries[1].name == "blk.1.ffn_down_exps.weight");
  CHECK(r->entries[2].name == "output.weight");
  for (const ImatrixEntry& want : m.entries) {
    const ImatrixEntry* got = r->find(want.name);
    REQUIRE(got);
    CHECK(got->n_cols == want.n_cols);
    CHECK(got->n_mat == want.n_mat);
    CHECK_FALSE(got->legacy);
    CHECK(same_bits(got->in_sum2, want.in_sum2));
    CHECK(same_bits(got->counts, want.counts));
  }
  CHECK(r->find("blk.9.nothing.weight") == nullptr);

  // The layout llama-imatrix writes (imatrix.cpp save_imatrix + gguf.cpp ggml_n_dims).
  auto g = GgufFile::open(p.string());
  REQUIRE(g.ok());
  std::vector<std::string> keys;
  for (const GgufKV& kv : g->metadata()) keys.push_back(kv.key);
  CHECK(keys == std::vector<std::string>{"general.type", "imatrix.datasets", "imatrix.chunk_count",
                                         "imatrix.chunk_size"});
  CHECK(g->find("imatrix.chunk_count")->type == GgufType::UINT32);
  CHECK(g->find("imatrix.chunk_size")->type == GgufType::UINT32);
  std::vector<std::string> names;
  for (const GgufTensorInfo& t : g->tensors()) names.push_back(t.name);
  CHECK(names == std::vector<std::string>{"blk.0.attn_q.weight.in_sum2", "blk.0.attn_q.weight.counts",
                                          "blk.1.ffn_down_exps.weight.in_sum2", "blk.1.ffn_down_exps.weight.counts",
                                          "output.weight.in_sum2", "output.weight.counts"});
  CHECK(g->tensors()[0].shape == std::vector<int64_t>{33});
  CHECK(g->tensors()[1].shape == std::vector<int64_t>{1});
  CHECK(g->tensors()[2].shape == std::vector<int64_t>{7, 4});
  CHECK(g->tensors()[3].shape == std::vector<int64_t>{1, 4});
  for (const GgufTensorInfo& t : g->tensors()) CHECK(t.type == TypeId::F32);

  // Written twice from the same data: the same bytes.
  REQUIRE(write_imatrix_gguf((dir / "again.gguf").string(), *r).ok());
  CHECK(shrink::test::read_bytes(p) == shrink::test::read_bytes(dir / "again.gguf"));
}

TEST_CASE("imatrix: 2-D counts/in_sum2 with explicit trailing 1-dims read like their short forms", "[imatrix]") {
  TempDir dir;
  RawGguf g;
  g.tensors = {{"a.weight.in_sum2", {3, 1, 1}, TypeId::F32, {1, 2, 3}},
               {"a.weight.counts", {1, 1}, TypeId::F32, {2}},
               {"b.weight.in_sum2", {2, 2}, TypeId::F32, {1, 2, 3, 4}},
               {"b.weight.counts", {1, 2, 1}, TypeId::F32, {1, 3}}};
  g.set_key("imatrix.chunk_count", GgufValue::i64(9));  // any integer type in range is read
  auto r = read_raw(dir, "x.gguf", g);
  INFO((r.ok() ? "" : r.error().message));
  REQUIRE(r.ok());
  CHECK(r->chunk_count == 9);
  REQUIRE(r->entries.size() == 2);
  CHECK(r->entries[0].n_cols == 3);
  CHECK(r->entries[0].n_mat == 1);
  CHECK(r->entries[1].n_cols == 2);
  CHECK(r->entries[1].n_mat == 2);
  CHECK(imatrix_weights_all(r->entries[1]) == std::vector<float>{1.0f, 2.0f, 1.0f, 4.0f / 3.0f});
  // A file without general.type still reads (llama.cpp never looks at it).
  g.drop_key("general.type");
  CHECK(read_raw(dir, "y.gguf", g).ok());
}

// ---- The formula ----

TEST_CASE("imatrix: per-column weights as llama-quantize's load_imatrix computes them", "[imatrix]") {
  ImatrixEntry e;
  e.name = "blk.0.ffn_up_exps.weight";
  e.n_cols = 3;
  e.n_mat = 4;
  e.in_sum2 = {3, 6, 9,  1, 2, 4,  5, 5, 5,  7, 8, 9};
  e.counts = {3, 0, 2.4f, 0.4f};
  // count > 0: sum / count.
  CHECK(imatrix_weights(e, 0) == std::vector<float>{1, 2, 3});
  // count 0: the matrix got no input during calibration -> uniform 1, whatever the sums say.
  CHECK(imatrix_weights(e, 1) == std::vector<float>{1, 1, 1});
  // Counts are rounded with lround first (loader.cpp): 2.4 -> 2, 0.4 -> 0 -> uniform 1.
  CHECK(imatrix_weights(e, 2) == std::vector<float>{2.5f, 2.5f, 2.5f});
  CHECK(imatrix_weights(e, 3) == std::vector<float>{1, 1, 1});
  CHECK(imatrix_weights(e, 4).empty());
  CHECK(imatrix_weights(e, -1).empty());
  CHECK(imatrix_weights_all(e) == std::vector<float>{1, 2, 3, 1, 1, 1, 2.5f, 2.5f, 2.5f, 1, 1, 1});
  // The division is a single float division, bit for bit.
  e.in_sum2[0] = 1.0f;
  e.counts[0] = 3.0f;
  const float w = imatrix_weights(e, 0)[0], third = 1.0f / 3.0f;
  CHECK(std::memcmp(&w, &third, sizeof w) == 0);

  // Legacy: stored / ncall; ncall 0 -> the stored values as they are.
  ImatrixEntry l;
  l.name = "x.weight";
  l.legacy = true;
  l.n_cols = 4;
  l.in_sum2 = {8, 4, 2, 0};
  l.counts = {4};
  CHECK(imatrix_weights(l) == std::vector<float>{2, 1, 0.5f, 0});
  l.counts = {0};
  CHECK(imatrix_weights(l) == std::vector<float>{8, 4, 2, 0});
}

// ---- Legacy .dat ----

// What save_imatrix_legacy stores for raw sums S (n_mat x n_cols) and counts C:
// ncall = ceil(max C / chunk_size); value = (S / C) * ncall, or 1 * ncall where C == 0.
std::vector<float> legacy_values(const ImatrixEntry& e, int32_t chunk_size, int32_t* ncall_out) {
  int64_t max_c = 0;
  for (float c : e.counts) max_c = std::max<int64_t>(max_c, static_cast<int64_t>(c));
  const int32_t ncall = static_cast<int32_t>((max_c + (chunk_size - 1)) / chunk_size);
  std::vector<float> v(e.in_sum2.size());
  for (size_t i = 0; i < v.size(); ++i) {
    float count = e.counts[i / static_cast<size_t>(e.n_cols)];
    float value = e.in_sum2[i];
    if (count == 0.0f) value = count = 1.0f;
    v[i] = (value / count) * static_cast<float>(ncall);
  }
  *ncall_out = ncall;
  return v;
}

TEST_CASE("imatrix: a hand-built legacy .dat reads to the values llama-imatrix stored", "[imatrix]") {
  TempDir dir;
  std::mt19937 rng(shrink::test::seed());
  ImatrixEntry dense = entry("blk.0.attn_k.weight", 16, 1, rng);
  ImatrixEntry moe = entry("blk.0.ffn_gate_exps.weight", 8, 3, rng);
  moe.counts = {1500, 0, 700};
  const int32_t chunk = 512;
  int32_t nc_dense = 0, nc_moe = 0;
  std::vector<float> v_dense = legacy_values(dense, chunk, &nc_dense);
  std::vector<float> v_moe = legacy_values(moe, chunk, &nc_moe);
  REQUIRE(nc_dense == 1);
  REQUIRE(nc_moe == 3);

  // Entries in name order, as the writer sorts them; then last_call and the dataset name.
  Bytes f;
  f.i32(2);
  dat_entry(f, moe.name, nc_moe, v_moe);
  dat_entry(f, dense.name, nc_dense, v_dense);
  const size_t entries_end = f.b.size();
  f.i32(3).name("data/calib.txt");

  auto r = read_bytes_as(dir, "imatrix.dat", f.b);
  INFO((r.ok() ? "" : r.error().message));
  REQUIRE(r.ok());
  CHECK(r->format == ImatrixFormat::kLegacyDat);
  CHECK(r->chunk_count == 3);
  CHECK(r->chunk_size == 0);
  CHECK(r->datasets == std::vector<std::string>{"data/calib.txt"});
  REQUIRE(r->entries.size() == 2);
  CHECK(r->entries[0].name == dense.name);  // sorted by name
  const ImatrixEntry* d = r->find(dense.name);
  const ImatrixEntry* x = r->find(moe.name);
  REQUIRE((d && x));
  CHECK(d->legacy);
  CHECK(d->n_cols == 16);
  CHECK(d->n_mat == 1);
  CHECK(same_bits(d->in_sum2, v_dense));
  CHECK(d->counts == std::vector<float>{1});
  CHECK(x->n_cols == 24);  // nval: the .dat form does not know the 3 experts
  CHECK(x->n_mat == 1);
  CHECK(same_bits(x->in_sum2, v_moe));
  CHECK(x->counts == std::vector<float>{3});

  // The weights agree with the GGUF form of the same statistics (up to the rounding of the
  // extra multiply and divide by ncall), and an unreached expert gets 1 either way.
  std::vector<float> from_dat = imatrix_weights_all(*x);
  std::vector<float> from_gguf = imatrix_weights_all(moe);
  REQUIRE(from_dat.size() == from_gguf.size());
  for (size_t i = 0; i < from_dat.size(); ++i) CHECK(from_dat[i] == Approx(from_gguf[i]).epsilon(1e-6));
  for (size_t i = 8; i < 16; ++i) CHECK(from_dat[i] == 1.0f);
  from_dat = imatrix_weights(*d);
  from_gguf = imatrix_weights(dense);
  for (size_t i = 0; i < from_dat.size(); ++i) CHECK(from_dat[i] == Approx(from_gguf[i]).epsilon(1e-6));

  // Optional trailer: none, or last_call alone (older writers), or an empty dataset name.
  std::vector<uint8_t> bare(f.b.begin(), f.b.begin() + static_cast<long>(entries_end));
  auto r0 = read_bytes_as(dir, "bare.dat", bare);
  REQUIRE(r0.ok());
  CHECK(r0->chunk_count == 0);
  CHECK(r0->datasets.empty());
  Bytes only_last;
  only_last.b = bare;
  only_last.i32(7);
  auto r1 = read_bytes_as(dir, "last.dat", only_last.b);
  REQUIRE(r1.ok());
  CHECK(r1->chunk_count == 7);
  CHECK(r1->datasets.empty());
  only_last.i32(0);
  auto r2 = read_bytes_as(dir, "empty_ds.dat", only_last.b);
  REQUIRE(r2.ok());
  CHECK(r2->datasets.empty());
}

TEST_CASE("imatrix: a legacy file written as GGUF keeps every weight bit for bit", "[imatrix]") {
  TempDir dir;
  Bytes f;
  f.i32(2);
  dat_entry(f, "a.weight", 3, {3.0f, 1.0f, 0.7f, 0.0f});
  dat_entry(f, "b.weight", 0, {0.25f, 9.0f});  // ncall 0: values used as stored
  f.i32(11).name("c.txt");
  auto r = read_bytes_as(dir, "in.dat", f.b);
  REQUIRE(r.ok());
  REQUIRE(write_imatrix_gguf((dir / "out.gguf").string(), *r).ok());
  auto g = read_imatrix((dir / "out.gguf").string());
  REQUIRE(g.ok());
  CHECK(g->format == ImatrixFormat::kGguf);
  CHECK(g->chunk_count == 11);
  CHECK(g->datasets == std::vector<std::string>{"c.txt"});
  REQUIRE(g->entries.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    CHECK_FALSE(g->entries[i].legacy);
    CHECK(same_bits(imatrix_weights(g->entries[i]), imatrix_weights(r->entries[i])));
  }
  CHECK(g->entries[1].counts == std::vector<float>{1});
}

// ---- Against the model ----

TEST_CASE("imatrix: check against the model's tensor shapes", "[imatrix]") {
  std::mt19937 rng(shrink::test::seed());
  Imatrix m;
  m.entries.push_back(entry("blk.0.attn_q.weight", 64, 1, rng));
  m.entries.push_back(entry("blk.0.ffn_down_exps.weight", 32, 8, rng));
  std::map<std::string, ImatrixWeightShape> model = {{"blk.0.attn_q.weight", {64, 1}},
                                                     {"blk.0.ffn_down_exps.weight", {32, 8}},
                                                     {"blk.0.attn_k.weight", {64, 1}}};
  auto lookup = [&](const std::string& n) -> std::optional<ImatrixWeightShape> {
    auto it = model.find(n);
    if (it == model.end()) return std::nullopt;
    return it->second;
  };
  // Weights the imatrix lacks are fine (llama-quantize quantizes them without one).
  CHECK(check_imatrix_against(m, lookup, "calib.imatrix").ok());

  model["blk.0.attn_q.weight"] = {48, 1};
  Status s = check_imatrix_against(m, lookup, "calib.imatrix");
  REQUIRE_FALSE(s.ok());
  INFO(s.message());
  CHECK(s.message().rfind("calib.imatrix: ", 0) == 0);
  CHECK(s.message().find("'blk.0.attn_q.weight'") != std::string::npos);
  CHECK(s.message().find("n_cols 64") != std::string::npos);
  CHECK(s.message().find("n_cols 48") != std::string::npos);

  model["blk.0.attn_q.weight"] = {64, 1};
  model["blk.0.ffn_down_exps.weight"] = {32, 4};  // experts differ, total differs
  s = check_imatrix_against(m, lookup, "calib.imatrix");
  REQUIRE_FALSE(s.ok());
  CHECK(s.message().find("n_mat 8") != std::string::npos);
  CHECK(s.message().find("n_mat 4") != std::string::npos);
  model["blk.0.ffn_down_exps.weight"] = {64, 4};  // same total, wrong split: still refused
  CHECK_FALSE(check_imatrix_against(m, lookup, "calib.imatrix").ok());
  model["blk.0.ffn_down_exps.weight"] = {32, 8};

  // Names the model lacks: an error by default, allowed on request.
  m.entries.push_back(entry("blk.7.attn_v.weight", 64, 1, rng));
  m.entries.push_back(entry("blk.8.attn_v.weight", 64, 1, rng));
  s = check_imatrix_against(m, lookup, "calib.imatrix");
  REQUIRE_FALSE(s.ok());
  CHECK(s.message().find("'blk.7.attn_v.weight'") != std::string::npos);
  CHECK(s.message().find("1 more") != std::string::npos);
  CHECK(check_imatrix_against(m, lookup, "calib.imatrix", false).ok());

  // A legacy entry knows only its total: n_cols * n_mat of the model.
  Imatrix l;
  ImatrixEntry le;
  le.name = "blk.0.ffn_down_exps.weight";
  le.legacy = true;
  le.n_cols = 256;
  le.in_sum2.assign(256, 1.0f);
  le.counts = {2};
  l.entries.push_back(le);
  CHECK(check_imatrix_against(l, lookup, "old.dat").ok());
  model["blk.0.ffn_down_exps.weight"] = {32, 7};
  s = check_imatrix_against(l, lookup, "old.dat");
  REQUIRE_FALSE(s.ok());
  CHECK(s.message().find("256 values") != std::string::npos);
  CHECK(s.message().find("32 * 7") != std::string::npos);
}

// ---- Writer misuse ----

TEST_CASE("imatrix: the writer refuses what the reader would refuse and leaves no file", "[imatrix]") {
  TempDir dir;
  std::mt19937 rng(shrink::test::seed());
  const fs::path p = dir / "out.gguf";
  auto refuse = [&](Imatrix m, const std::string& part) {
    Status s = write_imatrix_gguf(p.string(), m);
    REQUIRE_FALSE(s.ok());
    INFO(s.message());
    CHECK(s.message().rfind(p.string() + ": ", 0) == 0);
    CHECK(s.message().find(part) != std::string::npos);
    CHECK_FALSE(fs::exists(p));
  };
  Imatrix good;
  good.entries.push_back(entry("a.weight", 4, 2, rng));
  refuse(Imatrix{}, "no entries");
  {
    Imatrix m = good;
    m.entries[0].in_sum2.pop_back();
    refuse(m, "in_sum2 size");
  }
  {
    Imatrix m = good;
    m.entries[0].counts.push_back(1);
    refuse(m, "counts size");
  }
  {
    Imatrix m = good;
    m.entries[0].n_cols = 0;
    refuse(m, "bad entry shape");
  }
  {
    Imatrix m = good;
    m.entries[0].in_sum2[5] = kNaN;
    refuse(m, "NaN in_sum2 value");
  }
  {
    Imatrix m = good;
    m.entries[0].counts[1] = -1;
    refuse(m, "negative count");
  }
  {
    Imatrix m = good;
    m.entries.push_back(m.entries[0]);
    refuse(m, "duplicate weight name");
  }
  {
    Imatrix m = good;
    m.entries[0].name = std::string(56, 'w');  // + ".in_sum2" = 64 bytes
    refuse(m, "weight name too long");
  }
  {
    Imatrix m = good;
    m.entries[0].name.clear();
    refuse(m, "empty weight name");
  }
  {
    Imatrix m = good;
    m.chunk_size = int64_t{1} << 32;
    refuse(m, "chunk size out of range");
  }
  Imatrix m = good;
  m.entries[0].name = std::string(55, 'w');
  CHECK(write_imatrix_gguf(p.string(), m).ok());
}

// ---- Hostile GGUF ----

TEST_CASE("imatrix: hostile GGUF imatrix files", "[imatrix][hostile]") {
  TempDir dir;
  int n = 0;
  auto check = [&](const RawGguf& g, std::initializer_list<std::string> parts) {
    const std::string name = "bad" + std::to_string(n++) + ".gguf";
    expect_refused(read_raw(dir, name, g), dir / name, parts);
  };
  REQUIRE(read_raw(dir, "good.gguf", RawGguf{}).ok());

  {
    RawGguf g;
    g.set_key("general.type", GgufValue::str("model"));
    check(g, {"not an importance matrix", "general.type", "model"});
  }
  for (const char* k : {"imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"}) {
    RawGguf g;
    g.drop_key(k);
    check(g, {"missing imatrix metadata", k});
  }
  {
    RawGguf g;
    g.set_key("imatrix.datasets", GgufValue::str("calib.txt"));
    check(g, {"bad imatrix metadata", "imatrix.datasets", "array of strings"});
  }
  {
    RawGguf g;
    g.set_key("imatrix.chunk_count", GgufValue::i32(-1));
    check(g, {"bad imatrix metadata", "imatrix.chunk_count", "-1"});
  }
  {
    RawGguf g;
    g.set_key("imatrix.chunk_size", GgufValue::str("512"));
    check(g, {"bad imatrix metadata", "imatrix.chunk_size"});
  }
  {
    RawGguf g;
    g.tensors.clear();
    check(g, {"no entries"});
  }
  {
    RawGguf g;
    g.tensors.push_back({"blk.0.attn_q.weight", {4}, TypeId::F32, {0, 0, 0, 0}});
    check(g, {"unexpected tensor", "'blk.0.attn_q.weight'"});
  }
  {
    RawGguf g;
    g.tensors.push_back({".in_sum2", {4}, TypeId::F32, {0, 0, 0, 0}});
    check(g, {"names no weight", "'.in_sum2'"});
  }
  {
    RawGguf g;
    g.tensors.pop_back();
    check(g, {"mismatched sums and counts", "'blk.0.attn_q.weight'", ".in_sum2 without .counts"});
  }
  {
    RawGguf g;
    g.tensors.erase(g.tensors.begin());
    check(g, {"mismatched sums and counts", ".counts without .in_sum2"});
  }
  {
    RawGguf g;
    g.tensors[0].type = TypeId::F16;
    check(g, {"wrong tensor type", "f16", "F32"});
  }
  {
    RawGguf g;
    g.tensors[0].shape = {2, 1, 2};
    check(g, {"bad in_sum2 shape", "{2, 1, 2}"});
  }
  {
    RawGguf g;
    g.tensors[0].shape = {0};
    g.tensors[0].data.clear();
    check(g, {"bad in_sum2 shape", "{0}"});
  }
  {
    RawGguf g;
    g.tensors[1].shape = {2};
    check(g, {"counts shape does not match", "{2}"});
  }
  {
    RawGguf g;
    g.tensors[0].shape = {2, 2};
    g.tensors[1].shape = {1, 3};
    check(g, {"counts shape does not match", "{1, 3}", "n_mat = 2"});
  }
  {
    RawGguf g;
    g.tensors[1].shape = {1, 2};  // in_sum2 is 1 matrix, counts claims 2
    check(g, {"counts shape does not match", "{1, 2}"});
  }
  const std::pair<float, const char*> bad_sums[] = {{kNaN, "NaN"}, {kInf, "infinite"}, {-kInf, "infinite"},
                                                    {-0.5f, "negative"}};
  for (auto [v, word] : bad_sums) {
    RawGguf g;
    g.tensors[0].data[2] = v;
    check(g, {std::string(word) + " in_sum2 value", "'blk.0.attn_q.weight.in_sum2'[2]"});
  }
  const std::pair<float, const char*> bad_counts[] = {{kNaN, "NaN"}, {kInf, "infinite"}, {-1.0f, "negative"},
                                                      {1e30f, "absurdly large"}};
  for (auto [v, word] : bad_counts) {
    RawGguf g;
    g.tensors[1].data[0] = v;
    check(g, {std::string(word) + " count", "'blk.0.attn_q.weight.counts'[0]"});
  }
  // Not a GGUF at all past the magic, and every strict prefix of a good file: the GGUF reader's
  // own errors, naming the file.
  std::vector<uint8_t> good = shrink::test::read_bytes(dir / "good.gguf");
  // The writer pads the file after the last tensor; a prefix that only loses padding is whole.
  auto gf = GgufFile::open((dir / "good.gguf").string());
  REQUIRE(gf.ok());
  const GgufTensorInfo& last = gf->tensors().back();
  const size_t data_end = static_cast<size_t>(gf->data_offset() + last.offset + last.n_bytes);
  REQUIRE(data_end <= good.size());
  for (size_t len = 4; len < data_end; ++len) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<long>(len));
    const std::string name = "cut" + std::to_string(len) + ".gguf";
    auto r = read_bytes_as(dir, name, cut);
    INFO("prefix " << len);
    expect_refused(r, dir / name, {});
  }
}

// ---- Hostile .dat ----

TEST_CASE("imatrix: hostile legacy .dat files", "[imatrix][hostile]") {
  TempDir dir;
  int n = 0;
  auto check = [&](const Bytes& f, std::initializer_list<std::string> parts) {
    const std::string name = "bad" + std::to_string(n++) + ".dat";
    expect_refused(read_bytes_as(dir, name, f.b), dir / name, parts);
  };
  auto one = [](const std::string& name, int32_t ncall, std::vector<float> v) {
    Bytes f;
    f.i32(1);
    dat_entry(f, name, ncall, v);
    return f;
  };
  {
    Bytes f;
    REQUIRE(read_bytes_as(dir, "good.dat", one("a.weight", 2, {1, 2}).b).ok());
    check(f, {"n_entries", "truncated"});  // empty file
    check(Bytes().i32(0), {"no entries", "n_entries", "0"});
    check(Bytes().i32(-3), {"no entries", "-3"});
    check(Bytes().i32(0x7fffffff).i32(1).chars("a").i32(1).i32(1).f32(1), {"more entries than the file can hold"});
    check(Bytes().chars("PK\x03\x04").i32(0), {"more entries than the file can hold", "not an imatrix file?"});
  }
  check(Bytes().i32(1).i32(-1).i32(0).i32(0).i32(0), {"bad name length", "entry 0 name length", "-1"});
  check(Bytes().i32(1).i32(0).i32(0).i32(1).f32(1), {"bad name length", "0"});
  check(Bytes().i32(1).i32(1 << 30).i32(0).i32(1).f32(1), {"bad name length", "1073741824"});
  check(Bytes().i32(1).i32(100).chars("short").i32(1).i32(1), {"entry 0 name", "truncated"});
  {
    Bytes f = one(std::string("a\0b", 3), 1, {1});
    check(f, {"NUL byte in weight name", "'a\\x00b'"});
  }
  {
    Bytes f;
    f.i32(2);
    dat_entry(f, "a.weight", 1, {1});
    dat_entry(f, "a.weight", 1, {2});
    check(f, {"duplicate weight name", "entry 1", "'a.weight'"});
  }
  check(one("a.weight", -1, {1}), {"negative ncall", "'a.weight'", "-1"});
  check(Bytes().i32(1).name("a.weight").i32(1).i32(0), {"bad value count", "nval", "0"});
  check(Bytes().i32(1).name("a.weight").i32(1).i32(-7).f32(1), {"bad value count", "-7"});
  check(Bytes().i32(1).name("a.weight").i32(1).i32(0x7fffffff).f32(1), {"entry 0 values", "truncated"});
  check(Bytes().i32(2).name("a.weight").i32(1).i32(1).f32(1).i32(0).i32(0).i32(0).i32(0),
        {"bad name length", "entry 1"});
  check(one("a.weight", 1, {1, kNaN}), {"NaN value", "'a.weight' values", "[1]"});
  check(one("a.weight", 1, {kInf}), {"infinite value"});
  check(one("a.weight", 1, {-2}), {"negative value", "-2"});
  // Trailers.
  check(one("a.weight", 1, {1}).chars("xy"), {"trailer last_call", "truncated"});
  check(one("a.weight", 1, {1}).i32(-5), {"negative chunk count", "-5"});
  check(one("a.weight", 1, {1}).i32(2).chars("x"), {"trailer dataset name length", "truncated"});
  check(one("a.weight", 1, {1}).i32(2).i32(-1), {"negative dataset name length", "-1"});
  check(one("a.weight", 1, {1}).i32(2).i32(50).chars("calib.txt"), {"trailer dataset name", "truncated"});
  check(one("a.weight", 1, {1}).i32(2).name("calib.txt").chars("junk"), {"trailing bytes", "4 bytes"});

  // Every strict prefix is refused, except the two that end where a trailer may stop: right
  // after the entries, and right after last_call.
  Bytes full;
  full.i32(2);
  dat_entry(full, "blk.0.attn_q.weight", 2, {1, 2, 3});
  dat_entry(full, "blk.0.attn_k.weight", 2, {4, 5});
  const size_t entries_end = full.b.size();
  full.i32(2).name("calib.txt");
  REQUIRE(read_bytes_as(dir, "full.dat", full.b).ok());
  for (size_t len = 0; len < full.b.size(); ++len) {
    std::vector<uint8_t> cut(full.b.begin(), full.b.begin() + static_cast<long>(len));
    const std::string name = "cut" + std::to_string(len) + ".dat";
    auto r = read_bytes_as(dir, name, cut);
    INFO("prefix " << len);
    if (len == entries_end || len == entries_end + 4) {
      CHECK(r.ok());
      continue;
    }
    expect_refused(r, dir / name, {});
  }
}

}  // namespace
