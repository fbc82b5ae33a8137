#include "distill/student_init.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>

#include "formats/hf_model.h"
#include "model/load_hf.h"

namespace shrink::distill {

Result<WidthSpec> parse_width_spec(const std::string& spec) {
  WidthSpec w;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos) return make_error("--prune-width item \"" + item + "\" is not KEY=N (keys: ffn, heads, dim)");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    int64_t n = 0;
    try {
      size_t used = 0;
      n = std::stoll(value, &used);
      if (used != value.size()) throw std::invalid_argument(value);
    } catch (const std::exception&) {
      return make_error("--prune-width " + key + "=\"" + value + "\" is not an integer");
    }
    if (n < 1) return make_error("--prune-width " + key + " must be positive, got " + std::to_string(n));
    if (key == "ffn") w.ffn = n;
    else if (key == "heads") w.heads = n;
    else if (key == "dim") w.dim = n;
    else return make_error("--prune-width key \"" + key + "\" is unknown (keys: ffn, heads, dim)");
  }
  if (!w.any()) return make_error("--prune-width \"" + spec + "\" names nothing to prune (e.g. ffn=256,heads=4,dim=96)");
  return w;
}

Result<std::vector<double>> block_influence(TrainModel& teacher, std::span<const int32_t> windows, int64_t seq) {
  const LlamaConfig& c = teacher.config();
  const int64_t n = static_cast<int64_t>(windows.size()) / seq;
  if (n < 1) return make_error("block influence needs at least one calibration window");
  std::vector<double> sum(static_cast<size_t>(c.n_layer), 0.0);
  int64_t count = 0;
  std::vector<float> logits;
  std::vector<std::vector<float>> hidden;
  for (int64_t w = 0; w < n; ++w) {  // one window at a time keeps the activations small
    SHRINK_CHECK(teacher.forward(windows.subspan(static_cast<size_t>(w * seq), static_cast<size_t>(seq)), 1, seq, logits, &hidden));
    if (static_cast<int64_t>(hidden.size()) != c.n_layer + 1)
      return make_error("teacher forward returned " + std::to_string(hidden.size()) + " hidden states, expected n_layer + 1 = " +
                        std::to_string(c.n_layer + 1));
    for (int64_t l = 0; l < c.n_layer; ++l) {
      const float* a = hidden[static_cast<size_t>(l)].data();
      const float* b = hidden[static_cast<size_t>(l + 1)].data();
      for (int64_t t = 0; t < seq; ++t) {
        double ab = 0, aa = 0, bb = 0;
        for (int64_t i = 0; i < c.n_embd; ++i) {
          const double x = a[t * c.n_embd + i], y = b[t * c.n_embd + i];
          ab += x * y;
          aa += x * x;
          bb += y * y;
        }
        const double cosv = (aa > 0 && bb > 0) ? ab / std::sqrt(aa * bb) : 1.0;
        sum[static_cast<size_t>(l)] += 1.0 - cosv;
      }
    }
    count += seq;
  }
  for (double& s : sum) s /= static_cast<double>(count);
  return sum;
}

namespace {

// Sums activation statistics per weight-matrix input during the teacher's forward pass.
class WidthObserver : public MatmulObserver {
 public:
  WidthObserver(const LlamaConfig& c, WidthImportance& out) : c_(c), out_(out) {}
  void observe(const WeightMatrix& w, const float* x, int64_t n_tokens) override {
    int64_t layer = -1;
    char kind[64] = {};
    if (std::sscanf(w.name.c_str(), "blk.%ld.%63[a-z_]", &layer, kind) != 2 || layer < 0 || layer >= c_.n_layer) return;
    const std::string k = kind;
    const auto L = static_cast<size_t>(layer);
    if (k == "ffn_down") {
      auto& f = out_.ffn[L];
      for (int64_t t = 0; t < n_tokens; ++t)
        for (int64_t i = 0; i < c_.n_ff; ++i) f[static_cast<size_t>(i)] += std::fabs(x[t * c_.n_ff + i]);
    } else if (k == "attn_output") {
      auto& h = out_.heads[L];
      const int64_t dq = c_.n_embd_q();
      for (int64_t t = 0; t < n_tokens; ++t)
        for (int64_t hh = 0; hh < c_.n_head; ++hh) {
          double s = 0;
          for (int64_t i = 0; i < c_.head_dim; ++i) {
            const double v = x[t * dq + hh * c_.head_dim + i];
            s += v * v;
          }
          h[static_cast<size_t>(hh)] += std::sqrt(s);
        }
    } else if (k == "attn_q" || k == "ffn_gate") {  // the two RMSNorm outputs of the block
      for (int64_t t = 0; t < n_tokens; ++t)
        for (int64_t i = 0; i < c_.n_embd; ++i) out_.embd[static_cast<size_t>(i)] += std::fabs(x[t * c_.n_embd + i]);
    }
  }

