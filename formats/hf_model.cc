#include "formats/hf_model.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <set>

#include "formats/mapped_file.h"
#include "formats/sentencepiece_model.h"

namespace shrink {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Sanity bounds (far above any released model) so that later size products cannot overflow.
constexpr int64_t kMaxDim = int64_t{1} << 20;
constexpr int64_t kMaxLayers = int64_t{1} << 12;
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxContext = (int64_t{1} << 31) - 1;

std::string describe(const json& v, size_t limit = 80) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > limit) s = s.substr(0, limit - 3) + "...";
  return s;
}

std::string type_name(const json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "number";
  return v.type_name();
}

Error field_error(const std::string& file, const std::string& field, const std::string& what) {
  return make_error(file + ": field \"" + field + "\": " + what);
}

Result<json> read_json_file(const std::string& path) {
  SHRINK_ASSIGN(std::shared_ptr<MappedFile> f, MappedFile::open(path));
  if (f->size() == 0) return make_error(path + ": invalid JSON: the file is empty");
  const char* begin = reinterpret_cast<const char*>(f->data());
  try {
    // The parser is iterative (no recursion on nesting depth) and rejects invalid UTF-8.
    return json::parse(begin, begin + f->size());
  } catch (const json::parse_error& e) {
    return make_error(path + ": invalid JSON: " + e.what());
  }
}

// ---- config.json accessors: each names the file, the field and the bad value. ----

const json* find(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;  // null means "not set" in HF configs
  return &*it;
}

Result<int64_t> as_int(const json& v, const std::string& file, const std::string& field) {
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return field_error(file, field, "value " + describe(v) + " is out of range");
    return static_cast<int64_t>(v.get<uint64_t>());
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  return field_error(file, field, "expected an integer, got " + type_name(v) + " " + describe(v));
}

// `prefix` qualifies the field name in messages for nested objects ("rope_scaling.").
Result<int64_t> positive_int(const json& obj, const char* key, const std::string& file, int64_t max,
                             const std::string& prefix = "") {
  const std::string name = prefix + key;
  const json* v = find(obj, key);
  if (v == nullptr) return field_error(file, name, "missing (required)");
  SHRINK_ASSIGN(int64_t x, as_int(*v, file, name));
  if (x <= 0) return field_error(file, name, "must be positive, got " + std::to_string(x));
  if (x > max)
    return field_error(file, name, "value " + std::to_string(x) + " exceeds the sanity limit " + std::to_string(max));
  return x;
}

Result<std::optional<int64_t>> optional_positive_int(const json& obj, const char* key, const std::string& file,
                                                     int64_t max, const std::string& prefix = "") {
  if (find(obj, key) == nullptr) return std::optional<int64_t>();
  SHRINK_ASSIGN(int64_t x, positive_int(obj, key, file, max, prefix));
  return std::optional<int64_t>(x);
}

Result<double> as_number(const json& v, const std::string& file, const std::string& field) {
  if (!v.is_number()) return field_error(file, field, "expected a number, got " + type_name(v) + " " + describe(v));
  const double x = v.get<double>();
  if (!std::isfinite(x)) return field_error(file, field, "value is not finite");
  return x;
}

Result<std::optional<double>> optional_positive_number(const json& obj, const char* key, const std::string& file,
                                                       const std::string& prefix = "") {
  const std::string name = prefix + key;
  const json* v = find(obj, key);
  if (v == nullptr) return std::optional<double>();
  SHRINK_ASSIGN(double x, as_number(*v, file, name));
  if (!(x > 0)) return field_error(file, name, "must be positive, got " + describe(*v));
  return std::optional<double>(x);
}

Result<std::optional<bool>> optional_bool(const json& obj, const char* key, const std::string& file) {
  const json* v = find(obj, key);
  if (v == nullptr) return std::optional<bool>();
  if (!v->is_boolean())
    return field_error(file, key, "expected true or false, got " + type_name(*v) + " " + describe(*v));
  return std::optional<bool>(v->get<bool>());
}

Result<std::optional<std::string>> optional_string(const json& obj, const char* key, const std::string& file) {
  const json* v = find(obj, key);
  if (v == nullptr) return std::optional<std::string>();
  if (!v->is_string()) return field_error(file, key, "expected a string, got " + type_name(*v) + " " + describe(*v));
  return std::optional<std::string>(v->get<std::string>());
}

