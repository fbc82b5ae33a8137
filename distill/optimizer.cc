// AdamW, learning-rate schedule, gradient clipping (see optimizer.h for the formulas).
#include "distill/optimizer.h"

#include <cmath>

namespace shrink::distill {

void AdamW::step(std::vector<Param>& params, double lr) {
  if (m_.size() != params.size()) {
    m_.assign(params.size(), {});
    v_.assign(params.size(), {});
  }
  ++t_;
  const double b1 = opt_.beta1, b2 = opt_.beta2;
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(t_));
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(b2, static_cast<double>(t_)));
  const float step_size = static_cast<float>(lr / bc1);
  const float inv_bc2_sqrt = static_cast<float>(1.0 / bc2_sqrt);
  const float eps = static_cast<float>(opt_.eps);
  const float fb1 = static_cast<float>(b1), fb2 = static_cast<float>(b2);
  for (size_t i = 0; i < params.size(); ++i) {
    Param& p = params[i];
    auto& m = m_[i];
    auto& v = v_[i];
    if (m.size() != p.value.size()) {
      m.assign(p.value.size(), 0.0f);
      v.assign(p.value.size(), 0.0f);
    }
    const bool decay = opt_.weight_decay != 0.0 && (p.is_matrix() || opt_.decay_vectors);
    const float keep = decay ? static_cast<float>(1.0 - lr * opt_.weight_decay) : 1.0f;
    float* w = p.value.data();
    const float* g = p.grad.data();
    float* mp = m.data();
    float* vp = v.data();
    const int64_t n = p.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t j = 0; j < n; ++j) {
      float x = w[j] * keep;
      // m.lerp_(g, 1 - b1) and v * b2 + (1 - b2) g^2, in float as PyTorch does.
      mp[j] = mp[j] + (1.0f - fb1) * (g[j] - mp[j]);
      vp[j] = vp[j] * fb2 + (1.0f - fb2) * g[j] * g[j];
      const float denom = std::sqrt(vp[j]) * inv_bc2_sqrt + eps;
      x -= step_size * (mp[j] / denom);
      w[j] = x;
    }
  }
}

double LrSchedule::at(int64_t step) const {
  if (warmup > 0 && step < warmup) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const double floor = min_ratio * peak;
  const int64_t decay_steps = total - warmup;
  if (decay_steps <= 0 || step >= total) return floor;
  const double progress = static_cast<double>(step - warmup) / static_cast<double>(decay_steps);
  const double pi = 3.14159265358979323846;
  return floor + (peak - floor) * 0.5 * (1.0 + std::cos(pi * progress));
}

double clip_grad_norm(std::vector<Param>& params, double max_norm) {
  double sum = 0;
  for (const Param& p : params)
    for (float g : p.grad) sum += static_cast<double>(g) * static_cast<double>(g);
  const double norm = std::sqrt(sum);
  if (max_norm > 0 && norm > max_norm) {
    const float coef = static_cast<float>(max_norm / (norm + 1e-6));
    scale_grads(params, coef);
  }
  return norm;
}

void scale_grads(std::vector<Param>& params, float s) {
  for (Param& p : params)
    for (float& g : p.grad) g *= s;
}

}  // namespace shrink::distill
