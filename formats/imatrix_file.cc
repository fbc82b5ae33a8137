// Importance-matrix files. Every rule below cites where llama.cpp takes it from; the file
// abbreviations are the ones in imatrix_file.h.
#include "formats/imatrix_file.h"
#include "formats/error_text.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <set>

#include "formats/byte_reader.h"
#include "formats/gguf.h"
#include "formats/mapped_file.h"

namespace shrink {
namespace {

// imatrix.cpp save_imatrix: the key names and the value of general.type.
constexpr const char* kTypeKey = "general.type";
constexpr const char* kTypeValue = "imatrix";
constexpr const char* kDatasetsKey = "imatrix.datasets";
constexpr const char* kChunkCountKey = "imatrix.chunk_count";
constexpr const char* kChunkSizeKey = "imatrix.chunk_size";
// imatrix.cpp: tensor names are "%s.in_sum2" and "%s.counts" of the weight name.
const std::string kSumSuffix = ".in_sum2";
const std::string kCountSuffix = ".counts";
// llama.cpp refuses GGUF tensor names of 64 bytes or more (GGML_MAX_NAME = 64 with the NUL).
constexpr size_t kMaxTensorName = 63;
// Hostile-input guards, not format limits. Weight names in llama.cpp are below 64 bytes; 4096
// leaves room for any converter's names while refusing garbage lengths before reading them.
constexpr int64_t kMaxDatNameLength = 4096;
// Smallest legacy entry: i32 name length, i32 ncall, i32 nval and one f32 value (name length
// counted as 0 here so the bound stays conservative).
constexpr uint64_t kMinDatEntryBytes = 4 + 4 + 4 + 4;
// loader.cpp rounds each count with std::lround into an int64; 2^62 keeps that well defined.
constexpr double kMaxCount = 4611686018427387904.0;  // 2^62

std::string quoted(const std::string& s, size_t max_len = 80) {
  return quote_untrusted(s, max_len);
}

std::string num(double x) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", x);
  return buf;
}

// "<file>: <what> (<field>, <value>, <rule>)", the form gguf.cc uses.
Error err(const std::string& file, const std::string& what, const std::string& field, const std::string& value,
          const std::string& rule) {
  return make_error(file + ": " + what + " (" + field + ", " + value + ", " + rule + ")");
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Sums of squares and counts: finite and non-negative (-0 passes); counts also at most 2^62.
Status check_values(const std::string& file, const std::string& what, const std::string& field_prefix,
                    const float* v, size_t n, bool is_count) {
  for (size_t i = 0; i < n; ++i) {
    float x = v[i];
    const char* problem = nullptr;
    if (std::isnan(x)) problem = "NaN";
    else if (std::isinf(x)) problem = "infinite";
    else if (x < 0) problem = "negative";
    else if (is_count && x > kMaxCount) problem = "absurdly large";
    if (problem)
      return err(file, std::string(problem) + " " + what, field_prefix + "[" + std::to_string(i) + "]", num(x),
                 is_count ? "counts must be finite, >= 0 and <= 2^62 (llama.cpp rounds them to int64)"
                          : "a sum of squared activations must be finite and >= 0");
  }
  return {};
}

// The rules every entry obeys, for entries built in memory (the writer); the readers check the
// same facts against the file's own fields as they go.
Status check_entry(const std::string& file, const ImatrixEntry& e) {
  const std::string field = "entry " + quoted(e.name);
  if (e.name.empty()) return err(file, "empty weight name", field, "''", "every entry names a weight tensor");
  if (e.n_cols < 1 || e.n_mat < 1)
    return err(file, "bad entry shape", field, "n_cols " + std::to_string(e.n_cols) + ", n_mat " +
                                                   std::to_string(e.n_mat), "both must be >= 1");
  uint64_t n = 0;
  if (!checked_mul(static_cast<uint64_t>(e.n_cols), static_cast<uint64_t>(e.n_mat), &n) ||
      n != e.in_sum2.size())
    return err(file, "in_sum2 size does not match the shape", field, std::to_string(e.in_sum2.size()) + " values",
               "must hold n_cols * n_mat = " + std::to_string(e.n_cols) + " * " + std::to_string(e.n_mat));
  size_t want_counts = e.legacy ? 1 : static_cast<size_t>(e.n_mat);
  if (e.counts.size() != want_counts)
    return err(file, "counts size does not match the shape", field, std::to_string(e.counts.size()) + " counts",
               e.legacy ? "a legacy entry holds exactly one count (ncall)" : "must hold one count per matrix (n_mat)");
  if (e.legacy && e.n_mat != 1)
    return err(file, "legacy entry with experts", field, "n_mat " + std::to_string(e.n_mat),
               "the .dat form does not record experts; a legacy entry has n_mat 1");
  SHRINK_CHECK(check_values(file, "in_sum2 value", field + " in_sum2", e.in_sum2.data(), e.in_sum2.size(), false));
  SHRINK_CHECK(check_values(file, "count", field + " counts", e.counts.data(), e.counts.size(), true));
  return {};
}

// ---- GGUF form ----

// ggml shape of in_sum2 / counts -> (n_cols or 1, n_mat); any dims past the second must be 1.
bool two_dims(const std::vector<int64_t>& shape, int64_t* d0, int64_t* d1) {
  if (shape.empty()) return false;
  for (size_t i = 2; i < shape.size(); ++i)
    if (shape[i] != 1) return false;
  *d0 = shape[0];
  *d1 = shape.size() >= 2 ? shape[1] : 1;
  return true;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "{";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "}";
}

std::vector<float> copy_floats(const GgufTensorInfo& t) {
  std::vector<float> v(static_cast<size_t>(t.n_elements()));
  if (!v.empty()) std::memcpy(v.data(), t.data, v.size() * sizeof(float));
  return v;
}

Result<int64_t> u32_key(const GgufFile& f, const char* key) {
  const GgufValue* v = f.find(key);
  if (!v)
    return err(f.path(), "missing imatrix metadata", key, "absent",
               "llama-quantize refuses a GGUF imatrix without imatrix.datasets, imatrix.chunk_count and "
               "imatrix.chunk_size");
  std::optional<int64_t> x = v->as_int();
  if (!x || *x < 0 || *x > static_cast<int64_t>(std::numeric_limits<uint32_t>::max()))
    return err(f.path(), "bad imatrix metadata", key, v->to_display(), "must be an integer in [0, 2^32) (written as u32)");
  return *x;
}

Result<Imatrix> read_gguf(const std::string& path) {
  SHRINK_ASSIGN(GgufFile f, GgufFile::open(path));
  Imatrix m;
  m.format = ImatrixFormat::kGguf;

  if (const GgufValue* t = f.find(kTypeKey)) {
    const std::string* s = t->as_string();
    if (!s || *s != kTypeValue)
      return err(path, "not an importance matrix", kTypeKey, t->to_display(),
                 "an imatrix GGUF has general.type = \"imatrix\"");
  }
  const GgufValue* ds = f.find(kDatasetsKey);
  if (!ds)
    return err(path, "missing imatrix metadata", kDatasetsKey, "absent",
               "llama-quantize refuses a GGUF imatrix without imatrix.datasets, imatrix.chunk_count and "
               "imatrix.chunk_size");
  const GgufArray* arr = ds->as_array();
  if (!arr || arr->elem_type != GgufType::STRING)
    return err(path, "bad imatrix metadata", kDatasetsKey, ds->to_display(), "must be an array of strings");
  for (const GgufValue& item : arr->items) m.datasets.push_back(*item.as_string());
  SHRINK_ASSIGN(m.chunk_count, u32_key(f, kChunkCountKey));
  SHRINK_ASSIGN(m.chunk_size, u32_key(f, kChunkSizeKey));

  if (f.tensors().empty())
    return err(path, "no entries", "tensor count", "0", "an imatrix holds at least one <weight>.in_sum2/.counts pair");

  // loader.cpp pairs tensors by the weight name left after removing the suffix (std::map: name order).
  std::map<std::string, std::pair<const GgufTensorInfo*, const GgufTensorInfo*>> pairs;
  for (const GgufTensorInfo& t : f.tensors()) {
    std::string field = "tensor " + quoted(t.name);
    bool is_sum = ends_with(t.name, kSumSuffix), is_count = ends_with(t.name, kCountSuffix);
    if (!is_sum && !is_count)
      return err(path, "unexpected tensor in an imatrix", field, quoted(t.name),
                 "names must be <weight>.in_sum2 or <weight>.counts");
    std::string weight = t.name.substr(0, t.name.size() - (is_sum ? kSumSuffix : kCountSuffix).size());
    if (weight.empty()) return err(path, "tensor names no weight", field, quoted(t.name), "must be <weight>" +
                                                                                          (is_sum ? kSumSuffix : kCountSuffix));
    if (t.type != TypeId::F32)
      return err(path, "wrong tensor type", field, std::string(type_name(t.type)),
                 "in_sum2 and counts must be F32 (loader.cpp)");
    auto& p = pairs[weight];
    (is_sum ? p.first : p.second) = &t;
  }

  for (const auto& [weight, p] : pairs) {
    const GgufTensorInfo* sum = p.first;
    const GgufTensorInfo* cnt = p.second;
    if (!sum || !cnt)
      return err(path, "mismatched sums and counts", "entry " + quoted(weight),
                 std::string(sum ? kSumSuffix : kCountSuffix) + " without " + (sum ? kCountSuffix : kSumSuffix),
                 "every weight has both tensors (loader.cpp)");
    int64_t n_cols = 0, n_mat = 0, one = 0, n_mat_c = 0;
    const std::string sum_field = "tensor " + quoted(sum->name) + " shape";
    const std::string cnt_field = "tensor " + quoted(cnt->name) + " shape";
    if (!two_dims(sum->shape, &n_cols, &n_mat) || n_cols < 1 || n_mat < 1)
      return err(path, "bad in_sum2 shape", sum_field, shape_str(sum->shape),
                 "must be {n_cols} or {n_cols, n_mat} with both >= 1 (imatrix.cpp)");
    if (!two_dims(cnt->shape, &one, &n_mat_c) || one != 1 || n_mat_c != n_mat)
      return err(path, "counts shape does not match in_sum2", cnt_field, shape_str(cnt->shape),
                 "must be {1, n_mat} with n_mat = " + std::to_string(n_mat) + " from " + shape_str(sum->shape) +
                     " (imatrix.cpp)");
    ImatrixEntry e;
    e.name = weight;
    e.n_cols = n_cols;
    e.n_mat = n_mat;
    e.in_sum2 = copy_floats(*sum);
    e.counts = copy_floats(*cnt);
    SHRINK_CHECK(check_values(path, "in_sum2 value", "tensor " + quoted(sum->name), e.in_sum2.data(),
                              e.in_sum2.size(), false));
    SHRINK_CHECK(check_values(path, "count", "tensor " + quoted(cnt->name), e.counts.data(), e.counts.size(), true));
    m.entries.push_back(std::move(e));
  }
  return m;
}

// ---- Legacy .dat form ----

Result<Imatrix> read_dat(const std::string& path, const MappedFile& file) {
  ByteReader r(file.data(), file.size(), path);
  Imatrix m;
  m.format = ImatrixFormat::kLegacyDat;

  size_t at = r.offset();
  SHRINK_ASSIGN(int32_t n_entries, r.read<int32_t>("n_entries"));
  // loader.cpp: "no data in file" when n_entries < 1.
  if (n_entries < 1)
    return err(path, "no entries", "n_entries at offset " + std::to_string(at), std::to_string(n_entries),
               "a legacy imatrix holds at least one entry");
  if (static_cast<uint64_t>(n_entries) > r.remaining() / kMinDatEntryBytes)
    return err(path, "more entries than the file can hold", "n_entries at offset " + std::to_string(at),
               std::to_string(n_entries),
               "each entry takes at least " + std::to_string(kMinDatEntryBytes) + " bytes and " +
                   std::to_string(r.remaining()) + " remain (not an imatrix file?)");

  std::set<std::string> seen;
  for (int32_t i = 0; i < n_entries; ++i) {
    const std::string entry = "entry " + std::to_string(i);
    at = r.offset();
    SHRINK_ASSIGN(int32_t len, r.read<int32_t>((entry + " name length").c_str()));
    if (len < 1 || len > kMaxDatNameLength)
      return err(path, "bad name length", entry + " name length at offset " + std::to_string(at), std::to_string(len),
                 "must be in [1, " + std::to_string(kMaxDatNameLength) + "]");
    SHRINK_ASSIGN(const uint8_t* name_bytes, r.bytes(static_cast<uint64_t>(len), (entry + " name").c_str()));
    std::string name(reinterpret_cast<const char*>(name_bytes), static_cast<size_t>(len));
    const std::string field = entry + " " + quoted(name);
    // loader.cpp builds the name from a C string, so a NUL would silently shorten it.
    if (name.find('\0') != std::string::npos)
      return err(path, "NUL byte in weight name", field + " name at offset " + std::to_string(at + 4), quoted(name),
                 "names are plain text");
    if (!seen.insert(name).second)
      return err(path, "duplicate weight name", field + " at offset " + std::to_string(at), quoted(name),
                 "names must be unique");
    at = r.offset();
    SHRINK_ASSIGN(int32_t ncall, r.read<int32_t>((entry + " ncall").c_str()));
    // imatrix.cpp writes ncall = ceil(max count / chunk_size) >= 0.
    if (ncall < 0)
      return err(path, "negative ncall", field + " ncall at offset " + std::to_string(at), std::to_string(ncall),
                 "must be >= 0");
    at = r.offset();
    SHRINK_ASSIGN(int32_t nval, r.read<int32_t>((entry + " nval").c_str()));
    if (nval < 1)
      return err(path, "bad value count", field + " nval at offset " + std::to_string(at), std::to_string(nval),
                 "must be >= 1 (loader.cpp)");
    at = r.offset();
    SHRINK_ASSIGN(const uint8_t* vals, r.bytes(static_cast<uint64_t>(nval) * 4, (entry + " values").c_str()));
    ImatrixEntry e;
    e.name = std::move(name);
    e.legacy = true;
    e.n_cols = nval;
    e.n_mat = 1;
    e.in_sum2.resize(static_cast<size_t>(nval));
    std::memcpy(e.in_sum2.data(), vals, e.in_sum2.size() * sizeof(float));
    e.counts = {static_cast<float>(ncall)};
    SHRINK_CHECK(check_values(path, "value", field + " values at offset " + std::to_string(at), e.in_sum2.data(),
                              e.in_sum2.size(), false));
    m.entries.push_back(std::move(e));
  }

  // Trailer (imatrix.cpp save_imatrix_legacy): i32 last_call, i32 length, dataset name. Older
  // writers stopped after last_call; none writes anything else.
  if (r.remaining() > 0) {
    at = r.offset();
    SHRINK_ASSIGN(int32_t last_call, r.read<int32_t>("trailer last_call"));
    if (last_call < 0)
      return err(path, "negative chunk count", "trailer last_call at offset " + std::to_string(at),
                 std::to_string(last_call), "must be >= 0");
    m.chunk_count = last_call;
    if (r.remaining() > 0) {
      at = r.offset();
      SHRINK_ASSIGN(int32_t len, r.read<int32_t>("trailer dataset name length"));
      if (len < 0)
        return err(path, "negative dataset name length", "trailer dataset name length at offset " + std::to_string(at),
                   std::to_string(len), "must be >= 0");
      SHRINK_ASSIGN(const uint8_t* p, r.bytes(static_cast<uint64_t>(len), "trailer dataset name"));
      // loader.cpp keeps a dataset only when its length is > 0, and reads it as a C string.
      if (len > 0) {
        std::string ds(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
        m.datasets.push_back(ds.substr(0, ds.find('\0')));
      }
      if (r.remaining() > 0)
        return err(path, "trailing bytes after the dataset name", "offset " + std::to_string(r.offset()),
                   std::to_string(r.remaining()) + " bytes", "the dataset name ends the file");
    }
  }
  std::sort(m.entries.begin(), m.entries.end(),
            [](const ImatrixEntry& a, const ImatrixEntry& b) { return a.name < b.name; });
  return m;
}

}  // namespace

const ImatrixEntry* Imatrix::find(const std::string& name) const {
  for (const ImatrixEntry& e : entries)
    if (e.name == name) return &e;
  return nullptr;
}

Result<Imatrix> read_imatrix(const std::string& path) {
  SHRINK_ASSIGN(std::shared_ptr<MappedFile> file, MappedFile::open(path));
  if (file->size() >= 4 && std::memcmp(file->data(), "GGUF", 4) == 0) {
    file.reset();  // GgufFile maps it itself
    return read_gguf(path);
  }
  return read_dat(path, *file);
}

Status write_imatrix_gguf(const std::string& path, const Imatrix& m) {
  const uint64_t u32_max = std::numeric_limits<uint32_t>::max();
  if (m.chunk_count < 0 || static_cast<uint64_t>(m.chunk_count) > u32_max)
    return err(path, "chunk count out of range", kChunkCountKey, std::to_string(m.chunk_count), "written as u32");
  if (m.chunk_size < 0 || static_cast<uint64_t>(m.chunk_size) > u32_max)
    return err(path, "chunk size out of range", kChunkSizeKey, std::to_string(m.chunk_size), "written as u32");
  if (m.entries.empty())
    return err(path, "no entries", "entries", "0", "llama.cpp refuses an imatrix without tensors");

  std::vector<const ImatrixEntry*> order;
  for (const ImatrixEntry& e : m.entries) {
    SHRINK_CHECK(check_entry(path, e));
    if (e.name.size() + kSumSuffix.size() > kMaxTensorName)
      return err(path, "weight name too long", "entry " + quoted(e.name), std::to_string(e.name.size()) + " bytes",
                 "<name>.in_sum2 must fit GGUF's " + std::to_string(kMaxTensorName) + "-byte tensor names");
    order.push_back(&e);
  }
  // imatrix.cpp: "deterministic tensor name order".
  std::sort(order.begin(), order.end(), [](const ImatrixEntry* a, const ImatrixEntry* b) { return a->name < b->name; });
  for (size_t i = 1; i < order.size(); ++i)
    if (order[i]->name == order[i - 1]->name)
      return err(path, "duplicate weight name", "entry " + quoted(order[i]->name), quoted(order[i]->name),
                 "names must be unique");

  GgufWriter w(path);
  w.set(kTypeKey, GgufValue::str(kTypeValue));
  w.set(kDatasetsKey, GgufValue::array_str(m.datasets));
  w.set(kChunkCountKey, GgufValue::u32(static_cast<uint32_t>(m.chunk_count)));
  w.set(kChunkSizeKey, GgufValue::u32(static_cast<uint32_t>(m.chunk_size)));
  // gguf.cpp writes ggml_n_dims() dims, which drops trailing 1s: a dense weight is {n_cols}, {1}.
  for (const ImatrixEntry* e : order) {
    w.add_tensor(e->name + kSumSuffix, e->n_mat == 1 ? std::vector<int64_t>{e->n_cols}
                                                     : std::vector<int64_t>{e->n_cols, e->n_mat}, TypeId::F32);
    w.add_tensor(e->name + kCountSuffix, e->n_mat == 1 ? std::vector<int64_t>{1} : std::vector<int64_t>{1, e->n_mat},
                 TypeId::F32);
  }
  SHRINK_CHECK(w.begin());
  size_t index = 0;
  for (const ImatrixEntry* e : order) {
    SHRINK_CHECK(w.write_tensor_data(index++, e->in_sum2.data(), e->in_sum2.size() * sizeof(float)));
    if (e->legacy) {
      // stored / ncall is the legacy weight; ncall <= 0 means "use as stored", i.e. divide by 1.
      float c = e->counts[0] > 0 ? e->counts[0] : 1.0f;
      SHRINK_CHECK(w.write_tensor_data(index++, &c, sizeof c));
    } else {
      SHRINK_CHECK(w.write_tensor_data(index++, e->counts.data(), e->counts.size() * sizeof(float)));
    }
  }
  return w.finish();
}

std::vector<float> imatrix_weights(const ImatrixEntry& e, int64_t mat) {
  if (mat < 0 || mat >= e.n_mat || e.n_cols < 1) return {};
  const size_t n = static_cast<size_t>(e.n_cols);
  const size_t base = static_cast<size_t>(mat) * n;
  if (base + n > e.in_sum2.size()) return {};
  std::vector<float> w(n);
  if (e.legacy) {
    // quantize.cpp: ncall = counts[0] (int64); e[i] = sums[i] / ncall when ncall > 0, else sums[i].
    const int64_t ncall = e.counts.empty() ? 0 : static_cast<int64_t>(e.counts[0]);
    for (size_t i = 0; i < n; ++i)
      w[i] = ncall > 0 ? e.in_sum2[base + i] / static_cast<float>(ncall) : e.in_sum2[base + i];
    return w;
  }
  // loader.cpp: counts[j] = std::lround(f32 count) into int64; quantize.cpp: count = (float) that;
  // count > 0 -> sums / count, else 1 ("this tensor never got any input during calibration").
  if (static_cast<size_t>(mat) >= e.counts.size()) return {};
  const float c = e.counts[static_cast<size_t>(mat)];
  const float count = std::isfinite(c) ? static_cast<float>(static_cast<int64_t>(std::lround(c))) : 0.0f;
  for (size_t i = 0; i < n; ++i) w[i] = count > 0.0f ? e.in_sum2[base + i] / count : 1.0f;
  return w;
}

std::vector<float> imatrix_weights_all(const ImatrixEntry& e) {
  std::vector<float> all;
  for (int64_t j = 0; j < e.n_mat; ++j) {
    std::vector<float> w = imatrix_weights(e, j);
    if (w.empty()) return {};
    all.insert(all.end(), w.begin(), w.end());
  }
  return all;
}

Status check_imatrix_against(const Imatrix& m, const ImatrixShapeLookup& model_shape, const std::string& file,
                             bool unknown_names_are_errors) {
  std::optional<Error> first_size, first_unknown;
  size_t n_size = 0, n_unknown = 0;
  for (const ImatrixEntry& e : m.entries) {
    std::optional<ImatrixWeightShape> s = model_shape(e.name);
    if (!s) {
      if (unknown_names_are_errors && n_unknown++ == 0)
        first_unknown = err(file, "imatrix entry for a weight the model does not have", "entry " + quoted(e.name),
                            std::to_string(e.n_values()) + " values",
                            "every entry must name a weight of the model (computed for another model?)");
      continue;
    }
    bool ok;
    std::string got, want;
    if (e.legacy) {
      uint64_t want_n = 0;
      ok = s->n_cols >= 1 && s->n_mat >= 1 &&
           checked_mul(static_cast<uint64_t>(s->n_cols), static_cast<uint64_t>(s->n_mat), &want_n) &&
           want_n == static_cast<uint64_t>(e.n_values());
      got = std::to_string(e.n_values()) + " values";
      want = "the model tensor takes n_cols * n_mat = " + std::to_string(s->n_cols) + " * " +
             std::to_string(s->n_mat) + " values";
    } else {
      ok = e.n_cols == s->n_cols && e.n_mat == s->n_mat;
      got = "imatrix n_cols " + std::to_string(e.n_cols) + ", n_mat " + std::to_string(e.n_mat);
      want = "the model tensor has n_cols " + std::to_string(s->n_cols) + ", n_mat " + std::to_string(s->n_mat);
    }
    if (!ok && n_size++ == 0)
      first_size = err(file, "imatrix size differs from the model tensor", "entry " + quoted(e.name), got, want);
  }
  auto with_more = [](Error e, size_t n, const char* what) {
    if (n > 1) e.message += "; and " + std::to_string(n - 1) + " more " + what;
    return e;
  };
  if (first_size) return with_more(*first_size, n_size, "entries of the wrong size");
  if (first_unknown) return with_more(*first_unknown, n_unknown, "entries the model does not have");
  return {};
}

}  // namespace shrink