// An int or a list of ints (bos_token_id / eos_token_id).
Result<std::vector<int64_t>> int_or_list(const json& obj, const char* key, const std::string& file) {
  std::vector<int64_t> out;
  const json* v = find(obj, key);
  if (v == nullptr) return out;
  if (v->is_array()) {
    for (size_t i = 0; i < v->size(); ++i) {
      SHRINK_ASSIGN(int64_t x, as_int((*v)[i], file, std::string(key) + "[" + std::to_string(i) + "]"));
      out.push_back(x);
    }
    return out;
  }
  SHRINK_ASSIGN(int64_t x, as_int(*v, file, key));
  out.push_back(x);
  return out;
}

Result<HfRopeScaling> parse_rope_scaling(const json& rs, const std::string& file) {
  const std::string f = "rope_scaling";
  if (!rs.is_object()) return field_error(file, f, "expected an object or null, got " + type_name(rs));
  HfRopeScaling r;
  const json* t = find(rs, "rope_type");
  if (t == nullptr) t = find(rs, "type");
  if (t != nullptr) {
    if (!t->is_string()) return field_error(file, f + ".rope_type", "expected a string, got " + describe(*t));
    r.type = t->get<std::string>();
  }
  const std::string p = f + ".";
  SHRINK_ASSIGN(r.factor, optional_positive_number(rs, "factor", file, p));
  SHRINK_ASSIGN(r.low_freq_factor, optional_positive_number(rs, "low_freq_factor", file, p));
  SHRINK_ASSIGN(r.high_freq_factor, optional_positive_number(rs, "high_freq_factor", file, p));
  SHRINK_ASSIGN(r.original_max_position_embeddings,
                optional_positive_int(rs, "original_max_position_embeddings", file, kMaxContext, p));
  if (r.type == "llama3") {
    // The Llama 3 frequency correction (transformers _compute_llama3_parameters) needs all four
    // and divides by high_freq_factor - low_freq_factor.
    if (!r.factor || !r.low_freq_factor || !r.high_freq_factor || !r.original_max_position_embeddings)
      return field_error(file, f, "rope_type \"llama3\" needs factor, low_freq_factor, high_freq_factor and "
                                  "original_max_position_embeddings");
    if (*r.low_freq_factor == *r.high_freq_factor)
      return field_error(file, f, "llama3 low_freq_factor equals high_freq_factor");
  }
  return r;
}

}  // namespace

const std::vector<std::string>& hf_supported_architectures() {
  static const std::vector<std::string> archs = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"};
  return archs;
}

