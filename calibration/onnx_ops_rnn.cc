// Recurrent and control-flow ops: LSTM (ONNX gate order i, o, f, c; forward / reverse / bidirectional,
// optional bias, initial state and peepholes, default activations) and If.
#include <algorithm>
#include <cmath>

#include "calibration/onnx_ops_util.h"

namespace shrink::onnx_ops {
namespace {
using onnx::TensorProto;

float sigm(float x) { return x >= 0 ? 1.0f / (1.0f + std::exp(-x)) : std::exp(x) / (1.0f + std::exp(x)); }

Status lstm(OpContext& c) {
  for (size_t k = 0; k < c.n_in(); ++k)
    if (k != 4 && c.input(k) && !c.input(k)->is_float()) return c.fail("input " + std::to_string(k) + " must be FLOAT");
  const OnnxTensor* X = c.input(0);
  const OnnxTensor* W = c.input(1);
  const OnnxTensor* R = c.input(2);
  const OnnxTensor* B = c.input(3);
  const OnnxTensor* lens = c.input(4);
  const OnnxTensor* h0 = c.input(5);
  const OnnxTensor* c0 = c.input(6);
  const OnnxTensor* P = c.input(7);
  if (!X || !W || !R || X->shape.size() != 3 || W->shape.size() != 3 || R->shape.size() != 3) return c.fail("needs 3-D X, W, R");
  if (attr_int(c.node, "layout", 0) != 0) return c.fail("layout=1 is not supported");
  if (attr_int(c.node, "input_forget", 0) != 0) return c.fail("input_forget=1 is not supported");
  const auto acts = c.node.attribute_size() ? [&] {
    std::vector<std::string> v;
    if (const auto* a = find_attr(c.node, "activations"))
      for (const auto& s : a->strings()) v.push_back(s);
    return v;
  }() : std::vector<std::string>{};
  for (size_t k = 0; k < acts.size(); ++k) {
    const char* want = k % 3 == 0 ? "Sigmoid" : "Tanh";
    if (acts[k] != want) return c.fail("activation '" + acts[k] + "' is not supported (defaults only)");
  }
  if (find_attr(c.node, "activation_alpha") || find_attr(c.node, "activation_beta")) return c.fail("activation_alpha/beta are not supported");
  const std::string dir = attr_string(c.node, "direction", "forward");
  const int64_t dirs = dir == "bidirectional" ? 2 : 1;
  if (dir != "forward" && dir != "reverse" && dir != "bidirectional") return c.fail("direction '" + dir + "' is not supported");
  const int64_t T = X->shape[0], Bn = X->shape[1], I = X->shape[2];
  const int64_t H = attr_int(c.node, "hidden_size", R->shape[2]);
  const float clip = attr_float(c.node, "clip", 0.0f);
  if (W->shape != std::vector<int64_t>{dirs, 4 * H, I} || R->shape != std::vector<int64_t>{dirs, 4 * H, H})
    return c.fail("W " + shape_text(W->shape) + " / R " + shape_text(R->shape) + " do not fit hidden_size " + std::to_string(H));
  if (B && B->numel() != dirs * 8 * H) return c.fail("B must be (num_directions, 8*hidden_size)");
  if (P && P->numel() != dirs * 3 * H) return c.fail("P must be (num_directions, 3*hidden_size)");
  for (const OnnxTensor* s : {h0, c0})
    if (s && s->numel() != dirs * Bn * H) return c.fail("initial state must be (num_directions, batch, hidden_size)");
  if (lens)
    for (int64_t v : lens->i)
      if (v != T) return c.fail("sequence_lens other than the full length are not supported");
  std::vector<float> Y(T * dirs * Bn * H), Yh(dirs * Bn * H), Yc(dirs * Bn * H);
  for (int64_t d = 0; d < dirs; ++d) {
    const bool reverse = dir == "reverse" || d == 1;
    const float* w = W->f.data() + d * 4 * H * I;
    const float* rr = R->f.data() + d * 4 * H * H;
    std::vector<float> h(Bn * H, 0.0f), cs(Bn * H, 0.0f), gates(4 * H);
    if (h0) std::copy(h0->f.begin() + d * Bn * H, h0->f.begin() + (d + 1) * Bn * H, h.begin());
    if (c0) std::copy(c0->f.begin() + d * Bn * H, c0->f.begin() + (d + 1) * Bn * H, cs.begin());
    for (int64_t step = 0; step < T; ++step) {
      const int64_t t = reverse ? T - 1 - step : step;
      std::vector<float> hn(Bn * H), cn(Bn * H);
      for (int64_t b = 0; b < Bn; ++b) {
        const float* x = X->f.data() + (t * Bn + b) * I;
        const float* hp = h.data() + b * H;
        for (int64_t g = 0; g < 4 * H; ++g) {
          float s = B ? B->f[d * 8 * H + g] + B->f[d * 8 * H + 4 * H + g] : 0.0f;
          for (int64_t k = 0; k < I; ++k) s += w[g * I + k] * x[k];
          for (int64_t k = 0; k < H; ++k) s += rr[g * H + k] * hp[k];
          gates[g] = s;
        }
        for (int64_t j = 0; j < H; ++j) {
          const float cp = cs[b * H + j];
          float gi = gates[j], go = gates[H + j], gf = gates[2 * H + j], gc = gates[3 * H + j];
          if (P) {
            gi += P->f[d * 3 * H + j] * cp;
            gf += P->f[d * 3 * H + 2 * H + j] * cp;
          }
          if (clip > 0) {
            gi = std::clamp(gi, -clip, clip);
            gf = std::clamp(gf, -clip, clip);
            gc = std::clamp(gc, -clip, clip);
          }
          const float ct = sigm(gf) * cp + sigm(gi) * std::tanh(gc);
          if (P) go += P->f[d * 3 * H + H + j] * ct;
          if (clip > 0) go = std::clamp(go, -clip, clip);
          cn[b * H + j] = ct;
          hn[b * H + j] = sigm(go) * std::tanh(ct);
        }
      }
      h = std::move(hn);
      cs = std::move(cn);
      std::copy(h.begin(), h.end(), Y.begin() + (t * dirs + d) * Bn * H);
    }
    std::copy(h.begin(), h.end(), Yh.begin() + d * Bn * H);
    std::copy(cs.begin(), cs.end(), Yc.begin() + d * Bn * H);
  }
  if (c.out.size() > 0) c.out[0] = OnnxTensor::floats({T, dirs, Bn, H}, std::move(Y));
  if (c.out.size() > 1) c.out[1] = OnnxTensor::floats({dirs, Bn, H}, std::move(Yh));
  if (c.out.size() > 2) c.out[2] = OnnxTensor::floats({dirs, Bn, H}, std::move(Yc));
  return {};
}

Status if_op(OpContext& c) {
  const OnnxTensor* cond = c.input(0);
  if (!cond || cond->numel() != 1) return c.fail("needs a one-element condition");
  const bool take_then = cond->is_float() ? cond->f[0] != 0 : cond->i[0] != 0;
  const auto* branch = find_attr(c.node, take_then ? "then_branch" : "else_branch");
  if (!branch || !branch->has_g()) return c.fail("missing then_branch/else_branch");
  auto outs = c.run_subgraph(branch->g());
  if (!outs.ok()) return outs.error();
  if (outs->size() != c.out.size())
    return c.fail("the branch yields " + std::to_string(outs->size()) + " outputs for " + std::to_string(c.out.size()));
  for (size_t k = 0; k < c.out.size(); ++k) c.out[k] = std::move((*outs)[k]);
  return {};
}

}  // namespace

void add_rnn_ops(OpTable& t) {
  t[":LSTM"] = lstm;
  t[":If"] = if_op;
}

}  // namespace shrink::onnx_ops
