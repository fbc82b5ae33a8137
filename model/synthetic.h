// A generated Llama model for the demo and for tests that need shapes the shared data lacks
// (e.g. 256-wide rows): random weights with a realistic spread, a byte-level vocabulary.
#pragma once

#include <cstdint>

#include "model/model_source.h"

namespace shrink {

// Default: 4 layers, hidden 256, feed-forward 768, 8 heads (4 kv), vocab 267 -> ~3.3M weights.
LlamaConfig synthetic_config();

// Weights ~ N(0, 0.02) with a few input columns scaled by 8, mimicking the outlier features
// of trained LLMs that make quantization hard; norms near 1. Deterministic for a seed.
ModelSource make_synthetic_model(const LlamaConfig& config, uint64_t seed);

}  // namespace shrink
