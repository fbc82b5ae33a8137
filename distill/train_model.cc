// TrainModel: parameters, forward with saved activations, backward (see train_model.h).
//
// Per layer l, over N = batch * seq token rows (shapes in rows x columns):
//   x_l (N, d) -> h1 = rmsnorm(x_l) * attn_norm                 rstd1 (N)
//   q = h1 Wq^T (+bq) (N, dq), k = h1 Wk^T (+bk), v = h1 Wv^T (+bv) (N, dkv); RoPE on q, k
//   att = causal_softmax(q k^T / sqrt(hd)) v (N, dq)             probs (batch, n_head, seq, seq)
//   m = x_l + att Wo^T;  h2 = rmsnorm(m) * ffn_norm              rstd2 (N)
//   g = h2 Wgate^T, u = h2 Wup^T (N, ff); a = silu(g) * u;  x_{l+1} = m + a Wdown^T
// logits = (rmsnorm(x_L) * output_norm) Wout^T (N, n_vocab), Wout = token_embd when tied.
#include "distill/train_model.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "distill/ops.h"
#include "kernels/kernels.h"

namespace shrink::distill {

namespace {
constexpr int kNone = -1;
}

struct TrainModel::Activations {
  int64_t batch = 0, seq = 0;
  std::vector<int32_t> tokens, pos;
  struct Layer {
    std::vector<float> x, rstd1, h1, q, k, v, probs, att, m, rstd2, h2, g, u, a;
  };
  std::vector<Layer> layers;
  std::vector<float> x_final, rstd_f, h_f;
  ops::RopeTable rope;
};

namespace {

struct LayerIdx {
  int attn_norm, wq, wk, wv, bq = kNone, bk = kNone, bv = kNone, wo, ffn_norm, gate, up, down;
};

}  // namespace

Status TrainModel::build_params() {
  const LlamaConfig& c = config_;
  SHRINK_CHECK(c.validate("student config"));
  if (c.head_dim % 2 != 0) return make_error("student config: head_dim = " + std::to_string(c.head_dim) + " must be even for RoPE");
  params_.clear();
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    Param p;
    p.name = name;
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    p.shape = std::move(shape);
    p.value.assign(static_cast<size_t>(n), 0.0f);
    p.grad.assign(static_cast<size_t>(n), 0.0f);
    params_.push_back(std::move(p));
  };
  // Same order as the GGUF writers and model/synthetic.cc use.
  add("token_embd.weight", {c.n_embd, c.n_vocab});
  add("output_norm.weight", {c.n_embd});
  if (!c.tied_embeddings) add("output.weight", {c.n_embd, c.n_vocab});
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    add(b + "attn_norm.weight", {c.n_embd});
    add(b + "attn_q.weight", {c.n_embd, c.n_embd_q()});
    add(b + "attn_k.weight", {c.n_embd, c.n_embd_kv()});
    add(b + "attn_v.weight", {c.n_embd, c.n_embd_kv()});
    add(b + "attn_output.weight", {c.n_embd_q(), c.n_embd});
    if (c.qkv_bias) {
      add(b + "attn_q.bias", {c.n_embd_q()});
      add(b + "attn_k.bias", {c.n_embd_kv()});
      add(b + "attn_v.bias", {c.n_embd_kv()});
    }
    add(b + "ffn_norm.weight", {c.n_embd});
    add(b + "ffn_gate.weight", {c.n_embd, c.n_ff});
    add(b + "ffn_up.weight", {c.n_embd, c.n_ff});
    add(b + "ffn_down.weight", {c.n_ff, c.n_embd});
  }
  return {};
}

Param* TrainModel::find(const std::string& name) {
  for (Param& p : params_)
    if (p.name == name) return &p;
  return nullptr;
}

const Param* TrainModel::find(const std::string& name) const {
  for (const Param& p : params_)
    if (p.name == name) return &p;
  return nullptr;
}

int64_t TrainModel::n_params() const {
  int64_t n = 0;
  for (const Param& p : params_) n += p.numel();
  return n;
}

