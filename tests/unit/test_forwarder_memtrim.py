"""``forwarder/memtrim.py``: the freed heap pages glibc holds go back to the OS."""

from __future__ import annotations

import subprocess
import sys

import pytest

from forwarder import memtrim

# in a fresh interpreter: 100k blocks of 1 KB (over pymalloc's 512 bytes: glibc's heap), one
# block allocated after them pins the heap's top, so glibc's own top trim cannot return them
SCRIPT = """
import sys
from forwarder import memtrim
def rss():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])
blocks = [bytes(1000) + bytes([i % 256]) for i in range(100_000)]
pin = bytes(2000)
before = rss()
del blocks
freed = rss()
released = memtrim.trim()
print(before, freed, rss(), released)
"""


@pytest.mark.skipif(not memtrim.available, reason="no glibc malloc_trim on this platform")
def test_freed_heap_pages_held_by_glibc_are_returned_by_the_trim():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    before, freed, trimmed = (int(x) for x in out[:3])
    assert out[3] == "True"
    assert before - freed < 20_000, (before, freed)  # freed, but glibc kept the pages
    assert freed - trimmed > 80_000, (freed, trimmed)  # KB: ~100 MB given back
