"""Independent PyTorch reference for shrink's distillation core (tests/test_distill_torch.cc).

Reads <in>/case.json, <in>/weights.safetensors (GGUF tensor names, row-major shapes) and
<in>/batch.safetensors (tokens, targets, optional teacher logits); builds the Llama-family
forward from torch.nn.functional ops in GGUF's convention ("llama": RoPE on adjacent pairs,
"qwen2": on halves; query head h reads kv head h // (n_head / n_head_kv)); runs the loss
(cross-entropy, or forward-KL distillation at temperature T mixed with cross-entropy), backward
over `micro` micro-batches, clip_grad_norm_, and torch.optim.AdamW steps. Writes
<out>/result.safetensors: loss, grad_norm, grad.<name> (gradients of the first step) and
new.<name> (weights after all steps).

Usage: /usr/bin/python3 llama_step.py <in_dir> <out_dir>
"""
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {"F32": np.float32, "I32": np.int32}


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        arr = np.frombuffer(blob[base + a : base + b], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def write_safetensors(path, tensors):
    header, chunks, off = {}, [], 0
    for name, t in tensors.items():
        a = t.detach().contiguous().numpy().astype(np.float32)
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        chunks.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, cos, sin, neox):
    # x: (B, S, H, hd); cos/sin: (S, hd/2)
    c = cos[None, :, None, :]
    s = sin[None, :, None, :]
    if neox:
        half = x.shape[-1] // 2
        a, b = x[..., :half], x[..., half:]
        return torch.cat([a * c - b * s, a * s + b * c], dim=-1)
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * c - b * s, a * s + b * c], dim=-1).flatten(-2)


def forward(cfg, W, tokens):
    B, S = tokens.shape
    d, H, Hkv, hd = cfg["n_embd"], cfg["n_head"], cfg["n_head_kv"], cfg["head_dim"]
    eps = cfg["rms_eps"]
    neox = cfg["arch"] == "qwen2"
    # Angles in float64, then float32: pos * theta^(-2i/hd).
    inv = torch.tensor([cfg["rope_theta"] ** (-2.0 * i / hd) for i in range(hd // 2)], dtype=torch.float64)
    ang = torch.arange(S, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = torch.cos(ang).float(), torch.sin(ang).float()
    x = F.embedding(tokens, W["token_embd.weight"])
    mask = torch.ones(S, S, dtype=torch.bool).triu(1)
    for l in range(cfg["n_layer"]):
        p = f"blk.{l}."
        h = rms_norm(x, W[p + "attn_norm.weight"], eps)
        q = F.linear(h, W[p + "attn_q.weight"], W.get(p + "attn_q.bias"))
        k = F.linear(h, W[p + "attn_k.weight"], W.get(p + "attn_k.bias"))
        v = F.linear(h, W[p + "attn_v.weight"], W.get(p + "attn_v.bias"))
        q = rope(q.view(B, S, H, hd), cos, sin, neox)
        k = rope(k.view(B, S, Hkv, hd), cos, sin, neox)
        v = v.view(B, S, Hkv, hd)
        k = k.repeat_interleave(H // Hkv, dim=2)
        v = v.repeat_interleave(H // Hkv, dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, S, hd)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        s = s.masked_fill(mask, float("-inf"))
        a = torch.softmax(s, dim=-1) @ v
        a = a.transpose(1, 2).reshape(B, S, H * hd)
        x = x + F.linear(a, W[p + "attn_output.weight"])
        h = rms_norm(x, W[p + "ffn_norm.weight"], eps)
        g = F.silu(F.linear(h, W[p + "ffn_gate.weight"])) * F.linear(h, W[p + "ffn_up.weight"])
        x = x + F.linear(g, W[p + "ffn_down.weight"])
    h = rms_norm(x, W["output_norm.weight"], eps)
    out = W["token_embd.weight"] if cfg["tied_embeddings"] else W["output.weight"]
    return F.linear(h, out).reshape(B * S, -1)


def loss_fn(case, logits, targets, teacher):
    ce = F.cross_entropy(logits, targets, ignore_index=-1)
    if teacher is None:
        return ce
    T, alpha = case["temperature"], case["alpha"]
    keep = targets >= 0
    logp_s = F.log_softmax(logits[keep] / T, dim=-1)
    logp_t = F.log_softmax(teacher[keep] / T, dim=-1)
    kd = (logp_t.exp() * (logp_t - logp_s)).sum(-1).mean()
    return alpha * ce + (1.0 - alpha) * T * T * kd


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(f"{src}/case.json") as f:
        case = json.load(f)
    torch.set_num_threads(case.get("threads", 1))
    cfg = case["config"]
    W = read_safetensors(f"{src}/weights.safetensors")
    batch = read_safetensors(f"{src}/batch.safetensors")
    names = case["param_order"]
    params = {n: W[n].clone().requires_grad_(True) for n in names}
    decay = [params[n] for n in names if params[n].dim() == 2]
    no_decay = [params[n] for n in names if params[n].dim() != 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": case["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=case["lrs"][0], betas=(case["beta1"], case["beta2"]), eps=case["eps"])
    micro = case["micro"]
    tokens = batch["tokens"].long()
    targets = batch["targets"].long()
    teacher = batch.get("teacher_logits")
    B, S = tokens.shape
    mb = B // micro
    out = {}
    for step, lr in enumerate(case["lrs"]):
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        total = 0.0
        for m in range(micro):
            rows = slice(m * mb * S, (m + 1) * mb * S)
            logits = forward(cfg, params, tokens[m * mb : (m + 1) * mb])
            loss = loss_fn(case, logits, targets.reshape(-1)[rows],
                           None if teacher is None else teacher.reshape(B * S, -1)[rows]) / micro
            loss.backward()
            total += loss.item()
        norm = torch.nn.utils.clip_grad_norm_(list(params.values()), case["max_norm"])
        if step == 0:
            out["loss"] = torch.tensor([total])
            out["grad_norm"] = torch.tensor([float(norm)])
            for n in names:
                out["grad." + n] = params[n].grad.clone()
        opt.step()
    for n in names:
        out["new." + n] = params[n].detach()
    write_safetensors(f"{dst}/result.safetensors", out)


if __name__ == "__main__":
    main()
