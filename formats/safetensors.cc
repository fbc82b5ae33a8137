// safetensors reader and writer. Rules follow the reference Rust implementation
// (huggingface/safetensors, safetensors/src/tensor.rs: SafeTensors::read_metadata and
// Metadata::validate) and its README "Format" section; sharding follows Hugging Face
// transformers' model.safetensors.index.json.
#include "formats/safetensors.h"
#include "formats/error_text.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_set>

#include "formats/atomic_output.h"
#include "formats/byte_reader.h"

namespace shrink {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// tensor.rs MAX_HEADER_SIZE: headers above 100 MB are refused ("HeaderTooLarge").
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// An index.json lists names only; the same cap keeps a hostile one from exhausting memory.
constexpr uint64_t kMaxIndexBytes = 100'000'000;
constexpr const char* kMetadataKey = "__metadata__";
constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

struct DtypeInfo {
  StDtype dtype;
  const char* name;
  size_t size;
};
// tensor.rs `enum Dtype` and `Dtype::size()`.
constexpr DtypeInfo kDtypes[] = {
    {StDtype::F64, "F64", 8},   {StDtype::F32, "F32", 4},     {StDtype::F16, "F16", 2},
    {StDtype::BF16, "BF16", 2}, {StDtype::I64, "I64", 8},     {StDtype::I32, "I32", 4},
    {StDtype::I16, "I16", 2},   {StDtype::I8, "I8", 1},       {StDtype::U64, "U64", 8},
    {StDtype::U32, "U32", 4},   {StDtype::U16, "U16", 2},     {StDtype::U8, "U8", 1},
    {StDtype::BOOL, "BOOL", 1}, {StDtype::F8_E4M3, "F8_E4M3", 1}, {StDtype::F8_E5M2, "F8_E5M2", 1},
};

const DtypeInfo* dtype_info(StDtype d) {
  for (const DtypeInfo& i : kDtypes)
    if (i.dtype == d) return &i;
  return nullptr;
}

const DtypeInfo* dtype_from_name(const std::string& name) {
  for (const DtypeInfo& i : kDtypes)
    if (name == i.name) return &i;
  return nullptr;
}

std::string known_dtypes() {
  std::string s;
  for (const DtypeInfo& i : kDtypes) {
    if (!s.empty()) s += ' ';
    s += i.name;
  }
  return s;
}

// "<file>: <what> (<field>, <value>, <rule>)"
Error err(const std::string& file, const std::string& what, const std::string& field, const std::string& value,
          const std::string& rule) {
  return make_error(file + ": " + what + " (" + field + ", " + value + ", " + rule + ")");
}

std::string quoted_name(const std::string& s, size_t max_len = 80) {
  return quote_untrusted(s, max_len);
}

// A short rendering of a JSON value for error messages.
std::string brief(const json& j) {
  std::string s = j.dump(-1, ' ', true, json::error_handler_t::replace);
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Parses a JSON document, refusing duplicate keys in the top-level object (README: "Duplicate
// keys are disallowed"; nlohmann would silently keep the last one, which could hide an
// overlapping entry).
Result<json> parse_json(const std::string& file, const char* what, const uint8_t* p, size_t n) {
  std::string duplicate;
  std::unordered_set<std::string> top_keys;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      const std::string& k = parsed.get_ref<const std::string&>();
      if (!top_keys.insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(p, p + n, cb);
  } catch (const json::exception& e) {
    return err(file, std::string(what) + " is not valid JSON", what, std::to_string(n) + " bytes", e.what());
  }
  if (!duplicate.empty())
    return err(file, std::string("duplicate key in the ") + what, what, quoted_name(duplicate), "keys must be unique");
  return j;
}

// One entry of the header, checked alone; offsets are relative to the data buffer.
struct Entry {
  StTensor t;
  uint64_t begin = 0, end = 0;
};

Result<Entry> parse_entry(const std::string& file, const std::string& name, const json& v, uint64_t buffer_size) {
  const std::string field = "tensor " + quoted_name(name);
  if (!v.is_object())
    return err(file, "header entry is not an object", field, brief(v),
               "must be {\"dtype\", \"shape\", \"data_offsets\"}");
  for (const char* k : {"dtype", "shape", "data_offsets"})
    if (!v.contains(k))
      return err(file, std::string("header entry lacks \"") + k + "\"", field, brief(v),
                 "every tensor needs dtype, shape and data_offsets");
  Entry e;
  e.t.name = name;
  e.t.file = file;

  const json& dtype = v["dtype"];
  if (!dtype.is_string())
    return err(file, "dtype is not a string", field + " dtype", brief(dtype), "must be one of " + known_dtypes());
  const DtypeInfo* di = dtype_from_name(dtype.get_ref<const std::string&>());
  if (di == nullptr)
    return err(file, "unknown dtype " + quoted_name(dtype.get_ref<const std::string&>()), field + " dtype",
               quoted_name(dtype.get_ref<const std::string&>()), "must be one of " + known_dtypes());
  e.t.dtype = di->dtype;

  const json& shape = v["shape"];
  if (!shape.is_array())
    return err(file, "shape is not an array", field + " shape", brief(shape), "must be an array of integers >= 0");
  uint64_t n_elements = 1;
  bool overflow = false;
  for (const json& d : shape) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      return err(file, "invalid dimension", field + " shape", brief(shape),
                 "each dimension must be an integer in 0..INT64_MAX");
    uint64_t x = d.get<uint64_t>();
    e.t.shape.push_back(static_cast<int64_t>(x));
    overflow = overflow || !checked_mul(n_elements, x, &n_elements);
  }
  uint64_t n_bytes = 0;
  // tensor.rs ValidationOverflow; the element count must also fit the int64 n_elements().
  if (overflow || n_elements > static_cast<uint64_t>(INT64_MAX) || !checked_mul(n_elements, di->size, &n_bytes))
    return err(file, "shape product overflows", field + " shape", shape_string(e.t.shape),
               "elements times dtype size must fit in 64 bits");
  e.t.n_bytes = n_bytes;

  const json& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
    return err(file, "invalid data_offsets", field + " data_offsets", brief(off),
               "must be [begin, end], two integers >= 0");
  e.begin = off[0].get<uint64_t>();
  e.end = off[1].get<uint64_t>();
  const std::string range = "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
  if (e.end < e.begin)
    return err(file, "data_offsets end before they begin", field + " data_offsets", range, "must have begin <= end");
  if (e.end > buffer_size)
    return err(file, "tensor data lies outside the data buffer", field + " data_offsets", range,
               "must end within the " + std::to_string(buffer_size) + "-byte buffer (truncated file?)");
  if (e.end - e.begin != n_bytes)
    return err(file, "tensor byte size does not match its shape", field + " data_offsets", range,
               std::to_string(e.end - e.begin) + " bytes but " + std::string(di->name) + " " +
                   shape_string(e.t.shape) + " needs " + std::to_string(n_bytes));
  return e;
}

// Checks a tensor to be written and returns its byte size.
Result<uint64_t> check_write_tensor(const std::string& path, const StWriteTensor& t) {
  const std::string field = "tensor " + quoted_name(t.name);
  if (t.name == kMetadataKey)
    return err(path, "reserved tensor name", field, quoted_name(t.name), "__metadata__ holds the metadata map");
  const DtypeInfo* di = dtype_info(t.dtype);
  if (di == nullptr)
    return err(path, "unknown dtype", field + " dtype", std::to_string(static_cast<int>(t.dtype)),
               "must be a StDtype");
  uint64_t n = di->size;
  for (int64_t d : t.shape) {
    if (d < 0) return err(path, "negative dimension", field + " shape", shape_string(t.shape), "must be >= 0");
    if (!checked_mul(n, static_cast<uint64_t>(d), &n))
      return err(path, "shape product overflows", field + " shape", shape_string(t.shape), "must fit in 64 bits");
  }
  if (n > 0 && t.data == nullptr) return err(path, "tensor data is null", field, "nullptr", "must point to the bytes");
  return n;
}

// The header bytes (JSON padded with spaces to a multiple of 8, as tensor.rs prepare() does, so
// the data buffer starts 8-aligned). Tensors keep the caller's order; the reference writer
// instead sorts by dtype size so every tensor is aligned to its element, which the caller can
// do by ordering the tensors the same way.
Result<std::string> build_header(const std::string& path, const std::vector<const StWriteTensor*>& tensors,
                                 const std::map<std::string, std::string>& metadata, uint64_t* data_size) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    h[kMetadataKey] = std::move(m);
  }
  std::unordered_set<std::string> names;
  uint64_t offset = 0;
  for (const StWriteTensor* t : tensors) {
    SHRINK_ASSIGN(uint64_t n, check_write_tensor(path, *t));
    if (!names.insert(t->name).second)
      return err(path, "duplicate tensor name", "tensor " + quoted_name(t->name), quoted_name(t->name), "names must be unique");
    uint64_t end;
    if (!checked_add(offset, n, &end))
      return err(path, "data size overflows", "tensor " + quoted_name(t->name), std::to_string(n), "must fit in 64 bits");
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = dtype_info(t->dtype)->name;
    e["shape"] = t->shape;
    e["data_offsets"] = {offset, end};
    h[t->name] = std::move(e);
    offset = end;
  }
  *data_size = offset;
  std::string s;
  try {
    s = h.dump();  // compact, as serde_json::to_string
  } catch (const nlohmann::json::exception& e) {
    return err(path, "a tensor name or metadata string is not valid UTF-8", "header", "JSON", e.what());
  }
  s.append((8 - s.size() % 8) % 8, ' ');
  if (s.size() > kMaxHeaderBytes)
    return err(path, "header too large", "header length", std::to_string(s.size()),
               "readers refuse headers above 100000000 bytes (safetensors MAX_HEADER_SIZE)");
  return s;
}

