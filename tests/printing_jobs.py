"""Tasks that print, for the output tests (`tqcli logs`): through Python, the raw descriptors and a child process."""

import os
import subprocess
import sys


def both_ways(lines=2):
    """Print to stdout and stderr by `print`, then write fd 1 directly and let a child process print."""
    for n in range(lines):
        print(f"out {n}")
        print(f"err {n}", file=sys.stderr)
    os.write(1, b"raw fd 1\n")
    os.write(2, b"raw fd 2\n")
    subprocess.run(["echo", "from a child"], check=True)
    return "printed"


def split_character():
    """Write a two-byte character one byte at a time, flushing between them."""
    encoded = "é".encode()
    for byte in encoded:
        os.write(1, bytes([byte]))
    os.write(1, b"\xff\n")  # not UTF-8: replaced
    return "ok"


def print_bytes(size, fail=False):
    """Print `size` bytes of numbered lines (each 16 bytes) to stdout, then fail if asked."""
    line_count = size // 16
    block = 4096
    for start in range(0, line_count, block):
        sys.stdout.write("".join(f"{n:015d}\n" for n in range(start, min(line_count, start + block))))
    sys.stdout.flush()
    if fail:
        raise RuntimeError("printed and failed")
    return line_count
