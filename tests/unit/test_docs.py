"""The repository documents its boundaries in docs/contracts.md and cites only that file.

- No tracked file outside docs/ refers to the team's private notes file, which is not part of
  the repository (the name is assembled below so that this file does not refer to it).
- Every citation of a section (the file name, a comma, then the heading in double quotes)
  names a heading of docs/contracts.md, and every link to an anchor of it names one that
  exists.
- The links in the README and in docs/ lead to files and headings that exist.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "docs" / "contracts.md"
_PRIVATE_NOTES = re.compile("CONTRACTS" + r"(?:\.md|\s*§)")
_CITATION_START = re.compile(r"\(docs/contracts\.md,")
_CITATION = re.compile(r"\(docs/contracts\.md,[ \t]*\"([^\"\n]*)\"\)")
"""A citation stays on one line, in parentheses: the file name, a comma, the heading quoted."""
_ANCHOR_LINK = re.compile(r"docs/contracts\.md#([^\s)\"'`>]+)")
_MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def _tracked_files() -> list[Path]:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no list of tracked files")
    listed = subprocess.run(
        [git, "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    paths = [ROOT / name for name in listed.split("\0") if name]
    # A file deleted in the working tree but still in the index has nothing to check.
    return [path for path in paths if path.is_file()]


def _outside_docs() -> list[Path]:
    return [path for path in _tracked_files() if path.relative_to(ROOT).parts[0] != "docs"]


def _text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "replace")


def _headings(path: Path) -> list[str]:
    """Markdown headings, outside fenced code blocks (where `#` starts a comment)."""
    headings: list[str] = []
    fenced = False
    for line in _text(path).splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match:
            headings.append(match.group(2))
    return headings


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _where(path: Path, text: str, position: int) -> str:
    return f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, position) + 1}"


def test_no_tracked_file_outside_docs_refers_to_the_private_notes() -> None:
    found = []
    for path in _outside_docs():
        text = _text(path)
        found += [_where(path, text, match.start()) for match in _PRIVATE_NOTES.finditer(text)]
    assert not found, (
        "these lines refer to a notes file that is not in the repository; cite the "
        "section of docs/contracts.md that holds the fact instead:\n" + "\n".join(found)
    )


def test_contract_headings_are_unique() -> None:
    repeated = [name for name, count in Counter(_headings(CONTRACTS)).items() if count > 1]
    assert not repeated, f"a citation of these headings would be ambiguous: {repeated}"


def test_every_cited_section_exists() -> None:
    headings = set(_headings(CONTRACTS))
    cited: list[tuple[str, str | None]] = []
    for path in _outside_docs():
        text = _text(path)
        for start in _CITATION_START.finditer(text):
            match = _CITATION.match(text, start.start())
            cited.append((_where(path, text, start.start()), match.group(1) if match else None))
    assert cited, "no citation of docs/contracts.md found: is the citation pattern still right?"
    missing = [
        f"{where}: {title!r}" if title is not None else f"{where}: not on one line as cited"
        for where, title in cited
        if title not in headings
    ]
    assert not missing, (
        "these citations name no heading of docs/contracts.md (cite a heading exactly):\n"
        + "\n".join(missing)
    )


def test_every_linked_anchor_exists() -> None:
    anchors = {_slug(heading) for heading in _headings(CONTRACTS)}
    linked: list[tuple[str, str]] = []
    for path in _outside_docs():
        text = _text(path)
        linked += [
            (_where(path, text, match.start()), match.group(1))
            for match in _ANCHOR_LINK.finditer(text)
        ]
    missing = [f"{where}: #{anchor}" for where, anchor in linked if anchor not in anchors]
    assert not missing, "these links name no anchor of docs/contracts.md:\n" + "\n".join(missing)


DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_links_in_the_docs_lead_somewhere(document: Path) -> None:
    text = _text(document)
    broken = []
    for match in _MARKDOWN_LINK.finditer(text):
        target = match.group(1)
        if re.match(r"[a-z]+:", target):
            continue  # an external URL
        file_part, _, anchor = target.partition("#")
        path = (document.parent / file_part).resolve() if file_part else document
        where = _where(document, text, match.start())
        if not path.exists():
            broken.append(f"{where}: {target} (no such file)")
        elif (
            anchor
            and path.suffix == ".md"
            and anchor not in {_slug(heading) for heading in _headings(path)}
        ):
            broken.append(f"{where}: {target} (no such heading)")
    assert not broken, f"broken links in {document.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_the_observability_guide_names_every_metric_and_its_attributes() -> None:
    from observability.metric_catalog import METRICS

    guide = (ROOT / "docs" / "observability.md").read_text()
    rows = {
        line.split("|")[1].strip(" `"): line
        for line in guide.splitlines()
        if line.startswith("| `")
    }
    for metric, attributes in METRICS.items():
        assert metric in rows, f"docs/observability.md has no row for {metric}"
        missing = [a for a in attributes if f"`{a}`" not in rows[metric]]
        assert not missing, f"{metric}: its row does not name {missing}"
