// GGUF reader/writer: round trips through our own writer, writer misuse, and one hand-crafted
// bad file per failure class the reader must refuse (DESIGN.md conventions 5 and 6).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <random>

#include "formats/gguf.h"
#include "tests/test_support.h"

namespace {

using namespace shrink;
namespace fs = std::filesystem;
using shrink::test::TempDir;

// ---- Helpers ----

// Little-endian byte builder for hand-crafted files.
struct Bytes {
  std::vector<uint8_t> b;
  // resize + memcpy rather than insert: g++ 12 warns falsely about vector::insert here.
  Bytes& append(const void* p, size_t n) {
    if (n == 0) return *this;
    size_t at = b.size();
    b.resize(at + n);
    std::memcpy(b.data() + at, p, n);
    return *this;
  }
  template <class T>
  Bytes& put(T v) {
    return append(&v, sizeof(T));
  }
  Bytes& u8(uint8_t v) { return put(v); }
  Bytes& u32(uint32_t v) { return put(v); }
  Bytes& u64(uint64_t v) { return put(v); }
  Bytes& str(const std::string& s) {
    u64(s.size());
    return append(s.data(), s.size());
  }
  Bytes& raw(const std::vector<uint8_t>& o) { return append(o.data(), o.size()); }
};

constexpr uint32_t T_U8 = 0, T_U32 = 4, T_BOOL = 7, T_STRING = 8, T_ARRAY = 9, T_U64 = 10;

Bytes kv_u32(const std::string& key, uint32_t v) { return std::move(Bytes().str(key).u32(T_U32).u32(v)); }
Bytes kv_str(const std::string& key, const std::string& v) { return std::move(Bytes().str(key).u32(T_STRING).str(v)); }

Bytes tensor_info(const std::string& name, const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset) {
  Bytes t;
  t.str(name).u32(static_cast<uint32_t>(ne.size()));
  for (uint64_t d : ne) t.u64(d);
  t.u32(type).u64(offset);
  return t;
}

// A whole file from encoded key/value pairs and tensor infos: header, padding to `alignment`,
// then `data_bytes` of data.
struct Craft {
  uint32_t version = 3;
  std::vector<Bytes> kvs;
  std::vector<Bytes> infos;
  std::optional<uint64_t> n_kv, n_tensors;  // override the true counts
  uint64_t alignment = 32;
  uint64_t data_bytes = 0;

