// The forward pass of a Llama-family decoder, step for step as llama.cpp builds its graph
// (src/models/llama.cpp, qwen2.cpp) and as ggml's CPU ops compute each step:
//   x = token_embd[tokens]
//   per layer: h = rms_norm(x) * attn_norm; q,k,v = h Wq,Wk,Wv (+ biases); RoPE(q, k);
//              x += softmax(q k^T / sqrt(head_dim) + causal mask) v Wo
//              h = rms_norm(x) * ffn_norm; x += (silu(h Wgate) * (h Wup)) Wdown
//   logits = (rms_norm(x) * output_norm) Woutput
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/dot.h"
#include "kernels/fp16.h"
#include "kernels/ggml_ops.h"
#include "kernels/kernels.h"
#include "model/llama_model.h"

namespace shrink {
namespace {

inline float round_fp16(float x) { return kernels::fp16_to_fp32(kernels::fp32_to_fp16(x)); }

}  // namespace

Status llama_forward(const LlamaModel& model, KvCache& cache, std::span<const int32_t> tokens,
                     std::vector<float>& logits, int64_t logits_from, MatmulObserver* observer) {
  const LlamaConfig& c = model.config;
  const int64_t T = static_cast<int64_t>(tokens.size());
  const int64_t d = c.n_embd, dq = c.n_embd_q(), dkv = c.n_embd_kv(), ff = c.n_ff, hd = c.head_dim;
  const int64_t n_head = c.n_head, group = c.n_head / c.n_head_kv;
  if (T == 0) return {};
  if (cache.n_past + T > cache.n_ctx)
    return make_error("context full: " + std::to_string(cache.n_past) + " + " + std::to_string(T) +
                      " tokens exceed the KV cache of " + std::to_string(cache.n_ctx));
  if (logits_from < 0 || logits_from > T) return make_error("logits_from " + std::to_string(logits_from) + " out of range");
  for (int64_t t = 0; t < T; ++t)
    if (tokens[static_cast<size_t>(t)] < 0 || tokens[static_cast<size_t>(t)] >= c.n_vocab)
      return make_error("token id " + std::to_string(tokens[static_cast<size_t>(t)]) + " at index " + std::to_string(t) +
                        " is outside the vocabulary of " + std::to_string(c.n_vocab));
  const bool f16_cache = cache.type == KvCacheType::F16;
  const bool neox = c.arch == "qwen2";
  const float eps = static_cast<float>(c.rms_eps);
  const float freq_base = static_cast<float>(c.rope_theta);
  const float freq_scale =
      c.rope_scaling && c.rope_scaling->type == "linear" ? static_cast<float>(1.0 / c.rope_scaling->factor) : 1.0f;
  const float kq_scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t n_past = cache.n_past;
  auto mm = [observer](const WeightMatrix& w, const float* in, int64_t n_tok, float* out) {
    if (observer) observer->observe(w, in, n_tok);
    matmul(w, in, n_tok, out);
  };

  // (T, d) residual stream; embedding rows dequantized (ggml_get_rows).
  // Activation buffers, reused across calls on this thread (a 512-token chunk of a 1024-wide
  // model touches ~30 MB; fresh vectors cost a page fault per 4 KB on every call). Every element
  // is written before it is read.
  struct Workspace {
    std::vector<float> x, h, q, k, v, attn, proj, gate, up;
  };
  thread_local Workspace ws;
  auto sized = [](std::vector<float>& b, int64_t n) -> std::vector<float>& {
    b.resize(static_cast<size_t>(n));
    return b;
  };
  std::vector<float>& x = sized(ws.x, T * d);
  std::vector<float>& h = sized(ws.h, T * d);
  for (int64_t t = 0; t < T; ++t)
    kernels::dequantize_rows(model.token_embd.type, model.token_embd.row(tokens[static_cast<size_t>(t)]),
                             x.data() + t * d, 1, d);

  std::vector<std::vector<float>> rope(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t)
  {
    rope[static_cast<size_t>(t)].resize(static_cast<size_t>(hd));
    kernels::rope_cache_ggml(static_cast<float>(n_past + t), hd, freq_base, freq_scale,
                             model.rope_freq_factors.empty() ? nullptr : model.rope_freq_factors.data(),
                             rope[static_cast<size_t>(t)].data());
  }

  std::vector<float>& q = sized(ws.q, T * dq);
  std::vector<float>& k = sized(ws.k, T * dkv);
  std::vector<float>& v = sized(ws.v, T * dkv);
  std::vector<float>& attn = sized(ws.attn, T * dq);
  std::vector<float>& proj = sized(ws.proj, T * d);
  std::vector<float>& gate = sized(ws.gate, T * ff);
  std::vector<float>& up = sized(ws.up, T * ff);

  for (size_t il = 0; il < model.layers.size(); ++il) {
    const LlamaLayer& L = model.layers[il];
#pragma omp parallel for schedule(static) if (T > 1)
    for (int64_t t = 0; t < T; ++t) kernels::rms_norm_ggml(x.data() + t * d, L.attn_norm.data(), d, eps, h.data() + t * d);
    mm(L.wq, h.data(), T, q.data());  // (T, dq)
    mm(L.wk, h.data(), T, k.data());  // (T, dkv)
    mm(L.wv, h.data(), T, v.data());  // (T, dkv)
    if (!L.bq.empty())
      for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < dq; ++i) q[static_cast<size_t>(t * dq + i)] += L.bq[static_cast<size_t>(i)];
    if (!L.bk.empty())
      for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < dkv; ++i) k[static_cast<size_t>(t * dkv + i)] += L.bk[static_cast<size_t>(i)];
    if (!L.bv.empty())
      for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < dkv; ++i) v[static_cast<size_t>(t * dkv + i)] += L.bv[static_cast<size_t>(i)];
    // RoPE; keys and values into the cache (ggml_cpy F32 -> F16 rounds to nearest even).
    std::vector<float>& kc = cache.k[il];
    std::vector<float>& vc = cache.v[il];
