// safetensors reader/writers: single-file and sharded round trips for every dtype, writer
// misuse, and one hand-crafted bad file per failure class (DESIGN.md conventions 5 and 6).
#include <catch2/catch.hpp>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "formats/safetensors.h"
#include "tests/test_support.h"

namespace {

using namespace shrink;
namespace fs = std::filesystem;
using shrink::test::TempDir;

const StDtype kAllDtypes[] = {StDtype::F64, StDtype::F32,  StDtype::F16, StDtype::BF16, StDtype::I64,
                              StDtype::I32, StDtype::I16,  StDtype::I8,  StDtype::U64,  StDtype::U32,
                              StDtype::U16, StDtype::U8,   StDtype::BOOL, StDtype::F8_E4M3, StDtype::F8_E5M2};

struct Owned {
  std::string name;
  StDtype dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

std::vector<Owned> make_tensors(std::mt19937& rng) {
  // Every dtype, in several shapes: a scalar, an empty tensor, odd 2-D and 3-D shapes.
  const std::vector<std::vector<int64_t>> shapes = {{}, {0, 3}, {3, 5}, {2, 3, 1}, {7}};
  std::vector<Owned> ts;
  size_t i = 0;
  for (StDtype d : kAllDtypes) {
    for (const auto& shape : shapes) {
      Owned t;
      t.name = "model.layers." + std::to_string(i++) + "." + st_dtype_name(d);
      t.dtype = d;
      t.shape = shape;
      size_t n = st_dtype_size(d);
      for (int64_t x : shape) n *= static_cast<size_t>(x);
      t.bytes.resize(n);
      for (auto& b : t.bytes) b = static_cast<uint8_t>(rng());
      if (d == StDtype::BOOL)
        for (auto& b : t.bytes) b &= 1;
      ts.push_back(std::move(t));
    }
  }
  return ts;
}

std::vector<StWriteTensor> views(const std::vector<Owned>& ts) {
  std::vector<StWriteTensor> v;
  for (const Owned& t : ts) v.push_back({t.name, t.dtype, t.shape, t.bytes.data()});
  return v;
}

void check_same(const std::vector<StTensor>& got, const std::vector<Owned>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("tensor " << want[i].name);
    CHECK(got[i].name == want[i].name);
    CHECK(got[i].dtype == want[i].dtype);
    CHECK(got[i].shape == want[i].shape);
    REQUIRE(got[i].n_bytes == want[i].bytes.size());
    if (got[i].n_bytes > 0) CHECK(std::memcmp(got[i].data, want[i].bytes.data(), got[i].n_bytes) == 0);
    int64_t n = 1;
    for (int64_t d : want[i].shape) n *= d;
    CHECK(got[i].n_elements() == n);
  }
}

std::vector<std::string> dir_entries(const fs::path& d) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(d)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// A file from a header text and a data buffer; `claimed` overrides the header length field.
std::vector<uint8_t> craft(const std::string& header, size_t data_bytes, std::optional<uint64_t> claimed = {}) {
  std::vector<uint8_t> b(8 + header.size() + data_bytes, 0x11);
  uint64_t n = claimed.value_or(header.size());
  std::memcpy(b.data(), &n, 8);
  if (!header.empty()) std::memcpy(b.data() + 8, header.data(), header.size());
  return b;
}

Result<SafetensorsFile> open_bytes(const TempDir& dir, const std::vector<uint8_t>& bytes) {
  shrink::test::write_bytes(dir / "bad.safetensors", bytes);
  return SafetensorsFile::open((dir / "bad.safetensors").string());
}

template <class R>
void expect_refused(const R& r, const std::string& path, std::initializer_list<std::string> parts) {
  REQUIRE_FALSE(r.ok());
  const std::string& m = r.error().message;
  INFO("error: " << m);
  CHECK(m.rfind(path + ": ", 0) == 0);
  CHECK(m.find('\n') == std::string::npos);
  for (const std::string& p : parts) CHECK(m.find(p) != std::string::npos);
}

}  // namespace