 private:
  const LlamaConfig& c_;
  WidthImportance& out_;
};

// Indices of the `k` largest scores, ascending (ties: the lower index wins).
std::vector<int64_t> top_indices(const std::vector<double>& score, int64_t k) {
  std::vector<int64_t> idx(score.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](int64_t a, int64_t b) { return score[static_cast<size_t>(a)] > score[static_cast<size_t>(b)]; });
  idx.resize(static_cast<size_t>(k));
  std::sort(idx.begin(), idx.end());
  return idx;
}

std::vector<int64_t> all_indices(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

// Rows `rows` and columns `cols` of a row-major (n_rows, n_cols) matrix.
std::vector<float> slice(const std::vector<float>& m, int64_t n_cols, const std::vector<int64_t>& rows,
                         const std::vector<int64_t>& cols) {
  std::vector<float> out;
  out.reserve(rows.size() * cols.size());
  for (int64_t r : rows)
    for (int64_t c : cols) out.push_back(m[static_cast<size_t>(r * n_cols + c)]);
  return out;
}

// Expands head indices into the row/column indices of their head_dim-wide blocks.
std::vector<int64_t> head_lanes(const std::vector<int64_t>& heads, int64_t head_dim) {
  std::vector<int64_t> out;
  for (int64_t h : heads)
    for (int64_t i = 0; i < head_dim; ++i) out.push_back(h * head_dim + i);
  return out;
}

}  // namespace

Result<WidthImportance> width_importance(const LlamaModel& teacher, std::span<const int32_t> windows, int64_t seq) {
  const LlamaConfig& c = teacher.config;
  WidthImportance imp;
  imp.ffn.assign(static_cast<size_t>(c.n_layer), std::vector<double>(static_cast<size_t>(c.n_ff), 0.0));
  imp.heads.assign(static_cast<size_t>(c.n_layer), std::vector<double>(static_cast<size_t>(c.n_head), 0.0));
  imp.embd.assign(static_cast<size_t>(c.n_embd), 0.0);
  WidthObserver obs(c, imp);
  KvCache cache = make_kv_cache(teacher, seq, KvCacheType::F32);
  std::vector<float> logits;
  const int64_t n = static_cast<int64_t>(windows.size()) / seq;
  if (n < 1) return make_error("width importance needs at least one calibration window");
  for (int64_t w = 0; w < n; ++w) {
    cache.clear();
    // Only the last row's logits are asked for: the statistics come from the observer.
    SHRINK_CHECK(llama_forward(teacher, cache, windows.subspan(static_cast<size_t>(w * seq), static_cast<size_t>(seq)), logits,
                               seq - 1, &obs));
  }
  return imp;
}

Result<std::vector<int64_t>> layers_to_keep(const StudentInit& init, int64_t n_layer, const std::vector<double>& bi) {
  if (init.prune_layers > 0 && init.every_other_layer)
    return make_error("--prune-layers and --every-other-layer both choose the layers: give one");
  if (init.every_other_layer) {
    std::vector<int64_t> keep;
    for (int64_t l = 0; l < n_layer; l += 2) keep.push_back(l);
    return keep;
  }
  if (init.prune_layers <= 0) return all_indices(n_layer);
  if (init.prune_layers >= n_layer)
    return make_error("--prune-layers " + std::to_string(init.prune_layers) + " would remove all " + std::to_string(n_layer) +
                      " layers of the teacher");
  if (static_cast<int64_t>(bi.size()) != n_layer) return make_error("block influence has the wrong number of layers");
  return top_indices(bi, n_layer - init.prune_layers);
}

Result<LlamaConfig> pruned_config(const LlamaConfig& t, int64_t n_layer_kept, const WidthSpec& width) {
  LlamaConfig c = t;
  c.n_layer = n_layer_kept;
  if (width.ffn > 0) {
    if (width.ffn > t.n_ff) return make_error("--prune-width ffn=" + std::to_string(width.ffn) + " exceeds the teacher's " + std::to_string(t.n_ff));
    c.n_ff = width.ffn;
  }
  if (width.heads > 0) {
    if (width.heads > t.n_head || width.heads % t.n_head_kv != 0)
      return make_error("--prune-width heads=" + std::to_string(width.heads) + " must be a multiple of the teacher's " +
                        std::to_string(t.n_head_kv) + " KV heads, at most its " + std::to_string(t.n_head) +
                        " heads (heads are pruned inside each GQA group; every KV head is kept)");
    c.n_head = width.heads;
  }
  if (width.dim > 0) {
    if (width.dim > t.n_embd) return make_error("--prune-width dim=" + std::to_string(width.dim) + " exceeds the teacher's " + std::to_string(t.n_embd));
    c.n_embd = width.dim;
  }
  c.head_dim = t.head_dim;
  SHRINK_CHECK(c.validate("pruned student"));
  return c;
}

