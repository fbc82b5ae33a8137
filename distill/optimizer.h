// AdamW with PyTorch's update (torch.optim.AdamW, amsgrad off, maximize off), a linear warmup +
// cosine learning-rate schedule, global-norm gradient clipping as torch.nn.utils.clip_grad_norm_,
// and gradient scaling for accumulation over micro-batches.
//
// Per step t (1-based), for each parameter p with gradient g:
//   p <- p * (1 - lr * weight_decay)                 (decoupled decay, Loshchilov & Hutter 2019)
//   m <- beta1 m + (1 - beta1) g;   v <- beta2 v + (1 - beta2) g^2
//   p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// (eps is added after the bias-corrected square root, exactly where PyTorch adds it).
#pragma once

#include <cstdint>
#include <vector>

#include "distill/train_model.h"

namespace shrink::distill {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
  // Norm weights and biases (1-D parameters) are usually excluded from weight decay.
  bool decay_vectors = false;
};

class AdamW {
 public:
  explicit AdamW(AdamWOptions options = {}) : opt_(options) {}
  // One update of every parameter with learning rate lr; state is created on the first call and
  // keyed by position in `params` (pass the same list every time).
  void step(std::vector<Param>& params, double lr);
  int64_t steps() const { return t_; }
  const AdamWOptions& options() const { return opt_; }
  // Moment estimates (for checkpoints): one vector per parameter, in `params` order.
  std::vector<std::vector<float>>& first_moments() { return m_; }
  std::vector<std::vector<float>>& second_moments() { return v_; }
  void set_steps(int64_t t) { t_ = t; }

 private:
  AdamWOptions opt_;
  int64_t t_ = 0;
  std::vector<std::vector<float>> m_, v_;
};

// Learning rate at optimizer step `step` (0-based): linear warmup from peak/warmup to peak over
// `warmup` steps (step + 1) / warmup * peak, then cosine from peak down to min_ratio * peak at
// `total` steps; constant min_ratio * peak afterwards.
struct LrSchedule {
  double peak = 1e-3;
  int64_t warmup = 0;
  int64_t total = 1;
  double min_ratio = 0.0;
  double at(int64_t step) const;
};

// Global L2 norm over all gradients (accumulated in double). When it exceeds max_norm, every
// gradient is multiplied by max_norm / (norm + 1e-6), as clip_grad_norm_ does. Returns the norm
// before clipping. max_norm <= 0 disables clipping (the norm is still returned).
double clip_grad_norm(std::vector<Param>& params, double max_norm);

// Multiplies every gradient by s, e.g. 1 / n_micro after accumulating n_micro micro-batches whose
// losses were each a mean over their own rows.
void scale_grads(std::vector<Param>& params, float s);

}  // namespace shrink::distill
