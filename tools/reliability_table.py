"""docs/RELIABILITY.md's bad-input table, made from the tests' `bad_input` markers.

    python tools/reliability_table.py            rewrite the table (only the lines between the region's markers)
    python tools/reliability_table.py --check    exit 1 when the table is not what the markers make

A test backs a case with `@pytest.mark.bad_input(case=..., sees=..., kept=...)`, on the test function or on one
`pytest.param` of a parametrised test (spelled so: only test files holding `mark.bad_input(` are collected). The
markers are read from pytest's own collection of those files, so that each is seen exactly as pytest applies it
(parametrised tests, marks on params); rows follow the collection order, and a case backed by several tests is one
row naming each. tests/test_reliability_doc.py runs `--check`, so the table cannot go stale.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "RELIABILITY.md"
START, END = "<!-- bad-inputs:start -->", "<!-- bad-inputs:end -->"
MARKER = "bad_input"
FIELDS = ("case", "sees", "kept")


class TableError(ValueError):
    """A marker, a test file or the document that the table cannot be made from; the message says which."""


@dataclass
class Case:
    case: str
    sees: str
    kept: str
    tests: list[str] = field(default_factory=list)  # node ids: file::function, with [params] for a param's mark


class _Collector:
    """A pytest plugin keeping the collected items and every collection error."""

    def __init__(self) -> None:
        self.items: list = []
        self.errors: list[str] = []

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.errors.append(f"{report.nodeid}: {report.longreprtext.strip().splitlines()[-1]}")

    def pytest_collection_finish(self, session) -> None:
        self.items = list(session.items)


def marked_files(root: Path = ROOT) -> list[Path]:
    """The test files that apply the marker, spelled `pytest.mark.bad_input(` (collecting only these keeps the run
    to seconds)."""
    spelled = f"mark.{MARKER}("
    return sorted(p for p in (root / "tests").glob("test_*.py") if spelled in p.read_text(encoding="utf-8"))


def collect(root: Path = ROOT) -> list[Case]:
    """Every case the tests' markers describe, collected by pytest in this process (nothing is run)."""
    import pytest

    if str(root) not in sys.path:  # the tests import `pipeline` and `tests.*` from the repository root
        sys.path.insert(0, str(root))
    plugin = _Collector()
    args = ["--collect-only", "-qq", "-o", "addopts=", "-p", "no:cacheprovider", "--rootdir", str(root),
            "-c", str(root / "pyproject.toml"), *map(str, marked_files(root))]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):  # pytest's listing of what it collected: not ours to print
        code = pytest.main(args, plugins=[plugin])
    if plugin.errors or code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        raise TableError(f"collecting the tests failed (exit {int(code)}): {'; '.join(plugin.errors)}")
    return cases_of(plugin.items)


def cases_of(items: Iterable) -> list[Case]:
    """One Case per distinct `case`, in the items' order; the same case described two ways is an error."""
    cases: dict[str, Case] = {}
    for item in items:
        mark = item.get_closest_marker(MARKER)
        if mark is None:
            continue
        values = _fields(item.nodeid, mark)
        case = cases.setdefault(values["case"], Case(**values))
        if (case.sees, case.kept) != (values["sees"], values["kept"]):
            raise TableError(f"{item.nodeid}: case {values['case']!r} is described otherwise by {case.tests[0]}")
        test = _test_id(item, mark)
        if test not in case.tests:
            case.tests.append(test)
    return list(cases.values())


def _fields(nodeid: str, mark) -> dict[str, str]:
    """The marker's three texts; anything else (positional arguments, a missing or extra key, an empty text) is an
    error naming the test."""
    if mark.args or set(mark.kwargs) != set(FIELDS):
        raise TableError(f"{nodeid}: @pytest.mark.{MARKER} takes exactly the keywords {list(FIELDS)}, got "
                         f"{list(mark.args)} {sorted(mark.kwargs)}")  # fmt: skip
    for key in FIELDS:
        if not isinstance(mark.kwargs[key], str) or not mark.kwargs[key].strip():
            raise TableError(f"{nodeid}: @pytest.mark.{MARKER}({key}=...) must be a non-empty text")
    return {key: " ".join(mark.kwargs[key].split()) for key in FIELDS}


def _test_id(item, mark) -> str:
    """file::function for a marker on the function (all its params back the case), the full node id for a marker
    on one param."""
    on_function = mark in getattr(getattr(item, "function", None), "pytestmark", [])
    return item.nodeid.split("[", 1)[0] if on_function else item.nodeid


def render(cases: list[Case]) -> str:
    """The region's content: a line saying where it comes from, then the table."""
    lines = [
        f"{len(cases)} cases. Generated by `python tools/reliability_table.py` from the tests' `@pytest.mark.{MARKER}` "
        "markers: edit a marker, then rerun it; never edit this table.",
        "",
        "| case | what the user sees | what is kept | test |",
        "|---|---|---|---|",
    ]
    for c in cases:
        tests = "<br>".join(f"`{t}`" for t in c.tests)
        lines.append(f"| {_cell(c.case)} | {_cell(c.sees)} | {_cell(c.kept)} | {tests} |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    """One table cell: one line, its pipes escaped (GFM reads `\\|` as a pipe, in code spans too)."""
    return " ".join(text.split()).replace("|", "\\|")


def replace_region(text: str, body: str) -> str:
    """`text` with the lines between the line START and the line END replaced by `body`; every other line kept as
    it is (the markers may be quoted elsewhere in the text: only lines that are a marker alone count)."""
    lines = text.split("\n")
    starts = [k for k, line in enumerate(lines) if line.strip() == START]
    ends = [k for k, line in enumerate(lines) if line.strip() == END]
    if len(starts) != 1 or len(ends) != 1 or starts[0] > ends[0]:
        raise TableError(f"the document needs one line {START} followed by one line {END}")
    return "\n".join([*lines[: starts[0] + 1], body, *lines[ends[0] :]])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 when the table is out of date, write nothing")
    ap.add_argument("--doc", type=Path, default=DOC)
    args = ap.parse_args(argv)
    try:
        cases = collect()
        text = args.doc.read_text(encoding="utf-8")
        wanted = replace_region(text, render(cases))
    except (TableError, OSError) as err:
        print(f"reliability_table: {args.doc}: {err}", file=sys.stderr)
        return 2
    if args.check:
        if wanted != text:
            print(f"reliability_table: {args.doc}: the bad-input table is out of date with the tests' {MARKER} "
                  "markers; run `python tools/reliability_table.py`", file=sys.stderr)  # fmt: skip
            return 1
        print(f"{args.doc}: the bad-input table is up to date ({len(cases)} cases)")
        return 0
    if wanted != text:
        args.doc.write_text(wanted, encoding="utf-8")
    print(f"{args.doc}: {len(cases)} bad-input cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
