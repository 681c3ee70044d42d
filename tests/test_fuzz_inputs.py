"""The input fuzzer in the suite (issue 23, item 6): wrong values of every kind for every config key,
component keyword and tool argument (generated from their declarations by reid.testing.fuzz), run
through load_config / the tool's argparse in process. Each case must end in one clear error line
naming the key, or load a value its declared check accepts; never a traceback, never a hang.
A fixed-seed sample keeps this tier fast; ``python reid/testing/fuzz.py run`` runs every case."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

import reid.config as config
from reid.checks import Range
from reid.config import CHECKED_ELSEWHERE, VALUE_CHECKS, schema_leaves
from reid.testing import fuzz

SAMPLE = 1000
SEED = 23


def test_every_schema_key_declares_a_check(monkeypatch):
    leaves = schema_leaves()
    assert [k for k in leaves if k not in VALUE_CHECKS and k not in CHECKED_ELSEWHERE] == []
    assert [k for k in VALUE_CHECKS if k not in leaves] == []  # no check of a key that does not exist
    assert "train.epochs" in leaves and "reference.datasets" in leaves and "model.name" not in leaves
    monkeypatch.delitem(VALUE_CHECKS, "train.compile")  # a key without a check: no config loads
    monkeypatch.setattr(config, "_DECLARED", [])
    with pytest.raises(RuntimeError, match="schema keys without a check in VALUE_CHECKS: train.compile"):
        config.load_config(None, [])


def test_wrong_inputs_give_one_named_error_or_a_valid_value(capsys):
    cases = fuzz.all_cases()
    picked = fuzz.sample(cases, SAMPLE, SEED)
    start = time.perf_counter()
    results = [fuzz.run_case(case) for case in picked]
    elapsed = time.perf_counter() - start
    outcomes = [r[0] for r in results]
    table = fuzz.counts(picked, outcomes)
    with capsys.disabled():
        generated = {c: sum(1 for x in cases if x["class"] == c) for c in ("schema", "component", "tool")}
        print(f"\nfuzz: {len(cases)} cases generated {generated}, {len(picked)} run in {elapsed:.1f} s")
        for group, row in table.items():
            print(f"  {group:26s} " + ", ".join(f"{k} {v}" for k, v in sorted(row.items())))
    failures = [(case["args"], result) for case, result in zip(picked, results) if result[0] not in fuzz.PASSES]
    assert failures == []
    assert {c["class"] for c in picked} == {"schema", "component", "tool"}
    kinds = {c["kind"] for c in picked}
    assert {"wrong type", "empty", "non-finite", "out of range", "huge", "wrong container", "wrong shape"} <= kinds
    assert table["schema"].get("clear", 0) > 0 and table["tool"].get("clear", 0) > 0


def test_the_fuzzer_flags_a_value_its_check_would_let_through(monkeypatch):
    """A weakened declaration (train.epochs without its range) is caught as a silent acceptance."""
    case = {"class": "schema", "kind": "out of range", "key": "train.epochs", "args": ["train.epochs=0"]}
    assert fuzz.run_case(case)[0] == "clear"
    monkeypatch.setitem(VALUE_CHECKS, "train.epochs", Range(0))
    assert fuzz.run_case(case)[0] == "accepted"  # the value passes the (weakened) declared check
    monkeypatch.setitem(VALUE_CHECKS, "train.epochs", Range(1))
    monkeypatch.setattr(fuzz, "_declared_ok", lambda case, cfg: False)
    assert fuzz.run_case({**case, "args": ["train.epochs=3"]})[0] == "silent"


def test_tool_arguments_are_checked_by_argparse():
    parser = fuzz.tool_parser("search.py")
    case = {"class": "tool", "kind": "out of range", "key": "--topk", "tool": "search.py", "command": "",
            "args": ["--checkpoint", "c", "--query", "q", "--gallery", "g", "--topk", "0"]}
    outcome, line = fuzz.run_case(case)
    assert outcome == "clear" and line.endswith("error: argument --topk: expected an integer >= 1, got 0")
    assert parser.parse_args(case["args"][:-1] + ["3"]).topk == 3


def test_docs_list_every_declared_range():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "checks.md").read_text()
    assert [row for row in fuzz.declared_table() if row not in doc] == []

    def listed(key: str) -> bool:  # the key or a dotted tail of it in backquotes (rows group siblings)
        parts = key.split(".")
        return any(f"`{'.'.join(parts[i:])}`" in doc for i in range(len(parts)))

    assert [k for k in VALUE_CHECKS if not listed(k)] == []
