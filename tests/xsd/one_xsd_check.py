#!/usr/bin/env python3
"""Validates OpenNebula object documents (the XML in an XML-RPC answer) against OpenNebula's
XML Schemas in tests/xsd/opennebula/ (see its PROVENANCE.md).

    tests/xsd/one_xsd_check.py FILE.xml [FILE.xml ...]
    some-command | tests/xsd/one_xsd_check.py -
    tests/xsd/one_xsd_check.py --schema vm_pool_extended.xsd FILE.xml

The schema is chosen by the document's root element: the schema that declares it as a
top-level element (VM -> vm.xsd, HOST_POOL -> host_pool.xsd, ...). Some roots are declared
by several schemas: VM_POOL by vm_pool.xsd (one.vmpool.info) and vm_pool_extended.xsd
(one.vmpool.infoextended), VNET_POOL likewise, HOOK_MESSAGE by one schema per hook type. A
document with such a root is valid when one of them accepts it; the output names which.
`--schema NAME` insists on one schema.

OpenNebula's answers carry no namespace while the schemas declare
http://opennebula.org/XMLSchema as their target namespace, so a root element without an
xmlns gets that one before validation (the document is otherwise untouched).

Exit status: 0 every document valid, 1 some invalid, 2 a usage or tooling error (xmllint,
from Debian's libxml2-utils, is missing).

Imported (the e2e harness does), `validate(xml_text, schema=None)` returns a `Result`.
Needs only the standard library and xmllint.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent / "opennebula"
NAMESPACE = "http://opennebula.org/XMLSchema"
_XS = "{http://www.w3.org/2001/XMLSchema}"
# How many lines of xmllint's complaints are kept per schema.
_MAX_LINES = 20


class ToolMissing(Exception):
    """xmllint is not installed: nothing can be validated here."""


@dataclass
class Result:
    """The outcome of validating one document."""

    ok: bool
    root: str | None
    # The schema that accepted the document (file name), when ok.
    schema: str | None = None
    # Why each tried schema rejected it, or why none could be tried: (schema or "", text).
    errors: list[tuple[str, str]] = field(default_factory=list)

    def report(self, label: str = "stdin") -> str:
        """The human-readable verdict, as the command line prints it."""
        if self.ok:
            return f"{label}: <{self.root}> valid ({self.schema})"
        head = f"{label}: <{self.root}> INVALID" if self.root else f"{label}: INVALID"
        lines = [head]
        for schema, text in self.errors:
            if schema:
                lines.append(f"  against {schema}:")
            lines.extend("    " + line for line in text.splitlines()[:_MAX_LINES])
        return "\n".join(lines)


@lru_cache(maxsize=1)
def schemas_by_root() -> dict[str, tuple[str, ...]]:
    """Root element name -> the schema files that declare it as a top-level element."""
    index: dict[str, list[str]] = {}
    for path in sorted(SCHEMA_DIR.glob("*.xsd")):
        for decl in ET.parse(path).getroot().findall(f"{_XS}element"):
            name = decl.get("name")
            if name:
                index.setdefault(name, []).append(path.name)
    return {root: tuple(files) for root, files in index.items()}


# The root element's start tag: after the XML declaration, comments, processing
# instructions and a DOCTYPE, the first "<" followed by a name.
_PROLOG = re.compile(r"\s*(?:<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>)", re.S)
_START_TAG = re.compile(r"<([A-Za-z_][\w.\-]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*?)(/?)>")


def with_namespace(xml_text: str) -> str:
    """The document with OpenNebula's namespace on its root element, unless it has one."""
    pos = 0
    while m := _PROLOG.match(xml_text, pos):
        pos = m.end()
    m = _START_TAG.search(xml_text, pos)
    if not m or re.search(r"\bxmlns\s*=", m.group(2)):
        return xml_text
    insert = m.end(1)
    return f'{xml_text[:insert]} xmlns="{NAMESPACE}"{xml_text[insert:]}'


def _xmllint(xml_text: str, schema: Path) -> tuple[bool, str]:
    try:
        r = subprocess.run(
            ["xmllint", "--noout", "--schema", str(schema), "-"],
            input=xml_text,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except FileNotFoundError as e:
        raise ToolMissing("xmllint not found: apt-get install libxml2-utils") from e
    # xmllint names standard input "-": say "document" instead.
    text = re.sub(r"^-(?=[: ])", "document", (r.stderr or r.stdout).strip(), flags=re.M)
    return r.returncode == 0, text


def validate(xml_text: str, schema: str | None = None) -> Result:
    """Validates one document. `schema` (a file name in SCHEMA_DIR, e.g.
    "vm_pool_extended.xsd") forces that schema; otherwise the root element chooses.
    Raises ToolMissing when xmllint is not installed."""
    if not shutil.which("xmllint"):
        raise ToolMissing("xmllint not found: apt-get install libxml2-utils")
    try:
        root = ET.fromstring(xml_text).tag
    except ET.ParseError as e:
        return Result(False, None, errors=[("", f"not well-formed XML: {e}")])
    # "{namespace}NAME" when the document carries one.
    local = root.rsplit("}", 1)[-1]
    if schema:
        path = SCHEMA_DIR / schema
        if path.parent != SCHEMA_DIR or not path.is_file():
            return Result(False, local, errors=[("", f"no schema named {schema} in {SCHEMA_DIR}")])
        candidates: tuple[str, ...] = (schema,)
    else:
        candidates = schemas_by_root().get(local, ())
        if not candidates:
            return Result(False, local, errors=[("", f"no schema declares the root element <{local}>")])
    doc = with_namespace(xml_text)
    errors = []
    for name in candidates:
        ok, text = _xmllint(doc, SCHEMA_DIR / name)
        if ok:
            return Result(True, local, schema=name)
        errors.append((name, text))
    return Result(False, local, errors=errors)


def main(argv: list[str]) -> int:
    args = argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 2
    schema = None
    if args[0] == "--schema":
        if len(args) < 3:
            print("usage: one_xsd_check.py --schema NAME.xsd FILE|- ...", file=sys.stderr)
            return 2
        schema, args = args[1], args[2:]
    all_ok = True
    for arg in args:
        label = "stdin" if arg == "-" else arg
        try:
            text = sys.stdin.read() if arg == "-" else Path(arg).read_text(encoding="utf-8")
            result = validate(text, schema)
        except ToolMissing as e:
            print(f"one_xsd_check: {e}", file=sys.stderr)
            return 2
        except OSError as e:
            print(f"one_xsd_check: cannot read {arg}: {e}", file=sys.stderr)
            return 2
        print(result.report(label))
        all_ok &= result.ok
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