  std::vector<uint8_t> build() const {
    Bytes f;
    f.raw({'G', 'G', 'U', 'F'}).u32(version);
    f.u64(n_tensors.value_or(infos.size())).u64(n_kv.value_or(kvs.size()));
    for (const Bytes& kv : kvs) f.raw(kv.b);
    for (const Bytes& t : infos) f.raw(t.b);
    while (f.b.size() % alignment) f.u8(0);
    f.b.resize(f.b.size() + data_bytes, 0x5a);
    return f.b;
  }
};

Result<GgufFile> open_bytes(const TempDir& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
  shrink::test::write_bytes(dir / name, bytes);
  return GgufFile::open((dir / name).string());
}

// The reader must refuse the file with one line naming the file and every given fragment.
void expect_refused(const Result<GgufFile>& r, const std::string& path, std::initializer_list<std::string> parts) {
  REQUIRE_FALSE(r.ok());
  const std::string& m = r.error().message;
  INFO("error: " << m);
  CHECK(m.rfind(path + ": ", 0) == 0);
  CHECK(m.find('\n') == std::string::npos);
  for (const std::string& p : parts) CHECK(m.find(p) != std::string::npos);
}

std::vector<uint8_t> random_bytes(size_t n, std::mt19937& rng) {
  std::vector<uint8_t> v(n);
  for (auto& x : v) x = static_cast<uint8_t>(rng());
  return v;
}

std::vector<std::string> dir_entries(const fs::path& d) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(d)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

GgufArray arr(GgufType elem, std::vector<GgufValue> items) {
  GgufArray a;
  a.elem_type = elem;
  a.items = std::move(items);
  return a;
}

// Every metadata type, at its extremes, with empty and nested arrays.
std::vector<GgufKV> all_kinds_of_metadata() {
  std::vector<GgufKV> m;
  auto add = [&](std::string k, GgufValue v) { m.push_back({std::move(k), std::move(v)}); };
  add("t.u8.min", GgufValue::u8(0));
  add("t.u8.max", GgufValue::u8(255));
  add("t.i8.min", GgufValue::i8(-128));
  add("t.i8.max", GgufValue::i8(127));
  add("t.u16.max", GgufValue::u16(65535));
  add("t.i16.min", GgufValue::i16(-32768));
  add("t.u32.max", GgufValue::u32(std::numeric_limits<uint32_t>::max()));
  add("t.i32.min", GgufValue::i32(std::numeric_limits<int32_t>::min()));
  add("t.u64.zero", GgufValue::u64(0));
  add("t.u64.max", GgufValue::u64(std::numeric_limits<uint64_t>::max()));
  add("t.i64.min", GgufValue::i64(std::numeric_limits<int64_t>::min()));
  add("t.i64.max", GgufValue::i64(std::numeric_limits<int64_t>::max()));
  add("t.f32.pi", GgufValue::f32(3.14159265f));
  add("t.f32.neg_zero", GgufValue::f32(-0.0f));
  add("t.f32.inf", GgufValue::f32(std::numeric_limits<float>::infinity()));
  add("t.f32.nan", GgufValue::f32(std::numeric_limits<float>::quiet_NaN()));
  add("t.f32.subnormal", GgufValue::f32(std::numeric_limits<float>::denorm_min()));
  add("t.f64.max", GgufValue::f64(std::numeric_limits<double>::max()));
  add("t.f64.eps", GgufValue::f64(1e-300));
  add("t.bool.true", GgufValue::boolean(true));
  add("t.bool.false", GgufValue::boolean(false));
  add("t.str.empty", GgufValue::str(""));
  add("t.str.utf8", GgufValue::str("h\xc3\xa9llo \xe2\x96\x81w\xc3\xb6rld\n\t\"q\""));
  add("t.str.nul", GgufValue::str(std::string("a\0b", 3)));
  add("t.arr.str", GgufValue::array_str({"<unk>", "", "\xe2\x96\x81the", std::string(300, 'x')}));
  add("t.arr.f32", GgufValue::array_f32({0.0f, -1.5f, 1e30f}));
  add("t.arr.i32", GgufValue::array_i32({std::numeric_limits<int32_t>::min(), 0, 6}));
  add("t.arr.u64", GgufValue::array(arr(GgufType::UINT64, {GgufValue::u64(0), GgufValue::u64(~0ull)})));
  add("t.arr.bool", GgufValue::array(arr(GgufType::BOOL, {GgufValue::boolean(true), GgufValue::boolean(false)})));
  add("t.arr.f64", GgufValue::array(arr(GgufType::FLOAT64, {GgufValue::f64(-2.5)})));
  add("t.arr.i8", GgufValue::array(arr(GgufType::INT8, {GgufValue::i8(-1), GgufValue::i8(1)})));
  add("t.arr.u16", GgufValue::array(arr(GgufType::UINT16, {GgufValue::u16(7)})));
  add("t.arr.i16", GgufValue::array(arr(GgufType::INT16, {GgufValue::i16(-7)})));
  add("t.arr.u8", GgufValue::array(arr(GgufType::UINT8, {GgufValue::u8(1), GgufValue::u8(2), GgufValue::u8(3)})));
  add("t.arr.u32", GgufValue::array(arr(GgufType::UINT32, {GgufValue::u32(9)})));
  add("t.arr.i64", GgufValue::array(arr(GgufType::INT64, {GgufValue::i64(-9)})));
  // Empty arrays of every element type.
  for (uint32_t t = 0; t <= 12; ++t)
    add("t.arr.empty." + std::string(gguf_type_name(static_cast<GgufType>(t))),
        GgufValue::array(arr(static_cast<GgufType>(t), {})));
  // Arrays of arrays: inner arrays of different element types and lengths, one empty.
  add("t.arr.nested",
      GgufValue::array(arr(GgufType::ARRAY, {GgufValue::array_i32({1, 2, 3}), GgufValue::array_str({"a", ""}),
                                            GgufValue::array(arr(GgufType::FLOAT64, {})),
                                            GgufValue::array(arr(GgufType::ARRAY, {GgufValue::array_f32({0.5f})}))})));
  add("t.arr.nested.empty", GgufValue::array(arr(GgufType::ARRAY, {})));
  return m;
}

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  TypeId type;
};

// Several types, odd sizes (so padding is exercised), a 4-D and an empty tensor.
const std::vector<TensorSpec> kTensors = {
    {"token_embd.weight", {8, 3}, TypeId::F32},
    {"blk.0.attn_norm.weight", {5}, TypeId::F32},          // 20 bytes: padded
    {"blk.0.attn_q.weight", {64, 2}, TypeId::Q4_0},
    {"blk.0.ffn_down.weight", {32, 1, 1, 2}, TypeId::Q8_0},
    {"blk.0.ffn_up.weight", {256, 2}, TypeId::Q4_K},
    {"blk.0.ffn_gate.weight", {7, 3}, TypeId::F16},
    {"blk.0.bf16", {3}, TypeId::BF16},
    {"blk.0.i8", {5}, TypeId::I8},
    {"blk.0.empty", {0, 4}, TypeId::F32},
    {"output.weight", {32, 2}, TypeId::Q5_1},
};