TEST_CASE("safetensors: dtype names and sizes", "[safetensors]") {
  CHECK(std::string(st_dtype_name(StDtype::BF16)) == "BF16");
  CHECK(std::string(st_dtype_name(StDtype::F8_E4M3)) == "F8_E4M3");
  CHECK(st_dtype_size(StDtype::F64) == 8);
  CHECK(st_dtype_size(StDtype::U16) == 2);
  CHECK(st_dtype_size(StDtype::BOOL) == 1);
  CHECK(st_dtype_size(StDtype::F8_E5M2) == 1);
}

TEST_CASE("safetensors: single file round-trips every dtype", "[safetensors]") {
  TempDir dir;
  std::mt19937 rng(shrink::test::seed());
  INFO("rerun with --rng-seed " << shrink::test::seed());
  const auto ts = make_tensors(rng);
  const std::map<std::string, std::string> md = {{"format", "pt"}, {"note", "caf\xc3\xa9 \"quoted\"\n"}};
  const std::string p = (dir / "m.safetensors").string();
  Status s = write_safetensors(p, views(ts), md);
  INFO(s.message());
  REQUIRE(s.ok());
  CHECK(dir_entries(dir.path) == std::vector<std::string>{"m.safetensors"});

  auto bytes = shrink::test::read_bytes(p);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n % 8 == 0);  // header padded so the data buffer starts 8-aligned
  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(n));
  CHECK(header.front() == '{');
  CHECK(header.find_last_not_of(' ') == header.rfind('}'));  // padded with spaces only
  CHECK(header.size() - header.rfind('}') <= 8);

  auto f = SafetensorsFile::open(p);
  INFO((f.ok() ? std::string() : f.error().message));
  REQUIRE(f.ok());
  check_same(f->tensors(), ts);  // offset order is the written order
  CHECK(f->metadata() == md);
  REQUIRE(f->find(ts[7].name) != nullptr);
  CHECK(f->find(ts[7].name)->name == ts[7].name);
  CHECK(f->find("absent") == nullptr);
  CHECK(f->tensors()[0].file == p);

  // Through the model interface too, by file and by folder holding one file.
  auto m = SafetensorsModel::open(p);
  REQUIRE(m.ok());
  check_same(m->tensors(), ts);
  CHECK(m->files() == std::vector<std::string>{p});
  auto m2 = SafetensorsModel::open(dir.path.string());
  REQUIRE(m2.ok());
  CHECK(m2->tensors().size() == ts.size());

  // read -> write reproduces the file byte for byte.
  std::vector<StWriteTensor> again;
  for (const StTensor& t : f->tensors()) again.push_back({t.name, t.dtype, t.shape, t.data});
  const std::string p2 = (dir / "again.safetensors").string();
  REQUIRE(write_safetensors(p2, again, f->metadata()).ok());
  CHECK(shrink::test::read_bytes(p2) == bytes);
}