Status write_one(const std::string& path, const std::vector<const StWriteTensor*>& tensors,
                 const std::map<std::string, std::string>& metadata) {
  uint64_t data_size = 0;
  SHRINK_ASSIGN(std::string header, build_header(path, tensors, metadata, &data_size));
  SHRINK_ASSIGN(AtomicOutput out, AtomicOutput::create(path));
  uint64_t n = header.size();
  SHRINK_CHECK(out.write(&n, sizeof n));  // little-endian host, as the format
  SHRINK_CHECK(out.write(header.data(), header.size()));
  for (const StWriteTensor* t : tensors) {
    uint64_t bytes = check_write_tensor(path, *t).value();  // checked in build_header
    SHRINK_CHECK(out.write(t->data, static_cast<size_t>(bytes)));
  }
  return out.commit();  // on any failure above, the temp file goes with `out`
}

// Shard file names from an index must stay inside the index's folder.
bool safe_relative_name(const std::string& name) {
  if (name.empty()) return false;
  fs::path p(name);
  if (p.is_absolute()) return false;
  for (const fs::path& part : p)
    if (part == "..") return false;
  return true;
}

}  // namespace

const char* st_dtype_name(StDtype d) {
  const DtypeInfo* i = dtype_info(d);
  return i ? i->name : "invalid";
}