Result<TrainModel> TrainModel::from_source(const ModelSource& source) {
  TrainModel m;
  m.config_ = source.config;
  SHRINK_CHECK(m.build_params());
  for (Param& p : m.params_) {
    const WeightTensor* t = source.find(p.name);
    if (!t) return make_error(source.path + ": tensor " + p.name + " is missing");
    if (t->shape != p.shape) {
      std::string got, want;
      for (int64_t s : t->shape) got += (got.empty() ? "" : ",") + std::to_string(s);
      for (int64_t s : p.shape) want += (want.empty() ? "" : ",") + std::to_string(s);
      return make_error(source.path + ": tensor " + p.name + " has shape [" + got + "], the config implies [" + want + "]");
    }
    std::vector<float> data;
    SHRINK_CHECK(t->read_f32(data));
    if (data.size() != p.value.size())
      return make_error(t->origin + ": read " + std::to_string(data.size()) + " values, expected " +
                        std::to_string(p.value.size()));
    p.value = std::move(data);
  }
  if (const WeightTensor* f = source.find("rope_freqs.weight")) {
    SHRINK_CHECK(f->read_f32(m.rope_freq_factors_));
    if (static_cast<int64_t>(m.rope_freq_factors_.size()) != m.config_.head_dim / 2)
      return make_error(f->origin + ": rope_freqs has " + std::to_string(m.rope_freq_factors_.size()) +
                        " values, expected head_dim / 2 = " + std::to_string(m.config_.head_dim / 2));
  }
  return m;
}

Result<TrainModel> TrainModel::from_llama(const LlamaModel& model) {
  TrainModel m;
  m.config_ = model.config;
  SHRINK_CHECK(m.build_params());
  auto matrix = [&](const WeightMatrix& w, const std::string& name) -> Status {
    Param* p = m.find(name);
    if (!p) return make_error("parameter " + name + " is not part of the config");
    if (w.n_cols != p->shape[0] || w.n_rows != p->shape[1])
      return make_error(w.name + ": shape (" + std::to_string(w.n_rows) + ", " + std::to_string(w.n_cols) +
                        ") does not match " + name);
    if (!kernels::can_dequantize(w.type)) return make_error(w.name + ": storage type cannot be read as F32");
    kernels::dequantize_rows(w.type, w.data, p->value.data(), w.n_rows, w.n_cols);
    return {};
  };
  auto vec = [&](const std::vector<float>& v, const std::string& name) -> Status {
    Param* p = m.find(name);
    if (!p || p->value.size() != v.size()) return make_error("vector " + name + " has the wrong size or is not in the config");
    p->value = v;
    return {};
  };
  SHRINK_CHECK(matrix(model.token_embd, "token_embd.weight"));
  SHRINK_CHECK(vec(model.output_norm, "output_norm.weight"));
  if (!m.config_.tied_embeddings) SHRINK_CHECK(matrix(model.output, "output.weight"));
  for (size_t l = 0; l < model.layers.size(); ++l) {
    const LlamaLayer& L = model.layers[l];
    const std::string b = "blk." + std::to_string(l) + ".";
    SHRINK_CHECK(vec(L.attn_norm, b + "attn_norm.weight"));
    SHRINK_CHECK(matrix(L.wq, b + "attn_q.weight"));
    SHRINK_CHECK(matrix(L.wk, b + "attn_k.weight"));
    SHRINK_CHECK(matrix(L.wv, b + "attn_v.weight"));
    SHRINK_CHECK(matrix(L.wo, b + "attn_output.weight"));
    if (m.config_.qkv_bias) {
      SHRINK_CHECK(vec(L.bq, b + "attn_q.bias"));
      SHRINK_CHECK(vec(L.bk, b + "attn_k.bias"));
      SHRINK_CHECK(vec(L.bv, b + "attn_v.bias"));
    }
    SHRINK_CHECK(vec(L.ffn_norm, b + "ffn_norm.weight"));
    SHRINK_CHECK(matrix(L.ffn_gate, b + "ffn_gate.weight"));
    SHRINK_CHECK(matrix(L.ffn_up, b + "ffn_up.weight"));
    SHRINK_CHECK(matrix(L.ffn_down, b + "ffn_down.weight"));
  }
  m.rope_freq_factors_ = model.rope_freq_factors;
  return m;
}

