"""The examples of README.md and docs/*.md, for the tests that run them.

The convention (docs/testing.md, "Examples in the documentation"): every fenced code block
in README.md and docs/*.md has, on the line before its opening fence, one of

    <!-- example: NAME -->      something a reader types or pastes; a test runs it and
                                names it: doc_example("README.md", "NAME")
    <!-- not-run: REASON -->    not something to run: a diagram, a grammar, sample output,
                                an attribute reference; REASON says which

NAME is unique within its file. test_doc_examples.py fails for a block with neither marker,
for an example no test names, and for a name a test uses that its file lacks.

A test runs an example as typed, with only the substitutions of `localize` (its own oned's
endpoint and data directory instead of 127.0.0.1:2633 and var/, the debug build instead of
the release one): tests never use a fixed port or the repository's var/.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import REPO

MARKER = re.compile(r"^<!--\s*(example|not-run):\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")
# A test's reference to an example: doc_example("FILE", "NAME") (literal strings).
REFERENCE = re.compile(r"""doc_example\(\s*["']([^"']+)["']\s*,\s*["']([^"']+)["']\s*\)""")

DEFAULT_ENDPOINT = "http://127.0.0.1:2633/RPC2"


@dataclass(frozen=True)
class Block:
    doc: str  # path relative to the repository, e.g. "docs/hooks.md"
    line: int  # line of the opening fence (1-based)
    lang: str  # the fence's info string ("sh", "python", "" ...)
    text: str  # the block's content
    kind: str | None  # "example", "not-run", or None (unmarked)
    label: str  # the example's NAME, or the not-run REASON

    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def documents() -> list[Path]:
    """README.md and docs/*.md."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """Every fenced code block of a Markdown file, with the marker before it."""
    doc = str(path.relative_to(REPO))
    lines = path.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2), i
        j = i + 1
        while j < len(lines) and not lines[j].startswith(fence[0] * len(fence)):
            j += 1
        prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        marker = MARKER.match(prev.strip())
        out.append(Block(
            doc=doc,
            line=start + 1,
            lang=lang,
            text="\n".join(lines[start + 1:j]) + "\n",
            kind=marker.group(1) if marker else None,
            label=marker.group(2) if marker else "",
        ))
        i = j + 1
    return out


def doc_example(doc: str, name: str) -> Block:
    """The example NAME of DOC (e.g. "README.md", "first-vm"); fails the test when the
    document has no such example (a renamed or removed block)."""
    path = REPO / doc
    found = [b for b in blocks(path) if b.kind == "example" and b.label == name]
    if len(found) != 1:
        pytest.fail(f"{doc} has {len(found)} blocks marked <!-- example: {name} -->", pytrace=False)
    return found[0]


def references() -> set[tuple[str, str]]:
    """Every (doc, name) that a test file of tests/e2e names through doc_example."""
    refs = set()
    for path in (REPO / "tests" / "e2e").glob("*.py"):
        if path.name != "doc_examples.py":  # its own docs show the form
            refs.update(REFERENCE.findall(path.read_text()))
    return refs


def target_dir() -> Path:
    """Cargo's output directory, as the suite's binaries come from it."""
    t = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    return t if t.is_absolute() else REPO / t


def localize(text: str, endpoint: str | None = None, data_dir: Path | None = None) -> str:
    """The example as a test runs it: the endpoint and data directory of the test's own oned
    instead of 127.0.0.1:2633 and the repository's var/, and the debug build (which the
    suite builds) instead of the release build. Nothing else changes."""
    if endpoint:
        text = text.replace(DEFAULT_ENDPOINT, endpoint)
        host_port = endpoint.split("//", 1)[-1].split("/", 1)[0]
        text = text.replace("127.0.0.1:2633", host_port)
    if data_dir is not None:
        text = re.sub(r"(?<![\w./-])var/", f"{data_dir}/", text)
    text = text.replace("cargo build --release", "cargo build")
    text = re.sub(r"(?<![\w./-])target/release/", f"{target_dir()}/debug/", text)
    return text


def run_sh(text: str, env: dict[str, str] | None = None, timeout: float = 600,
           cwd: Path = REPO, inherit: bool = True) -> subprocess.CompletedProcess:
    """Runs a shell example with bash (errexit, pipefail) in the repository, in this
    process's environment plus `env` (only `env` when not `inherit`); fails the test with
    its output when it fails."""
    full_env = dict(os.environ if inherit else {}, **(env or {}))
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", text], cwd=str(cwd), env=full_env,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (
        f"the example failed ({r.returncode}):\n{text}\n--- stdout:\n{r.stdout[-4000:]}\n"
        f"--- stderr:\n{r.stderr[-4000:]}")
    return r


def run_python(text: str, env: dict[str, str] | None = None, timeout: float = 600,
               cwd: Path = REPO, prelude: str = "") -> subprocess.CompletedProcess:
    """Runs a Python example with the suite's interpreter (the venv with pyone) in the
    repository, after `prelude` (e.g. the `one = pyone.OneServer(...)` the docs' examples
    take from the README); fails the test with its output when it fails."""
    full_env = dict(os.environ, **(env or {}))
    r = subprocess.run([sys.executable, "-c", prelude + text], cwd=str(cwd), env=full_env,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (
        f"the example failed ({r.returncode}):\n{prelude}{text}\n--- stdout:\n{r.stdout[-4000:]}\n"
        f"--- stderr:\n{r.stderr[-4000:]}")
    return r


def pyone_prelude(endpoint: str, data_dir: Path) -> str:
    """The client README.md's "Using the API" makes, which the docs' Python examples use as
    `one`."""
    return (
        "import pyone\n"
        f"one = pyone.OneServer({endpoint!r}, "
        f"session=open({str(data_dir / 'one_auth')!r}).read().strip())\n"
    )