size_t st_dtype_size(StDtype d) {
  const DtypeInfo* i = dtype_info(d);
  return i ? i->size : 0;
}

int64_t StTensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // the reader checked the product fits
  return n;
}

// ---- SafetensorsFile ----

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  SHRINK_ASSIGN(std::shared_ptr<MappedFile> mapping, MappedFile::open(path));
  SafetensorsFile f;
  f.path_ = path;
  f.file_ = mapping;
  ByteReader r(mapping->data(), mapping->size(), path);

  SHRINK_ASSIGN(uint64_t n, r.read<uint64_t>("header length"));
  if (n > kMaxHeaderBytes)
    return err(path, "header length too large", "header length", std::to_string(n),
               "at most 100000000 bytes (safetensors MAX_HEADER_SIZE)");
  if (n > r.remaining())
    return err(path, "header length exceeds the file", "header length", std::to_string(n),
               "only " + std::to_string(r.remaining()) + " bytes follow it (truncated file?)");
  SHRINK_ASSIGN(const uint8_t* header, r.bytes(n, "header"));
  // README: the header "MUST begin with a { character" (tensor.rs InvalidHeaderStart).
  if (n == 0 || header[0] != '{')
    return err(path, "header does not start with '{'", "header", n == 0 ? "empty" : quoted_name(std::string(1, header[0])),
               "must be a JSON object");
  SHRINK_ASSIGN(json j, parse_json(path, "header", header, static_cast<size_t>(n)));
  if (!j.is_object())
    return err(path, "header is not a JSON object", "header", brief(j), "must be {name: entry, ...}");

  const uint64_t buffer_size = r.remaining();
  const uint8_t* buffer = mapping->data() + r.offset();
  std::vector<Entry> entries;
  for (const auto& [name, v] : j.items()) {
    if (name == kMetadataKey) {
      if (!v.is_object())
        return err(path, "__metadata__ is not an object", kMetadataKey, brief(v), "must map strings to strings");
      for (const auto& [k, mv] : v.items()) {
        if (!mv.is_string())
          return err(path, "__metadata__ value is not a string",
                     std::string(kMetadataKey) + "[" + quoted_name(k) + "]", brief(mv),
                     "must map strings to strings (tensor.rs HashMap<String, String>)");
        f.metadata_[k] = mv.get<std::string>();
      }
      continue;
    }
    SHRINK_ASSIGN(Entry e, parse_entry(path, name, v, buffer_size));
    entries.push_back(std::move(e));
  }

  // tensor.rs Metadata::validate: sorted by offsets, each tensor starts where the previous one
  // ends, starting at 0, and the last one ends at the end of the file: no overlap, no hole
  // (README: the buffer "cannot contain holes", which prevents polyglot files).
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  std::string prev = "the start of the buffer";
  for (const Entry& e : entries) {
    const std::string field = "tensor " + quoted_name(e.t.name) + " data_offsets";
    const std::string range = "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
    if (e.begin < expected)
      return err(path, "tensors overlap", field, range,
                 "must not begin before " + prev + " ends at " + std::to_string(expected));
    if (e.begin > expected)
      return err(path, "hole in the data buffer", field, range,
                 "must begin where " + prev + " ends, at " + std::to_string(expected) + " (no holes allowed)");
    expected = e.end;
    prev = quoted_name(e.t.name);
  }
  if (expected != buffer_size)
    return err(path, "data buffer not fully covered by tensors", "data buffer", std::to_string(buffer_size) + " bytes",
               "the last tensor must end at the end of the file, but tensors end at " + std::to_string(expected));

  for (Entry& e : entries) {
    e.t.data = buffer + e.begin;
    f.index_.emplace(e.t.name, f.tensors_.size());
    f.tensors_.push_back(std::move(e.t));
  }
  return f;
}