Result<TrainModel> TrainModel::random(const LlamaConfig& config, uint64_t seed) {
  TrainModel m;
  m.config_ = config;
  SHRINK_CHECK(m.build_params());
  std::mt19937_64 rng(seed);
  const double resid_std = 0.02 / std::sqrt(2.0 * static_cast<double>(config.n_layer));
  for (Param& p : m.params_) {
    const bool is_bias = p.name.size() > 5 && p.name.compare(p.name.size() - 5, 5, ".bias") == 0;
    if (!p.is_matrix()) {
      std::fill(p.value.begin(), p.value.end(), is_bias ? 0.0f : 1.0f);
      continue;
    }
    const bool resid = p.name.find("attn_output") != std::string::npos || p.name.find("ffn_down") != std::string::npos;
    std::normal_distribution<double> d(0.0, resid ? resid_std : 0.02);
    for (float& x : p.value) x = static_cast<float>(d(rng));
  }
  return m;
}

void TrainModel::zero_grad() {
  for (Param& p : params_) std::fill(p.grad.begin(), p.grad.end(), 0.0f);
}

size_t TrainModel::activation_bytes() const {
  if (!act_) return 0;
  size_t n = act_->x_final.size() + act_->rstd_f.size() + act_->h_f.size();
  for (const auto& L : act_->layers)
    n += L.x.size() + L.rstd1.size() + L.h1.size() + L.q.size() + L.k.size() + L.v.size() + L.probs.size() +
         L.att.size() + L.m.size() + L.rstd2.size() + L.h2.size() + L.g.size() + L.u.size() + L.a.size();
  return n * sizeof(float);
}

namespace {

// Indices of each layer's parameters in params(), found by name once per call.
struct Index {
  int tok = kNone, out_norm = kNone, output = kNone;
  std::vector<LayerIdx> layers;
};

Index make_index(const std::vector<Param>& params, const LlamaConfig& c) {
  Index ix;
  auto at = [&](const std::string& name) {
    for (size_t i = 0; i < params.size(); ++i)
      if (params[i].name == name) return static_cast<int>(i);
    return kNone;
  };
  ix.tok = at("token_embd.weight");
  ix.out_norm = at("output_norm.weight");
  ix.output = c.tied_embeddings ? ix.tok : at("output.weight");
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    LayerIdx L{};
    L.attn_norm = at(b + "attn_norm.weight");
    L.wq = at(b + "attn_q.weight");
    L.wk = at(b + "attn_k.weight");
    L.wv = at(b + "attn_v.weight");
    L.bq = at(b + "attn_q.bias");
    L.bk = at(b + "attn_k.bias");
    L.bv = at(b + "attn_v.bias");
    L.wo = at(b + "attn_output.weight");
    L.ffn_norm = at(b + "ffn_norm.weight");
    L.gate = at(b + "ffn_gate.weight");
    L.up = at(b + "ffn_up.weight");
    L.down = at(b + "ffn_down.weight");
    ix.layers.push_back(L);
  }
  return ix;
}

inline void resize(std::vector<float>& v, int64_t n) { v.resize(static_cast<size_t>(n)); }

}  // namespace