struct Written {
  std::vector<std::vector<uint8_t>> data;
};

// Writes metadata + tensors with random contents; returns the contents.
Written write_file(const std::string& path, const std::vector<GgufKV>& metadata,
                   const std::vector<TensorSpec>& tensors, uint64_t alignment, std::mt19937& rng) {
  GgufWriter w(path, alignment);
  for (const GgufKV& kv : metadata) w.set(kv.key, kv.value);
  for (const TensorSpec& t : tensors) w.add_tensor(t.name, t.shape, t.type);
  Status s = w.begin();
  INFO(s.message());
  REQUIRE(s.ok());
  Written out;
  for (size_t i = 0; i < tensors.size(); ++i) {
    out.data.push_back(random_bytes(w.tensors()[i].n_bytes, rng));
    Status ws = w.write_tensor_data(i, out.data.back().data(), out.data.back().size());
    INFO(ws.message());
    REQUIRE(ws.ok());
  }
  Status fs_ = w.finish();
  INFO(fs_.message());
  REQUIRE(fs_.ok());
  CHECK(w.bytes_written() == fs::file_size(path));
  return out;
}

void check_read_back(const GgufFile& f, const std::vector<GgufKV>& metadata, const std::vector<TensorSpec>& tensors,
                     const Written& w, uint64_t alignment) {
  CHECK(f.version() == 3);
  CHECK(f.alignment() == alignment);
  CHECK(f.data_offset() % alignment == 0);
  CHECK(f.file_size() % alignment == 0);  // llama.cpp pads after the last tensor too
  // Same keys, same order, same types and values; the writer adds general.alignment when the
  // alignment is not the default 32.
  std::vector<GgufKV> expected = metadata;
  if (alignment != 32) expected.push_back({"general.alignment", GgufValue::u32(static_cast<uint32_t>(alignment))});
  REQUIRE(f.metadata().size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    INFO("key " << expected[i].key);
    CHECK(f.metadata()[i].key == expected[i].key);
    CHECK(f.metadata()[i].value.type == expected[i].value.type);
    CHECK(f.metadata()[i].value == expected[i].value);
  }
  REQUIRE(f.tensors().size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const GgufTensorInfo& t = f.tensors()[i];
    INFO("tensor " << tensors[i].name);
    CHECK(t.name == tensors[i].name);
    CHECK(t.shape == tensors[i].shape);
    CHECK(t.type == tensors[i].type);
    CHECK(t.offset % alignment == 0);
    REQUIRE(t.n_bytes == w.data[i].size());
    if (t.n_bytes > 0) CHECK(std::memcmp(t.data, w.data[i].data(), t.n_bytes) == 0);
    CHECK(f.find_tensor(t.name) == &t);
  }
}

// Rewrites what a reader saw with the writer (metadata in order, tensors in order).
Status rewrite(const GgufFile& f, const std::string& out_path) {
  GgufWriter w(out_path, f.alignment());
  for (const GgufKV& kv : f.metadata()) w.set(kv.key, kv.value);
  for (const GgufTensorInfo& t : f.tensors()) w.add_tensor(t.name, t.shape, t.type);
  SHRINK_CHECK(w.begin());
  for (size_t i = 0; i < f.tensors().size(); ++i)
    SHRINK_CHECK(w.write_tensor_data(i, f.tensors()[i].data, f.tensors()[i].n_bytes));
  return w.finish();
}

// A small valid file whose last tensor ends exactly at the end of the file, so that every
// strict prefix is invalid.
std::vector<uint8_t> small_valid_file(const TempDir& dir) {
  std::mt19937 rng(7);
  std::vector<GgufKV> md = {{"general.architecture", GgufValue::str("llama")},
                            {"t.arr", GgufValue::array_str({"a", "bc"})},
                            {"t.nested", GgufValue::array(arr(GgufType::ARRAY, {GgufValue::array_i32({1})}))},
                            {"t.flag", GgufValue::boolean(true)}};
  std::vector<TensorSpec> ts = {{"a", {32}, TypeId::Q8_0}, {"b", {8}, TypeId::F32}};  // 34 bytes, then 32
  std::string p = (dir / "small.gguf").string();
  write_file(p, md, ts, 32, rng);
  return shrink::test::read_bytes(p);
}

}  // namespace

// ---- Round trips ----