Result<HfConfig> parse_hf_config(const json& j, const std::string& file) {
  if (!j.is_object()) return make_error(file + ": expected a JSON object at the top level, got " + type_name(j));
  HfConfig c;
  c.raw = j;

  const json* archs = find(j, "architectures");
  if (archs == nullptr) return field_error(file, "architectures", "missing (required)");
  if (!archs->is_array() || archs->empty() || !(*archs)[0].is_string())
    return field_error(file, "architectures", "expected a non-empty list of strings, got " + describe(*archs));
  c.architecture = (*archs)[0].get<std::string>();
  const auto& supported = hf_supported_architectures();
  if (std::find(supported.begin(), supported.end(), c.architecture) == supported.end()) {
    std::string list;
    for (const auto& a : supported) list += (list.empty() ? "" : ", ") + a;
    return make_error(file + ": unsupported architecture " + c.architecture + " (supported: " + list + ")");
  }

  SHRINK_ASSIGN(auto model_type, optional_string(j, "model_type", file));
  if (!model_type) return field_error(file, "model_type", "missing (required)");
  c.model_type = *model_type;

  SHRINK_ASSIGN(c.hidden_size, positive_int(j, "hidden_size", file, kMaxDim));
  SHRINK_ASSIGN(c.intermediate_size, positive_int(j, "intermediate_size", file, kMaxDim * 8));
  SHRINK_ASSIGN(c.num_hidden_layers, positive_int(j, "num_hidden_layers", file, kMaxLayers));
  SHRINK_ASSIGN(c.num_attention_heads, positive_int(j, "num_attention_heads", file, kMaxDim));
  SHRINK_ASSIGN(auto kv, optional_positive_int(j, "num_key_value_heads", file, kMaxDim));
  c.num_key_value_heads = kv ? *kv : c.num_attention_heads;
  if (c.num_key_value_heads > c.num_attention_heads || c.num_attention_heads % c.num_key_value_heads != 0)
    return field_error(file, "num_key_value_heads",
                       "value " + std::to_string(c.num_key_value_heads) + " must divide num_attention_heads = " +
                           std::to_string(c.num_attention_heads));
  SHRINK_ASSIGN(c.head_dim, optional_positive_int(j, "head_dim", file, kMaxDim));
  if (!c.head_dim && c.hidden_size % c.num_attention_heads != 0)
    return field_error(file, "hidden_size",
                       "value " + std::to_string(c.hidden_size) + " is not divisible by num_attention_heads = " +
                           std::to_string(c.num_attention_heads) + " and there is no head_dim");
  if (c.head_dim_or_default() % 2 != 0)
    return field_error(file, c.head_dim ? "head_dim" : "hidden_size",
                       "head dimension " + std::to_string(c.head_dim_or_default()) + " is odd (RoPE rotates pairs)");
  SHRINK_ASSIGN(c.vocab_size, positive_int(j, "vocab_size", file, kMaxVocab));
  SHRINK_ASSIGN(c.max_position_embeddings, positive_int(j, "max_position_embeddings", file, kMaxContext));

  SHRINK_ASSIGN(auto eps, optional_positive_number(j, "rms_norm_eps", file));
  if (!eps) return field_error(file, "rms_norm_eps", "missing (required)");
  c.rms_norm_eps = *eps;
  SHRINK_ASSIGN(auto theta, optional_positive_number(j, "rope_theta", file));
  c.rope_theta = theta ? *theta : 10000.0;  // transformers LlamaConfig default

  SHRINK_ASSIGN(auto tie, optional_bool(j, "tie_word_embeddings", file));
  c.tie_word_embeddings = tie.value_or(false);
  SHRINK_ASSIGN(auto bias, optional_bool(j, "attention_bias", file));
  c.attention_bias = c.architecture == "Qwen2ForCausalLM" ? true : bias.value_or(false);

  SHRINK_ASSIGN(auto dtype, optional_string(j, "torch_dtype", file));
  if (!dtype) {
    SHRINK_ASSIGN(dtype, optional_string(j, "dtype", file));
  }
  c.torch_dtype = dtype.value_or("");

  SHRINK_ASSIGN(c.bos_token_ids, int_or_list(j, "bos_token_id", file));
  SHRINK_ASSIGN(c.eos_token_ids, int_or_list(j, "eos_token_id", file));

  if (const json* rs = find(j, "rope_scaling")) {
    SHRINK_ASSIGN(HfRopeScaling r, parse_rope_scaling(*rs, file));
    c.rope_scaling = r;
  }
  SHRINK_ASSIGN(c.sliding_window, optional_positive_int(j, "sliding_window", file, kMaxContext));
  if (c.architecture == "Qwen2ForCausalLM") {
    SHRINK_ASSIGN(auto use, optional_bool(j, "use_sliding_window", file));
    c.use_sliding_window = use.value_or(false) && c.sliding_window.has_value();
  } else {
    c.use_sliding_window = c.sliding_window.has_value();
  }
  return c;
}

Result<HfConfig> read_hf_config(const std::string& folder) {
  const std::string path = (fs::path(folder) / "config.json").string();
  SHRINK_ASSIGN(json j, read_json_file(path));
  return parse_hf_config(j, path);
}

// ---------------------------------------------------------------------------------------
// Tokenizers.

