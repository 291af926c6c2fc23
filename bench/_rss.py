"""Measurement helpers for the benchmarks: best-of-N timing, and running a function in a fresh
child process to get its seconds and peak memory.

A fresh process per measurement because a process's high-water mark only goes up: measured in
one interpreter, a later, leaner step would report an earlier step's peak.
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def peak_rss_bytes() -> int:
    """This process's peak resident set size.

    VmHWM belongs to the process's own address space. getrusage's ru_maxrss is the fallback
    only (Linux, in KiB): it survives fork and exec, so a spawned child would report its
    parent's size at the fork whenever that is larger than anything the child does.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _measured(fn, args):
    before = peak_rss_bytes()  # the interpreter and its imports, before fn allocates anything
    start = time.perf_counter()
    result = fn(*args)
    seconds = time.perf_counter() - start
    return result, seconds, before, peak_rss_bytes()


def run_in_child(fn, *args):
    """(fn(*args), seconds inside the child, peak RSS before the call, peak RSS after it).

    'spawn' rather than fork, so the child starts empty instead of sharing the parent's pages;
    fn and args must be picklable (a module-level function, paths rather than big arrays).
    """
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_measured, fn, args).result()


def best_of(repeats: int, fn) -> float:
    """The fastest of `repeats` timings of fn(): other load on the machine only ever adds time."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