const StTensor* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

// ---- SafetensorsModel ----

namespace {

struct ModelParts {
  std::vector<SafetensorsFile> shards;
  std::vector<std::string> files;
};

Result<ModelParts> open_index_parts(const std::string& index_path) {
  SHRINK_ASSIGN(std::shared_ptr<MappedFile> mapping, MappedFile::open(index_path));
  if (mapping->size() > kMaxIndexBytes)
    return err(index_path, "index file too large", "file size", std::to_string(mapping->size()),
               "at most 100000000 bytes");
  if (mapping->size() == 0) return err(index_path, "index file is empty", "file size", "0", "must hold a JSON object");
  SHRINK_ASSIGN(json j, parse_json(index_path, "index", mapping->data(), mapping->size()));
  if (!j.is_object()) return err(index_path, "index is not a JSON object", "index", brief(j), "must be an object");
  if (!j.contains("weight_map") || !j["weight_map"].is_object())
    return err(index_path, "index lacks a weight_map object", "weight_map",
               j.contains("weight_map") ? brief(j["weight_map"]) : "missing", "must map tensor names to shard files");
  const json& wm = j["weight_map"];

  std::map<std::string, std::string> weight_map;
  std::set<std::string> shard_names;  // sorted: model-00001-of-0000n first
  for (const auto& [name, file] : wm.items()) {
    if (!file.is_string())
      return err(index_path, "weight_map value is not a string", "weight_map[" + quoted_name(name) + "]",
                 brief(file), "must name a shard file");
    const std::string& shard = file.get_ref<const std::string&>();
    if (!safe_relative_name(shard))
      return err(index_path, "shard file name leaves the index's folder", "weight_map[" + quoted_name(name) + "]",
                 quoted_name(shard), "must be a relative path without '..'");
    weight_map[name] = shard;
    shard_names.insert(shard);
  }

  const fs::path dir = fs::path(index_path).parent_path();
  ModelParts parts;
  for (const std::string& shard : shard_names) {
    const std::string shard_path = (dir / shard).string();
    auto f = SafetensorsFile::open(shard_path);
    if (!f.ok())
      return make_error(index_path + ": shard " + quoted_name(shard) + " named in weight_map cannot be read: " +
                        f.error().message);
    for (const StTensor& t : f->tensors()) {
      auto it = weight_map.find(t.name);
      if (it == weight_map.end())
        return err(index_path, "shard holds a tensor the index does not list", "tensor " + quoted_name(t.name),
                   quoted_name(shard), "every tensor of every shard must be in weight_map");
      if (it->second != shard)
        return err(index_path, "tensor found in a different shard than the index says", "tensor " + quoted_name(t.name),
                   quoted_name(shard), "weight_map names " + quoted_name(it->second));
    }
    parts.files.push_back(shard_path);
    parts.shards.push_back(std::move(f).value());
  }
  for (const auto& [name, shard] : weight_map) {
    size_t i = static_cast<size_t>(std::distance(shard_names.begin(), shard_names.find(shard)));
    if (parts.shards[i].find(name) == nullptr)
      return err(index_path, "tensor listed in the index is missing from its shard", "weight_map[" + quoted_name(name) + "]",
                 quoted_name(shard), "the shard must hold every tensor the index maps to it");
  }
  return parts;
}

}  // namespace