Status TrainModel::forward(std::span<const int32_t> tokens, int64_t batch, int64_t seq, std::vector<float>& logits,
                           std::vector<std::vector<float>>* hidden_out) {
  const LlamaConfig& c = config_;
  if (batch <= 0 || seq <= 0 || static_cast<int64_t>(tokens.size()) != batch * seq)
    return make_error("forward: " + std::to_string(tokens.size()) + " tokens for batch " + std::to_string(batch) +
                      " x seq " + std::to_string(seq));
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= c.n_vocab)
      return make_error("forward: token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                        " is outside the vocabulary of " + std::to_string(c.n_vocab));
  if (!act_) act_ = std::make_shared<Activations>();
  Activations& A = *act_;
  const int64_t N = batch * seq, d = c.n_embd, dq = c.n_embd_q(), dkv = c.n_embd_kv(), ff = c.n_ff;
  const Index ix = make_index(params_, c);
  auto P = [&](int i) -> const float* { return i == kNone ? nullptr : params_[static_cast<size_t>(i)].value.data(); };

  A.batch = batch;
  A.seq = seq;
  A.tokens.assign(tokens.begin(), tokens.end());
  A.pos.resize(static_cast<size_t>(N));
  for (int64_t r = 0; r < N; ++r) A.pos[static_cast<size_t>(r)] = static_cast<int32_t>(r % seq);
  if (A.rope.head_dim != c.head_dim || static_cast<int64_t>(A.rope.cos.size()) < seq * (c.head_dim / 2)) {
    const double freq_scale =
        c.rope_scaling && c.rope_scaling->type == "linear" ? 1.0 / c.rope_scaling->factor : 1.0;
    A.rope = ops::make_rope_table(seq, c.head_dim, c.arch == "qwen2", c.rope_theta, freq_scale, rope_freq_factors_);
  }
  A.layers.resize(static_cast<size_t>(c.n_layer));

  std::vector<float> x(static_cast<size_t>(N * d)), tmp(static_cast<size_t>(N * d));
  ops::embedding_forward(P(ix.tok), d, A.tokens.data(), N, x.data());
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const LayerIdx& I = ix.layers[static_cast<size_t>(l)];
    auto& L = A.layers[static_cast<size_t>(l)];
    L.x = x;
    resize(L.rstd1, N), resize(L.h1, N * d), resize(L.q, N * dq), resize(L.k, N * dkv), resize(L.v, N * dkv);
    resize(L.probs, batch * c.n_head * seq * seq), resize(L.att, N * dq), resize(L.rstd2, N), resize(L.h2, N * d);
    resize(L.g, N * ff), resize(L.u, N * ff), resize(L.a, N * ff);
    ops::rmsnorm_forward(x.data(), P(I.attn_norm), N, d, c.rms_eps, L.h1.data(), L.rstd1.data());
    ops::linear_forward(L.h1.data(), P(I.wq), P(I.bq), N, d, dq, L.q.data());
    ops::linear_forward(L.h1.data(), P(I.wk), P(I.bk), N, d, dkv, L.k.data());
    ops::linear_forward(L.h1.data(), P(I.wv), P(I.bv), N, d, dkv, L.v.data());
    ops::rope(L.q.data(), N, c.n_head, A.pos.data(), A.rope, false);
    ops::rope(L.k.data(), N, c.n_head_kv, A.pos.data(), A.rope, false);
    ops::attention_forward(L.q.data(), L.k.data(), L.v.data(), batch, seq, c.n_head, c.n_head_kv, c.head_dim,
                           L.att.data(), L.probs.data());
    ops::linear_forward(L.att.data(), P(I.wo), static_cast<const float*>(nullptr), N, dq, d, tmp.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] += tmp[i];
    L.m = x;
    ops::rmsnorm_forward(x.data(), P(I.ffn_norm), N, d, c.rms_eps, L.h2.data(), L.rstd2.data());
    ops::linear_forward(L.h2.data(), P(I.gate), static_cast<const float*>(nullptr), N, d, ff, L.g.data());
    ops::linear_forward(L.h2.data(), P(I.up), static_cast<const float*>(nullptr), N, d, ff, L.u.data());
    ops::swiglu_forward(L.g.data(), L.u.data(), N * ff, L.a.data());
    ops::linear_forward(L.a.data(), P(I.down), static_cast<const float*>(nullptr), N, ff, d, tmp.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] += tmp[i];
  }
  A.x_final = x;
  resize(A.rstd_f, N), resize(A.h_f, N * d);
  ops::rmsnorm_forward(x.data(), P(ix.out_norm), N, d, c.rms_eps, A.h_f.data(), A.rstd_f.data());
  logits.resize(static_cast<size_t>(N * c.n_vocab));
  ops::linear_forward(A.h_f.data(), P(ix.output), static_cast<const float*>(nullptr), N, d, c.n_vocab,
                      logits.data());
  if (hidden_out) {
    hidden_out->resize(static_cast<size_t>(c.n_layer + 1));
    for (int64_t l = 0; l < c.n_layer; ++l) (*hidden_out)[static_cast<size_t>(l)] = A.layers[static_cast<size_t>(l)].x;
    (*hidden_out)[static_cast<size_t>(c.n_layer)] = A.x_final;
  }
  return {};
}

