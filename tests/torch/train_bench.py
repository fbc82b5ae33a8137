"""PyTorch side of bench/bench_train.cc: the model of llama_step.py (same forward, same loss,
torch.optim.AdamW) trained for a number of steps on the weights and batch the bench wrote.

Usage: /usr/bin/python3 train_bench.py <dir> <threads> <warmup_steps> <steps>
Prints one JSON line: tokens_per_s, seconds (wall), cpu_seconds (user + system, all threads), steps, final_loss, peak_rss_mb, blas.
"""
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_step import forward, read_safetensors  # noqa: E402


def main():
    src, threads, warm, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    with open(f"{src}/case.json") as f:
        case = json.load(f)
    cfg = case["config"]
    W = read_safetensors(f"{src}/weights.safetensors")
    batch = read_safetensors(f"{src}/batch.safetensors")
    names = case["param_order"]
    params = {n: W[n].clone().requires_grad_(True) for n in names}
    opt = torch.optim.AdamW(list(params.values()), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    tokens = batch["tokens"].long()
    targets = batch["targets"].long()
    loss = None

    def step():
        opt.zero_grad()
        logits = forward(cfg, params, tokens)
        l = F.cross_entropy(logits, targets.reshape(-1), ignore_index=-1)
        l.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        opt.step()
        return l

    for _ in range(warm):
        step()
    def cpu():
        u = resource.getrusage(resource.RUSAGE_SELF)
        return u.ru_utime + u.ru_stime

    t0, c0 = time.perf_counter(), cpu()
    for _ in range(steps):
        loss = step()
    dt, dc = time.perf_counter() - t0, cpu() - c0
    blas = "openblas" if "openblas" in open("/proc/self/maps").read() else "other"
    print(json.dumps({"tokens_per_s": tokens.numel() * steps / dt, "seconds": dt, "cpu_seconds": dc, "steps": steps,
                      "final_loss": float(loss), "threads": torch.get_num_threads(),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "blas": blas}))


if __name__ == "__main__":
    main()
