#include "kernels/quant_types.h"

#include <array>
#include <cctype>

namespace shrink {
namespace {

// Geometry from ggml.c's type_traits table (block size, bytes per block).
constexpr TypeTraits kTable[] = {
    {TypeId::F32, "f32", 1, 4, false},        {TypeId::F16, "f16", 1, 2, false},
    {TypeId::Q4_0, "q4_0", 32, 18, true},     {TypeId::Q4_1, "q4_1", 32, 20, true},
    {TypeId::Q5_0, "q5_0", 32, 22, true},     {TypeId::Q5_1, "q5_1", 32, 24, true},
    {TypeId::Q8_0, "q8_0", 32, 34, true},     {TypeId::Q8_1, "q8_1", 32, 36, true},
    {TypeId::Q2_K, "q2_K", 256, 84, true},    {TypeId::Q3_K, "q3_K", 256, 110, true},
    {TypeId::Q4_K, "q4_K", 256, 144, true},   {TypeId::Q5_K, "q5_K", 256, 176, true},
    {TypeId::Q6_K, "q6_K", 256, 210, true},   {TypeId::Q8_K, "q8_K", 256, 292, true},
    {TypeId::IQ2_XXS, "iq2_xxs", 256, 66, true}, {TypeId::IQ2_XS, "iq2_xs", 256, 74, true},
    {TypeId::IQ3_XXS, "iq3_xxs", 256, 98, true}, {TypeId::IQ1_S, "iq1_s", 256, 50, true},
    {TypeId::IQ4_NL, "iq4_nl", 32, 18, true}, {TypeId::IQ3_S, "iq3_s", 256, 110, true},
    {TypeId::IQ2_S, "iq2_s", 256, 82, true},  {TypeId::IQ4_XS, "iq4_xs", 256, 136, true},
    {TypeId::I8, "i8", 1, 1, false},          {TypeId::I16, "i16", 1, 2, false},
    {TypeId::I32, "i32", 1, 4, false},        {TypeId::I64, "i64", 1, 8, false},
    {TypeId::F64, "f64", 1, 8, false},        {TypeId::IQ1_M, "iq1_m", 256, 56, true},
    {TypeId::BF16, "bf16", 1, 2, false},      {TypeId::TQ1_0, "tq1_0", 256, 54, true},
    {TypeId::TQ2_0, "tq2_0", 256, 66, true},  {TypeId::MXFP4, "mxfp4", 32, 17, true},
};

constexpr size_t kMaxId = 40;
constexpr std::array<const TypeTraits*, kMaxId> make_index() {
  std::array<const TypeTraits*, kMaxId> index{};
  for (const TypeTraits& t : kTable) index[static_cast<uint32_t>(t.id)] = &t;
  return index;
}
constexpr auto kIndex = make_index();

}  // namespace

const TypeTraits* type_traits(uint32_t id) { return id < kMaxId ? kIndex[id] : nullptr; }

std::optional<TypeId> type_from_name(std::string_view name) {
  for (const TypeTraits& t : kTable) {
    if (t.name.size() != name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < name.size() && same; ++i)
      same = std::tolower(static_cast<unsigned char>(t.name[i])) ==
             std::tolower(static_cast<unsigned char>(name[i]));
    if (same) return t.id;
  }
  return std::nullopt;
}

}  // namespace shrink
