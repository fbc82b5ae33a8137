// `shrink distill --teacher T --data FILE... --steps N -o OUT_DIR [...]`: trains a smaller
// student from a teacher (pruned from it, or a fresh architecture) on the teacher's logits, and
// writes it as a Hugging Face folder and a GGUF. See distill/trainer.h for the loop,
// distill/student_init.h for where the student's weights come from.
#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "distill/checkpoint.h"
#include "distill/data.h"
#include "distill/student_init.h"
#include "distill/teacher_cache.h"
#include "distill/trainer.h"
#include "model/hf_writer.h"
#include "model/llama_model.h"
#include "model/model_source.h"
#include "model/tokenizer.h"
#include "quantizer/quantize_model.h"
#include "tools/cli.h"

namespace shrink::cli {

namespace fs = std::filesystem;
using namespace shrink::distill;

namespace {

struct Args {
  std::string teacher, tokenizer, output, json, loss = "kl", out_type = "f32";
  std::vector<std::string> data;
  int64_t steps = 0, seq = 256, batch = 8, warmup = 20, top_k = 64, eval_every = 50, save_every = 100;
  int64_t eval_windows = 0, calib_windows = 8, stop_at = 0, grad_accum = 1;
  std::string hidden_loss = "none";
  double hidden_weight = 1.0;
  double lr = 1e-3, temperature = 2.0, alpha = 0.5, beta = 0.5, holdout = 0.05, min_lr = 0.1, weight_decay = 0.0, clip = 1.0;
  uint64_t seed = 0;
  int threads = 0;
  bool resume = false, from_scratch = false, every_other = false, truncate_vocab = false;
  int64_t prune_layers = 0;
  std::string prune_width, student_config, cache_teacher, teacher_cache;
};

std::string fmt_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

// A SentencePiece tokenizer.model for the Hugging Face output: the teacher folder's, the
// --tokenizer file when it is one, or a *.model beside the teacher file.
std::string find_sentencepiece_model(const Args& a) {
  std::error_code ec;
  const fs::path t(a.teacher);
  if (fs::is_directory(t, ec) && fs::exists(t / "tokenizer.model", ec)) return (t / "tokenizer.model").string();
  if (!a.tokenizer.empty() && fs::path(a.tokenizer).extension() == ".model") return a.tokenizer;
  const fs::path dir = fs::is_directory(t, ec) ? t : t.parent_path();
  if (fs::exists(dir / "tokenizer.model", ec)) return (dir / "tokenizer.model").string();
  for (const auto& e : fs::directory_iterator(dir.empty() ? fs::path(".") : dir, ec))
    if (e.path().extension() == ".model") return e.path().string();
  return {};
}

// The first `n` entries of a vocabulary (--truncate-vocab).
Vocab truncated_vocab(const Vocab& v, int64_t n) {
  Vocab out = v;
  auto cut = [n](auto& xs) {
    if (static_cast<int64_t>(xs.size()) > n) xs.resize(static_cast<size_t>(n));
  };
  cut(out.tokens);
  cut(out.scores);
  cut(out.token_types);
  for (auto* id : {&out.bos_id, &out.eos_id, &out.unk_id, &out.pad_id})
    if (*id && **id >= n) id->reset();
  return out;
}

// Everything that must not change when a run is resumed. `hidden_layers` is the hidden-state
// loss's layer map (empty without that loss).
nlohmann::json run_identity(const Args& a, const ModelSource& teacher, const PackedData& data, const LlamaConfig& student,
                            const std::vector<int64_t>& hidden_layers) {
  std::error_code ec;
  nlohmann::json j;
  j["teacher"] = fs::weakly_canonical(a.teacher, ec).string();
  j["teacher_weight_bytes"] = teacher.source_bytes();
  j["data_fingerprint"] = data.n_tokens > 0 ? std::to_string(data.fingerprint) : "";
  j["seq"] = a.seq;
  j["holdout"] = a.holdout;
  j["batch"] = a.batch;
  j["grad_accum"] = a.grad_accum;
  j["hidden_loss"] = a.hidden_loss;
  if (a.hidden_loss != "none") {
    j["hidden_weight"] = a.hidden_weight;
    j["hidden_layers"] = hidden_layers;
  }
  j["steps"] = a.steps;
  j["lr"] = a.lr;
  j["min_lr"] = a.min_lr;
  j["warmup"] = a.warmup;
  j["weight_decay"] = a.weight_decay;
  j["clip"] = a.clip;
  j["loss"] = a.loss;
  j["temperature"] = a.temperature;
  j["alpha"] = a.alpha;
  j["beta"] = a.beta;
  j["seed"] = std::to_string(a.seed);
  j["prune_layers"] = a.prune_layers;
  j["every_other_layer"] = a.every_other;
  j["prune_width"] = a.prune_width;
  j["student_config"] = a.student_config;
  j["from_scratch"] = a.from_scratch;
  j["calib_windows"] = a.calib_windows;
  j["teacher_cache"] = a.teacher_cache.empty() ? "" : fs::weakly_canonical(a.teacher_cache, ec).string();
  j["student"] = config_to_json(student);
  return j;
}

Status write_outputs(const Args& a, const TrainModel& student, const Vocab& vocab, std::vector<std::string>& notes) {
  ModelSource src = student.to_source(vocab, "distilled");
  QuantizeOptions q;
  q.plan.mix = a.out_type;
  q.algo = QuantAlgo::kGgml;
  q.output = (fs::path(a.output) / "student.gguf").string();
  SHRINK_ASSIGN(QuantizeSummary s, quantize_model(src, q));
  notes.push_back("wrote " + q.output + " (" + human_bytes(s.output_bytes) + ", " + a.out_type + ")");
  HfWriteOptions ho;
  if (vocab.model == "llama") {
    ho.sentencepiece_model = find_sentencepiece_model(a);
    if (ho.sentencepiece_model.empty()) {
      notes.push_back("no Hugging Face folder: no SentencePiece tokenizer.model was found beside the teacher "
                      "(give --tokenizer TOKENIZER.model); the GGUF carries the vocabulary");
      return {};
    }
    if (static_cast<int64_t>(vocab.tokens.size()) != student.config().n_vocab) {
      notes.push_back("no Hugging Face folder: the teacher's tokenizer.model holds more tokens than the truncated vocabulary");
      return {};
    }
  }
  SHRINK_CHECK(write_hf_folder(a.output, src, ho));
  notes.push_back("wrote " + a.output + "/{config.json, model.safetensors, tokenizer files}");
  return {};
}

int run(Args a) {
  if (a.threads > 0) omp_set_num_threads(a.threads);
  KdOptions kd;
  if (a.loss == "kl") kd.divergence = Divergence::kForwardKL;
  else if (a.loss == "rkl") kd.divergence = Divergence::kReverseKL;
  else if (a.loss == "jsd") kd.divergence = Divergence::kJSD;
  else return fail("--loss must be kl, rkl or jsd, got \"" + a.loss + "\"");
  if (!(a.temperature > 0)) return fail("--temperature must be positive, got " + std::to_string(a.temperature));
  if (!(a.alpha >= 0 && a.alpha <= 1)) return fail("--alpha must lie in [0, 1], got " + std::to_string(a.alpha));
  if (!(a.beta >= 0 && a.beta <= 1)) return fail("--beta must lie in [0, 1], got " + std::to_string(a.beta));
  kd.temperature = a.temperature;
  kd.alpha = a.alpha;
  kd.beta = a.beta;
  if (a.from_scratch) kd.alpha = 1.0;  // the baseline: the text alone, no teacher term
  HiddenLossOptions hidden;
  if (a.hidden_loss == "mse") hidden.kind = HiddenLoss::kMse;
  else if (a.hidden_loss == "cosine") hidden.kind = HiddenLoss::kCosine;
  else if (a.hidden_loss != "none") return fail("--hidden-loss must be none, mse or cosine, got \"" + a.hidden_loss + "\"");
  if (!(a.hidden_weight >= 0) || !std::isfinite(a.hidden_weight))
    return fail("--hidden-weight must be a finite non-negative number, got " + std::to_string(a.hidden_weight));
  hidden.weight = a.hidden_weight;
  if (hidden.kind != HiddenLoss::kNone && !a.teacher_cache.empty())
    return fail("--hidden-loss needs the teacher's hidden states, which a --teacher-cache does not hold: run the live teacher");
  if (hidden.kind != HiddenLoss::kNone && a.from_scratch)
    return fail("--from-scratch trains on the text alone: it takes no --hidden-loss");
  if (a.grad_accum < 1) return fail("--grad-accum must be at least 1, got " + std::to_string(a.grad_accum));
  if (!a.cache_teacher.empty() && !a.teacher_cache.empty()) return fail("give --cache-teacher or --teacher-cache, not both");
  StudentInit init;
  init.prune_layers = a.prune_layers;
  init.every_other_layer = a.every_other;
  init.student_config = a.student_config;
  init.from_scratch = a.from_scratch;
  init.seed = a.seed;
  if (!a.prune_width.empty()) {
    auto w = parse_width_spec(a.prune_width);
    if (!w.ok()) return fail(w.error());
    init.width = *w;
  }
  if (!init.student_config.empty() && init.any_pruning())
    return fail("--student-config gives the whole architecture: do not combine it with --prune-layers/--prune-width/--every-other-layer");
  if (a.cache_teacher.empty() && init.student_config.empty() && !init.any_pruning())
    return fail("choose a student: --prune-layers N, --every-other-layer, --prune-width ffn=..,heads=..,dim=.. or --student-config config.json");
  if (a.cache_teacher.empty() && a.output.empty()) return fail("-o OUT_DIR is required");
  if (a.cache_teacher.empty() && a.steps < 1) return fail("--steps must be at least 1");

  // Teacher, tokenizer, data.
  OpenOptions oo;
  oo.tokenizer = a.tokenizer;
  auto source = open_model(a.teacher, oo);
  if (!source.ok()) return fail(source.error());
  for (const std::string& w : source->warnings) warn(w);
  TokenizerOptions to;
  to.model_name = source->config.name;
  auto tok = Tokenizer::from_vocab(source->vocab, to);
  if (!tok.ok()) return fail(tok.error());
  auto tokens = tokenize_files(a.data, *tok);
  if (!tokens.ok()) return fail(tokens.error());
  PackOptions po;
  po.seq = a.seq;
  po.holdout = a.holdout;
  auto data = pack_tokens(*tokens, po, std::to_string(a.data.size()) + " --data file(s)");
  if (!data.ok()) return fail(data.error());
  std::fprintf(stderr, "data: %s tokens -> %ld training + %ld held-out windows of %ld\n",
               with_commas(static_cast<uint64_t>(data->n_tokens)).c_str(), data->n_train(), data->n_heldout(), a.seq);

  auto teacher_model = load_llama_model(*source);
  if (!teacher_model.ok()) return fail(teacher_model.error());

  // --cache-teacher: the teacher's top-k logits of every window, written once.
  if (!a.cache_teacher.empty()) {
    TeacherCacheHeader h;
    h.k = static_cast<uint32_t>(std::max<int64_t>(a.top_k, 0));
    h.data_fingerprint = data->fingerprint;
    h.seq = a.seq;
    h.n_vocab = source->config.n_vocab;
    h.n_windows = data->n_train() + data->n_heldout();
    h.n_train = data->n_train();
    auto w = TeacherCacheWriter::create(a.cache_teacher, h);
    if (!w.ok()) return fail(w.error());
    ProgressBar bar("caching teacher");
    std::vector<float> logits;
    for (int64_t i = 0; i < h.n_windows; ++i) {
      const bool held = i >= data->n_train();
      auto win = held ? data->heldout_window(i - data->n_train()) : data->train_window(i);
      if (Status s = teacher_window_logits(*teacher_model, win.first(static_cast<size_t>(a.seq)), h.n_vocab, logits); !s.ok())
        return fail(s.error());
      if (Status s = w->add_window(logits); !s.ok()) return fail(s.error());
      bar.update(static_cast<double>(i + 1) / static_cast<double>(h.n_windows), std::to_string(i + 1) + " windows");
    }
    bar.done();
    if (Status s = w->finish(); !s.ok()) return fail(s.error());
    const uint64_t bytes = fs::file_size(a.cache_teacher);
    std::printf("wrote %s: top-%u logits of %ld windows x %ld positions, %s, %lu bytes per token\n", a.cache_teacher.c_str(), h.k,
                h.n_windows, h.seq, human_bytes(bytes).c_str(), static_cast<unsigned long>(w->header().bytes_per_position()));
    return 0;
  }

  std::optional<TeacherCache> cache;
  if (!a.teacher_cache.empty()) {
    auto c = TeacherCache::open(a.teacher_cache);
    if (!c.ok()) return fail(c.error());
    if (c->header().data_fingerprint != data->fingerprint || c->header().seq != a.seq ||
        c->header().n_train != data->n_train())
      return fail(a.teacher_cache + ": cached for other data (its seq " + std::to_string(c->header().seq) + ", " +
                  std::to_string(c->header().n_train) + " training windows; here seq " + std::to_string(a.seq) + ", " +
                  std::to_string(data->n_train()) + "): rebuild it with --cache-teacher using the same --data, --seq and --holdout");
    if (c->header().n_vocab != source->config.n_vocab)
      return fail(a.teacher_cache + ": cache of a " + std::to_string(c->header().n_vocab) + "-token vocabulary, the teacher has " +
                  std::to_string(source->config.n_vocab));
    cache = std::move(*c);
  }

  // Output folder and checkpoint.
  std::error_code ec;
  fs::create_directories(a.output, ec);
  if (ec) return fail(a.output + ": cannot create the output folder: " + ec.message());
  const std::string ck_path = (fs::path(a.output) / "checkpoint.gguf").string();
  std::optional<Checkpoint> resume;
  if (a.resume) {
    if (!fs::exists(ck_path)) return fail(ck_path + ": no checkpoint to resume (run without --resume to start)");
    auto ck = read_checkpoint(ck_path);
    if (!ck.ok()) return fail(ck.error());
    resume = std::move(*ck);
  } else if (fs::exists(ck_path)) {
    return fail(a.output + " already holds a checkpoint (checkpoint.gguf): pass --resume to continue that run, or choose another -o");
  }

  // The student.
  const LlamaConfig& tc = source->config;
  TrainModel student;
  std::vector<std::string> init_notes;
  std::vector<int64_t> kept_layers;  // teacher indices of a pruned student's layers
  if (resume) {
    auto s = TrainModel::random(resume->config, 0);  // weights come from the checkpoint
    if (!s.ok()) return fail(s.error());
    student = std::move(*s);
  } else if (!init.student_config.empty()) {
    auto cfg = read_student_config(init.student_config);
    if (!cfg.ok()) return fail(cfg.error());
    auto s = TrainModel::random(*cfg, a.seed);
    if (!s.ok()) return fail(s.error());
    student = std::move(*s);
    init_notes.push_back("random init of " + init.student_config);
  } else {
    const int64_t calib = std::min(a.calib_windows, data->n_train());
    std::span<const int32_t> calib_tokens;
    std::vector<int32_t> calib_buf;
    for (int64_t i = 0; i < calib; ++i) {
      auto w = data->train_window(i);
      calib_buf.insert(calib_buf.end(), w.begin(), w.end() - 1);
    }
    calib_tokens = calib_buf;
    std::vector<double> bi;
    if (init.prune_layers > 0 && !init.from_scratch) {
      auto teacher_train = TrainModel::from_source(*source);
      if (!teacher_train.ok()) return fail(teacher_train.error());
      auto b = block_influence(*teacher_train, calib_tokens, a.seq);
      if (!b.ok()) return fail(b.error());
      bi = std::move(*b);
    } else if (init.prune_layers > 0) {
      bi.assign(static_cast<size_t>(tc.n_layer), 0.0);  // from scratch: only the count matters
    }
    auto keep = layers_to_keep(init, tc.n_layer, bi);
    if (!keep.ok()) return fail(keep.error());
    kept_layers = *keep;
    std::string kept;
    for (int64_t l : *keep) kept += (kept.empty() ? "" : ",") + std::to_string(l);
    if (init.from_scratch) {
      auto cfg = pruned_config(tc, static_cast<int64_t>(keep->size()), init.width);
      if (!cfg.ok()) return fail(cfg.error());
      auto s = TrainModel::random(*cfg, a.seed);
      if (!s.ok()) return fail(s.error());
      student = std::move(*s);
      init_notes.push_back("random init (from scratch) of the pruned architecture: " + std::to_string(keep->size()) + " layers");
    } else {
      std::optional<WidthImportance> imp;
      if (init.width.any()) {
        auto w = width_importance(*teacher_model, calib_tokens, a.seq);
        if (!w.ok()) return fail(w.error());
        imp = std::move(*w);
      }
      auto teacher_train = TrainModel::from_source(*source);
      if (!teacher_train.ok()) return fail(teacher_train.error());
      auto s = prune_teacher(*teacher_train, *keep, init.width, imp ? &*imp : nullptr);
      if (!s.ok()) return fail(s.error());
      student = std::move(*s);
      std::string bis;
      for (double v : bi) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%s%.4f", bis.empty() ? "" : " ", v);
        bis += buf;
      }
      init_notes.push_back("pruned from the teacher: layers kept " + kept + (bis.empty() ? "" : " (block influence " + bis + ")") +
                           (init.width.any() ? ", width " + a.prune_width : ""));
    }
  }
  const LlamaConfig& sc = student.config();
  for (const std::string& n : init_notes) std::fprintf(stderr, "student: %s\n", n.c_str());
  std::fprintf(stderr, "student: %ld layers, n_embd %ld, n_ff %ld, %ld heads (%ld kv), %s parameters (teacher %s)\n", sc.n_layer,
               sc.n_embd, sc.n_ff, sc.n_head, sc.n_head_kv, with_commas(static_cast<uint64_t>(student.n_params())).c_str(),
               with_commas(static_cast<uint64_t>(tc.n_params())).c_str());

