#include "quantizer/mixes.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <numeric>
#include <regex>

namespace shrink {

namespace {

// llama_ftype values (llama.h).
enum Ftype : uint32_t {
  kAllF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 7, kQ5_0 = 8, kQ5_1 = 9,
  kQ2_K = 10, kQ3_K_S = 11, kQ3_K_M = 12, kQ3_K_L = 13, kQ4_K_S = 14, kQ4_K_M = 15,
  kQ5_K_S = 16, kQ5_K_M = 17, kQ6_K = 18, kIQ4_NL = 25, kIQ4_XS = 30, kBF16 = 32,
};

std::string lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// llama.cpp's broad tensor categories (llama-quant.cpp `tensor_get_category`): substring tests,
// checked in this order.
enum class Category { TokenEmbd, AttnQ, AttnV, AttnK, AttnQkv, AttnKvB, AttnOutput, FfnUp, FfnGate, FfnDown, Output, Other };

Category category_of(const std::string& name) {
  if (name == "output.weight") return Category::Output;
  if (name == "token_embd.weight" || name == "per_layer_token_embd.weight") return Category::TokenEmbd;
  if (contains(name, "attn_qkv.weight")) return Category::AttnQkv;
  if (contains(name, "attn_kv_b.weight")) return Category::AttnKvB;
  if (contains(name, "attn_v.weight")) return Category::AttnV;
  if (contains(name, "attn_k.weight")) return Category::AttnK;
  if (contains(name, "attn_q.weight")) return Category::AttnQ;
  if (contains(name, "attn_output.weight")) return Category::AttnOutput;
  if (contains(name, "ffn_up")) return Category::FfnUp;
  if (contains(name, "ffn_gate")) return Category::FfnGate;
  if (contains(name, "ffn_down")) return Category::FfnDown;
  return Category::Other;
}

// The value tensors (v, fused qkv, MLA kv_b): the ones most sensitive to quantization.
bool is_attn_v_like(Category c) { return c == Category::AttnV || c == Category::AttnQkv || c == Category::AttnKvB; }

// ggml_n_dims: trailing dimensions of 1 do not count, so a (n, 1) tensor is 1-D.
int n_dims(const std::vector<int64_t>& shape) {
  int n = static_cast<int>(shape.size());
  while (n > 1 && shape[static_cast<size_t>(n - 1)] == 1) --n;
  return std::max(n, 1);
}

// llama-quant.cpp `tensor_allows_quantization`: 2-D and 3-D weights, minus norms and a list of
// small or position-like tensors of other architectures.
bool allows_quantization(const WeightTensor& t, const MixOverrides& o) {
  if (n_dims(t.shape) < 2) return false;
  const std::string& name = t.name;
  if (name.size() < 6 || name.compare(name.size() - 6, 6, "weight") != 0) return false;
  if (contains(name, "_norm.weight")) return false;
  if (o.leave_output && name == "output.weight") return false;
  static const char* const kNever[] = {
      "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
      "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
      "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
      "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
      "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
      "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
      "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos",
      ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd"};
  for (const char* part : kNever)
    if (contains(name, part)) return false;
  if (name == "position_embd.weight" || name == "token_types.weight") return false;
  return true;
}

int64_t block_size(TypeId t) { return traits(t).block_size; }

// The layers that get more bits in the _m mixes: the first and last eighth, and every third
// layer in between (llama-quant.cpp `use_more_bits`).
bool use_more_bits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

// Order in which llama.cpp walks the tensors (llama-model-loader.h `weight_name_comparer`): by
// layer number ("blk.N."; -1 for the rest), then by name. The per-layer counters follow it.
int layer_of(const std::string& name) {
  int layer = -1;
  std::sscanf(name.c_str(), "blk.%d.", &layer);
  return layer;
}

struct State {
  uint32_t ftype = 0;
  int n_gqa = 0;          // n_head / n_head_kv (0 when n_head_kv is 0)
  bool is_70b = false;    // llama.cpp's LLM_TYPE_70B: 80 layers (llama: with GQA)
  bool tied = true;       // no output.weight: token_embd doubles as the output projection
  bool has_imatrix = false;
  std::optional<TypeId> output_override;
  int n_attention_wv = 0, i_attention_wv = 0;
  int n_ffn_down = 0, i_ffn_down = 0;
};

// llama-quant.cpp `llama_tensor_get_type_impl` for the mixes in all_mixes(), dense models.
TypeId mix_rule(State& s, TypeId t, const WeightTensor& w, Category cat, std::string& why) {
  const uint32_t f = s.ftype;
  if (cat == Category::Output || (s.tied && cat == Category::TokenEmbd)) {
    const char* what = cat == Category::Output ? "output projection" : "tied token_embd (the output projection)";
    if (s.output_override) {
      why = std::string(what) + ": --output-tensor-type";
      return *s.output_override;
    }
    if (w.shape[0] % block_size(t) != 0) {
      why = std::string(what) + ": rows of " + std::to_string(w.shape[0]) + " do not fit " +
            std::string(type_name(t)) + ", q8_0";
      return TypeId::Q8_0;
    }
    if (t != TypeId::Q8_0) {
      why = std::string(what) + " at q6_k";
      return TypeId::Q6_K;
    }
    return t;
  }
  if (cat == Category::TokenEmbd) return t;  // the mixes here leave an untied token_embd alone
  if (is_attn_v_like(cat)) {
    const int i = s.i_attention_wv++, n = s.n_attention_wv;
    TypeId r = t;
    if (f == kQ2_K) {
      r = s.n_gqa >= 4 ? TypeId::Q4_K : TypeId::Q3_K;
      why = s.n_gqa >= 4 ? "attn_v: q4_k with GQA >= 4" : "attn_v: q3_k";
    } else if (f == kQ3_K_M) {
      r = i < 2 ? TypeId::Q5_K : TypeId::Q4_K;
      why = i < 2 ? "attn_v: q5_k in the first two" : "attn_v: q4_k";
    } else if (f == kQ3_K_L) {
      r = TypeId::Q5_K;
      why = "attn_v: q5_k";
    } else if ((f == kIQ4_NL || f == kIQ4_XS) && s.n_gqa >= 4) {
      r = TypeId::Q5_K;
      why = "attn_v: q5_k with GQA >= 4";
    } else if ((f == kQ4_K_M || f == kQ5_K_M) && use_more_bits(i, n)) {
      r = TypeId::Q6_K;
      why = "attn_v: q6_k in the first/last eighth and every third layer";
    } else if (f == kQ4_K_S && i < 4) {
      r = TypeId::Q5_K;
      why = "attn_v: q5_k in the first four";
    }
    // 70B: eight heads share each attn_v, which is 8x smaller than attn_q; more bits cost little.
    if (s.is_70b && (r == TypeId::Q3_K || r == TypeId::Q4_K)) {
      r = TypeId::Q5_K;
      why = "attn_v: q5_k in a 70B model";
    }
    return r;
  }
  if (cat == Category::FfnDown) {
    // Dense models: the layer is the count of ffn_down tensors seen so far, not the name's.
    const int i = s.i_ffn_down++, n = s.n_ffn_down;
    if (f == kQ2_K) {
      why = "ffn_down: q3_k";
      return TypeId::Q3_K;
    }
    if (f == kQ3_K_M) {
      why = i < n / 16 ? "ffn_down: q5_k in the first sixteenth" : "ffn_down: q4_k";
      return i < n / 16 ? TypeId::Q5_K : TypeId::Q4_K;
    }
    if (f == kQ3_K_L) {
      why = "ffn_down: q5_k";
      return TypeId::Q5_K;
    }
    if (f == kQ4_K_M || f == kQ5_K_M) {
      if (!use_more_bits(i, n)) return t;
      why = "ffn_down: q6_k in the first/last eighth and every third layer";
      return TypeId::Q6_K;
    }
    if ((f == kIQ4_NL || f == kIQ4_XS) && !s.has_imatrix && i < n / 8) {
      why = "ffn_down: q5_k in the first eighth (no imatrix)";
      return TypeId::Q5_K;
    }
    if (f == kQ4_K_S && i < n / 8) {
      why = "ffn_down: q5_k in the first eighth";
      return TypeId::Q5_K;
    }
    if ((f == kQ4_0 || f == kQ5_0) && s.has_imatrix && i < n / 8) {
      why = "ffn_down: with an imatrix, the first eighth gets the variant with a min";
      return f == kQ4_0 ? TypeId::Q4_1 : TypeId::Q5_1;
    }
    return t;
  }
  if (cat == Category::AttnOutput) {
    if (f == kQ2_K) { why = "attn_output: q3_k"; return TypeId::Q3_K; }
    if (f == kQ3_K_M) { why = "attn_output: q4_k"; return TypeId::Q4_K; }
    if (f == kQ3_K_L) { why = "attn_output: q5_k"; return TypeId::Q5_K; }
    return t;
  }
  return t;  // attn_q, attn_k, ffn_gate, ffn_up: only the IQ3/IQ2 mixes change these
}

// llama-quant.cpp `tensor_type_fallback`: rows that a block type cannot hold get a type with
// 32-weight blocks, or F16 when even 32 does not divide the row.
Result<TypeId> fallback(const WeightTensor& w, TypeId t, std::string& why) {
  const int64_t ncols = w.shape[0];
  if (ncols % block_size(t) == 0) return t;
  TypeId r = t;
  switch (t) {
    case TypeId::IQ1_S: case TypeId::IQ1_M: case TypeId::IQ2_XXS: case TypeId::IQ2_XS: case TypeId::IQ2_S:
    case TypeId::IQ3_XXS: case TypeId::IQ3_S: case TypeId::IQ4_XS: r = TypeId::IQ4_NL; break;
    case TypeId::Q2_K: case TypeId::Q3_K: case TypeId::TQ1_0: case TypeId::TQ2_0: r = TypeId::Q4_0; break;
    case TypeId::Q4_K: r = TypeId::Q5_0; break;
    case TypeId::Q5_K: r = TypeId::Q5_1; break;
    case TypeId::Q6_K: r = TypeId::Q8_0; break;
    default:
      if (block_size(t) > 32)
        return make_error(w.origin + ": rows of " + std::to_string(ncols) + " are not a multiple of " +
                          std::to_string(block_size(t)) + " and llama.cpp defines no fallback for " +
                          std::string(type_name(t)));
  }
  if (ncols % block_size(r) != 0) r = TypeId::F16;
  const std::string note = "rows of " + std::to_string(ncols) + " are not a multiple of " +
                           std::to_string(block_size(t)) + " (" + std::string(type_name(t)) + "): " +
                           std::string(type_name(r));
  why = why.empty() ? note : why + "; " + note;
  return r;
}

}  // namespace

const std::vector<MixSpec>& all_mixes() {
  static const std::vector<MixSpec> mixes = {
      {"f32", kAllF32, TypeId::F32},       {"f16", kF16, TypeId::F16},
      {"q4_0", kQ4_0, TypeId::Q4_0},       {"q4_1", kQ4_1, TypeId::Q4_1},
      {"q8_0", kQ8_0, TypeId::Q8_0},       {"q5_0", kQ5_0, TypeId::Q5_0},
      {"q5_1", kQ5_1, TypeId::Q5_1},       {"q2_k", kQ2_K, TypeId::Q2_K},
      {"q3_k_s", kQ3_K_S, TypeId::Q3_K},   {"q3_k_m", kQ3_K_M, TypeId::Q3_K},
      {"q3_k_l", kQ3_K_L, TypeId::Q3_K},   {"q4_k_s", kQ4_K_S, TypeId::Q4_K},
      {"q4_k_m", kQ4_K_M, TypeId::Q4_K},   {"q5_k_s", kQ5_K_S, TypeId::Q5_K},
      {"q5_k_m", kQ5_K_M, TypeId::Q5_K},   {"q6_k", kQ6_K, TypeId::Q6_K},
      {"iq4_nl", kIQ4_NL, TypeId::IQ4_NL}, {"iq4_xs", kIQ4_XS, TypeId::IQ4_XS},
      {"bf16", kBF16, TypeId::BF16},
  };
  return mixes;
}

Result<MixSpec> find_mix(std::string_view name) {
  std::string n = lower(name);
  if (n == "q3_k" || n == "q4_k" || n == "q5_k") n += "_m";  // llama-quantize's aliases
  for (const MixSpec& m : all_mixes())
    if (m.name == n) return m;
  std::string known;
  for (const MixSpec& m : all_mixes()) known += (known.empty() ? "" : ", ") + m.name;
  return make_error("unknown quantization mix '" + std::string(name) + "' (known: " + known + ")");
}

Result<std::pair<std::string, TypeId>> parse_tensor_type_override(std::string_view arg) {
  const size_t eq = arg.find('=');
  if (eq == std::string_view::npos)
    return make_error("--tensor-type '" + std::string(arg) + "': expected REGEX=TYPE");
  if (eq == 0) return make_error("--tensor-type '" + std::string(arg) + "': the tensor name pattern is empty");
  const std::string_view type = arg.substr(eq + 1);
  if (type.empty()) return make_error("--tensor-type '" + std::string(arg) + "': the type is missing");
  const std::optional<TypeId> t = type_from_name(type);
  if (!t) return make_error("--tensor-type '" + std::string(arg) + "': unknown type '" + std::string(type) + "'");
  std::string pattern = lower(arg.substr(0, eq));
  try {
    std::regex check(pattern);
  } catch (const std::regex_error& e) {
    return make_error("--tensor-type '" + std::string(arg) + "': invalid regex: " + e.what());
  }
  return std::make_pair(pattern, *t);
}

Result<std::vector<MixChoice>> mix_tensor_types(const MixSpec& mix, const LlamaConfig& config,
                                                const std::vector<WeightTensor>& tensors,
                                                const MixOverrides& overrides) {
  std::vector<std::pair<std::regex, TypeId>> patterns;
  for (const auto& [pattern, type] : overrides.tensor_types) {
    try {
      patterns.emplace_back(std::regex(pattern), type);
    } catch (const std::regex_error& e) {
      return make_error("--tensor-type '" + pattern + "': invalid regex: " + e.what());
    }
  }

  State s;
  s.ftype = mix.ftype;
  s.n_gqa = config.n_head_kv > 0 ? static_cast<int>(config.n_head / config.n_head_kv) : 0;
  s.is_70b = config.n_layer == 80 &&
             ((config.arch == "llama" && config.n_head != config.n_head_kv) || config.arch == "qwen2");
  s.has_imatrix = overrides.has_imatrix;
  s.output_override = overrides.output;
  s.n_ffn_down = static_cast<int>(config.n_layer);
  for (const WeightTensor& t : tensors) {
    const Category c = category_of(t.name);
    if (is_attn_v_like(c)) ++s.n_attention_wv;
    if (c == Category::Output) s.tied = false;
  }

  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const int la = layer_of(tensors[a].name), lb = layer_of(tensors[b].name);
    if (la != lb) return la < lb;
    return tensors[a].name < tensors[b].name;
  });

