"""CPU time and memory of a process with its worker processes (the node's, the pipeline's)."""
from __future__ import annotations

from pathlib import Path

import psutil


def family(proc: psutil.Process) -> list[psutil.Process]:
    """List the process and its descendants (e.g. the reconstruction worker processes)."""
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return [proc]


def cpu_seconds(proc: psutil.Process, with_children: bool = True) -> float:
    """Return the CPU time (user + system, all threads) of ``proc`` and, by default, its family."""
    total = 0.0
    for p in family(proc) if with_children else [proc]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:    # a worker that ended in between
            continue
        total += t.user + t.system
    return total


def rss_mb(proc: psutil.Process) -> float:
    """Resident memory of the process and its family (pages they share are counted twice)."""
    total = 0
    for p in family(proc):
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def peak_rss_mb(proc: psutil.Process) -> float | None:
    """Sum of the peak resident set sizes the kernel recorded for the family (Linux: VmHWM)."""
    peaks = []
    for p in family(proc):
        try:
            for line in Path(f'/proc/{p.pid}/status').read_text().splitlines():
                if line.startswith('VmHWM:'):
                    peaks.append(int(line.split()[1]) / 1024)
        except OSError:
            pass
    return sum(peaks) if peaks else None
