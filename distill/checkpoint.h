// Training checkpoints: everything a stopped run needs to continue exactly where it was.
//
// Stored as a GGUF file (formats/gguf.h, written to a temp file and renamed, so a run killed
// mid-write leaves the previous checkpoint intact):
//   tensors  "w.<name>"  student weights, "m.<name>" / "v.<name>" AdamW first/second moments
//            (F32, the parameter's shape; <name> is the GGUF weight name, "blk.0.attn_q.weight")
//   metadata "shrink.distill.state": one JSON object with the step, data cursor, RNG state,
//            the student config and the run fingerprint (teacher, data and options that must not
//            change under --resume).
// It is not a model file for llama.cpp; the trainer writes the student's GGUF and HF folder
// separately.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "distill/data.h"
#include "model/llama_config.h"

namespace shrink::distill {

struct CheckpointTensor {
  std::string name;            // GGUF weight name
  std::vector<int64_t> shape;  // ggml order
  std::vector<float> w, m, v;  // values, AdamW moments (same size)
};

struct Checkpoint {
  int64_t step = 0;            // optimizer steps done
  DataCursor cursor;           // next training window
  uint64_t rng_state = 0;      // SplitMix64 state that starts the current epoch's shuffle (data.h)
  uint64_t data_seed = 0;      // seed of the shuffling
  LlamaConfig config;          // student architecture
  std::string fingerprint;     // run identity (hex); --resume refuses a different one
  nlohmann::json run;          // the options that made the fingerprint, for messages
  std::vector<double> losses;  // training loss of every step so far (resume continues the curve)
  std::vector<CheckpointTensor> tensors;
};

nlohmann::json config_to_json(const LlamaConfig& c);
Result<LlamaConfig> config_from_json(const nlohmann::json& j, const std::string& where);

Status write_checkpoint(const std::string& path, const Checkpoint& ck);
// Errors name the file and the missing tensor/key or the inconsistent size.
Result<Checkpoint> read_checkpoint(const std::string& path);

}  // namespace shrink::distill
