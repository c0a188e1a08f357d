"""
A fixed reference workload, so benchmark runs on shared or different machines can be compared.

The speed of this project's 2-core VM changes between sessions and within one (up to ~1.6x on the
same code). Each benchmark line carries ``machine_reference``: the time of a pure-Python loop (the
interpreter-bound part of the pipeline: octree bookkeeping, callbacks) and single-thread float32
matmul throughput (the network-bound part), both measured on one thread right before the run.
"""
from __future__ import annotations

import time

import torch


def machine_reference(repeats: int = 3) -> dict[str, float]:
    """Best-of-``repeats`` Python loop time (ms) and 512x512 float32 matmul GFLOPS (one thread)."""
    loop_ms = []
    for _ in range(repeats):
        t = time.perf_counter()
        s = 0
        for i in range(1_000_000):
            s += i
        loop_ms.append((time.perf_counter() - t) * 1e3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = torch.randn(512, 512)
        a @ a                                   # warm-up (oneDNN/MKL kernel selection)
        gflops = []
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(20):
                a @ a
            gflops.append(20 * 2 * 512 ** 3 / (time.perf_counter() - t) / 1e9)
    finally:
        torch.set_num_threads(threads)
    return {'python_loop_1m_ms': round(min(loop_ms), 1), 'matmul_gflops': round(max(gflops), 1)}