TEST_CASE("safetensors: the reference serializer's bytes for one tensor", "[safetensors]") {
  // tensor.rs test_serialization: {"attn.0": F32 [1, 2, 3] = 0..5} serializes to these bytes.
  const std::vector<uint8_t> expected = {
      64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100, 116, 121, 112, 101, 34, 58,
      34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116,
      97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
      0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};
  const float data[6] = {0, 1, 2, 3, 4, 5};
  TempDir dir;
  const std::string p = (dir / "a.safetensors").string();
  REQUIRE(write_safetensors(p, {{"attn.0", StDtype::F32, {1, 2, 3}, data}}).ok());
  CHECK(shrink::test::read_bytes(p) == expected);
  // And an empty file: "{}" padded with six spaces.
  REQUIRE(write_safetensors(p, {}).ok());
  CHECK(shrink::test::read_bytes(p) == std::vector<uint8_t>{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '});
  auto f = SafetensorsFile::open(p);
  REQUIRE(f.ok());
  CHECK(f->tensors().empty());
}

TEST_CASE("safetensors: sharded round trip", "[safetensors]") {
  TempDir dir;
  std::mt19937 rng(shrink::test::seed() + 1);
  const auto ts = make_tensors(rng);
  uint64_t total = 0;
  for (const Owned& t : ts) total += t.bytes.size();
  const std::map<std::string, std::string> md = {{"format", "pt"}};
  const fs::path out = dir / "model";  // created by the writer
  Status s = write_safetensors_sharded(out.string(), views(ts), 100, md);
  INFO(s.message());
  REQUIRE(s.ok());

  auto names = dir_entries(out);
  REQUIRE(names.size() >= 4);
  CHECK(names.back() == "model.safetensors.index.json");
  const size_t n_shards = names.size() - 1;
  char first[64], last[64];
  std::snprintf(first, sizeof first, "model-00001-of-%05zu.safetensors", n_shards);
  std::snprintf(last, sizeof last, "model-%05zu-of-%05zu.safetensors", n_shards, n_shards);
  CHECK(names.front() == first);
  CHECK(names[n_shards - 1] == last);

  // Hugging Face's index layout.
  auto text = shrink::test::read_bytes(out / "model.safetensors.index.json");
  auto index = nlohmann::json::parse(text.begin(), text.end());
  CHECK(index["metadata"]["total_size"].get<uint64_t>() == total);
  CHECK(index["weight_map"].size() == ts.size());
  CHECK(index["weight_map"][ts[0].name] == first);
  CHECK(text.back() == '\n');

  // Each shard holds at most 100 bytes unless one tensor alone is larger.
  for (size_t i = 0; i < n_shards; ++i) {
    auto f = SafetensorsFile::open((out / names[i]).string());
    REQUIRE(f.ok());
    uint64_t bytes = 0;
    for (const StTensor& t : f->tensors()) bytes += t.n_bytes;
    CHECK((bytes <= 100 || f->tensors().size() == 1));
    CHECK(f->metadata() == md);
  }

  for (const std::string& open_path : {out.string(), (out / "model.safetensors.index.json").string()}) {
    INFO(open_path);
    auto m = SafetensorsModel::open(open_path);
    INFO((m.ok() ? std::string() : m.error().message));
    REQUIRE(m.ok());
    check_same(m->tensors(), ts);  // shard order, then offset: the written order
    CHECK(m->files().size() == n_shards);
    CHECK(fs::path(m->files()[0]).filename() == first);
    REQUIRE(m->find(ts.back().name));
    CHECK(fs::path(m->find(ts.back().name)->file).filename() == last);
    CHECK(m->find("absent") == nullptr);
  }
}

TEST_CASE("safetensors: one shard is written as model.safetensors without an index", "[safetensors]") {
  TempDir dir;
  std::mt19937 rng(shrink::test::seed() + 2);
  const auto ts = make_tensors(rng);
  REQUIRE(write_safetensors_sharded(dir.path.string(), views(ts), uint64_t{1} << 40).ok());
  CHECK(dir_entries(dir.path) == std::vector<std::string>{"model.safetensors"});
  auto m = SafetensorsModel::open(dir.path.string());
  REQUIRE(m.ok());
  check_same(m->tensors(), ts);
}

TEST_CASE("safetensors: a tensor larger than the shard limit gets its own shard", "[safetensors]") {
  TempDir dir;
  std::vector<uint8_t> small(8, 1), big(64, 2);
  std::vector<StWriteTensor> ts = {{"a", StDtype::U8, {8}, small.data()},
                                   {"b", StDtype::U8, {64}, big.data()},
                                   {"c", StDtype::U8, {8}, small.data()},
                                   {"d", StDtype::U8, {8}, small.data()}};
  REQUIRE(write_safetensors_sharded(dir.path.string(), ts, 16).ok());
  auto m = SafetensorsModel::open(dir.path.string());
  REQUIRE(m.ok());
  REQUIRE(m->files().size() == 3);  // {a}, {b}, {c, d}
  CHECK(fs::path(m->find("a")->file).filename() == "model-00001-of-00003.safetensors");
  CHECK(fs::path(m->find("b")->file).filename() == "model-00002-of-00003.safetensors");
  CHECK(fs::path(m->find("d")->file).filename() == "model-00003-of-00003.safetensors");
}

TEST_CASE("safetensors: writers refuse bad tensors and leave no file", "[safetensors]") {
  TempDir dir;
  const std::string p = (dir / "w.safetensors").string();
  std::vector<uint8_t> buf(64, 0);
  const std::vector<std::pair<std::vector<StWriteTensor>, std::string>> cases = {
      {{{"a", StDtype::F32, {2}, buf.data()}, {"a", StDtype::F32, {2}, buf.data()}}, "duplicate tensor name"},
      {{{"a", StDtype::F32, {-2}, buf.data()}}, "negative dimension"},
      {{{"__metadata__", StDtype::F32, {2}, buf.data()}}, "reserved tensor name"},
      {{{"a", StDtype::F32, {2}, nullptr}}, "tensor data is null"},
      {{{"a", StDtype::F32, {int64_t{1} << 62, 8}, buf.data()}}, "shape product overflows"},
      {{{"bad\xff", StDtype::F32, {2}, buf.data()}}, "not valid UTF-8"},
  };
  for (const auto& [ts, what] : cases) {
    INFO(what);
    Status s = write_safetensors(p, ts);
    INFO(s.message());
    REQUIRE_FALSE(s.ok());
    CHECK(s.message().find(what) != std::string::npos);
    Status s2 = write_safetensors_sharded((dir / "sharded").string(), ts, 4);
    CHECK_FALSE(s2.ok());
  }
  CHECK_FALSE(write_safetensors_sharded((dir / "sharded").string(), {}, 0).ok());
  for (const std::string& e : dir_entries(dir.path)) {
    INFO(e);
    CHECK((e == "sharded" && dir_entries(dir / "sharded").empty()));
  }
}

// ---- Hostile input ----

TEST_CASE("safetensors: every strict prefix of a valid file is refused cleanly", "[safetensors][hostile]") {
  TempDir dir;
  std::vector<uint8_t> a(12, 3), b(4, 4);
  const std::string good = (dir / "good.safetensors").string();
  REQUIRE(write_safetensors(good, {{"a", StDtype::F32, {3}, a.data()}, {"b", StDtype::I16, {2}, b.data()}},
                            {{"format", "pt"}})
              .ok());
  const auto full = shrink::test::read_bytes(good);
  const std::string p = (dir / "prefix.safetensors").string();
  for (size_t n = 0; n < full.size(); ++n) {
    INFO("prefix length " << n << " of " << full.size());
    shrink::test::write_bytes(p, std::vector<uint8_t>(full.begin(), full.begin() + static_cast<long>(n)));
    auto f = SafetensorsFile::open(p);
    REQUIRE_FALSE(f.ok());
    CHECK(f.error().message.rfind(p + ": ", 0) == 0);
  }
}

TEST_CASE("safetensors: hostile headers", "[safetensors][hostile]") {
  TempDir dir;
  const std::string p = (dir / "bad.safetensors").string();
  auto open = [&](const std::string& header, size_t data, std::optional<uint64_t> claimed = {}) {
    return open_bytes(dir, craft(header, data, claimed));
  };
  const std::string one = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  REQUIRE(open(one, 8).ok());

  SECTION("header length beyond the file, and beyond the 100 MB cap") {
    expect_refused(open(one, 8, one.size() + 9), p, {"header length exceeds the file"});
    expect_refused(open(one, 8, uint64_t{200'000'000}), p, {"header length too large", "200000000"});
    expect_refused(open(one, 8, ~uint64_t{0}), p, {"header length too large"});
  }
  SECTION("not JSON, not an object") {
    expect_refused(open(R"({"a": )", 0), p, {"not valid JSON", "parse error"});
    expect_refused(open("[1, 2]", 0), p, {"does not start with '{'"});
    expect_refused(open(" {}", 0), p, {"does not start with '{'"});
    expect_refused(open("", 0), p, {"does not start with '{'", "empty"});
    expect_refused(open("{\"a\xff\": 1}", 0), p, {"not valid JSON"});  // invalid UTF-8
    expect_refused(open(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} x)", 8), p, {"not valid JSON"});
  }
  SECTION("duplicate tensor names") {
    expect_refused(open(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                        16),
                   p, {"duplicate key", "'a'"});
  }
  SECTION("entries that are not objects or lack fields") {
    expect_refused(open(R"({"a":5})", 0), p, {"not an object", "tensor 'a'"});
    expect_refused(open(R"({"a\nb":5})", 0), p, {"tensor 'a\\x0ab'"});  // control characters escaped
    expect_refused(open(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", 8), p, {"lacks \"dtype\""});
    expect_refused(open(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", 8), p, {"lacks \"shape\""});
    expect_refused(open(R"({"a":{"dtype":"F32","shape":[2]}})", 8), p, {"lacks \"data_offsets\""});
  }
  SECTION("unknown or malformed dtype") {
    expect_refused(open(R"({"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}})", 1), p,
                   {"unknown dtype 'F4'", "tensor 'a' dtype"});
    expect_refused(open(R"({"a":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", 8), p, {"unknown dtype 'f32'"});
    expect_refused(open(R"({"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", 8), p, {"dtype is not a string"});
  }
  SECTION("malformed shapes") {
    expect_refused(open(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), p, {"invalid dimension"});
    expect_refused(open(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}})", 8), p, {"invalid dimension"});
    expect_refused(open(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", 8), p, {"shape is not an array"});
    expect_refused(open(R"({"a":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]}})", 8), p,
                   {"invalid dimension"});
  }
  SECTION("overflowing shape products") {
    expect_refused(open(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})",
                        8),
                   p, {"shape product overflows"});
    expect_refused(open(R"({"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,8]}})", 8), p,
                   {"shape product overflows"});  // 2^62 elements of 4 bytes
  }
  SECTION("malformed data_offsets") {
    expect_refused(open(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8), p, {"invalid data_offsets"});
    expect_refused(open(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,-8]}})", 8), p, {"invalid data_offsets"});
    expect_refused(open(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), p, {"end before they begin"});
  }
  SECTION("offsets outside the buffer") {
    expect_refused(open(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4), p,
                   {"outside the data buffer", "[0, 8]", "4-byte buffer"});
    expect_refused(open(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551608,0]}})", 8), p,
                   {"end before they begin"});
  }
  SECTION("byte size disagreeing with the shape") {
    expect_refused(open(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), p,
                   {"does not match its shape", "8 bytes but F32 [3] needs 12"});
  }
  SECTION("overlaps, holes and uncovered bytes") {
    expect_refused(open(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                        12),
                   p, {"tensors overlap", "tensor 'b'", "'a' ends at 8"});
    expect_refused(open(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                        R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                        12),
                   p, {"hole in the data buffer", "tensor 'b'"});
    expect_refused(open(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), p,
                   {"hole in the data buffer", "the start of the buffer"});
    expect_refused(open(one, 9), p, {"not fully covered", "end at 8"});
    expect_refused(open("{}", 1), p, {"not fully covered"});
  }
  SECTION("bad __metadata__") {
    expect_refused(open(R"({"__metadata__":[1]})", 0), p, {"__metadata__ is not an object"});
    expect_refused(open(R"({"__metadata__":{"k":1}})", 0), p,
                   {"__metadata__ value is not a string", "__metadata__['k']"});
  }
  SECTION("accepted: tensors listed out of offset order, empty tensors, scalars, unknown extra fields") {
    auto f = open(R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},"e":{"dtype":"F32","shape":[0,5],)"
                  R"("data_offsets":[4,4]},"a":{"dtype":"F32","shape":[],"data_offsets":[0,4],"extra":1}})",
                  6);
    INFO((f.ok() ? std::string() : f.error().message));
    REQUIRE(f.ok());
    REQUIRE(f->tensors().size() == 3);
    CHECK(f->tensors()[0].name == "a");
    CHECK(f->tensors()[0].n_elements() == 1);
    CHECK(f->tensors()[1].name == "e");
    CHECK(f->tensors()[2].name == "b");
  }
}