  // Vocabulary: the student reads the teacher's tokens.
  Vocab out_vocab = source->vocab;
  int64_t n_vocab_used = tc.n_vocab;
  if (sc.n_vocab != tc.n_vocab) {
    if (sc.n_vocab > tc.n_vocab || !a.truncate_vocab || cache)
      return fail("the student's vocab_size " + std::to_string(sc.n_vocab) + " differs from the teacher's " + std::to_string(tc.n_vocab) +
                  ": the student is trained on the teacher's tokens and logits, so the vocabularies must match" +
                  (sc.n_vocab < tc.n_vocab ? std::string(cache ? " (truncation does not work with --teacher-cache)"
                                                               : "; --truncate-vocab keeps the teacher's first " + std::to_string(sc.n_vocab) +
                                                                     " tokens (only when the text uses no other token)")
                                           : std::string("; set vocab_size to ") + std::to_string(tc.n_vocab)));
    for (int32_t t : *tokens)
      if (t >= sc.n_vocab)
        return fail("--truncate-vocab: the text uses token " + std::to_string(t) + " (" + tok->token_text(t) +
                    "), outside the student's first " + std::to_string(sc.n_vocab) + " tokens");
    n_vocab_used = sc.n_vocab;
    out_vocab = truncated_vocab(source->vocab, sc.n_vocab);
  }

