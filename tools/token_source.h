// The token input shared by `shrink eval` and `shrink calibrate`: a text file tokenized with the
// model's own tokenizer or a JSON array of ids, cut into chunks of --ctx tokens, with the options
// that pick them (--text, --tokens, --tokenizer, --ctx, --chunks, --threads, --kv-type).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "model/llama_model.h"
#include "model/model_source.h"

namespace shrink::cli {

struct TokenSourceArgs {
  std::string text;       // --text FILE
  std::string tokens;     // --tokens FILE (JSON array of ids)
  std::string tokenizer;  // --tokenizer (llama2.c inputs)
  int64_t ctx = 512;      // --ctx
  int64_t chunks = -1;    // --chunks; -1 = all
  int threads = 0;        // --threads; 0 = OpenMP's default (all cores)
  std::string kv_type = "f16";
  bool parse_special = false;  // only calibrate offers --parse-special; eval reads text as llama-perplexity: off
};

// What differs between the subcommands: how each uses a chunk.
struct TokenSourceHelp {
  std::string ctx;     // help of --ctx
  std::string chunks;  // help of --chunks
};

// Registers the options above (not --parse-special) on `sub`; returns --ctx so a caller can ask
// whether it was given.
CLI::Option* add_token_source_options(CLI::App* sub, TokenSourceArgs& a, const TokenSourceHelp& help);

// --kv-type as the model's enum, or an error naming the bad value.
Result<KvCacheType> kv_cache_type(const std::string& kv_type);

// A JSON array of non-negative int32 token ids.
Result<std::vector<int32_t>> read_token_ids(const std::string& path);

// The ids of --tokens, or --text as llama-perplexity / llama-imatrix read -f: one trailing newline
// dropped, then the model's tokenizer with add_special (BOS when the vocabulary adds one) and
// a.parse_special. Exactly one of text/tokens must be set (checked by the caller).
Result<std::vector<int32_t>> load_tokens(const TokenSourceArgs& a, const ModelSource& model);

// Whether each chunk starts with BOS (both passes replace its first token): the vocabulary's
// add_bos flag when present, else true for SentencePiece ("llama") vocabularies; never without a BOS id.
bool adds_bos(const Vocab& vocab);

}  // namespace shrink::cli