TEST_CASE("gguf: every metadata type and several tensor types round-trip", "[gguf]") {
  TempDir dir;
  std::mt19937 rng(shrink::test::seed());
  INFO("rerun with --rng-seed " << shrink::test::seed());
  const auto md = all_kinds_of_metadata();
  const std::string p = (dir / "all.gguf").string();
  Written w = write_file(p, md, kTensors, 32, rng);
  auto f = GgufFile::open(p);
  INFO((f.ok() ? std::string() : f.error().message));
  REQUIRE(f.ok());
  check_read_back(*f, md, kTensors, w, 32);

  // Value details the comparison operator could hide.
  const GgufValue* nan = f->find("t.f32.nan");
  REQUIRE(nan);
  CHECK(std::isnan(*nan->as_float()));
  CHECK(std::signbit(*f->find("t.f32.neg_zero")->as_float()));
  CHECK(*f->find("t.str.nul")->as_string() == std::string("a\0b", 3));
  const GgufArray* nested = f->find("t.arr.nested")->as_array();
  REQUIRE(nested);
  REQUIRE(nested->items.size() == 4);
  CHECK(nested->items[1].as_array()->elem_type == GgufType::STRING);
  CHECK(nested->items[3].as_array()->items[0].as_array()->items[0] == GgufValue::f32(0.5f));

  // read -> write reproduces the file byte for byte.
  const std::string p2 = (dir / "again.gguf").string();
  Status s = rewrite(*f, p2);
  INFO(s.message());
  REQUIRE(s.ok());
  CHECK(shrink::test::read_bytes(p2) == shrink::test::read_bytes(p));
}

TEST_CASE("gguf: non-default alignments round-trip", "[gguf]") {
  for (uint64_t alignment : {8u, 64u, 256u}) {
    INFO("alignment " << alignment);
    TempDir dir;
    std::mt19937 rng(shrink::test::seed() + static_cast<uint32_t>(alignment));
    std::vector<GgufKV> md = {{"general.architecture", GgufValue::str("llama")}};
    const std::string p = (dir / "a.gguf").string();
    Written w = write_file(p, md, kTensors, alignment, rng);
    auto f = GgufFile::open(p);
    INFO((f.ok() ? std::string() : f.error().message));
    REQUIRE(f.ok());
    check_read_back(*f, md, kTensors, w, alignment);
    REQUIRE(f->find("general.alignment"));
    CHECK(f->find("general.alignment")->type == GgufType::UINT32);

    const std::string p2 = (dir / "b.gguf").string();
    REQUIRE(rewrite(*f, p2).ok());  // brings general.alignment along; must not duplicate it
    CHECK(shrink::test::read_bytes(p2) == shrink::test::read_bytes(p));
  }
}

TEST_CASE("gguf: empty file with no metadata and no tensors", "[gguf]") {
  TempDir dir;
  const std::string p = (dir / "empty.gguf").string();
  GgufWriter w(p);
  REQUIRE(w.begin().ok());
  REQUIRE(w.finish().ok());
  auto f = GgufFile::open(p);
  REQUIRE(f.ok());
  CHECK(f->metadata().empty());
  CHECK(f->tensors().empty());
  CHECK(f->data_offset() == 32);  // 24-byte header padded to 32
  CHECK(f->file_size() == 32);
}

TEST_CASE("gguf: version 2 files read like version 3", "[gguf]") {
  TempDir dir;
  std::vector<uint8_t> bytes = small_valid_file(dir);
  bytes[4] = 2;
  auto f = open_bytes(dir, "v2.gguf", bytes);
  INFO((f.ok() ? std::string() : f.error().message));
  REQUIRE(f.ok());
  CHECK(f->version() == 2);
  CHECK(f->tensors().size() == 2);
}

TEST_CASE("gguf: a file with no tensors need not pad its header (gguf-py writes these)", "[gguf]") {
  TempDir dir;
  Craft c;
  c.kvs.push_back(kv_str("general.architecture", "llama"));
  c.alignment = 1;  // no padding after the header: 69 bytes
  std::vector<uint8_t> bytes = c.build();
  REQUIRE(bytes.size() % 32 != 0);
  auto f = open_bytes(dir, "vocab.gguf", bytes);
  INFO((f.ok() ? std::string() : f.error().message));
  REQUIRE(f.ok());
  CHECK(f->data_offset() > f->file_size());
}