  // Hidden-state loss: which teacher layer each student layer matches. A resumed run cannot
  // recompute a pruned student's origins (no block influence then), so it takes the map its
  // checkpoint recorded; the identity check below refuses any change.
  std::vector<int64_t> layer_map;
  if (hidden.kind != HiddenLoss::kNone) {
    if (resume && resume->run.contains("hidden_layers") && resume->run["hidden_layers"].is_array())
      layer_map = resume->run["hidden_layers"].get<std::vector<int64_t>>();
    else
      layer_map = hidden_layer_map(sc.n_layer, tc.n_layer, kept_layers);
    std::string m;
    for (size_t i = 0; i < layer_map.size(); ++i) m += (i ? " " : "") + std::to_string(i) + "<-" + std::to_string(layer_map[i]);
    std::fprintf(stderr, "hidden-state loss (%s, weight %g): student layer <- teacher layer: %s\n", a.hidden_loss.c_str(),
                 a.hidden_weight, m.c_str());
  }
  hidden.layer_map = layer_map;
  const nlohmann::json identity = run_identity(a, *source, *data, sc, layer_map);
  if (resume) {
    if (Status s = check_resume(*resume, identity, ck_path); !s.ok()) return fail(s.error());
    std::fprintf(stderr, "resuming %s at step %ld of %ld\n", ck_path.c_str(), resume->step, a.steps);
  }

