"""Helpers of the storage e2e tests (test_storage_kvm.py, test_storage_cluster.py): commands
on the disk files, and what a guest sees on a disk."""

from __future__ import annotations

import subprocess
from pathlib import Path


def run(cmd: list[str]) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{cmd}: {r.stderr}"
    return r.stdout


def first_sector(path: Path, fmt: str = "qcow2") -> bytes:
    """What a guest sees in the first 64 bytes of a disk (through its chain)."""
    out = path.parent / f".{path.name}.flat"
    try:
        run(["qemu-img", "convert", "-U", "-f", fmt, "-O", "raw", str(path), str(out)])
        with open(out, "rb") as f:
            return f.read(64).split(b"\0")[0]
    finally:
        out.unlink(missing_ok=True)
