// The distillation loop: batches from the packed text, the teacher's logits (live from the
// inference forward pass, or from a top-k cache), the loss of distill/losses.h (optionally plus a
// hidden-state loss against the teacher's residual stream), backward, gradients accumulated over
// micro-batches, global-norm clipping, AdamW on a warmup + cosine schedule; evaluation on the
// held-out windows; checkpoints that let a killed run continue exactly (same batches, same loss values).
//
// The library computes and reports through callbacks; tools/cmd_distill.cc prints them.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "distill/checkpoint.h"
#include "distill/data.h"
#include "distill/losses.h"
#include "distill/teacher_cache.h"
#include "distill/train_model.h"
#include "model/llama_model.h"

namespace shrink::distill {

// Where the teacher's outputs come from. Exactly one of `model` and `cache` is set, or neither
// when the loss needs no teacher (alpha = 1: cross-entropy on the text alone).
struct TeacherSource {
  const LlamaModel* model = nullptr;  // runs llama_forward with an F32 KV cache, one window at a time
  const TeacherCache* cache = nullptr;
  int64_t n_vocab_used = 0;           // student vocabulary: teacher logits beyond it are dropped (--truncate-vocab)
  // For a hidden-state loss: the teacher as an F32 training model, run forward only for its
  // residual stream (the inference forward pass does not hand that out). Null without one.
  TrainModel* hidden_model = nullptr;
  bool available() const { return model != nullptr || cache != nullptr; }
};

enum class HiddenLoss { kNone, kMse, kCosine };

// Hidden-state loss, added to the logit loss:  weight * mean over mapped layers of
// hidden_mse / hidden_cosine (distill/losses.h) between the student's output of layer i and the
// teacher's output of layer `layer_map[i]` (both the residual stream before the final norm, so
// the last student layer is compared before output_norm). Widths must match (no dim pruning).
struct HiddenLossOptions {
  HiddenLoss kind = HiddenLoss::kNone;
  double weight = 1.0;
  std::vector<int64_t> layer_map;  // (student n_layer): teacher layer index per student layer
};

// The teacher layer each student layer learns from. A student pruned from the teacher keeps its
// layers' origins: `kept` (ascending teacher indices, as layers_to_keep returns them). Any other
// student (a --student-config) spreads its n_student layers evenly over the teacher's:
// student layer i <- teacher layer ceil((i + 1) * n_teacher / n_student) - 1, so the last layers
// always meet and a same-depth student maps one to one.
std::vector<int64_t> hidden_layer_map(int64_t n_student, int64_t n_teacher, const std::vector<int64_t>& kept);

struct TrainOptions {
  int64_t steps = 100;
  int64_t batch = 8;           // sequences per micro-batch (one forward/backward)
  int64_t grad_accum = 1;      // micro-batches per optimizer step: a step sees batch * grad_accum sequences
  double lr = 1e-3;
  int64_t warmup = 20;
  double min_lr_ratio = 0.1;   // cosine decays to lr * min_lr_ratio at the last step
  double weight_decay = 0.0;
  double clip = 1.0;           // global gradient-norm limit (<= 0: off)
  KdOptions kd;                // divergence, temperature, alpha (alpha = 1: no teacher term)
  HiddenLossOptions hidden;
  int64_t eval_every = 50;     // 0: only at the end
  int64_t eval_windows = 0;    // held-out windows per evaluation (0: all)
  int64_t save_every = 100;    // 0: only at the end
  int64_t stop_at = 0;         // >0: save a checkpoint and stop after this step, as if killed
  uint64_t seed = 0;
};

struct StepReport {
  int64_t step = 0;  // 1-based, steps done
  int64_t steps = 0;
  LossValue loss;      // mean over the step's micro-batches; total includes the hidden term
  double hidden = 0;   // mean hidden-state loss (before its weight), 0 without one
  double lr = 0;
  double grad_norm = 0;
  double tokens_per_second = 0;  // this run's training tokens / wall time so far
  double eta_seconds = 0;
};

struct EvalReport {
  int64_t step = 0;
  double ce = 0;          // mean next-token cross-entropy on held-out windows (nats)
  double perplexity = 0;  // exp(ce)
  std::optional<double> kld;  // mean KL(teacher || student) per token at T = 1, when a teacher is there
  int64_t n_tokens = 0;
};

struct TrainCallbacks {
  std::function<void(const StepReport&)> on_step;
  std::function<void(const EvalReport&)> on_eval;
  std::function<void(int64_t step, const std::string& path)> on_checkpoint;
};

struct TrainResult {
  int64_t steps_done = 0;
  bool stopped_early = false;        // --stop-at reached
  std::vector<double> losses;        // every step's training loss, including resumed ones
  std::optional<EvalReport> last_eval;
};

// Fingerprint of a run's identity (hex FNV-1a of the JSON's canonical dump).
std::string run_fingerprint(const nlohmann::json& run);
// When `ck` comes from a different run, an error naming the options that differ.
Status check_resume(const Checkpoint& ck, const nlohmann::json& run, const std::string& checkpoint_path);

// Held-out evaluation of `student` (see EvalReport).
Result<EvalReport> evaluate(TrainModel& student, const PackedData& data, const TeacherSource& teacher, int64_t batch,
                            int64_t max_windows);

// Trains `student` for options.steps steps. With `resume`, the student's weights, AdamW state,
// data cursor and loss history are taken from it first (check_resume() must have passed).
// Checkpoints go to `checkpoint_path` (atomically replaced).
Result<TrainResult> train(TrainModel& student, const PackedData& data, const TeacherSource& teacher,
                          const TrainOptions& options, const nlohmann::json& run, const std::string& checkpoint_path,
                          const Checkpoint* resume, const TrainCallbacks& callbacks);

// Teacher logits of one window's first seq tokens, (seq, n_vocab_used), from the live teacher.
Status teacher_window_logits(const LlamaModel& teacher, std::span<const int32_t> tokens, int64_t n_vocab_used,
                             std::vector<float>& out);

}  // namespace shrink::distill
