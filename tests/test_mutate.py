"""`make mutate` (tools/mutate.py): every planted bug still applies to today's source, and the verdicts are read
right from pytest's exit status."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("mutate", ROOT / "tools/mutate.py")
mutate = importlib.util.module_from_spec(spec)
sys.modules["mutate"] = mutate  # its dataclasses look their module up
spec.loader.exec_module(mutate)


@pytest.mark.parametrize("m", mutate.MUTATIONS, ids=lambda m: m.name)
def test_each_mutation_changes_exactly_one_place_of_todays_source(m):
    mutate.check_applies(m)  # a refactor that moves a snippet must move its mutation too


def test_the_four_mutations_of_issue_20_and_fifteen_more_are_listed():
    names = [m.name for m in mutate.MUTATIONS]
    assert len(names) == len(set(names)) >= 19
    assert {"fusion attends to masked tracks", "load_split not divided by norm_std",
            "text loss without label smoothing", "best saved every epoch (best = last)"} <= set(names)  # fmt: skip


def test_a_snippet_found_twice_or_not_at_all_is_refused(tmp_path):
    (tmp_path / "m.py").write_text("x = 1\nx = 1\n")
    with pytest.raises(mutate.MutationError, match="occurs 2 times"):
        mutate.check_applies(mutate.Mutation("twice", "m.py", "x = 1", "x = 2", ()), tmp_path)
    with pytest.raises(mutate.MutationError, match="occurs 0 times"):
        mutate.check_applies(mutate.Mutation("gone", "m.py", "y = 1", "y = 2", ()), tmp_path)


def test_verdicts_follow_pytests_exit_status():
    assert [mutate.verdict(rc) for rc in (0, 1, 2, 4, 5, None)] == ["survived", "caught"] + ["error"] * 4