namespace {

constexpr float kPadScore = -10000.0f;    // convert_hf_to_gguf.py: padding "[PAD<i>]" tokens
constexpr float kAddedScore = -1000.0f;   // convert_hf_to_gguf.py: added / user-defined tokens
const char* const kSpaceMarker = "\xe2\x96\x81";  // U+2581, SentencePiece's space

// convert_hf_to_gguf.py Model.does_token_look_special.
bool looks_special(const std::string& t) {
  auto starts = [&](const char* p) { return t.rfind(p, 0) == 0; };
  auto ends = [&](const std::string& s) { return t.size() >= s.size() && t.compare(t.size() - s.size(), s.size(), s) == 0; };
  if (t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]") return true;
  if (starts("<|") && ends("|>")) return true;
  if (starts("<\xef\xbd\x9c") && ends("\xef\xbd\x9c>")) return true;  // "<｜" ... "｜>" (deepseek-coder)
  if (starts("<unused") && ends(">")) return true;
  return false;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

// The optional JSON side files of a folder, loaded once.
struct HfTokenizerFiles {
  std::string folder;
  std::optional<json> config;            // config.json
  std::optional<json> tokenizer;         // tokenizer.json
  std::optional<json> tokenizer_config;  // tokenizer_config.json
  std::string path(const char* name) const { return (fs::path(folder) / name).string(); }
};

Result<std::optional<json>> read_optional_json(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return std::optional<json>();
  SHRINK_ASSIGN(json j, read_json_file(path));
  if (!j.is_object()) return make_error(path + ": expected a JSON object at the top level, got " + type_name(j));
  return std::optional<json>(std::move(j));
}

// config.json vocab_size when present (it may exceed the tokenizer's size: padding follows).
Result<std::optional<int64_t>> config_vocab_size(const HfTokenizerFiles& f) {
  if (!f.config) return std::optional<int64_t>();
  return optional_positive_int(*f.config, "vocab_size", f.path("config.json"), kMaxVocab);
}

// tokenizer_config.json "<x>_token": a string or {"content": string}.
std::optional<std::string> special_token_content(const json& tc, const std::string& key) {
  auto it = tc.find(key);
  if (it == tc.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto c = it->find("content");
    if (c != it->end() && c->is_string()) return c->get<std::string>();
  }
  return std::nullopt;
}

// gguf-py SpecialVocab: ids, add_bos/add_eos and the chat template. `n_vocab` bounds the ids.
Status apply_special_vocab(const HfTokenizerFiles& f, int64_t n_vocab, Vocab* v) {
  const std::string tc_path = f.path("tokenizer_config.json");
  // Added tokens of tokenizer.json, the only place SpecialVocab looks token strings up.
  std::vector<std::pair<std::string, int64_t>> added;
  if (f.tokenizer) {
    auto it = f.tokenizer->find("added_tokens");
    if (it != f.tokenizer->end() && it->is_array()) {
      for (const json& a : *it) {
        if (!a.is_object()) continue;
        auto c = a.find("content");
        auto id = a.find("id");
        if (c != a.end() && c->is_string() && id != a.end() && id->is_number_integer())
          added.emplace_back(c->get<std::string>(), id->get<int64_t>());
      }
    }
  }
  struct Slot {
    const char* name;
    std::optional<int64_t>* id;
  };
  const Slot slots[] = {{"bos", &v->bos_id}, {"eos", &v->eos_id}, {"unk", &v->unk_id}, {"pad", &v->pad_id}};
  std::map<std::string, int64_t> found;
  auto set = [&](const std::string& typ, int64_t id) {
    // _set_special_token: first source wins; ids outside the vocabulary are skipped.
    if (id < 0 || id >= n_vocab || found.count(typ)) return;
    found[typ] = id;
  };

  std::optional<std::string> bos_content, eos_content;
  if (f.tokenizer_config) {
    bos_content = special_token_content(*f.tokenizer_config, "bos_token");
    eos_content = special_token_content(*f.tokenizer_config, "eos_token");
  }

  // tokenizer.json post_processor: a crude reading of TemplateProcessing, as SpecialVocab does:
  // a leading special token in the "single" template means add_bos, a trailing one add_eos.
  if (f.tokenizer) {
    auto pp = f.tokenizer->find("post_processor");
    if (pp != f.tokenizer->end() && pp->is_object()) {
      std::vector<const json*> procs;
      auto list = pp->find("processors");
      if (list != pp->end() && list->is_array()) {
        for (const json& p : *list) procs.push_back(&p);
      } else {
        procs.push_back(&*pp);
      }
      for (const json* p : procs) {
        if (!p->is_object()) continue;
        const std::string type = p->value("type", std::string());
        if (type == "RobertaProcessing") {
          v->add_bos = true;
          v->add_eos = true;
          continue;
        }
        if (type != "TemplateProcessing") continue;
        auto single = p->find("single");
        if (single == p->end() || !single->is_array() || single->size() <= 1) continue;
        auto special_id = [](const json& item) -> std::optional<std::string> {
          if (!item.is_object()) return std::nullopt;
          auto st = item.find("SpecialToken");
          if (st == item.end() || !st->is_object()) return std::nullopt;
          auto id = st->find("id");
          if (id == st->end() || !id->is_string() || id->get<std::string>().empty()) return std::nullopt;
          return id->get<std::string>();
        };
        if (auto first = special_id(single->front())) {
          if (!f.tokenizer_config) bos_content = *first;
          v->add_bos = bos_content && *first == *bos_content;
        }
        if (auto last = special_id(single->back())) {
          if (!f.tokenizer_config) eos_content = *last;
          // (SpecialVocab also re-targets eos to a differing trailing token; not replicated.)
          v->add_eos = eos_content && *last == *eos_content;
        }
      }
    }
  }

  if (f.tokenizer_config) {
    const json& tc = *f.tokenizer_config;
    for (const Slot& s : slots) {
      const std::string typ = s.name;
      auto add = tc.find("add_" + typ + "_token");
      if (add != tc.end() && add->is_boolean()) {
        if (typ == "bos") v->add_bos = add->get<bool>();
        if (typ == "eos") v->add_eos = add->get<bool>();
      }
      auto content = special_token_content(tc, typ + "_token");
      if (!content) continue;
      for (const auto& [text, id] : added) {
        if (text == *content) {
          set(typ, id);
          break;
        }
      }
    }
    // chat_template: tokenizer_config.json, else chat_template.jinja, else chat_template.json.
    std::optional<json> tmpl;
    if (auto it = tc.find("chat_template"); it != tc.end()) {
      tmpl = *it;
    } else {
      std::error_code ec;
      const std::string jinja = f.path("chat_template.jinja");
      if (fs::is_regular_file(jinja, ec)) {
        SHRINK_ASSIGN(std::shared_ptr<MappedFile> m, MappedFile::open(jinja));
        tmpl = std::string(reinterpret_cast<const char*>(m->data()), m->size());
      } else {
        SHRINK_ASSIGN(auto ctj, read_optional_json(f.path("chat_template.json")));
        if (ctj) {
          if (auto it2 = ctj->find("chat_template"); it2 != ctj->end()) tmpl = *it2;
        }
      }
    }
    if (tmpl && tmpl->is_string()) {
      v->chat_template = tmpl->get<std::string>();
    } else if (tmpl && tmpl->is_array()) {
      // gguf-py GGUFWriter.add_chat_template: the entry named "default" is the chat template.
      for (const json& e : *tmpl) {
        if (e.is_object() && e.value("name", std::string()) == "default") {
          auto t = e.find("template");
          if (t != e.end() && t->is_string()) v->chat_template = t->get<std::string>();
        }
      }
    } else if (tmpl && !tmpl->is_null()) {
      return make_error(tc_path + ": field \"chat_template\": expected a string or a list of {name, template}, got " +
                        type_name(*tmpl));
    }
  }

  if (f.config) {
    for (const Slot& s : slots) {
      auto it = f.config->find(std::string(s.name) + "_token_id");
      // Only a single int counts (a list, e.g. Llama 3.1's eos ids, is ignored as in SpecialVocab).
      if (it != f.config->end() && it->is_number_integer()) set(s.name, it->get<int64_t>());
    }
  }
  for (const Slot& s : slots) {
    if (auto it = found.find(s.name); it != found.end()) *s.id = it->second;
  }
  return {};
}

// ---- SentencePiece path (convert_hf_to_gguf.py _create_vocab_sentencepiece). ----

Result<Vocab> hf_sentencepiece_vocab(const HfTokenizerFiles& f) {
  const std::string model_path = f.path("tokenizer.model");
  SHRINK_ASSIGN(SentencePieceModel spm, read_sentencepiece_model(model_path));
  Vocab base = sentencepiece_to_vocab(spm);
  const int64_t n_pieces = static_cast<int64_t>(base.size());
  SHRINK_ASSIGN(auto cfg_size, config_vocab_size(f));
  const int64_t vocab_size = cfg_size.value_or(n_pieces);
  if (vocab_size < n_pieces)
    return make_error(f.path("config.json") + ": field \"vocab_size\": value " + std::to_string(vocab_size) +
                      " is smaller than the " + std::to_string(n_pieces) + " pieces of " + model_path);

  Vocab v;
  v.model = "llama";
  v.pre = "default";
  const size_t n = static_cast<size_t>(vocab_size);
  v.tokens.resize(n);
  v.scores.assign(n, kPadScore);
  v.token_types.assign(n, TokenType::UNUSED);
  for (size_t i = 0; i < n; ++i) {
    if (static_cast<int64_t>(i) < n_pieces) {
      v.tokens[i] = base.tokens[i];
      v.scores[i] = base.scores[i];
      v.token_types[i] = base.token_types[i];
    } else {
      v.tokens[i] = "[PAD" + std::to_string(i) + "]";
    }
  }

  // added_tokens.json: {"content": id}.
  const std::string at_path = f.path("added_tokens.json");
  SHRINK_ASSIGN(auto added_json, read_optional_json(at_path));
  if (added_json) {
    for (const auto& [content, idv] : added_json->items()) {
      if (!idv.is_number_integer() || idv.get<int64_t>() < 0)
        return field_error(at_path, content, "expected a non-negative integer id, got " + describe(idv));
      const int64_t id = idv.get<int64_t>();
      if (id >= vocab_size) continue;  // the script warns and ignores it
      v.tokens[static_cast<size_t>(id)] = content;
      v.scores[static_cast<size_t>(id)] = kAddedScore;
      v.token_types[static_cast<size_t>(id)] = TokenType::USER_DEFINED;
    }
  }

  // tokenizer_config.json added_tokens_decoder: {"id": {"content": ..., "special": ...}}.
  if (f.tokenizer_config) {
    const std::string tc_path = f.path("tokenizer_config.json");
    auto atd = f.tokenizer_config->find("added_tokens_decoder");
    if (atd != f.tokenizer_config->end() && !atd->is_null()) {
      if (!atd->is_object())
        return field_error(tc_path, "added_tokens_decoder", "expected an object, got " + type_name(*atd));
      for (const auto& [key, data] : atd->items()) {
        const std::string field = "added_tokens_decoder." + key;
        int64_t id = -1;
        try {
          size_t used = 0;
          id = std::stoll(key, &used);
          if (used != key.size()) id = -1;
        } catch (const std::exception&) {
          id = -1;
        }
        if (id < 0) return field_error(tc_path, field, "key is not a non-negative token id");
        if (id >= vocab_size)
          return field_error(tc_path, field, "token id " + std::to_string(id) + " is outside the vocabulary of " +
                                                 std::to_string(vocab_size));
        if (!data.is_object()) return field_error(tc_path, field, "expected an object, got " + type_name(data));
        auto content = data.find("content");
        if (content == data.end() || !content->is_string())
          return field_error(tc_path, field + ".content", "missing or not a string");
        std::string token = content->get<std::string>();
        auto special = data.find("special");
        const bool is_special = special != data.end() && special->is_boolean() && special->get<bool>();
        const size_t i = static_cast<size_t>(id);
        if (is_special || looks_special(token)) {
          v.token_types[i] = TokenType::CONTROL;
        } else {
          token = replace_all(token, kSpaceMarker, " ");  // pre-normalized user-defined spaces
          v.token_types[i] = TokenType::USER_DEFINED;
        }
        v.scores[i] = kAddedScore;
        v.tokens[i] = token;
      }
    }
  }

  SHRINK_CHECK(apply_special_vocab(f, vocab_size, &v));
  // Ids no side file named: SentencePiece's own, which are llama.cpp's load-time defaults too.
  if (!v.unk_id) v.unk_id = base.unk_id;
  if (!v.bos_id) v.bos_id = base.bos_id;
  if (!v.eos_id) v.eos_id = base.eos_id;
  if (!v.pad_id) v.pad_id = base.pad_id;
  v.add_space_prefix = base.add_space_prefix;
  return v;
}

// ---- Byte-level BPE path (convert_hf_to_gguf.py get_vocab_base + SpecialVocab). ----

// Pre-tokenizer regexes as they appear in tokenizer.json (also quoted in llama.cpp
// src/llama-vocab.cpp next to its rewritten forms).
const char* const kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kTekkenRegex =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

bool json_bool(const json& o, const char* key, bool dflt) {
  auto it = o.find(key);
  return it != o.end() && it->is_boolean() ? it->get<bool>() : dflt;
}
std::string json_str(const json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// ByteLevel with add_prefix_space false and the given use_regex (tokenizers' default: true).
bool is_byte_level(const json& p, bool use_regex) {
  return p.is_object() && json_str(p, "type") == "ByteLevel" && !json_bool(p, "add_prefix_space", false) &&
         json_bool(p, "use_regex", true) == use_regex;
}

// The regex of an isolating Split pre-tokenizer, or "".
std::string split_regex(const json& p) {
  if (!p.is_object() || json_str(p, "type") != "Split" || json_bool(p, "invert", false)) return "";
  if (json_str(p, "behavior") != "Isolated") return "";
  auto pat = p.find("pattern");
  if (pat == p.end() || !pat->is_object()) return "";
  return json_str(*pat, "Regex");
}

std::optional<std::string> recognise_pre_tokenizer(const json& pre) {
  if (is_byte_level(pre, true)) return "gpt-2";
  if (!pre.is_object() || json_str(pre, "type") != "Sequence") return std::nullopt;
  auto list = pre.find("pretokenizers");
  if (list == pre.end() || !list->is_array() || list->size() != 2) return std::nullopt;
  const json& a = (*list)[0];
  const json& b = (*list)[1];
  if (a.is_object() && json_str(a, "type") == "Digits" && json_bool(a, "individual_digits", false) &&
      is_byte_level(b, true))
    return "smollm";
  if (!is_byte_level(b, false)) return std::nullopt;
  const std::string re = split_regex(a);
  if (re == kLlama3Regex) return "llama-bpe";
  if (re == kQwen2Regex) return "qwen2";
  if (re == kTekkenRegex) return "tekken";
  return std::nullopt;
}

// "a b" merges, or [a, b] pairs whose parts' spaces gguf-py encodes as U+0120 (chr(ord(' ') + 256)).
Status read_merges(const json& merges, const std::string& file, std::vector<std::string>* out) {
  if (!merges.is_array()) return field_error(file, "model.merges", "expected a list, got " + type_name(merges));
  out->reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    const std::string field = "model.merges[" + std::to_string(i) + "]";
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      // llama.cpp splits at the first space after the first byte (llama-vocab.cpp load).
      const size_t pos = s.size() > 1 ? s.find(' ', 1) : std::string::npos;
      if (pos == std::string::npos || pos + 1 >= s.size())
        return field_error(file, field, "merge " + describe(m) + " is not two parts separated by a space");
      out->push_back(s);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      const std::string a = replace_all(m[0].get<std::string>(), " ", "\xc4\xa0");
      const std::string b = replace_all(m[1].get<std::string>(), " ", "\xc4\xa0");
      if (a.empty() || b.empty()) return field_error(file, field, "merge " + describe(m) + " has an empty part");
      out->push_back(a + " " + b);
    } else {
      return field_error(file, field, "expected \"a b\" or [\"a\", \"b\"], got " + describe(m));
    }
  }
  return {};
}

Result<Vocab> hf_bpe_vocab(const HfTokenizerFiles& f) {
  const std::string path = f.path("tokenizer.json");
  const json& tj = *f.tokenizer;
  auto model_it = tj.find("model");
  if (model_it == tj.end() || !model_it->is_object())
    return field_error(path, "model", "missing or not an object");
  const json& model = *model_it;
  const std::string type = json_str(model, "type");
  if (type != "BPE")
    return field_error(path, "model.type",
                       "tokenizer model " + describe(model.value("type", json())) +
                           " is not supported (only byte-level BPE, or SentencePiece via tokenizer.model)");
  if (json_bool(model, "byte_fallback", false))
    return field_error(path, "model.byte_fallback",
                       "a byte-fallback BPE is SentencePiece-style; put its tokenizer.model in the folder");

  auto vocab_it = model.find("vocab");
  if (vocab_it == model.end() || !vocab_it->is_object())
    return field_error(path, "model.vocab", "missing or not an object of token -> id");
  std::map<int64_t, std::string> by_id;
  for (const auto& [text, idv] : vocab_it->items()) {
    if (!idv.is_number_integer() || idv.get<int64_t>() < 0 || idv.get<int64_t>() >= kMaxVocab)
      return field_error(path, "model.vocab", "token " + describe(json(text)) + " has invalid id " + describe(idv));
    auto [it, inserted] = by_id.emplace(idv.get<int64_t>(), text);
    if (!inserted)
      return field_error(path, "model.vocab", "id " + std::to_string(it->first) + " is used by both " +
                                                  describe(json(it->second)) + " and " + describe(json(text)));
  }

  // Added tokens (tokenizer.json "added_tokens"): they join the vocabulary by id, and their
  // content marks the token as added (special -> CONTROL).
  std::map<std::string, bool> added;  // content -> special
  std::set<std::string> contents;     // distinct token strings, as len(tokenizer.vocab) counts them
  for (const auto& [id, text] : by_id) contents.insert(text);
  if (auto at = tj.find("added_tokens"); at != tj.end() && !at->is_null()) {
    if (!at->is_array()) return field_error(path, "added_tokens", "expected a list, got " + type_name(*at));
    for (size_t i = 0; i < at->size(); ++i) {
      const json& a = (*at)[i];
      const std::string field = "added_tokens[" + std::to_string(i) + "]";
      if (!a.is_object()) return field_error(path, field, "expected an object, got " + type_name(a));
      auto idv = a.find("id");
      auto content = a.find("content");
      if (idv == a.end() || !idv->is_number_integer() || idv->get<int64_t>() < 0 || idv->get<int64_t>() >= kMaxVocab)
        return field_error(path, field + ".id", "missing or invalid");
      if (content == a.end() || !content->is_string())
        return field_error(path, field + ".content", "missing or not a string");
      const std::string text = content->get<std::string>();
      by_id[idv->get<int64_t>()] = text;
      added[text] = json_bool(a, "special", false);
      contents.insert(text);
    }
  }
  if (by_id.empty()) return field_error(path, "model.vocab", "is empty");

  SHRINK_ASSIGN(auto cfg_size, config_vocab_size(f));
  const int64_t vocab_size = cfg_size.value_or(static_cast<int64_t>(contents.size()));
  const int64_t max_id = by_id.rbegin()->first;
  if (max_id >= vocab_size)
    return make_error(path + ": token id " + std::to_string(max_id) + " does not fit the vocabulary size " +
                      std::to_string(vocab_size) + (cfg_size ? " of config.json" : " (ids are not contiguous)"));

  auto pre_it = tj.find("pre_tokenizer");
  const json pre = pre_it == tj.end() ? json() : *pre_it;
  auto pre_name = recognise_pre_tokenizer(pre);
  if (!pre_name)
    return field_error(path, "pre_tokenizer",
                       "unrecognised pre-tokenizer " +
                           (json_str(pre, "type").empty() ? std::string() : "of type " + json_str(pre, "type") + " ") +
                           describe(pre, 400) +
                           " (recognised: the Llama 3, Qwen2 and Tekken Split regexes + ByteLevel, Digits + "
                           "ByteLevel (SmolLM), plain ByteLevel (GPT-2)); refusing to guess llama.cpp's "
                           "tokenizer.ggml.pre");

  Vocab v;
  v.model = "gpt2";
  v.pre = *pre_name;
  const size_t n = static_cast<size_t>(vocab_size);
  v.tokens.resize(n);
  v.token_types.assign(n, TokenType::UNUSED);
  for (size_t i = 0; i < n; ++i) {
    auto it = by_id.find(static_cast<int64_t>(i));
    if (it == by_id.end()) {
      v.tokens[i] = "[PAD" + std::to_string(i) + "]";
      continue;
    }
    std::string token = it->second;
    auto ad = added.find(token);
    if (ad == added.end()) {
      v.token_types[i] = TokenType::NORMAL;
    } else if (ad->second || looks_special(token)) {
      v.token_types[i] = TokenType::CONTROL;
    } else {
      token = replace_all(token, kSpaceMarker, " ");
      v.token_types[i] = TokenType::USER_DEFINED;
    }
    v.tokens[i] = std::move(token);
  }

  if (auto m = model.find("merges"); m != model.end() && !m->is_null()) SHRINK_CHECK(read_merges(*m, path, &v.merges));
  SHRINK_CHECK(apply_special_vocab(f, vocab_size, &v));
  return v;
}

}  // namespace