TEST_CASE("safetensors: hostile shard indexes", "[safetensors][hostile]") {
  TempDir dir;
  std::vector<uint8_t> x(8, 1);
  const std::vector<StWriteTensor> ts = {
      {"a", StDtype::U8, {8}, x.data()}, {"b", StDtype::U8, {8}, x.data()}, {"c", StDtype::U8, {8}, x.data()}};
  REQUIRE(write_safetensors_sharded(dir.path.string(), ts, 8).ok());  // three shards
  const fs::path index_path = dir / "model.safetensors.index.json";
  const std::string ip = index_path.string();
  REQUIRE(SafetensorsModel::open(dir.path.string()).ok());
  const std::string s1 = "model-00001-of-00003.safetensors", s2 = "model-00002-of-00003.safetensors",
                    s3 = "model-00003-of-00003.safetensors";
  auto write_index = [&](const nlohmann::json& j) {
    std::string text = j.dump();
    shrink::test::write_bytes(index_path, std::vector<uint8_t>(text.begin(), text.end()));
  };
  auto index_with = [&](const nlohmann::json& weight_map) {
    write_index({{"metadata", {{"total_size", 24}}}, {"weight_map", weight_map}});
    return SafetensorsModel::open(dir.path.string());
  };

  SECTION("a shard named in the index is missing") {
    expect_refused(index_with({{"a", s1}, {"b", s2}, {"c", s3}, {"d", "model-00004-of-00003.safetensors"}}), ip,
                   {"shard 'model-00004-of-00003.safetensors'", "cannot be read", "cannot open"});
  }
  SECTION("a tensor in the index is not in its shard") {
    // Shard 2 exists but lacks "a", which the index places there.
    expect_refused(index_with({{"a", s2}, {"b", s2}, {"c", s3}}), ip,
                   {"missing from its shard", "weight_map['a']", "'" + s2 + "'"});
    // Shard 1, also listed, holds "a": the index contradicts it.
    expect_refused(index_with({{"a", s2}, {"x", s1}, {"b", s2}, {"c", s3}}), ip,
                   {"tensor 'a'", "different shard than the index says", "'" + s1 + "'", "names '" + s2 + "'"});
    expect_refused(index_with({{"a", s1}, {"b", s2}, {"c", s3}, {"z", s3}}), ip,
                   {"missing from its shard", "weight_map['z']"});
  }
  SECTION("a shard holds a tensor the index does not list") {
    expect_refused(index_with({{"a", s1}, {"c", s3}, {"b2", s2}}), ip, {"does not list", "tensor 'b'"});
  }
  SECTION("shard names leaving the folder") {
    expect_refused(index_with({{"a", "../" + s1}}), ip, {"leaves the index's folder"});
    expect_refused(index_with({{"a", "/etc/passwd"}}), ip, {"leaves the index's folder"});
    expect_refused(index_with({{"a", 5}}), ip, {"weight_map value is not a string"});
  }
  SECTION("malformed index files") {
    write_index({{"metadata", {}}});
    expect_refused(SafetensorsModel::open(dir.path.string()), ip, {"lacks a weight_map"});
    write_index(nlohmann::json::array({1}));
    expect_refused(SafetensorsModel::open(dir.path.string()), ip, {"not a JSON object"});
    shrink::test::write_bytes(index_path, {'{', '"'});
    expect_refused(SafetensorsModel::open(dir.path.string()), ip, {"not valid JSON"});
    shrink::test::write_bytes(index_path, {});
    expect_refused(SafetensorsModel::open(dir.path.string()), ip, {"empty"});
  }
  SECTION("a broken shard is reported through the index") {
    shrink::test::write_bytes(dir / s2, {1, 2, 3});
    expect_refused(SafetensorsModel::open(ip), ip, {"shard '" + s2 + "'", "header length"});
  }
  SECTION("a folder with no model") {
    TempDir empty;
    expect_refused(SafetensorsModel::open(empty.path.string()), empty.path.string(), {"no safetensors model"});
  }
}