#pragma omp parallel for schedule(static) if (T > 1)
    for (int64_t t = 0; t < T; ++t) {
      const auto& cs = rope[static_cast<size_t>(t)];
      for (int64_t hh = 0; hh < n_head; ++hh) kernels::rope_ggml(q.data() + t * dq + hh * hd, hd, cs.data(), neox);
      for (int64_t hh = 0; hh < c.n_head_kv; ++hh) kernels::rope_ggml(k.data() + t * dkv + hh * hd, hd, cs.data(), neox);
      for (int64_t i = 0; i < dkv; ++i) {
        const float kv = k[static_cast<size_t>(t * dkv + i)], vv = v[static_cast<size_t>(t * dkv + i)];
        const int64_t kvh = i / hd;
        kc[static_cast<size_t>((kvh * cache.n_ctx + n_past + t) * hd + i % hd)] = f16_cache ? round_fp16(kv) : kv;
        vc[static_cast<size_t>(i * cache.v_stride + n_past + t)] = f16_cache ? round_fp16(vv) : vv;
      }
    }
    // Attention, one (token, head) pair per iteration, in ggml's float order (kernels/ggml_ops.h).
    // With an F16 cache ggml's products K*q and V*softmax convert q and the softmax weights to
    // F16 (the F16 vec_dot_type). A batch of >= 2 tokens goes through tinyBLAS when the reduced
    // dimension allows it (K*q: head_dim % 16; V*p: head_dim % 4, the KV length being a multiple
    // of 256 in llama.cpp), otherwise ggml_vec_dot_f16/f32. With an F32 cache K*q never reaches
    // tinyBLAS: q is a permuted (non-contiguous) view that needs no conversion, and
    // ggml_compute_forward_mul_mat offers llamafile only contiguous or converted activations.
    const kernels::DotOrder vec_order = f16_cache ? kernels::DotOrder::kVecF16 : kernels::DotOrder::kVecF32;
    const kernels::DotOrder kq_order = f16_cache && T >= 2 && hd % 16 == 0 ? kernels::DotOrder::kTiled : vec_order;
    const kernels::DotOrder kqv_order = T >= 2 && hd % 4 == 0 ? kernels::DotOrder::kTiled : vec_order;
#pragma omp parallel
    {
      // Weights padded with zeros to the vector step (llama.cpp's masked KV positions).
      std::vector<float> qh(static_cast<size_t>(hd)), p(static_cast<size_t>(cache.v_stride), 0.0f);
      // Heads outermost, so the threads share one head's keys and values (512 positions x 64
      // dims = 128 KB each, L2-resident) instead of cycling through all heads' (2 MB at 16
      // heads); tokens interleaved across threads, because causal attention costs grow with the
      // position (a static split of the tokens gives one thread 3/4 of the work).
#pragma omp for schedule(static, 1) collapse(2)
      for (int64_t hh = 0; hh < n_head; ++hh) {
        for (int64_t t = 0; t < T; ++t) {
          const int64_t pos = n_past + t, kvh = hh / group;
          std::copy_n(q.data() + t * dq + hh * hd, hd, qh.data());
          if (f16_cache) kernels::round_fp16_inplace(qh.data(), hd);
          kernels::scores_ggml(kq_order, kc.data() + kvh * cache.n_ctx * hd, hd, qh.data(), hd, pos + 1, p.data());
          kernels::softmax_ggml(p.data(), pos + 1, kq_scale);
          if (f16_cache) kernels::round_fp16_inplace(p.data(), pos + 1);
          std::fill(p.begin() + pos + 1, p.begin() + kernels::padded_length(kqv_order, pos + 1), 0.0f);
          kernels::weighted_sum_ggml(vc.data() + kvh * hd * cache.v_stride, cache.v_stride, p.data(), pos + 1, hd,
                                     kqv_order, attn.data() + t * dq + hh * hd);
        }
      }
    }
    mm(L.wo, attn.data(), T, proj.data());
    // Residual add and the FFN norm, token rows split over the threads (one region, no
    // serial stretch for the other thread to wait through).
#pragma omp parallel for schedule(static) if (T > 1)
    for (int64_t t = 0; t < T; ++t) {
      float* xt = x.data() + t * d;
      const float* pt = proj.data() + t * d;
      for (int64_t i = 0; i < d; ++i) xt[i] += pt[i];
      kernels::rms_norm_ggml(xt, L.ffn_norm.data(), d, eps, h.data() + t * d);
    }
    mm(L.ffn_gate, h.data(), T, gate.data());
    mm(L.ffn_up, h.data(), T, up.data());
#pragma omp parallel for schedule(static) if (T > 1)
    for (int64_t t = 0; t < T; ++t) kernels::swiglu_ggml(gate.data() + t * ff, up.data() + t * ff, ff);
    mm(L.ffn_down, gate.data(), T, proj.data());
#pragma omp parallel for schedule(static) if (T > 1)
    for (int64_t i = 0; i < T * d; ++i) x[static_cast<size_t>(i)] += proj[static_cast<size_t>(i)];
  }
  cache.n_past += T;

  const int64_t n_out = T - logits_from;
  for (int64_t t = 0; t < n_out; ++t)
    kernels::rms_norm_ggml(x.data() + (logits_from + t) * d, model.output_norm.data(), d, eps, h.data() + t * d);
  logits.resize(static_cast<size_t>(n_out * c.n_vocab));
  if (n_out > 0) mm(model.output, h.data(), n_out, logits.data());
  return {};
}

}  // namespace shrink
