"""`keep_freed_memory`: a training step's pattern of allocations stops page-faulting.

The tuning is process-wide and cannot be undone, so the measurements run in child processes: first
untuned (the precondition: glibc's default returns the freed memory, so the pattern faults), then
tuned.
"""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

_CHILD = """
import ctypes
import resource
import torch
from mlc.train import keep_freed_memory

# PR_SET_THP_DISABLE: 4 KiB pages whatever the host's transparent hugepage policy, so that the
# untuned count does not depend on it
assert ctypes.CDLL(None).prctl(41, 1, 0, 0, 0) == 0


def faults_per_round():
    def one_round():  # as a step: several tensors of a few MB written, then all freed together
        tensors = [torch.empty(2 << 20).fill_(1.0) for _ in range(6)]
        del tensors

    one_round()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        one_round()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10


untuned = faults_per_round()
applied = keep_freed_memory()
print(untuned, applied, faults_per_round())
"""


glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)


@glibc_only
def test_freed_tensors_are_reused_without_page_faults():
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True)
    untuned, applied, tuned = out.stdout.split()
    assert float(untuned) > 500  # 48 MiB per round is 12,288 pages; glibc's default faults a share back
    assert applied == "True"
    assert float(tuned) < 10


_THREADS_CHILD = """
import ctypes
import resource
from concurrent.futures import ThreadPoolExecutor

import torch
from mlc.train import keep_freed_memory

assert ctypes.CDLL(None).prctl(41, 1, 0, 0, 0) == 0
keep_freed_memory()
pool = ThreadPoolExecutor(2)


def one_round():  # two threads at once, each 96 MiB: past the 64 MiB heaps of glibc's thread arenas
    def piece(_):
        tensors = [torch.empty(2 << 20).fill_(1.0) for _ in range(12)]
        del tensors

    list(pool.map(piece, range(2)))


for _ in range(20):  # the heap settles once the two threads' peaks have met in every order
    one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    one_round()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
ctypes.CDLL(None).malloc_stats()  # per arena, to stderr
"""


@glibc_only
def test_training_threads_share_the_kept_heap():
    """The trainer's threads each hold a range's step (~96 MiB for 64 mlds-gru networks); in arenas
    of their own, glibc maps and unmaps their heaps, and two threads faulted ~9,700 times a step."""
    out = subprocess.run([sys.executable, "-c", _THREADS_CHILD], capture_output=True, text=True, check=True)
    arenas = [line for line in out.stderr.splitlines() if line.startswith("Arena ")]
    assert arenas == ["Arena 0:"], out.stderr
    assert float(out.stdout) < 10
