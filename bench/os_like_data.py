#!/usr/bin/env python3
"""Writes SIZE_MB MiB of data that compresses like a typical OS image (text
with some noise and runs of zeros) to PATH, the same bytes on every run.
   bench/os_like_data.py PATH SIZE_MB"""
import random
import sys

random.seed(1)
words = [b"kernel", b"block", b"cluster", b"qcow2", b"snapshot", b"virtio", b"\x00" * 64, b"\n"]
chunk = b"".join(random.choice(words) for _ in range(200000))[:1 << 20]
with open(sys.argv[1], "wb") as f:
    for i in range(int(sys.argv[2])):
        f.write(chunk[i % 7:] + chunk[:i % 7])
