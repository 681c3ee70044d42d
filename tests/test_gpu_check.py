"""scripts/gpu_check.sh cannot rot: the driver's bookkeeping (a failing or timed-out part does not
stop the others; the summary gives each exit code, table and log tail), every part's script exists,
and a short dry run (the environment part) goes through the shell entry point."""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_check():
    """scripts/gpu/check.py as a module (registered first: its dataclass looks itself up)."""
    if "gpu_check_driver" not in sys.modules:
        spec = importlib.util.spec_from_file_location("gpu_check_driver", ROOT / "scripts" / "gpu" / "check.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules["gpu_check_driver"]


def test_a_failing_or_timed_out_part_does_not_stop_the_others(tmp_path, monkeypatch):
    check = load_check()
    fake = [check.Part("fails", "exits 3", [["bash", "-c", "echo before; exit 3"]], 20),
            check.Part("hangs", "runs past its limit", [["sleep", "30"]], 1),
            check.Part("works", "prints a table", [["bash", "-c", "echo '| a | b |'; echo done"]], 20)]
    monkeypatch.setattr(check, "parts", lambda args, out: fake)
    assert check.main(["--out", str(tmp_path)]) == 1
    text = (tmp_path / "summary.md").read_text()
    assert "| fails | 3 |" in text and "| hangs | timed out (124) |" in text and "| works | 0 |" in text
    works = text.split("## works")[1]
    assert "| a | b |" in works and "done" in works  # its table, then its log's last lines
    assert "before" in (tmp_path / "logs" / "fails.log").read_text()
    with pytest.raises(SystemExit):
        check.main(["--out", str(tmp_path), "--parts", "nonesuch"])


@pytest.mark.parametrize("dry", [True, False])
def test_every_part_runs_an_existing_script_in_order(tmp_path, dry):
    check = load_check()
    plan = check.parts(argparse.Namespace(dry_run=dry, family_epochs=2), tmp_path)
    assert [p.name for p in plan] == ["env", "tests", "steps", "dist", "data_eval", "accuracy", "peer"]
    for part in plan:
        for cmd in part.commands:
            words = cmd.split() if isinstance(cmd, str) else cmd
            scripts = [w for w in words if w.endswith(".py")]
            assert all((ROOT / s).is_file() for s in scripts), (part.name, scripts)
    if not dry:
        assert sum(p.timeout for p in plan) <= 540  # the limits keep a GPU run within 9 minutes
    tests = plan[1]
    assert "cuda_capable" in tests.commands[0] and tests.env["REID_TEST_DEVICE"] == ("cpu" if dry else "cuda")


def test_dry_run_of_the_environment_part_through_the_shell_entry(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    res = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--parts", "env"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    text = (tmp_path / "summary.md").read_text()
    assert "dry run on the CPU" in text and "| env | 0 |" in text
    assert "| torch |" in text.split("## env")[1] and (tmp_path / "logs" / "env.log").is_file()