  const bool quantized_default = traits(mix.default_type).quantized;
  std::vector<MixChoice> out(tensors.size());
  for (size_t idx : order) {
    const WeightTensor& w = tensors[idx];
    MixChoice& choice = out[idx];
    if (w.shape.empty()) return make_error(w.origin + ": tensor has no dimensions");
    if (!allows_quantization(w, overrides)) {
      choice.type = n_dims(w.shape) < 2 ? TypeId::F32 : w.source_type;
      choice.reason = n_dims(w.shape) < 2 ? "1-D tensor kept in f32" : "not quantized";
      continue;
    }
    const Category cat = category_of(w.name);
    // The two explicit overrides win over everything, even the shape fallback (llama.cpp applies
    // none to them). per_layer_token_embd yields to a --tensor-type regex that names it.
    if (overrides.token_embd && cat == Category::TokenEmbd) {
      bool named = false;
      if (w.name == "per_layer_token_embd.weight")
        for (const auto& p : patterns) named = named || std::regex_search(w.name, p.first);
      if (!named) {
        choice = {*overrides.token_embd, "--token-embedding-type"};
        continue;
      }
    }
    if (overrides.output && cat == Category::Output) {
      choice = {*overrides.output, "--output-tensor-type"};
      continue;
    }
    TypeId t = mix.default_type;
    std::string why;
    if (quantized_default) {
      bool manual = false;
      for (const auto& [re, type] : patterns) {
        if (std::regex_search(w.name, re)) {
          t = type;
          why = "--tensor-type";
          manual = true;
          break;
        }
      }
      // A manual choice skips the mix rules, so it does not advance the per-layer counters.
      if (!manual && !overrides.pure) t = mix_rule(s, t, w, cat, why);
      SHRINK_ASSIGN(t, fallback(w, t, why));
    }
    choice = {t, why};
  }
  return out;
}

}  // namespace shrink
