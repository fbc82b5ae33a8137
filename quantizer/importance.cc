#include "quantizer/importance.h"

#include "formats/imatrix_file.h"

namespace shrink {

Result<Importance> Importance::load(const std::string& path, const ModelSource& model,
                                    const std::vector<std::string>& include, const std::vector<std::string>& exclude) {
  SHRINK_ASSIGN(Imatrix m, read_imatrix(path));
  SHRINK_CHECK(check_imatrix_against(
      m,
      [&](const std::string& name) -> std::optional<ImatrixWeightShape> {
        const WeightTensor* t = model.find(name);
        if (t == nullptr || t->shape.size() < 2) return std::nullopt;
        return ImatrixWeightShape{t->shape[0], t->shape.size() > 2 ? t->shape[2] : 1};
      },
      path));
  auto matches = [](const std::string& name, const std::vector<std::string>& patterns) {
    for (const std::string& p : patterns)
      if (name.find(p) != std::string::npos) return true;
    return false;
  };
  Importance imp;
  for (const ImatrixEntry& e : m.entries) {
    if (!include.empty() && !matches(e.name, include)) continue;
    if (matches(e.name, exclude)) continue;
    imp.weights_[e.name] = imatrix_weights_all(e);
  }
  return imp;
}

const std::vector<float>* Importance::find(const std::string& tensor) const {
  auto it = weights_.find(tensor);
  return it == weights_.end() ? nullptr : &it->second;
}

}  // namespace shrink