Result<TrainModel> prune_teacher(const TrainModel& teacher, const std::vector<int64_t>& keep, const WidthSpec& width,
                                 const WidthImportance* imp) {
  const LlamaConfig& tc = teacher.config();
  if (width.any() && imp == nullptr) return make_error("width pruning needs the teacher's activation importance");
  SHRINK_ASSIGN(LlamaConfig sc, pruned_config(tc, static_cast<int64_t>(keep.size()), width));
  const int64_t hd = tc.head_dim, group = tc.n_head / tc.n_head_kv, keep_per_group = sc.n_head / sc.n_head_kv;
  const std::vector<int64_t> embd = width.dim > 0 ? top_indices(imp->embd, width.dim) : all_indices(tc.n_embd);
  const std::vector<int64_t> kv_lanes = all_indices(tc.n_embd_kv());

  SHRINK_ASSIGN(TrainModel student, TrainModel::random(sc, 0));  // shapes only: every value is overwritten below
  for (Param& p : student.params()) {
    std::string tname = p.name;
    int64_t sl = -1, tl = -1;
    char rest[96] = {};
    if (std::sscanf(p.name.c_str(), "blk.%ld.%95s", &sl, rest) == 2) {
      tl = keep[static_cast<size_t>(sl)];
      tname = "blk." + std::to_string(tl) + "." + rest;
    }
    const Param* tp = teacher.find(tname);
    if (tp == nullptr) return make_error("teacher has no tensor " + tname + " for student tensor " + p.name);
    const std::string kind = rest;
    std::vector<int64_t> ffn_ch, q_lanes;
    if (tl >= 0) {
      ffn_ch = width.ffn > 0 ? top_indices(imp->ffn[static_cast<size_t>(tl)], width.ffn) : all_indices(tc.n_ff);
      std::vector<int64_t> heads;
      for (int64_t g = 0; g < tc.n_head_kv; ++g) {
        std::vector<double> score(static_cast<size_t>(group));
        for (int64_t j = 0; j < group; ++j)
          score[static_cast<size_t>(j)] = width.heads > 0 ? imp->heads[static_cast<size_t>(tl)][static_cast<size_t>(g * group + j)] : 0.0;
        for (int64_t j : top_indices(score, keep_per_group)) heads.push_back(g * group + j);
      }
      q_lanes = head_lanes(heads, hd);
    }
    std::vector<float> v;
    const int64_t tcols = tp->shape[0];
    if (p.name == "token_embd.weight" || p.name == "output.weight") {
      v = slice(tp->value, tcols, all_indices(tc.n_vocab), embd);
    } else if (p.name == "output_norm.weight" || kind == "attn_norm.weight" || kind == "ffn_norm.weight") {
      v = slice(tp->value, tcols, {0}, embd);
    } else if (kind == "attn_q.weight") {
      v = slice(tp->value, tcols, q_lanes, embd);
    } else if (kind == "attn_q.bias") {
      v = slice(tp->value, tcols, {0}, q_lanes);
    } else if (kind == "attn_k.weight" || kind == "attn_v.weight") {
      v = slice(tp->value, tcols, kv_lanes, embd);
    } else if (kind == "attn_k.bias" || kind == "attn_v.bias") {
      v = tp->value;
    } else if (kind == "attn_output.weight") {
      v = slice(tp->value, tcols, embd, q_lanes);
    } else if (kind == "ffn_gate.weight" || kind == "ffn_up.weight") {
      v = slice(tp->value, tcols, ffn_ch, embd);
    } else if (kind == "ffn_down.weight") {
      v = slice(tp->value, tcols, embd, ffn_ch);
    } else {
      return make_error("student tensor " + p.name + " has no pruning rule");
    }
    if (v.size() != p.value.size())
      return make_error("pruned " + p.name + " has " + std::to_string(v.size()) + " values, the student expects " +
                        std::to_string(p.value.size()));
    p.value = std::move(v);
  }
  return student;
}

Result<LlamaConfig> read_student_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(path + ": cannot open the student config");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return make_error(path + ": not valid JSON");
  SHRINK_ASSIGN(HfConfig hf, parse_hf_config(j, path));
  if (hf.rope_scaling) return make_error(path + ": rope_scaling is not supported for a student trained from a config");
  SHRINK_ASSIGN(LlamaConfig c, llama_config_from_hf(hf, path));
  c.name = "student";
  return c;
}

}  // namespace shrink::distill