  std::ofstream log;
  if (!a.json.empty()) {
    log.open(a.json, resume ? std::ios::app : std::ios::trunc);
    if (!log) return fail(a.json + ": cannot open the JSON log");
  }
  TeacherSource teacher;
  if (cache) teacher.cache = &*cache;
  else teacher.model = &*teacher_model;
  teacher.n_vocab_used = n_vocab_used;
  std::optional<TrainModel> hidden_teacher;
  if (hidden.kind != HiddenLoss::kNone) {
    auto t = TrainModel::from_source(*source);
    if (!t.ok()) return fail(t.error());
    hidden_teacher = std::move(*t);
    teacher.hidden_model = &*hidden_teacher;
  }

  TrainOptions o;
  o.steps = a.steps;
  o.batch = a.batch;
  o.grad_accum = a.grad_accum;
  o.hidden = hidden;
  o.lr = a.lr;
  o.warmup = a.warmup;
  o.min_lr_ratio = a.min_lr;
  o.weight_decay = a.weight_decay;
  o.clip = a.clip;
  o.kd = kd;
  o.eval_every = a.eval_every;
  o.eval_windows = a.eval_windows;
  o.save_every = a.save_every;
  o.stop_at = a.stop_at;
  o.seed = a.seed;

  const bool tty = ::isatty(STDERR_FILENO) == 1;
  const int64_t print_every = std::max<int64_t>(1, a.steps / 20);
  bool line_open = false;
  auto end_line = [&] {
    if (line_open) std::fputc('\n', stderr);
    line_open = false;
  };
  TrainCallbacks cb;
  cb.on_step = [&](const StepReport& r) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "step %ld/%ld  loss %.4f  lr %.2e  %.0f tok/s  ETA %s", r.step, r.steps, r.loss.total, r.lr,
                  r.tokens_per_second, fmt_duration(r.eta_seconds).c_str());
    if (tty) {
      std::fprintf(stderr, "\r%s\x1b[K", buf);
      line_open = true;
    } else if (r.step % print_every == 0 || r.step == r.steps) {
      std::fprintf(stderr, "%s\n", buf);
    }
    if (log.is_open()) {
      nlohmann::json j{{"type", "step"}, {"step", r.step}, {"loss", r.loss.total}, {"ce", r.loss.ce}, {"kd", r.loss.kd},
                       {"hidden", r.hidden}, {"lr", r.lr}, {"grad_norm", r.grad_norm}, {"tokens_per_second", r.tokens_per_second}};
      log << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    }
  };
  cb.on_eval = [&](const EvalReport& r) {
    end_line();
    std::fprintf(stderr, "eval step %ld: held-out loss %.4f  ppl %.3f", r.step, r.ce, r.perplexity);
    if (r.kld) std::fprintf(stderr, "  KLD to teacher %.5f", *r.kld);
    std::fprintf(stderr, "  (%ld tokens)\n", r.n_tokens);
    if (log.is_open()) {
      nlohmann::json j{{"type", "eval"}, {"step", r.step}, {"loss", r.ce}, {"perplexity", r.perplexity}, {"tokens", r.n_tokens}};
      if (r.kld) j["kld"] = *r.kld;
      log << j.dump() << "\n";
    }
  };
  cb.on_checkpoint = [&](int64_t step, const std::string& path) {
    if (log.is_open()) log << nlohmann::json{{"type", "checkpoint"}, {"step", step}, {"path", path}}.dump() << "\n" << std::flush;
  };
  auto result = train(student, *data, teacher, o, identity, ck_path, resume ? &*resume : nullptr, cb);
  end_line();
  if (!result.ok()) return fail(result.error());
  if (result->stopped_early) {
    std::fprintf(stderr, "stopped after step %ld (--stop-at); continue with --resume\n", result->steps_done);
    return 0;
  }
  std::vector<std::string> notes;
  if (Status s = write_outputs(a, student, out_vocab, notes); !s.ok()) return fail(s.error());
  for (const std::string& n : notes) std::printf("%s\n", n.c_str());
  if (result->last_eval) {
    const EvalReport& e = *result->last_eval;
    std::printf("held-out: loss %.4f, perplexity %.3f", e.ce, e.perplexity);
    if (e.kld) std::printf(", KLD to teacher %.5f", *e.kld);
    std::printf(" (%ld tokens)\n", e.n_tokens);
    if (log.is_open()) log << nlohmann::json{{"type", "final"}, {"step", result->steps_done}, {"loss", e.ce}}.dump() << "\n";
  }
  return 0;
}

}  // namespace

