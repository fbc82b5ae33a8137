// The operations of a Llama-family decoder with their backward passes, for training. All
// tensors are row-major (n_rows, n_cols) arrays. Backward functions ADD into every gradient
// they write (dx and parameter gradients alike), so residual branches and tied weights sum up
// without extra buffers; callers zero what must start at zero.
//
// Instantiated for float (training) and double (the finite-difference gradient checks).
#pragma once

#include <cstdint>
#include <vector>

namespace shrink::distill::ops {

// y (n, d) = table[tokens[i]] rows; table (n_vocab, d).
template <class T>
void embedding_forward(const T* table, int64_t d, const int32_t* tokens, int64_t n, T* y);
template <class T>
void embedding_backward(const T* dy, const int32_t* tokens, int64_t n, int64_t d, T* dtable);

// RMSNorm: y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps), per row of x (n, d); w (d).
// rstd (n) is kept for the backward pass.
template <class T>
void rmsnorm_forward(const T* x, const T* w, int64_t n, int64_t d, double eps, T* y, T* rstd);
template <class T>
void rmsnorm_backward(const T* x, const T* w, const T* rstd, const T* dy, int64_t n, int64_t d, T* dx, T* dw);

// Linear layer: y (n, out) = x (n, in) times W^T, W (out, in) as GGUF stores it (rows of `in`),
// plus b (out) when b is not null.
template <class T>
void linear_forward(const T* x, const T* W, const T* b, int64_t n, int64_t in, int64_t out, T* y);
// dx (n, in) += dy W; dW (out, in) += dy^T x; db (out) += column sums of dy (when db is not null).
template <class T>
void linear_backward(const T* x, const T* W, const T* dy, int64_t n, int64_t in, int64_t out, T* dx, T* dW,
                     T* db);

// RoPE angles for positions 0 .. n_pos - 1: angle(p, i) = p * freq_scale * base^(-2i / head_dim) /
// factor[i] for pair i < head_dim / 2 (ggml's rope with optional llama3 frequency factors),
// evaluated in double.
struct RopeTable {
  int64_t head_dim = 0;
  bool neox = false;             // pairs (i, i + head_dim/2) ("qwen2") instead of (2i, 2i+1) ("llama")
  std::vector<double> cos, sin;  // (n_pos, head_dim / 2)
};
RopeTable make_rope_table(int64_t n_pos, int64_t head_dim, bool neox, double base, double freq_scale,
                          const std::vector<float>& factors);
// Rotates every head of x (n, n_heads * head_dim) in place, row r at position pos[r]. inverse
// rotates by the negative angle: the transpose, which is RoPE's backward pass.
template <class T>
void rope(T* x, int64_t n, int64_t n_heads, const int32_t* pos, const RopeTable& table, bool inverse);

// Causal self-attention with grouped-query heads over `batch` sequences of `seq` tokens:
// q (batch*seq, n_head*hd), k and v (batch*seq, n_head_kv*hd); query head h reads kv head
// h / (n_head / n_head_kv). out (batch*seq, n_head*hd). probs (batch, n_head, seq, seq) keeps the
// softmax weights (zero above the diagonal) for the backward pass. Scale 1/sqrt(hd).
template <class T>
void attention_forward(const T* q, const T* k, const T* v, int64_t batch, int64_t seq, int64_t n_head,
                       int64_t n_head_kv, int64_t hd, T* out, T* probs);
template <class T>
void attention_backward(const T* q, const T* k, const T* v, const T* probs, const T* dout, int64_t batch,
                        int64_t seq, int64_t n_head, int64_t n_head_kv, int64_t hd, T* dq, T* dk, T* dv);

// SwiGLU: y = silu(g) * u elementwise over n values, silu(g) = g / (1 + exp(-g)).
template <class T>
void swiglu_forward(const T* g, const T* u, int64_t n, T* y);
template <class T>
void swiglu_backward(const T* g, const T* u, const T* dy, int64_t n, T* dg, T* du);

}  // namespace shrink::distill::ops