Result<SafetensorsModel> SafetensorsModel::open_index(const std::string& index_path) {
  SHRINK_ASSIGN(ModelParts parts, open_index_parts(index_path));
  SafetensorsModel m;
  m.shards_ = std::move(parts.shards);
  m.files_ = std::move(parts.files);
  for (const SafetensorsFile& s : m.shards_)
    for (const StTensor& t : s.tensors()) {
      m.index_.emplace(t.name, m.tensors_.size());
      m.tensors_.push_back(t);
    }
  return m;
}

Result<SafetensorsModel> SafetensorsModel::open(const std::string& path) {
  std::error_code ec;
  fs::path p(path);
  std::string target = path;
  bool index = false;
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / kIndexName, ec)) {
      target = (p / kIndexName).string();
      index = true;
    } else if (fs::exists(p / kSingleName, ec)) {
      target = (p / kSingleName).string();
    } else {
      // A folder with one differently named .safetensors file (adapter_model.safetensors, ...).
      std::vector<std::string> found;
      for (const auto& entry : fs::directory_iterator(p, ec))
        if (entry.path().extension() == ".safetensors") found.push_back(entry.path().string());
      if (found.size() != 1)
        return err(path, "no safetensors model in this folder", "folder",
                   std::to_string(found.size()) + " .safetensors files",
                   std::string("needs ") + kIndexName + ", " + kSingleName + " or exactly one .safetensors file");
      target = found[0];
    }
  } else if (p.extension() == ".json") {
    index = true;
  }
  if (index) return open_index(target);

  SHRINK_ASSIGN(SafetensorsFile f, SafetensorsFile::open(target));
  SafetensorsModel m;
  m.files_.push_back(target);
  m.tensors_ = f.tensors();
  for (size_t i = 0; i < m.tensors_.size(); ++i) m.index_.emplace(m.tensors_[i].name, i);
  m.shards_.push_back(std::move(f));
  return m;
}

