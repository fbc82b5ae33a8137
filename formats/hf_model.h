// Hugging Face model folders: config.json and the tokenizer files (tokenizer.model,
// tokenizer.json, tokenizer_config.json, added_tokens.json). Parsing only; the tensors live in
// safetensors files (formats/safetensors.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "formats/vocab.h"

namespace shrink {

// config.json "rope_scaling" (transformers modeling_rope_utils.py). Llama 3.x uses
// rope_type "llama3" with factor, low_freq_factor, high_freq_factor and
// original_max_position_embeddings.
struct HfRopeScaling {
  std::string type;  // "rope_type", or the older "type" key; e.g. "linear", "dynamic", "yarn", "llama3"
  std::optional<double> factor;
  std::optional<double> low_freq_factor;
  std::optional<double> high_freq_factor;
  std::optional<int64_t> original_max_position_embeddings;
};

struct HfConfig {
  std::string architecture;  // architectures[0]: LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM
  std::string model_type;    // "llama", "mistral", "qwen2"
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads
  std::optional<int64_t> head_dim;  // absent (or null): hidden_size / num_attention_heads
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 0.0;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  // q/k/v projections carry biases: config "attention_bias" (Llama, default false), always for
  // Qwen2 (its attention has q/k/v biases unconditionally, transformers modeling_qwen2.py).
  bool attention_bias = false;
  std::string torch_dtype;  // "torch_dtype" or the newer "dtype"; empty when absent
  // bos/eos: an int or a list of ints in config.json (Llama 3.1 lists several eos ids).
  std::vector<int64_t> bos_token_ids;
  std::vector<int64_t> eos_token_ids;
  std::optional<HfRopeScaling> rope_scaling;
  std::optional<int64_t> sliding_window;
  // Qwen2 only uses sliding_window when use_sliding_window is true (default false); Mistral
  // uses it whenever it is set.
  bool use_sliding_window = false;
  nlohmann::json raw;  // the whole file

  int64_t head_dim_or_default() const { return head_dim ? *head_dim : hidden_size / num_attention_heads; }
};

// The architectures this tool converts.
const std::vector<std::string>& hf_supported_architectures();

// Validates a parsed config.json. Required: architectures (non-empty list of strings, the
// first supported), model_type, hidden_size, intermediate_size, num_hidden_layers,
// num_attention_heads, vocab_size, max_position_embeddings, rms_norm_eps. Integers must be
// JSON integers and positive; num_key_value_heads must divide num_attention_heads; without
// head_dim, hidden_size must be divisible by num_attention_heads. `file` names the file in
// errors, which also name the field and the bad value.
Result<HfConfig> parse_hf_config(const nlohmann::json& j, const std::string& file);
// Reads <folder>/config.json.
Result<HfConfig> read_hf_config(const std::string& folder);

// The GGUF vocabulary llama.cpp's convert_hf_to_gguf.py writes for a Llama/Mistral/Qwen2
// folder (LlamaModel.set_vocab, Qwen2Model.set_vocab, gguf-py SpecialVocab):
//
// With tokenizer.model (SentencePiece; `_create_vocab_sentencepiece`):
//   sentencepiece_to_vocab(), padded to config.json vocab_size with "[PAD<i>]" tokens
//   (score -10000, UNUSED); added_tokens.json entries become USER_DEFINED (score -1000, ids
//   beyond vocab_size ignored); tokenizer_config.json added_tokens_decoder entries become
//   CONTROL when "special" or when they look special (<|...|>, <pad>, <mask>, <unused..>),
//   otherwise USER_DEFINED with U+2581 turned into ' ' (score -1000). model "llama",
//   pre "default".
//
// Without it, tokenizer.json as byte-level BPE (`_set_vocab_gpt2` / `get_vocab_base`):
//   model.type must be "BPE" without byte_fallback (byte-fallback BPE is SentencePiece-style
//   and needs tokenizer.model). Tokens by id from model.vocab plus added_tokens, padded to
//   config.json vocab_size with "[PAD<i>]" (UNUSED); added tokens are CONTROL when "special"
//   or looking special, else USER_DEFINED (U+2581 -> ' '); the rest NORMAL; no scores.
//   Merges from model.merges, either "a b" strings or [a, b] pairs (a ' ' inside a part is
//   written as U+0120, as gguf-py does). model "gpt2".
//   pre: llama.cpp names the pre-tokenizer by hashing the tokenization of a test string,
//   which needs the Python tokenizers library. Instead the pre_tokenizer JSON is matched
//   against the known patterns of the supported families:
//     Split(Llama 3 regex, \p{N}{1,3}) + ByteLevel            -> "llama-bpe"
//     Split(Qwen2 regex, \p{N})         + ByteLevel            -> "qwen2"
//     Split(Mistral Tekken regex)       + ByteLevel            -> "tekken"
//     Digits(individual) + ByteLevel(use_regex)                -> "smollm"
//     ByteLevel(use_regex) alone                               -> "gpt-2"
//   Anything else is an error naming the pre-tokenizer: guessing would produce a GGUF that
//   llama.cpp loads but tokenizes differently, and convert_hf_to_gguf.py refuses such
//   tokenizers as well.
//   The "normalized: false" round trip get_vocab_base does through the Python tokenizer is
//   not replicated (it only alters unusual added tokens).
//
// Both paths (SpecialVocab): bos/eos/unk/pad ids from tokenizer_config.json "<x>_token"
// (string or {"content": ...}) looked up among tokenizer.json added_tokens, else from
// config.json "<x>_token_id" when it is a single int; ids outside the vocabulary are skipped.
// For SentencePiece, ids still unset fall back to the model's own (llama.cpp would use the
// same defaults 0/1/2 at load time). add_bos/add_eos from a TemplateProcessing post-processor
// in tokenizer.json (first/last special token of the "single" template), overridden by
// tokenizer_config.json add_bos_token/add_eos_token. chat_template from tokenizer_config.json
// (a string, or a list of {name, template} from which the "default" one is taken; the other
// named templates are not kept), else from chat_template.jinja or chat_template.json.
// add_space_prefix from tokenizer_config.json "add_prefix_space" when given (LlamaModel.set_vocab;
// convert_hf_to_gguf.py skips this for Qwen2, harmlessly: llama.cpp's BPE tokenizer ignores it).
// An empty tokenizer_config.json counts as absent, as in SpecialVocab.
Result<Vocab> read_hf_tokenizer(const std::string& folder);

}  // namespace shrink