TEST_CASE("gguf: value accessors and display", "[gguf]") {
  CHECK(GgufValue::u8(200).as_int() == 200);
  CHECK(GgufValue::i16(-5).as_int() == -5);
  CHECK_FALSE(GgufValue::u64(~0ull).as_int().has_value());  // does not fit int64
  CHECK(GgufValue::u64(~0ull).as_float() == Approx(1.8446744073709552e19));
  CHECK(GgufValue::u32(7).as_float() == 7.0);
  CHECK(GgufValue::f32(0.25f).as_float() == 0.25);
  CHECK_FALSE(GgufValue::f32(0.25f).as_int().has_value());
  CHECK_FALSE(GgufValue::str("1").as_int().has_value());
  CHECK(GgufValue::boolean(true).as_bool() == true);
  CHECK_FALSE(GgufValue::u8(1).as_bool().has_value());
  CHECK(GgufValue::str("x").as_string() != nullptr);
  CHECK(GgufValue::u8(1).as_string() == nullptr);
  CHECK(GgufValue::array_i32({1}).as_array() != nullptr);
  CHECK(GgufValue::u8(1).is_integer());
  CHECK(GgufValue::i64(1).is_integer());
  CHECK_FALSE(GgufValue::f64(1).is_integer());
  CHECK(GgufValue::f64(1).is_float());

  CHECK(GgufValue::u32(4294967295u).to_display() == "4294967295");
  CHECK(GgufValue::i8(-3).to_display() == "-3");
  CHECK(GgufValue::f32(1e-5f).to_display() == "1e-05");
  CHECK(GgufValue::boolean(false).to_display() == "false");
  CHECK(GgufValue::str("a\nb").to_display() == "a\\nb");
  CHECK(GgufValue::array_str({"<unk>", "\"", "c", "d", "e"}).to_display(3) == "[str x 5] [\"<unk>\", \"\\\"\", \"c\", ...]");
  CHECK(GgufValue::array_i32({}).to_display() == "[i32 x 0]");
  CHECK(GgufValue::array(arr(GgufType::ARRAY, {GgufValue::array_i32({1, 2})})).to_display() ==
        "[arr x 1] [[i32 x 2] [1, 2]]");

  // Same value, different on-disk type: not equal.
  CHECK_FALSE(GgufValue::u32(1) == GgufValue::u64(1));
  CHECK_FALSE(GgufValue::i32(1) == GgufValue::u32(1));
  CHECK(GgufValue::array_str({"a"}) == GgufValue::array_str({"a"}));
  CHECK_FALSE(GgufValue::array_str({"a"}) == GgufValue::array_str({"b"}));
  CHECK_FALSE(GgufValue::f32(0.0f) == GgufValue::f32(-0.0f));
  CHECK(GgufValue::f32(NAN) == GgufValue::f32(NAN));
}

TEST_CASE("gguf: writer set() replaces a key in place", "[gguf]") {
  GgufWriter w("unused.gguf");
  w.set("a", GgufValue::u32(1));
  w.set("b", GgufValue::u32(2));
  w.set("a", GgufValue::str("x"));
  REQUIRE(w.metadata().size() == 2);
  CHECK(w.metadata()[0].key == "a");
  CHECK(w.metadata()[0].value == GgufValue::str("x"));
}

// ---- Writer misuse: every failure leaves no file behind ----