void add_distill(CLI::App& root, std::vector<Command>& commands) {
  auto a = std::make_shared<Args>();
  CLI::App* sub = root.add_subcommand("distill", "train a smaller student on a teacher's logits; writes an HF folder and a GGUF");
  sub->add_option("--teacher", a->teacher, "teacher: Hugging Face folder, .safetensors, .gguf (any type) or llama2.c .bin")->required();
  sub->add_option("--tokenizer", a->tokenizer, "llama2.c teacher: tok*.bin or SentencePiece .model");
  sub->add_option("--data", a->data, "text files to train on (each one document, tokenized with the teacher's tokenizer)")
      ->required()->expected(1, -1);
  sub->add_option("--steps", a->steps, "optimizer steps");
  sub->add_option("-o,--output", a->output, "output folder: HF files, student.gguf, checkpoint.gguf");
  sub->add_option("--seq", a->seq, "tokens per training sequence")->capture_default_str();
  sub->add_option("--batch", a->batch, "sequences per micro-batch (one forward/backward pass)")->capture_default_str();
  sub->add_option("--grad-accum", a->grad_accum,
                  "micro-batches whose gradients are summed (then averaged) per optimizer step: a step sees "
                  "batch x grad-accum sequences at the memory of one micro-batch")
      ->capture_default_str();
  sub->add_option("--holdout", a->holdout, "fraction of the text held out for evaluation (taken from its end)")->capture_default_str();
  sub->add_option("--lr", a->lr, "peak learning rate (AdamW)")->capture_default_str();
  sub->add_option("--min-lr", a->min_lr, "final learning rate as a fraction of --lr (cosine decay)")->capture_default_str();
  sub->add_option("--warmup", a->warmup, "linear warmup steps")->capture_default_str();
  sub->add_option("--weight-decay", a->weight_decay, "AdamW decoupled weight decay on matrices")->capture_default_str();
  sub->add_option("--clip", a->clip, "global gradient-norm clip (0: off)")->capture_default_str();
  sub->add_option("--loss", a->loss, "divergence to the teacher: kl (forward), rkl (reverse), jsd")->capture_default_str();
  sub->add_option("--temperature", a->temperature, "softmax temperature of the divergence (scaled by T^2)")->capture_default_str();
  sub->add_option("--alpha", a->alpha, "weight of cross-entropy on the real next token (1: no teacher term)")->capture_default_str();
  sub->add_option("--beta", a->beta, "JSD mixing weight")->capture_default_str();
  sub->add_option("--hidden-loss", a->hidden_loss,
                  "also match the teacher's residual stream after each student layer: none, mse (mean squared error) or "
                  "cosine (mean 1 - cosine per token). A pruned student's layer i matches the teacher layer it was copied "
                  "from; a --student-config student's n_s layers spread over the teacher's n_t: layer i <- teacher layer "
                  "ceil((i+1) n_t / n_s) - 1. Needs the live teacher and equal widths (no dim pruning)")
      ->capture_default_str();
  sub->add_option("--hidden-weight", a->hidden_weight,
                  "weight of the hidden-state loss (averaged over student layers) added to the logit loss")
      ->capture_default_str();
  sub->add_option("--top-k", a->top_k, "logits per token kept by --cache-teacher")->capture_default_str();
  sub->add_option("--cache-teacher", a->cache_teacher, "write the teacher's top-k logits of every window to FILE and exit");
  sub->add_option("--teacher-cache", a->teacher_cache, "train from a --cache-teacher FILE instead of running the teacher");
  sub->add_option("--eval-every", a->eval_every, "evaluate on the held-out text every N steps (0: only at the end)")->capture_default_str();
  sub->add_option("--eval-windows", a->eval_windows, "held-out windows per evaluation (0: all)")->capture_default_str();
  sub->add_option("--save-every", a->save_every, "write a checkpoint every N steps (0: only at the end)")->capture_default_str();
  sub->add_option("--stop-at", a->stop_at, "save a checkpoint and stop after step N (continue later with --resume)");
  sub->add_option("--seed", a->seed, "seed of the data order and of random initialisation")->capture_default_str();
  sub->add_option("--json", a->json, "append one JSON line per step/eval/checkpoint to FILE");
  sub->add_flag("--resume", a->resume, "continue the run whose checkpoint.gguf is in the output folder");
  sub->add_option("--threads", a->threads, "OpenMP threads (default: all cores)");
  sub->add_option("--prune-layers", a->prune_layers, "student = teacher without the N blocks of least influence (cosine of in/out)");
  sub->add_flag("--every-other-layer", a->every_other, "student = teacher blocks 0, 2, 4, ...");
  sub->add_option("--prune-width", a->prune_width, "keep the most active channels: ffn=N,heads=N,dim=N (any subset)");
  sub->add_option("--student-config", a->student_config, "student architecture from a config.json, random init");
  sub->add_flag("--from-scratch", a->from_scratch,
                "baseline: random init of the architecture the pruning options give, trained on the text alone (no teacher term)");
  sub->add_option("--calib-windows", a->calib_windows, "training windows used to rank layers/channels for pruning")->capture_default_str();
  sub->add_flag("--truncate-vocab", a->truncate_vocab, "student vocab_size smaller than the teacher's: keep its first tokens");
  sub->add_option("--out-type", a->out_type, "student.gguf type or mix (f32, f16, q8_0, q4_k_m, ...)")->capture_default_str();
  commands.push_back({sub, [a] { return run(*a); }});
}

}  // namespace shrink::cli
