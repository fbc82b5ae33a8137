// Distillation losses on logits and hidden states, each returning its value and its gradient
// with respect to the student's tensors (the caller feeds those to TrainModel::backward).
//
// Logit loss, per token row r (rows with target < 0 are padding and count for nothing):
//   loss = alpha * CE(student, target) + (1 - alpha) * T^2 * D(teacher_T, student_T)
// averaged over the counted rows, where student_T = softmax(z_s / T), teacher_T = softmax(z_t / T)
// and D is one of
//   forward KL   KL(teacher_T || student_T)                       (Hinton et al. 2015, DistillKit)
//   reverse KL   KL(student_T || teacher_T)
//   JSD(beta)    beta KL(teacher_T || M) + (1 - beta) KL(student_T || M),
//                M = beta teacher_T + (1 - beta) student_T        (generalized JSD of GKD, Agarwal et al. 2024,
//                as TRL's GKD trainer computes it; there, as here, beta = 0 means forward KL and beta = 1
//                reverse KL, since the mixture formula itself vanishes at both ends)
// The T^2 factor keeps the soft-target gradient's size independent of T (Hinton: the gradient
// of the tempered loss scales as 1/T^2). CE is always at T = 1 on the unscaled logits.
//
// Sparse teacher (top-k cache): per row the teacher's k largest token ids and their log-probs at
// T = 1. The distributions are compared on k + 1 buckets: the k ids and "the rest". The
// teacher's rest mass is r = 1 - sum(exp(logprob)) (clamped at 0); at T != 1 it is tempered as if
// spread evenly over the V - k other tokens: weight (V - k) * (r / (V - k))^(1/T), exact at T = 1
// and when the tail is flat. The student's rest bucket is 1 - (its tempered mass on the k ids),
// computed from the logits so that it never goes negative. With k = V this is the full loss.
// A rest bucket whose mass is below 1e-30 is taken as 1e-30 (its log stays finite for reverse KL).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace shrink::distill {

enum class Divergence { kForwardKL, kReverseKL, kJSD };

struct KdOptions {
  Divergence divergence = Divergence::kForwardKL;
  double temperature = 1.0;  // T > 0
  double beta = 0.5;         // JSD only, in [0, 1]
  double alpha = 0.0;        // weight of the cross-entropy term, in [0, 1]
};

struct LossValue {
  double total = 0;   // alpha * ce + (1 - alpha) * T^2 * kd
  double ce = 0;      // mean next-token cross-entropy (nats)
  double kd = 0;      // mean divergence at temperature T, without the T^2 factor
  int64_t n_rows = 0; // rows counted
};

// Cross-entropy only (alpha = 1, no teacher). logits (n_rows, n_vocab); targets (n_rows), < 0 = ignore.
// dlogits gets d(mean CE)/d(logits), resized to n_rows * n_vocab.
LossValue cross_entropy(std::span<const float> logits, std::span<const int32_t> targets, int64_t n_vocab,
                        std::vector<float>& dlogits);

// Teacher as full logits (n_rows, n_vocab), same vocabulary as the student.
LossValue kd_loss_full(std::span<const float> student_logits, std::span<const float> teacher_logits,
                       std::span<const int32_t> targets, int64_t n_vocab, const KdOptions& options,
                       std::vector<float>& dlogits);

// Teacher as top-k ids (n_rows, k), distinct and in [0, n_vocab), and their log-probs at T = 1
// (n_rows, k). A row holding an id outside the vocabulary contributes no divergence.
// For every loss here, alpha > 0 needs targets; with empty targets every row counts and CE is 0.
LossValue kd_loss_topk(std::span<const float> student_logits, std::span<const int32_t> teacher_ids,
                       std::span<const float> teacher_logprobs, int64_t k, std::span<const int32_t> targets,
                       int64_t n_vocab, const KdOptions& options, std::vector<float>& dlogits);

// Hidden-state losses between a student and a teacher layer output, both (n_rows, n_embd) (the
// trainer maps student layers to teacher layers; widths must match). The gradient with respect
// to the student's hidden state is ADDED to dstudent (resized and zeroed when empty), times `weight`.
// MSE: mean over all elements of (s - t)^2. Cosine: mean over rows of 1 - cos(s_r, t_r).
double hidden_mse(std::span<const float> student, std::span<const float> teacher, int64_t n_embd, double weight,
                  std::vector<float>& dstudent);
double hidden_cosine(std::span<const float> student, std::span<const float> teacher, int64_t n_embd,
                     double weight, std::vector<float>& dstudent);

}  // namespace shrink::distill