TEST_CASE("gguf: writer refuses misuse and leaves no file", "[gguf]") {
  TempDir dir;
  const std::string p = (dir / "out.gguf").string();
  std::vector<uint8_t> one_block(34, 1);  // one Q8_0 block

  auto no_output = [&] { CHECK(dir_entries(dir.path).empty()); };

  SECTION("wrong data size") {
    GgufWriter w(p);
    w.add_tensor("a", {32}, TypeId::Q8_0);
    REQUIRE(w.begin().ok());
    Status s = w.write_tensor_data(0, one_block.data(), 33);
    REQUIRE_FALSE(s.ok());
    CHECK(s.message().find("wrong size") != std::string::npos);
    CHECK(s.message().find("must be 34") != std::string::npos);
    CHECK_FALSE(w.finish().ok());
    no_output();
  }
  SECTION("out of order") {
    GgufWriter w(p);
    w.add_tensor("a", {32}, TypeId::Q8_0);
    w.add_tensor("b", {32}, TypeId::Q8_0);
    REQUIRE(w.begin().ok());
    Status s = w.write_tensor_data(1, one_block.data(), 34);
    REQUIRE_FALSE(s.ok());
    CHECK(s.message().find("out of order") != std::string::npos);
    no_output();
  }
  SECTION("finish before every tensor is written") {
    GgufWriter w(p);
    w.add_tensor("a", {32}, TypeId::Q8_0);
    w.add_tensor("b", {32}, TypeId::Q8_0);
    REQUIRE(w.begin().ok());
    REQUIRE(w.write_tensor_data(0, one_block.data(), 34).ok());
    Status s = w.finish();
    REQUIRE_FALSE(s.ok());
    CHECK(s.message().find("'b'") != std::string::npos);
    no_output();
  }
  SECTION("write before begin, and the writer dropped mid-way") {
    {
      GgufWriter w(p);
      w.add_tensor("a", {32}, TypeId::Q8_0);
      CHECK_FALSE(w.write_tensor_data(0, one_block.data(), 34).ok());
      REQUIRE(w.begin().ok());
    }  // destroyed without finish()
    no_output();
  }
  SECTION("row not a whole number of blocks") {
    GgufWriter w(p);
    w.add_tensor("a", {33}, TypeId::Q4_0);
    Status s = w.begin();
    REQUIRE_FALSE(s.ok());
    CHECK(s.message().find("multiple of 32") != std::string::npos);
    no_output();
  }
  SECTION("duplicate tensor, bad names, bad shapes") {
    for (auto decl : std::vector<std::pair<TensorSpec, std::string>>{
             {{"a", {32}, TypeId::F32}, "duplicate tensor name"},
             {{std::string(64, 'n'), {32}, TypeId::F32}, "invalid tensor name"},
             {{"", {32}, TypeId::F32}, "invalid tensor name"},
             {{"x", {1, 1, 1, 1, 1}, TypeId::F32}, "too many dimensions"},
             {{"x", {-1}, TypeId::F32}, "negative dimension"},
             {{"x", {int64_t{1} << 40, int64_t{1} << 40}, TypeId::F32}, "element count overflows"},
             {{"x", {32}, static_cast<TypeId>(4)}, "unknown tensor type id"}}) {
      GgufWriter w(p);
      w.add_tensor("a", {32}, TypeId::F32);
      w.add_tensor(decl.first.name, decl.first.shape, decl.first.type);
      Status s = w.begin();
      INFO(s.message());
      REQUIRE_FALSE(s.ok());
      CHECK(s.message().find(decl.second) != std::string::npos);
    }
    no_output();
  }
  SECTION("bad alignment") {
    for (uint64_t a : {0u, 4u, 24u, 48u}) {
      GgufWriter w(p, a);
      Status s = w.begin();
      REQUIRE_FALSE(s.ok());
      CHECK(s.message().find("alignment") != std::string::npos);
    }
    no_output();
  }
  SECTION("general.alignment disagreeing with the writer") {
    GgufWriter w(p, 64);
    w.set("general.alignment", GgufValue::u32(32));
    CHECK_FALSE(w.begin().ok());
    GgufWriter w2(p, 32);
    w2.set("general.alignment", GgufValue::u64(32));  // must be u32
    CHECK_FALSE(w2.begin().ok());
    no_output();
  }
  SECTION("malformed values") {
    GgufValue wrong;
    wrong.type = GgufType::UINT8;
    wrong.v = uint64_t{300};
    GgufValue mixed = GgufValue::array(arr(GgufType::INT32, {GgufValue::i32(1), GgufValue::u32(2)}));
    GgufValue holds_wrong;
    holds_wrong.type = GgufType::STRING;
    holds_wrong.v = uint64_t{1};
    for (const GgufValue& v : {wrong, mixed, holds_wrong}) {
      GgufWriter w(p);
      w.set("k", v);
      Status s = w.begin();
      INFO(s.message());
      CHECK_FALSE(s.ok());
    }
    GgufWriter w(p);
    w.set("", GgufValue::u8(1));
    CHECK_FALSE(w.begin().ok());
    no_output();
  }
  SECTION("an existing file survives a failed write") {
    shrink::test::write_bytes(p, {1, 2, 3});
    GgufWriter w(p);
    w.add_tensor("a", {32}, TypeId::Q8_0);
    REQUIRE(w.begin().ok());
    CHECK_FALSE(w.write_tensor_data(0, one_block.data(), 1).ok());
    CHECK(shrink::test::read_bytes(p) == std::vector<uint8_t>{1, 2, 3});
    CHECK(dir_entries(dir.path) == std::vector<std::string>{"out.gguf"});
  }
}

// ---- Hostile input: one hand-crafted file per failure class ----

TEST_CASE("gguf: every strict prefix of a valid file is refused cleanly", "[gguf][hostile]") {
  TempDir dir;
  const std::vector<uint8_t> full = small_valid_file(dir);
  REQUIRE(GgufFile::open((dir / "small.gguf").string()).ok());
  const std::string p = (dir / "prefix.gguf").string();
  for (size_t n = 0; n < full.size(); ++n) {
    INFO("prefix length " << n << " of " << full.size());
    shrink::test::write_bytes(p, std::vector<uint8_t>(full.begin(), full.begin() + static_cast<long>(n)));
    auto f = GgufFile::open(p);
    REQUIRE_FALSE(f.ok());
    CHECK(f.error().message.rfind(p + ": ", 0) == 0);
  }
}