Status TrainModel::backward(std::span<const float> dlogits, const std::vector<std::vector<float>>* dhidden) {
  if (!act_ || act_->tokens.empty()) return make_error("backward: no forward pass to differentiate");
  const LlamaConfig& c = config_;
  Activations& A = *act_;
  const int64_t batch = A.batch, seq = A.seq, N = batch * seq;
  const int64_t d = c.n_embd, dq = c.n_embd_q(), dkv = c.n_embd_kv(), ff = c.n_ff;
  if (static_cast<int64_t>(dlogits.size()) != N * c.n_vocab)
    return make_error("backward: dlogits has " + std::to_string(dlogits.size()) + " values, expected " +
                      std::to_string(N * c.n_vocab));
  if (dhidden && !dhidden->empty() && static_cast<int64_t>(dhidden->size()) != c.n_layer + 1)
    return make_error("backward: " + std::to_string(dhidden->size()) + " hidden-state gradients, expected " +
                      std::to_string(c.n_layer + 1));
  for (size_t i = 0; dhidden && i < dhidden->size(); ++i)
    if (!(*dhidden)[i].empty() && static_cast<int64_t>((*dhidden)[i].size()) != N * d)
      return make_error("backward: hidden-state gradient " + std::to_string(i) + " has the wrong size");
  const Index ix = make_index(params_, c);
  auto W = [&](int i) -> const float* { return i == kNone ? nullptr : params_[static_cast<size_t>(i)].value.data(); };
  auto G = [&](int i) -> float* { return i == kNone ? nullptr : params_[static_cast<size_t>(i)].grad.data(); };
  auto add_hidden = [&](int64_t at, std::vector<float>& dx) {
    if (!dhidden || dhidden->empty()) return;
    const auto& g = (*dhidden)[static_cast<size_t>(at)];
    if (g.empty()) return;
    for (size_t i = 0; i < dx.size(); ++i) dx[i] += g[i];
  };

  std::vector<float> dh(static_cast<size_t>(N * d), 0.0f), dx(static_cast<size_t>(N * d), 0.0f);
  ops::linear_backward(A.h_f.data(), W(ix.output), dlogits.data(), N, d, c.n_vocab, dh.data(), G(ix.output),
                       static_cast<float*>(nullptr));
  ops::rmsnorm_backward(A.x_final.data(), W(ix.out_norm), A.rstd_f.data(), dh.data(), N, d, dx.data(), G(ix.out_norm));
  add_hidden(c.n_layer, dx);

  std::vector<float> dff(static_cast<size_t>(N * ff)), dg(static_cast<size_t>(N * ff)), du(static_cast<size_t>(N * ff));
  std::vector<float> datt(static_cast<size_t>(N * dq)), dqv(static_cast<size_t>(N * dq));
  std::vector<float> dkb(static_cast<size_t>(N * dkv)), dvb(static_cast<size_t>(N * dkv));
  for (int64_t l = c.n_layer - 1; l >= 0; --l) {
    const LayerIdx& I = ix.layers[static_cast<size_t>(l)];
    auto& L = A.layers[static_cast<size_t>(l)];
    // FFN branch: x_out = m + a Wdown^T. dx holds d(loss)/d(x_out), and is the residual part of d/dm.
    std::fill(dff.begin(), dff.end(), 0.0f);
    ops::linear_backward(L.a.data(), W(I.down), dx.data(), N, ff, d, dff.data(), G(I.down), static_cast<float*>(nullptr));
    std::fill(dg.begin(), dg.end(), 0.0f);
    std::fill(du.begin(), du.end(), 0.0f);
    ops::swiglu_backward(L.g.data(), L.u.data(), dff.data(), N * ff, dg.data(), du.data());
    std::fill(dh.begin(), dh.end(), 0.0f);
    ops::linear_backward(L.h2.data(), W(I.gate), dg.data(), N, d, ff, dh.data(), G(I.gate), static_cast<float*>(nullptr));
    ops::linear_backward(L.h2.data(), W(I.up), du.data(), N, d, ff, dh.data(), G(I.up), static_cast<float*>(nullptr));
    ops::rmsnorm_backward(L.m.data(), W(I.ffn_norm), L.rstd2.data(), dh.data(), N, d, dx.data(), G(I.ffn_norm));
    // Attention branch: m = x + att Wo^T.
    std::fill(datt.begin(), datt.end(), 0.0f);
    ops::linear_backward(L.att.data(), W(I.wo), dx.data(), N, dq, d, datt.data(), G(I.wo), static_cast<float*>(nullptr));
    std::fill(dqv.begin(), dqv.end(), 0.0f);
    std::fill(dkb.begin(), dkb.end(), 0.0f);
    std::fill(dvb.begin(), dvb.end(), 0.0f);
    ops::attention_backward(L.q.data(), L.k.data(), L.v.data(), L.probs.data(), datt.data(), batch, seq, c.n_head,
                            c.n_head_kv, c.head_dim, dqv.data(), dkb.data(), dvb.data());
    ops::rope(dqv.data(), N, c.n_head, A.pos.data(), A.rope, true);
    ops::rope(dkb.data(), N, c.n_head_kv, A.pos.data(), A.rope, true);
    std::fill(dh.begin(), dh.end(), 0.0f);
    ops::linear_backward(L.h1.data(), W(I.wq), dqv.data(), N, d, dq, dh.data(), G(I.wq), G(I.bq));
    ops::linear_backward(L.h1.data(), W(I.wk), dkb.data(), N, d, dkv, dh.data(), G(I.wk), G(I.bk));
    ops::linear_backward(L.h1.data(), W(I.wv), dvb.data(), N, d, dkv, dh.data(), G(I.wv), G(I.bv));
    ops::rmsnorm_backward(L.x.data(), W(I.attn_norm), L.rstd1.data(), dh.data(), N, d, dx.data(), G(I.attn_norm));
    add_hidden(l, dx);
  }
  ops::embedding_backward(dx.data(), A.tokens.data(), N, d, G(ix.tok));
  return {};
}

ModelSource TrainModel::to_source(const Vocab& vocab, const std::string& name) const {
  ModelSource s;
  s.path = name;
  s.format = "generated";
  s.config = config_;
  s.config.name = name;
  s.vocab = vocab;
  auto add = [&](const std::string& tname, const std::vector<int64_t>& shape, const std::vector<float>& values) {
    auto data = std::make_shared<std::vector<float>>(values);
    WeightTensor t;
    t.name = tname;
    t.shape = shape;
    t.source_type = TypeId::F32;
    t.origin = name + ": " + tname;
    t.raw = reinterpret_cast<const uint8_t*>(data->data());
    t.raw_bytes = data->size() * sizeof(float);
    t.read_f32 = [data](std::vector<float>& out) -> Status {
      out = *data;
      return {};
    };
    s.keep_alive.push_back(data);
    s.tensors.push_back(std::move(t));
  };
  for (const Param& p : params_) add(p.name, p.shape, p.value);
  if (!rope_freq_factors_.empty())
    add("rope_freqs.weight", {static_cast<int64_t>(rope_freq_factors_.size())}, rope_freq_factors_);
  return s;
}

}  // namespace shrink::distill
