// llama.cpp's quantization mixes ("q4_k_m", "q3_k_s", ...) as a pure function: which type every
// tensor of a model gets, and why. The rules are those of llama.cpp's src/llama-quant.cpp
// (`tensor_allows_quantization`, `llama_tensor_get_type`, `tensor_type_fallback`) at the build
// shrink tests against (node-llama-cpp 3.22.1, llama.cpp de3ff81); tests/test_mixes_llamacpp.cc
// proves the choices equal llama.cpp's own by running its quantizer on generated models.
//
// Scope: dense Llama-family models (no experts). The branches llama.cpp keeps for mixes shrink
// does not offer (IQ1/IQ2/IQ3, TQ, MXFP4, Q2_K_S) and for Falcon and mixture-of-experts models
// are not carried over.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "kernels/quant_types.h"
#include "model/llama_config.h"
#include "model/model_source.h"

namespace shrink {

struct MixSpec {
  std::string name;      // lower case, as `llama-quantize` spells it: "q4_k_m", "q8_0", "f16"
  uint32_t ftype = 0;    // llama.cpp's llama_ftype (llama.h), written as general.file_type
  TypeId default_type = TypeId::F32;  // llama_ftype_get_default_type()
};

// Every mix shrink knows, in llama_ftype order.
const std::vector<MixSpec>& all_mixes();
// By name, case-insensitive; "q3_k", "q4_k" and "q5_k" are llama-quantize's aliases for the _m mixes.
Result<MixSpec> find_mix(std::string_view name);

struct MixOverrides {
  std::optional<TypeId> output;      // --output-tensor-type: output.weight (and a tied token_embd)
  std::optional<TypeId> token_embd;  // --token-embedding-type
  // --tensor-type REGEX=TYPE, in order; the first regex found anywhere in a tensor's name wins
  // (std::regex ECMAScript, std::regex_search, as llama.cpp). Only applies when the mix's
  // default type is a block type (not f32/f16/bf16).
  std::vector<std::pair<std::string, TypeId>> tensor_types;
  bool pure = false;             // --pure: no per-tensor mixing, only the shape fallbacks
  bool leave_output = false;     // --leave-output-tensor: output.weight is not quantized
  bool has_imatrix = false;      // an importance matrix is given (changes ffn_down for q4_0,
                                 // q5_0, iq4_nl, iq4_xs)
};

struct MixChoice {
  TypeId type = TypeId::F32;
  std::string reason;  // empty when the tensor simply gets the mix's default type
};

// One choice per tensor, in the order of `tensors` (names and ggml shapes are all that is read).
// Tensors llama.cpp does not quantize keep their type: 1-D tensors (norms, biases, rope_freqs)
// are F32 -- the type llama.cpp's converter and shrink convert store them in -- and the others
// keep source_type. Errors: an invalid regex, or a type whose rows cannot fit and that has no
// fallback in llama.cpp.
Result<std::vector<MixChoice>> mix_tensor_types(const MixSpec& mix, const LlamaConfig& config,
                                                const std::vector<WeightTensor>& tensors,
                                                const MixOverrides& overrides = {});

// Parses one --tensor-type argument "REGEX=TYPE". As llama-quantize does, the regex is lower-cased.
Result<std::pair<std::string, TypeId>> parse_tensor_type_override(std::string_view arg);

}  // namespace shrink