const StTensor* SafetensorsModel::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

// ---- Writers ----

Status write_safetensors(const std::string& path, const std::vector<StWriteTensor>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  std::vector<const StWriteTensor*> all;
  all.reserve(tensors.size());
  for (const StWriteTensor& t : tensors) all.push_back(&t);
  return write_one(path, all, metadata);
}

Status write_safetensors_sharded(const std::string& dir, const std::vector<StWriteTensor>& tensors,
                                 uint64_t max_shard_bytes, const std::map<std::string, std::string>& metadata) {
  if (max_shard_bytes == 0) return err(dir, "invalid shard size", "max_shard_bytes", "0", "must be > 0");
  // Greedy split in the given order, as transformers' shard_checkpoint: a new shard starts when
  // the next tensor would overflow the current one; a tensor larger than the limit gets a
  // shard of its own.
  std::vector<std::vector<const StWriteTensor*>> shards;
  uint64_t shard_bytes = 0, total = 0;
  std::unordered_set<std::string> names;
  for (const StWriteTensor& t : tensors) {
    SHRINK_ASSIGN(uint64_t n, check_write_tensor(dir, t));
    if (!names.insert(t.name).second)
      return err(dir, "duplicate tensor name", "tensor " + quoted_name(t.name), quoted_name(t.name), "names must be unique");
    if (!checked_add(total, n, &total))
      return err(dir, "total size overflows", "tensor " + quoted_name(t.name), std::to_string(n), "must fit in 64 bits");
    if (shards.empty() || (shard_bytes > 0 && n > max_shard_bytes - std::min(shard_bytes, max_shard_bytes))) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(&t);
    shard_bytes += n;
  }

  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return err(dir, "cannot create the output folder", "folder", quoted_name(dir), ec.message());
  const fs::path d(dir);
  if (shards.size() <= 1) {
    if (shards.empty()) shards.emplace_back();
    return write_one((d / kSingleName).string(), shards[0], metadata);
  }

  // Shards are committed one by one (holding all of them open would hold a write buffer per
  // shard); on a failure the ones already committed by this call are removed again.
  std::vector<std::string> committed;
  auto undo = [&](Error e) -> Status {
    for (const std::string& f : committed) fs::remove(f, ec);
    return e;
  };
  json weight_map = json::object();
  const size_t n_shards = shards.size();
  for (size_t i = 0; i < n_shards; ++i) {
    // transformers' naming: model-00001-of-00003.safetensors (5 digits).
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, n_shards);
    Status s = write_one((d / name).string(), shards[i], metadata);
    if (!s.ok()) return undo(s.error());
    committed.push_back((d / name).string());
    for (const StWriteTensor* t : shards[i]) weight_map[t->name] = name;
  }
  // transformers writes json.dumps(index, indent=2, sort_keys=True) + "\n" (ASCII-escaped).
  json index = {{"metadata", {{"total_size", total}}}, {"weight_map", std::move(weight_map)}};
  std::string text;
  try {
    text = index.dump(2, ' ', true) + "\n";
  } catch (const json::exception& e) {
    return undo(err(dir, "a tensor name is not valid UTF-8", "index", "JSON", e.what()));
  }
  auto out = AtomicOutput::create((d / kIndexName).string());
  if (!out.ok()) return undo(out.error());
  Status s = out->write(text.data(), text.size());
  if (s.ok()) s = out->commit();
  if (!s.ok()) return undo(s.error());
  return {};
}

}  // namespace shrink