TEST_CASE("gguf: hostile headers", "[gguf][hostile]") {
  TempDir dir;
  const std::string p = (dir / "bad.gguf").string();
  auto open = [&](const std::vector<uint8_t>& bytes) { return open_bytes(dir, "bad.gguf", bytes); };
  Craft ok;
  ok.kvs.push_back(kv_str("general.architecture", "llama"));
  REQUIRE(open(ok.build()).ok());

  SECTION("wrong magic") {
    auto b = ok.build();
    std::memcpy(b.data(), "GGML", 4);
    expect_refused(open(b), p, {"not a GGUF file", "magic", "'GGML'"});
  }
  SECTION("unsupported versions") {
    Craft c = ok;
    c.version = 4;
    expect_refused(open(c.build()), p, {"unsupported GGUF version", "version, 4"});
    c.version = 1;
    expect_refused(open(c.build()), p, {"version, 1", "v1"});
    c.version = 0x03000000;
    expect_refused(open(c.build()), p, {"big-endian"});
    c.version = 0;
    expect_refused(open(c.build()), p, {"version, 0", "must be 2 or 3"});
  }
  SECTION("header longer than the file") {
    Craft c = ok;
    c.n_kv = 3;  // claims three pairs, holds one
    expect_refused(open(c.build()), p, {"metadata key #1"});
  }
  SECTION("absurd counts fail fast") {
    Craft c = ok;
    c.n_kv = uint64_t{1} << 63;
    expect_refused(open(c.build()), p, {"metadata count exceeds the file", "9223372036854775808"});
    c = ok;
    c.n_tensors = ~uint64_t{0};
    expect_refused(open(c.build()), p, {"tensor count exceeds the file", "18446744073709551615"});
  }
  SECTION("absurd string lengths") {
    Craft c;
    c.kvs.push_back(std::move(Bytes().u64(uint64_t{1} << 62).raw(std::vector<uint8_t>(16, 0))));  // key length
    expect_refused(open(c.build()), p, {"metadata key #0", "exceeds the limit 65535"});
    c = Craft();
    c.kvs.push_back(std::move(Bytes().str("k").u32(T_STRING).u64(~uint64_t{0} - 3)));  // value length
    expect_refused(open(c.build()), p, {"metadata 'k'", "remain"});
    c = ok;
    c.infos.push_back(std::move(Bytes().u64(uint64_t{1} << 40)));  // tensor name length
    c.infos.back().raw(std::vector<uint8_t>(24, 0));
    expect_refused(open(c.build()), p, {"tensor info #0 name", "exceeds the limit 64"});
  }
  SECTION("bad metadata value type") {
    Craft c;
    c.kvs.push_back(std::move(Bytes().str("k").u32(13).u32(0)));
    expect_refused(open(c.build()), p, {"invalid metadata value type", "metadata 'k', 13"});
    c = Craft();
    c.kvs.push_back(std::move(Bytes().str("k").u32(T_ARRAY).u32(77).u64(0)));
    expect_refused(open(c.build()), p, {"invalid array element type", "77"});
  }
  SECTION("bool other than 0 or 1") {
    Craft c;
    c.kvs.push_back(std::move(Bytes().str("k").u32(T_BOOL).u8(2)));
    expect_refused(open(c.build()), p, {"invalid bool", "must be 0 or 1"});
  }
  SECTION("absurd array counts, nested or not") {
    Craft c;
    c.kvs.push_back(std::move(Bytes().str("k").u32(T_ARRAY).u32(T_U8).u64(uint64_t{1} << 62)));
    expect_refused(open(c.build()), p, {"array count exceeds the bytes left", "4611686018427387904"});
    c = Craft();
    c.kvs.push_back(std::move(
        Bytes().str("k").u32(T_ARRAY).u32(T_ARRAY).u64(1).u32(T_STRING).u64(uint64_t{1} << 60)));
    expect_refused(open(c.build()), p, {"array count exceeds the bytes left", "metadata 'k'", "1152921504606846976"});
    c = Craft();
    c.kvs.push_back(std::move(Bytes().str("k").u32(T_ARRAY).u32(T_ARRAY).u64(~uint64_t{0})));
    expect_refused(open(c.build()), p, {"array count exceeds the bytes left"});
  }
  SECTION("arrays nested too deeply") {
    Bytes kv;
    kv.str("k").u32(T_ARRAY);
    for (int i = 0; i < 100; ++i) kv.u32(T_ARRAY).u64(1);
    kv.u32(T_U8).u64(0);
    Craft c;
    c.kvs.push_back(kv);
    expect_refused(open(c.build()), p, {"nested too deeply"});
  }
  SECTION("duplicate and empty keys") {
    Craft c = ok;
    c.kvs.push_back(kv_u32("general.architecture", 1));
    expect_refused(open(c.build()), p, {"duplicate metadata key", "'general.architecture'"});
    c = ok;
    c.kvs.push_back(kv_u32("", 1));
    expect_refused(open(c.build()), p, {"empty metadata key"});
  }
  SECTION("bad general.alignment") {
    Craft c;
    c.kvs.push_back(kv_u32("general.alignment", 48));
    expect_refused(open(c.build()), p, {"invalid alignment", "48", "power of two"});
    c.kvs[0] = kv_u32("general.alignment", 4);
    expect_refused(open(c.build()), p, {"invalid alignment", "multiple of 8"});
    c.kvs[0] = kv_u32("general.alignment", 0);
    expect_refused(open(c.build()), p, {"invalid alignment"});
    c.kvs[0] = std::move(Bytes().str("general.alignment").u32(T_U64).u64(32));
    expect_refused(open(c.build()), p, {"wrong type", "u64", "must be u32"});
  }
}

