#include "distill/checkpoint.h"

#include <cstring>
#include <map>

#include "formats/gguf.h"

namespace shrink::distill {

namespace {
constexpr const char* kStateKey = "shrink.distill.state";
constexpr int kFormatVersion = 1;
}  // namespace

nlohmann::json config_to_json(const LlamaConfig& c) {
  nlohmann::json j;
  j["arch"] = c.arch;
  j["name"] = c.name;
  j["n_embd"] = c.n_embd;
  j["n_ff"] = c.n_ff;
  j["n_layer"] = c.n_layer;
  j["n_head"] = c.n_head;
  j["n_head_kv"] = c.n_head_kv;
  j["head_dim"] = c.head_dim;
  j["n_vocab"] = c.n_vocab;
  j["n_ctx_train"] = c.n_ctx_train;
  j["rope_theta"] = c.rope_theta;
  j["rms_eps"] = c.rms_eps;
  j["tied_embeddings"] = c.tied_embeddings;
  j["qkv_bias"] = c.qkv_bias;
  if (c.rope_scaling) {
    const RopeScaling& r = *c.rope_scaling;
    j["rope_scaling"] = {{"type", r.type}, {"factor", r.factor}, {"low_freq_factor", r.low_freq_factor},
                         {"high_freq_factor", r.high_freq_factor}, {"original_context", r.original_context}};
  }
  return j;
}

Result<LlamaConfig> config_from_json(const nlohmann::json& j, const std::string& where) {
  LlamaConfig c;
  try {
    c.arch = j.at("arch").get<std::string>();
    c.name = j.at("name").get<std::string>();
    c.n_embd = j.at("n_embd").get<int64_t>();
    c.n_ff = j.at("n_ff").get<int64_t>();
    c.n_layer = j.at("n_layer").get<int64_t>();
    c.n_head = j.at("n_head").get<int64_t>();
    c.n_head_kv = j.at("n_head_kv").get<int64_t>();
    c.head_dim = j.at("head_dim").get<int64_t>();
    c.n_vocab = j.at("n_vocab").get<int64_t>();
    c.n_ctx_train = j.at("n_ctx_train").get<int64_t>();
    c.rope_theta = j.at("rope_theta").get<double>();
    c.rms_eps = j.at("rms_eps").get<double>();
    c.tied_embeddings = j.at("tied_embeddings").get<bool>();
    c.qkv_bias = j.at("qkv_bias").get<bool>();
    if (j.contains("rope_scaling")) {
      const auto& r = j["rope_scaling"];
      c.rope_scaling = RopeScaling{r.at("type").get<std::string>(), r.at("factor").get<double>(),
                                   r.at("low_freq_factor").get<double>(), r.at("high_freq_factor").get<double>(),
                                   r.at("original_context").get<int64_t>()};
    }
  } catch (const nlohmann::json::exception& e) {
    return make_error(where + ": bad student config: " + e.what());
  }
  SHRINK_CHECK(c.validate(where));
  return c;
}

Status write_checkpoint(const std::string& path, const Checkpoint& ck) {
  nlohmann::json state;
  state["version"] = kFormatVersion;
  state["step"] = ck.step;
  state["epoch"] = ck.cursor.epoch;
  state["index"] = ck.cursor.index;
  // 64-bit values as strings: JSON readers differ on integers above 2^53.
  state["rng_state"] = std::to_string(ck.rng_state);
  state["data_seed"] = std::to_string(ck.data_seed);
  state["config"] = config_to_json(ck.config);
  state["fingerprint"] = ck.fingerprint;
  state["run"] = ck.run;
  state["losses"] = ck.losses;

  GgufWriter w(path);
  w.set(kStateKey, GgufValue::str(state.dump()));
  for (const CheckpointTensor& t : ck.tensors) {
    const size_t n = t.w.size();
    if (t.m.size() != n || t.v.size() != n)
      return make_error(path + ": tensor " + t.name + " has " + std::to_string(n) + " values but moments of " +
                        std::to_string(t.m.size()) + " and " + std::to_string(t.v.size()));
    w.add_tensor("w." + t.name, t.shape, TypeId::F32);
    w.add_tensor("m." + t.name, t.shape, TypeId::F32);
    w.add_tensor("v." + t.name, t.shape, TypeId::F32);
  }
  SHRINK_CHECK(w.begin());
  size_t index = 0;
  for (const CheckpointTensor& t : ck.tensors)
    for (const std::vector<float>* data : {&t.w, &t.m, &t.v})
      SHRINK_CHECK(w.write_tensor_data(index++, data->data(), data->size() * sizeof(float)));
  return w.finish();
}

Result<Checkpoint> read_checkpoint(const std::string& path) {
  SHRINK_ASSIGN(GgufFile f, GgufFile::open(path));
  const GgufValue* sv = f.find(kStateKey);
  if (sv == nullptr || sv->as_string() == nullptr)
    return make_error(path + ": not a shrink distill checkpoint (no " + std::string(kStateKey) + " key)");
  nlohmann::json state = nlohmann::json::parse(*sv->as_string(), nullptr, /*allow_exceptions=*/false);
  if (state.is_discarded() || !state.is_object())
    return make_error(path + ": " + std::string(kStateKey) + " is not a JSON object");
  Checkpoint ck;
  try {
    if (state.at("version").get<int>() != kFormatVersion)
      return make_error(path + ": checkpoint version " + state.at("version").dump() + ", this build reads " +
                        std::to_string(kFormatVersion));
    ck.step = state.at("step").get<int64_t>();
    ck.cursor.epoch = state.at("epoch").get<int64_t>();
    ck.cursor.index = state.at("index").get<int64_t>();
    ck.rng_state = std::stoull(state.at("rng_state").get<std::string>());
    ck.data_seed = std::stoull(state.at("data_seed").get<std::string>());
    ck.fingerprint = state.at("fingerprint").get<std::string>();
    ck.run = state.at("run");
    ck.losses = state.at("losses").get<std::vector<double>>();
  } catch (const std::exception& e) {
    return make_error(path + ": bad checkpoint state: " + e.what());
  }
  if (ck.step < 0 || ck.cursor.epoch < 0 || ck.cursor.index < 0)
    return make_error(path + ": negative step or data cursor in the checkpoint state");
  SHRINK_ASSIGN(ck.config, config_from_json(state["config"], path));

  std::map<std::string, const GgufTensorInfo*> by_name;
  for (const GgufTensorInfo& t : f.tensors()) {
    if (t.type != TypeId::F32) return make_error(path + ": tensor " + t.name + " is not F32");
    by_name[t.name] = &t;
  }
  auto copy = [](const GgufTensorInfo* t) {
    std::vector<float> v(static_cast<size_t>(t->n_elements()));
    std::memcpy(v.data(), t->data, v.size() * sizeof(float));
    return v;
  };
  for (const GgufTensorInfo& t : f.tensors()) {
    if (t.name.rfind("w.", 0) != 0) continue;
    const std::string name = t.name.substr(2);
    CheckpointTensor ct;
    ct.name = name;
    ct.shape = t.shape;
    ct.w = copy(&t);
    for (const char* prefix : {"m.", "v."}) {
      auto it = by_name.find(prefix + name);
      if (it == by_name.end()) return make_error(path + ": weight " + name + " has no tensor " + prefix + name);
      if (it->second->shape != t.shape)
        return make_error(path + ": tensor " + prefix + name + " has a different shape from its weight");
      (prefix[0] == 'm' ? ct.m : ct.v) = copy(it->second);
    }
    ck.tensors.push_back(std::move(ct));
  }
  if (ck.tensors.empty()) return make_error(path + ": the checkpoint holds no weights");
  return ck;
}

}  // namespace shrink::distill
