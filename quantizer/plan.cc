#include "quantizer/plan.h"

#include <algorithm>

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

bool QuantPlan::resolved() const {
  return std::all_of(tensors.begin(), tensors.end(), [](const TensorPlan& t) { return t.candidates.size() <= 1; });
}

void set_plan_type(TensorPlan& p, TypeId type) {
  p.type = type;
  p.bytes = row_size(type, p.tensor->shape[0]) * static_cast<uint64_t>(p.tensor->n_rows());
}

namespace {

double bits_per_weight(TypeId t) {
  const TypeTraits& tr = traits(t);
  return 8.0 * static_cast<double>(tr.type_size) / static_cast<double>(tr.block_size);
}

// The 32-weight block types shrink can write, smallest first (bits per weight: IQ4_NL 4.5,
// Q4_0 4.5, Q4_1 5.0, Q5_0 5.5, Q5_1 6.0, Q8_0 8.5).
constexpr TypeId kSmallBlockTypes[] = {TypeId::IQ4_NL, TypeId::Q4_0, TypeId::Q4_1,
                                       TypeId::Q5_0,   TypeId::Q5_1, TypeId::Q8_0};

// Types for a tensor whose rows do not fit `intended`: the 32-block types that fit and are no
// larger than llama.cpp's own fallback (`llama_choice`), so the file never grows past
// llama.cpp's; the quantizer keeps the one with the lowest error.
std::vector<TypeId> fallback_candidates(TypeId llama_choice, int64_t row) {
  std::vector<TypeId> out;
  if (!traits(llama_choice).quantized) return out;  // F16: no block type fits at all
  for (TypeId t : kSmallBlockTypes)
    if (row_fits(t, row) && kernels::can_quantize(t) && bits_per_weight(t) <= bits_per_weight(llama_choice) + 1e-9)
      out.push_back(t);
  return out;
}

}  // namespace

Result<QuantPlan> make_plan(const ModelSource& model, const PlanOptions& options) {
  QuantPlan plan;
  SHRINK_ASSIGN(plan.mix, find_mix(options.mix));
  plan.file_type = plan.mix.ftype;
  SHRINK_ASSIGN(std::vector<MixChoice> chosen, mix_tensor_types(plan.mix, model.config, model.tensors, options.overrides));

  // What the mix would choose if every row were a multiple of 256: the intended type.
  std::vector<WeightTensor> padded;
  bool any_padded = false;
  if (options.fallback == FallbackRule::kLowestError) {
    padded.reserve(model.tensors.size());
    for (const WeightTensor& t : model.tensors) {
      WeightTensor u;
      u.name = t.name;
      u.shape = t.shape;
      u.source_type = t.source_type;
      if (u.shape.size() >= 2 && u.shape[0] % 256 != 0) {
        u.shape[0] += 256 - u.shape[0] % 256;
        any_padded = true;
      }
      padded.push_back(std::move(u));
    }
  }
  std::vector<MixChoice> intended;
  if (any_padded) {
    SHRINK_ASSIGN(intended, mix_tensor_types(plan.mix, model.config, padded, options.overrides));
  }

  for (size_t i = 0; i < model.tensors.size(); ++i) {
    const WeightTensor& t = model.tensors[i];
    TensorPlan p;
    p.tensor = &t;
    p.reason = chosen[i].reason;
    TypeId type = chosen[i].type;
    if (any_padded && t.shape.size() >= 2 && !row_fits(intended[i].type, t.shape[0]) &&
        traits(intended[i].type).quantized) {
      std::vector<TypeId> c = fallback_candidates(chosen[i].type, t.shape[0]);
      if (c.size() > 1) {
        p.candidates = c;
        std::string names;
        for (TypeId x : c) names += (names.empty() ? "" : "/") + std::string(type_name(x));
        p.reason = "rows of " + std::to_string(t.shape[0]) + " do not fit " + std::string(type_name(intended[i].type)) +
                   ": lowest error of " + names + " (llama.cpp: " + std::string(type_name(chosen[i].type)) + ")";
        type = chosen[i].type;
      }
    }
    if (!kernels::can_quantize(type) && type != t.source_type)
      return make_error(t.origin + ": type " + std::string(type_name(type)) + " has no quantizer in this build");
    set_plan_type(p, type);
    plan.tensors.push_back(std::move(p));
  }
  return plan;
}

}  // namespace shrink