Result<Vocab> read_hf_tokenizer(const std::string& folder) {
  HfTokenizerFiles f;
  f.folder = folder;
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) return make_error(folder + ": not a folder");
  SHRINK_ASSIGN(f.config, read_optional_json(f.path("config.json")));
  SHRINK_ASSIGN(f.tokenizer, read_optional_json(f.path("tokenizer.json")));
  SHRINK_ASSIGN(f.tokenizer_config, read_optional_json(f.path("tokenizer_config.json")));
  // SpecialVocab tests `if not tokenizer_config`: an empty object counts as absent.
  if (f.tokenizer_config && f.tokenizer_config->empty()) f.tokenizer_config.reset();

  Result<Vocab> v = fs::is_regular_file(f.path("tokenizer.model"), ec) ? hf_sentencepiece_vocab(f)
                    : f.tokenizer ? hf_bpe_vocab(f)
                                  : Result<Vocab>(make_error(folder + ": no tokenizer.model or tokenizer.json"));
  if (!v.ok()) return v;
  // LlamaModel.set_vocab: tokenizer_config.json "add_prefix_space" sets add_space_prefix.
  if (f.tokenizer_config) {
    SHRINK_ASSIGN(auto aps, optional_bool(*f.tokenizer_config, "add_prefix_space", f.path("tokenizer_config.json")));
    if (aps) v->add_space_prefix = *aps;
  }
  return v;
}

}  // namespace shrink
