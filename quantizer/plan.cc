#include "quantizer/plan.h"

#include "kernels/kernels.h"

namespace shrink {

uint64_t QuantPlan::total_bytes() const {
  uint64_t n = 0;
  for (const TensorPlan& t : tensors) n += t.bytes;
  return n;
}

int64_t QuantPlan::total_weights() const {
  int64_t n = 0;
  for (const TensorPlan& t : tensors) n += t.tensor->n_elements();
  return n;
}

Result<uint32_t> llama_file_type(TypeId type) {
  switch (type) {
    case TypeId::F32: return 0u;
    case TypeId::F16: return 1u;
    case TypeId::Q4_0: return 2u;
    case TypeId::Q4_1: return 3u;
    case TypeId::Q8_0: return 7u;
    case TypeId::Q5_0: return 8u;
    case TypeId::Q5_1: return 9u;
    case TypeId::BF16: return 32u;
    default: return make_error(std::string("type ") + std::string(type_name(type)) + " is not a whole-model type shrink can write");
  }
}

std::vector<TypeId> plannable_types() {
  return {TypeId::F32, TypeId::F16, TypeId::BF16, TypeId::Q8_0, TypeId::Q4_0, TypeId::Q4_1, TypeId::Q5_0, TypeId::Q5_1};
}

namespace {

}  // namespace

Result<QuantPlan> make_plan(const ModelSource& model, TypeId type) {
  QuantPlan plan;
  plan.requested = type;
  SHRINK_ASSIGN(plan.file_type, llama_file_type(type));
  if (!kernels::can_quantize(type))
    return make_error(std::string("type ") + std::string(type_name(type)) + " has no quantizer in this build");
  const bool quantized = traits(type).quantized;
  // With tied embeddings token_embd doubles as the output projection, and llama.cpp gives it
  // the output projection's type (llama-quant.cpp: `!qs.has_output && name == token_embd`).
  const bool has_output = model.find("output.weight") != nullptr;
  auto is_output = [&](const std::string& name) {
    return name == "output.weight" || (!has_output && name == "token_embd.weight");
  };
  for (const WeightTensor& t : model.tensors) {
    TensorPlan p;
    p.tensor = &t;
    p.type = type;
    if (t.shape.size() < 2) {
      // Norms and biases stay F32, as llama.cpp keeps every 1-D tensor.
      p.type = TypeId::F32;
      if (type != TypeId::F32) p.reason = "1-D tensor kept in f32";
    } else if (quantized && is_output(t.name) && type != TypeId::Q8_0) {
      // llama.cpp gives the output projection Q6_K in the q4/q5 mixes (Q8_0 when rows are not
      // a multiple of 256). Until Q6_K lands, shrink gives it Q8_0: more bits, never fewer.
      p.type = TypeId::Q8_0;
      p.reason = "output projection kept at q8_0 (llama.cpp: q6_k)";
    }
    if (!row_fits(p.type, t.shape[0])) {
      // Rows that are not a multiple of the block size cannot use a block type; llama.cpp
      // falls back to F16 for these (e.g. stories260K's 172-wide ffn_down rows).
      p.reason = "rows of " + std::to_string(t.shape[0]) + " are not a multiple of " +
                 std::to_string(traits(p.type).block_size) + ": f16";
      p.type = TypeId::F16;
    }
    p.bytes = row_size(p.type, t.shape[0]) * static_cast<uint64_t>(t.n_rows());
    plan.tensors.push_back(std::move(p));
  }
  return plan;
}

}  // namespace shrink
