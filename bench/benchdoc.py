"""Writing one benchmark's section of docs/benchmarks.md, leaving the rest."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def write_section(heading: str, text: str, doc: Path = DOC) -> None:
    """Replace the section that starts with ``heading`` (or append it)."""
    old = doc.read_text() if doc.exists() else "# Benchmarks\n\n"
    start = old.find(heading + "\n")
    if start < 0:
        doc.write_text(old.rstrip("\n") + "\n\n" + text)
        return
    end = old.find("\n## ", start + len(heading))
    tail = "" if end < 0 else old[end + 1 :]
    doc.write_text(old[:start] + text + ("\n" + tail if tail else ""))
