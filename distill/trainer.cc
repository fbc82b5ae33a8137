#include "distill/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>

#include "distill/optimizer.h"

namespace shrink::distill {

namespace {

using Clock = std::chrono::steady_clock;

// Inputs (batch, seq) and next-token targets (batch, seq) of the windows `ids`.
void gather(const PackedData& d, bool heldout, const std::vector<int64_t>& ids, std::vector<int32_t>& inputs,
            std::vector<int32_t>& targets) {
  inputs.clear();
  targets.clear();
  for (int64_t w : ids) {
    auto win = heldout ? d.heldout_window(w) : d.train_window(w);
    inputs.insert(inputs.end(), win.begin(), win.end() - 1);
    targets.insert(targets.end(), win.begin() + 1, win.end());
  }
}

// Teacher outputs for a batch, dense (live teacher) or top-k (cache). `cache_index` is the
// window's index in the cache: training windows first, then held-out ones.
struct TeacherBatch {
  std::vector<float> logits;    // (rows, n_vocab) when dense
  std::vector<int32_t> ids;     // (rows, k) when sparse
  std::vector<float> logprobs;  // (rows, k)
  int64_t k = 0;
};

Status teacher_batch(const TeacherSource& t, const PackedData& d, bool heldout, const std::vector<int64_t>& ids,
                     const std::vector<int32_t>& inputs, TeacherBatch& out) {
  const int64_t seq = d.seq;
  out.logits.clear();
  out.ids.clear();
  out.logprobs.clear();
  if (t.cache != nullptr) {
    out.k = t.cache->header().k;
    std::vector<int32_t> wi;
    std::vector<float> wl;
    for (int64_t w : ids) {
      SHRINK_CHECK(t.cache->topk(heldout ? d.n_train() + w : w, wi, wl));
      out.ids.insert(out.ids.end(), wi.begin(), wi.end());
      out.logprobs.insert(out.logprobs.end(), wl.begin(), wl.end());
    }
    return {};
  }
  std::vector<float> one;
  for (size_t b = 0; b < ids.size(); ++b) {
    SHRINK_CHECK(teacher_window_logits(*t.model, std::span<const int32_t>(inputs).subspan(b * seq, static_cast<size_t>(seq)),
                                       t.n_vocab_used, one));
    out.logits.insert(out.logits.end(), one.begin(), one.end());
  }
  return {};
}

LossValue batch_loss(const TeacherSource& t, const TeacherBatch& tb, std::span<const float> logits,
                     std::span<const int32_t> targets, int64_t n_vocab, const KdOptions& kd, std::vector<float>& dlogits) {
  if (!t.available() || kd.alpha >= 1.0) return cross_entropy(logits, targets, n_vocab, dlogits);
  if (t.cache != nullptr) return kd_loss_topk(logits, tb.ids, tb.logprobs, tb.k, targets, n_vocab, kd, dlogits);
  return kd_loss_full(logits, tb.logits, targets, n_vocab, kd, dlogits);
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

Status teacher_window_logits(const LlamaModel& teacher, std::span<const int32_t> tokens, int64_t n_vocab_used,
                             std::vector<float>& out) {
  const int64_t seq = static_cast<int64_t>(tokens.size());
  const int64_t V = teacher.config.n_vocab;
  // F32 cache: the teacher's logits without the F16 rounding of keys/values llama.cpp's default
  // cache adds (that rounding is a runtime choice, not part of the model).
  KvCache cache = make_kv_cache(teacher, seq, KvCacheType::F32);
  std::vector<float> full;
  SHRINK_CHECK(llama_forward(teacher, cache, tokens, full, 0));
  if (n_vocab_used == V) {
    out = std::move(full);
    return {};
  }
  out.resize(static_cast<size_t>(seq * n_vocab_used));
  for (int64_t t = 0; t < seq; ++t)
    std::copy(full.begin() + t * V, full.begin() + t * V + n_vocab_used, out.begin() + t * n_vocab_used);
  return {};
}

std::vector<int64_t> hidden_layer_map(int64_t n_student, int64_t n_teacher, const std::vector<int64_t>& kept) {
  if (static_cast<int64_t>(kept.size()) == n_student) return kept;
  std::vector<int64_t> map;
  for (int64_t i = 0; i < n_student; ++i) map.push_back(((i + 1) * n_teacher + n_student - 1) / n_student - 1);
  return map;
}

std::string run_fingerprint(const nlohmann::json& run) {
  const std::string s = run.dump();
  uint64_t h = 14695981039346656037ull;  // FNV-1a 64
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return hex64(h);
}

Status check_resume(const Checkpoint& ck, const nlohmann::json& run, const std::string& path) {
  if (ck.fingerprint == run_fingerprint(run)) return {};
  std::string diff;
  for (auto it = run.begin(); it != run.end(); ++it) {
    const auto old = ck.run.find(it.key());
    if (old == ck.run.end() || *old != it.value())
      diff += std::string(diff.empty() ? "" : "; ") + it.key() + " was " + (old == ck.run.end() ? "absent" : old->dump()) +
              ", now " + it.value().dump();
  }
  for (auto it = ck.run.begin(); it != ck.run.end(); ++it)
    if (!run.contains(it.key())) diff += std::string(diff.empty() ? "" : "; ") + it.key() + " was " + it.value().dump() + ", now absent";
  return make_error(path + ": checkpoint of a different run (fingerprint " + ck.fingerprint + ", this run " +
                    run_fingerprint(run) + "): " + (diff.empty() ? "options differ" : diff) +
                    "; resume with the same teacher, data and options, or write to another -o folder");
}

Result<EvalReport> evaluate(TrainModel& student, const PackedData& data, const TeacherSource& teacher, int64_t batch,
                            int64_t max_windows) {
  const int64_t V = student.config().n_vocab;
  int64_t n = data.n_heldout();
  if (max_windows > 0) n = std::min(n, max_windows);
  if (n == 0) return make_error("no held-out windows to evaluate (--holdout 0)");
  double ce_sum = 0, kld_sum = 0;
  int64_t rows = 0;
  std::vector<int32_t> inputs, targets;
  std::vector<float> logits, dlogits;
  TeacherBatch tb;
  KdOptions kl;  // forward KL at T = 1, no CE term: the KLD llama-perplexity reports
  kl.divergence = Divergence::kForwardKL;
  kl.temperature = 1.0;
  kl.alpha = 0.0;
  for (int64_t w0 = 0; w0 < n; w0 += batch) {
    std::vector<int64_t> ids;
    for (int64_t w = w0; w < std::min(n, w0 + batch); ++w) ids.push_back(w);
    gather(data, /*heldout=*/true, ids, inputs, targets);
    const auto b = static_cast<int64_t>(ids.size());
    SHRINK_CHECK(student.forward(inputs, b, data.seq, logits));
    const LossValue ce = cross_entropy(logits, targets, V, dlogits);
    ce_sum += ce.ce * static_cast<double>(ce.n_rows);
    rows += ce.n_rows;
    if (teacher.available()) {
      SHRINK_CHECK(teacher_batch(teacher, data, /*heldout=*/true, ids, inputs, tb));
      const LossValue kd = teacher.cache != nullptr ? kd_loss_topk(logits, tb.ids, tb.logprobs, tb.k, targets, V, kl, dlogits)
                                                    : kd_loss_full(logits, tb.logits, targets, V, kl, dlogits);
      kld_sum += kd.kd * static_cast<double>(kd.n_rows);
    }
  }
  EvalReport r;
  r.ce = ce_sum / static_cast<double>(rows);
  r.perplexity = std::exp(r.ce);
  if (teacher.available()) r.kld = kld_sum / static_cast<double>(rows);
  r.n_tokens = rows;
  return r;
}

Result<TrainResult> train(TrainModel& student, const PackedData& data, const TeacherSource& teacher,
                          const TrainOptions& o, const nlohmann::json& run, const std::string& checkpoint_path,
                          const Checkpoint* resume, const TrainCallbacks& cb) {
  if (o.steps < 1) return make_error("--steps must be at least 1, got " + std::to_string(o.steps));
  if (o.batch < 1) return make_error("--batch must be at least 1, got " + std::to_string(o.batch));
  if (o.grad_accum < 1) return make_error("--grad-accum must be at least 1, got " + std::to_string(o.grad_accum));
  const bool hidden = o.hidden.kind != HiddenLoss::kNone;
  const LlamaConfig& sc = student.config();
  if (hidden) {
    if (teacher.hidden_model == nullptr)
      return make_error("the hidden-state loss needs the live teacher's hidden states (a --teacher-cache holds logits only)");
    const LlamaConfig& tc = teacher.hidden_model->config();
    if (tc.n_embd != sc.n_embd)
      return make_error("the hidden-state loss compares widths as they are: the student's n_embd " + std::to_string(sc.n_embd) +
                        " is not the teacher's " + std::to_string(tc.n_embd) + " (no dim pruning with --hidden-loss)");
    if (static_cast<int64_t>(o.hidden.layer_map.size()) != sc.n_layer)
      return make_error("hidden-state layer map has " + std::to_string(o.hidden.layer_map.size()) + " entries for " +
                        std::to_string(sc.n_layer) + " student layers");
    for (int64_t m : o.hidden.layer_map)
      if (m < 0 || m >= tc.n_layer)
        return make_error("hidden-state layer map names teacher layer " + std::to_string(m) + " of " + std::to_string(tc.n_layer));
    if (!(o.hidden.weight >= 0) || !std::isfinite(o.hidden.weight))
      return make_error("--hidden-weight must be a finite non-negative number, got " + std::to_string(o.hidden.weight));
  }
  if (o.kd.alpha < 1.0 && !teacher.available())
    return make_error("the distillation loss (alpha < 1) needs a teacher or a teacher cache");
  const int64_t V = student.config().n_vocab;
  std::vector<Param>& params = student.params();
  AdamWOptions ao;
  ao.weight_decay = o.weight_decay;
  AdamW opt(ao);
  LrSchedule sched;
  sched.peak = o.lr;
  sched.warmup = o.warmup;
  sched.total = o.steps;
  sched.min_ratio = o.min_lr_ratio;

  TrainResult result;
  DataCursor cursor;
  int64_t step = 0;
  if (resume != nullptr) {
    // Weights and AdamW moments back in `params` order, matched by name.
    std::vector<std::vector<float>>& m = opt.first_moments();
    std::vector<std::vector<float>>& v = opt.second_moments();
    m.assign(params.size(), {});
    v.assign(params.size(), {});
    for (size_t i = 0; i < params.size(); ++i) {
      const CheckpointTensor* ct = nullptr;
      for (const CheckpointTensor& t : resume->tensors)
        if (t.name == params[i].name) ct = &t;
      if (ct == nullptr || ct->w.size() != params[i].value.size())
        return make_error(checkpoint_path + ": no tensor " + params[i].name + " of " + std::to_string(params[i].value.size()) +
                          " values in the checkpoint");
      params[i].value = ct->w;
      m[i] = ct->m;
      v[i] = ct->v;
    }
    if (resume->rng_state != epoch_rng_state(resume->data_seed, resume->cursor.epoch) || resume->data_seed != o.seed)
      return make_error(checkpoint_path + ": the checkpoint's RNG state does not belong to seed " + std::to_string(o.seed) +
                        " at epoch " + std::to_string(resume->cursor.epoch));
    opt.set_steps(resume->step);
    step = resume->step;
    cursor = resume->cursor;
    result.losses = resume->losses;
    if (step > o.steps)
      return make_error(checkpoint_path + ": the checkpoint is at step " + std::to_string(step) + ", beyond --steps " +
                        std::to_string(o.steps));
  }
  BatchSampler sampler(data, o.seed, cursor);

  auto save = [&](int64_t at) -> Status {
    Checkpoint ck;
    ck.step = at;
    ck.cursor = sampler.cursor();
    ck.rng_state = epoch_rng_state(o.seed, sampler.cursor().epoch);
    ck.data_seed = o.seed;
    ck.config = student.config();
    ck.fingerprint = run_fingerprint(run);
    ck.run = run;
    ck.losses = result.losses;
    const auto& m = opt.first_moments();
    const auto& v = opt.second_moments();
    for (size_t i = 0; i < params.size(); ++i) {
      CheckpointTensor t;
      t.name = params[i].name;
      t.shape = params[i].shape;
      t.w = params[i].value;
      t.m = i < m.size() && !m[i].empty() ? m[i] : std::vector<float>(params[i].value.size(), 0.0f);
      t.v = i < v.size() && !v[i].empty() ? v[i] : std::vector<float>(params[i].value.size(), 0.0f);
      ck.tensors.push_back(std::move(t));
    }
    SHRINK_CHECK(write_checkpoint(checkpoint_path, ck));
    if (cb.on_checkpoint) cb.on_checkpoint(at, checkpoint_path);
    return {};
  };
  auto eval = [&](int64_t at) -> Status {
    if (data.n_heldout() == 0) return {};
    SHRINK_ASSIGN(EvalReport r, evaluate(student, data, teacher, o.batch, o.eval_windows));
    r.step = at;
    result.last_eval = r;
    if (cb.on_eval) cb.on_eval(r);
    return {};
  };

  std::vector<int32_t> inputs, targets;
  std::vector<float> logits, dlogits, teacher_logits;
  std::vector<std::vector<float>> student_hidden, teacher_hidden, dhidden;
  TeacherBatch tb;
  const auto started = Clock::now();
  int64_t tokens_done = 0;
  const int64_t first_step = step;
  while (step < o.steps) {
    // grad_accum micro-batches, each a mean over its own rows; their gradients add up in
    // Param::grad and are divided by grad_accum once, so a step equals one batch of
    // batch * grad_accum sequences (the same windows, in the same order) up to float rounding.
    student.zero_grad();
    LossValue loss;
    double hidden_value = 0;
    for (int64_t micro = 0; micro < o.grad_accum; ++micro) {
      const std::vector<int64_t> ids = sampler.next_batch(o.batch);
      gather(data, /*heldout=*/false, ids, inputs, targets);
      if (teacher.available() && o.kd.alpha < 1.0) SHRINK_CHECK(teacher_batch(teacher, data, false, ids, inputs, tb));
      SHRINK_CHECK(student.forward(inputs, o.batch, data.seq, logits, hidden ? &student_hidden : nullptr));
      LossValue part = batch_loss(teacher, tb, logits, targets, V, o.kd, dlogits);
      double h = 0;
      if (hidden) {
        // hidden[l + 1] is the residual stream after layer l (train_model.h).
        SHRINK_CHECK(teacher.hidden_model->forward(inputs, o.batch, data.seq, teacher_logits, &teacher_hidden));
        dhidden.assign(static_cast<size_t>(sc.n_layer + 1), {});
        const double per_layer = o.hidden.weight / static_cast<double>(sc.n_layer);
        for (int64_t l = 0; l < sc.n_layer; ++l) {
          const std::vector<float>& s = student_hidden[static_cast<size_t>(l + 1)];
          const std::vector<float>& t = teacher_hidden[static_cast<size_t>(o.hidden.layer_map[static_cast<size_t>(l)] + 1)];
          std::vector<float>& d = dhidden[static_cast<size_t>(l + 1)];
          h += o.hidden.kind == HiddenLoss::kMse ? hidden_mse(s, t, sc.n_embd, per_layer, d)
                                                 : hidden_cosine(s, t, sc.n_embd, per_layer, d);
        }
        h /= static_cast<double>(sc.n_layer);
        part.total += o.hidden.weight * h;
      }
      if (!std::isfinite(part.total))
        return make_error("training loss is " + std::to_string(part.total) + " at step " + std::to_string(step + 1) +
                          "; lower --lr or check the teacher");
      SHRINK_CHECK(student.backward(dlogits, hidden ? &dhidden : nullptr));
      loss.total += part.total;
      loss.ce += part.ce;
      loss.kd += part.kd;
      loss.n_rows += part.n_rows;
      hidden_value += h;
    }
    if (o.grad_accum > 1) {
      const double n = static_cast<double>(o.grad_accum);
      loss.total /= n;
      loss.ce /= n;
      loss.kd /= n;
      hidden_value /= n;
      scale_grads(params, static_cast<float>(1.0 / n));
    }
    const double norm = clip_grad_norm(params, o.clip);
    const double lr = sched.at(step);
    opt.step(params, lr);
    ++step;
    result.losses.push_back(loss.total);
    tokens_done += o.batch * o.grad_accum * data.seq;

    StepReport r;
    r.step = step;
    r.steps = o.steps;
    r.loss = loss;
    r.hidden = hidden_value;
    r.lr = lr;
    r.grad_norm = norm;
    const double secs = std::chrono::duration<double>(Clock::now() - started).count();
    r.tokens_per_second = secs > 0 ? static_cast<double>(tokens_done) / secs : 0;
    r.eta_seconds = secs / static_cast<double>(step - first_step) * static_cast<double>(o.steps - step);
    if (cb.on_step) cb.on_step(r);

    const bool last = step == o.steps;
    if ((o.eval_every > 0 && step % o.eval_every == 0) || last) SHRINK_CHECK(eval(step));
    const bool stop = o.stop_at > 0 && step == o.stop_at && !last;
    if ((o.save_every > 0 && step % o.save_every == 0) || last || stop) SHRINK_CHECK(save(step));
    if (stop) {
      result.stopped_early = true;
      break;
    }
  }
  result.steps_done = step;
  return result;
}

}  // namespace shrink::distill
