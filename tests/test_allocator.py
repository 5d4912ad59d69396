"""bertplat.allocator: after retain_freed_memory(), a large block freed and allocated again (nearly) never
page-faults; with glibc's defaults every allocation of it faults its pages in again. Each case runs in a fresh
interpreter, whatever this test process has set."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")

PROBE = """
import resource, sys
import torch
from bertplat.allocator import retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "retain" else None
for _ in range(12):                   # warm-up: the heap grows until its free blocks fit the requests
    torch.ones(64 << 18).sum()        # 64 MiB allocated, touched in full, freed
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.ones(64 << 18).sum()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    applied, count = out.stdout.split()
    return applied, int(count)


def test_freed_blocks_are_reused_without_page_faults():
    applied, retained = faults("retain")
    default_applied, default = faults("default")
    assert applied == "True" and default_applied == "None"
    pages = 20 * (64 << 20) // 4096           # what 20 fresh 64 MiB blocks fault in
    assert default > pages // 2, f"glibc's defaults faulted only {default} pages; the probe measures nothing"
    # the heap may still grow once or twice after the warm-up (a block of 64 MiB is 16,384 pages)
    assert retained < pages // 4, f"{retained} page faults after retain_freed_memory (defaults: {default})"


def test_it_applies_once_and_says_so():
    from bertplat.allocator import retain_freed_memory

    assert retain_freed_memory() is retain_freed_memory() is True