TEST_CASE("gguf: hostile tensor infos", "[gguf][hostile]") {
  TempDir dir;
  const std::string p = (dir / "bad.gguf").string();
  auto open = [&](const Craft& c) { return open_bytes(dir, "bad.gguf", c.build()); };
  constexpr uint32_t F32 = 0, Q4_0 = 2, F64 = 28;
  Craft ok;
  ok.infos.push_back(tensor_info("a", {16}, F32, 0));
  ok.infos.push_back(tensor_info("b", {16}, F32, 64));
  ok.data_bytes = 128;
  REQUIRE(open(ok).ok());

  SECTION("duplicate tensor name") {
    Craft c = ok;
    c.infos[1] = tensor_info("a", {16}, F32, 64);
    expect_refused(open(c), p, {"duplicate tensor name", "'a'"});
  }
  SECTION("more than 4 dimensions") {
    Craft c = ok;
    c.infos[0] = tensor_info("a", {1, 1, 1, 1, 16}, F32, 0);
    expect_refused(open(c), p, {"too many dimensions", "n_dims, 5", "at most 4"});
  }
  SECTION("negative dimension") {
    Craft c = ok;
    c.infos[0] = tensor_info("a", {16, uint64_t{1} << 63}, F32, 0);
    expect_refused(open(c), p, {"negative dimension", "tensor 'a' shape[1]"});
  }
  SECTION("element count overflowing int64") {
    Craft c = ok;
    c.infos[0] = tensor_info("a", {uint64_t{1} << 32, uint64_t{1} << 32}, F32, 0);
    expect_refused(open(c), p, {"element count overflows", "[4294967296, 4294967296]"});
  }
  SECTION("byte size overflowing uint64") {
    Craft c = ok;
    c.infos[0] = tensor_info("a", {uint64_t{1} << 61, 1}, F64, 0);  // 2^61 elements of 8 bytes
    expect_refused(open(c), p, {"byte size overflows"});
  }
  SECTION("unknown type ids") {
    for (uint32_t id : {4u, 5u, 31u, 36u, 40u, 1000u}) {
      Craft c = ok;
      c.infos[0] = tensor_info("a", {16}, id, 0);
      expect_refused(open(c), p, {"unknown tensor type id", "tensor 'a' type, " + std::to_string(id)});
    }
  }
  SECTION("row not a multiple of the block size") {
    Craft c = ok;
    c.infos[0] = tensor_info("a", {33, 2}, Q4_0, 0);
    expect_refused(open(c), p, {"row length is not a whole number of blocks", "33", "multiple of 32 for q4_0"});
  }
  SECTION("offset outside the data section") {
    Craft c = ok;
    c.infos[1] = tensor_info("b", {16}, F32, 96);  // 96 + 64 > 128
    expect_refused(open(c), p, {"outside the file", "tensor 'b' offset", "96 + 64"});
    c.infos[1] = tensor_info("b", {16}, F32, ~uint64_t{0} - 31);  // offset + size wraps around
    expect_refused(open(c), p, {"tensor 'b' offset"});
  }
  SECTION("misaligned offset") {
    Craft c = ok;
    c.infos[1] = tensor_info("b", {16}, F32, 48);
    expect_refused(open(c), p, {"misaligned tensor data", "48", "multiple of the alignment 32"});
  }
  SECTION("overlapping tensors") {
    Craft c = ok;
    c.infos[1] = tensor_info("b", {16}, F32, 32);  // a spans [0, 64)
    expect_refused(open(c), p, {"tensors overlap", "tensor 'b' offset, 32", "'a' ends at 64"});
    // Listed in the other order: still found.
    std::swap(c.infos[0], c.infos[1]);
    expect_refused(open(c), p, {"tensors overlap"});
  }
  SECTION("empty tensors may share an offset") {
    Craft c = ok;
    c.infos.push_back(tensor_info("e", {0, 16}, F32, 64));
    auto f = open(c);
    INFO((f.ok() ? std::string() : f.error().message));
    CHECK(f.ok());
  }
  SECTION("data section past the end of the file") {
    Craft c = ok;
    c.data_bytes = 0;
    auto b = c.build();
    b.resize(b.size() - 1);  // cut into the header padding (90 bytes of header, 6 of padding)
    expect_refused(open_bytes(dir, "bad.gguf", b), p, {"data section starts past the end of the file"});
  }
}
