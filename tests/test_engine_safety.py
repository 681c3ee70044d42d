"""Safe and strict runs: checkpoints never run code, one run per output folder, atomic writes,
Ctrl-C saves a checkpoint that resumes exactly."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_engine_train import params, tiny

from reid.config import load_config
from reid.engine import Trainer
from reid.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, to_plain
from reid.engine.interrupt import TrainingInterrupted
from reid.engine.run_lock import LOCK_NAME, RunLockedError, run_lock

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
SMALL = ("train.iters_per_epoch=3", "sampler.num_ids=2", "sampler.num_instances=2")  # 3 steps of 4 images


class Payload:
    """Unpickling this object creates ``marker`` (stands for any code a file could run)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


# ------------------------------------------------------------------------------- checkpoints


def test_checkpoint_with_code_is_refused_and_the_code_never_runs(tmp_path):
    marker, path = tmp_path / "marker", tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.ones(2)}, "epoch": 0, "extra": Payload(marker)}, path)
    torch.load(path, weights_only=False)  # the payload is live: plain unpickling runs it
    assert marker.exists()
    marker.unlink()
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert not marker.exists()
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: contains non-tensor Python objects (exec)")
    assert "reid refuses to unpickle" in message and "weights_only=False" in message
    res = subprocess.run([sys.executable, "tools/test.py", "--config", "configs/quickstart.yaml",
                          "--checkpoint", str(path)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and not marker.exists(), res.stderr[-2000:]
    assert res.stderr.strip().splitlines() == [f"error: {message}"]


def test_saving_refuses_objects_that_loading_would_refuse(tmp_path):
    with pytest.raises(TypeError, match=r"checkpoint\['best'\]\['mAP'\] is a numpy.float64"):
        save_checkpoint({"model": {}, "best": {"mAP": np.float64(0.5)}}, tmp_path / "x.pth")
    assert not list(tmp_path.iterdir())  # nothing written, no temporary file left
    plain = to_plain({"mAP": np.float64(0.5), "ids": np.arange(2), "size": (64, 32), "dir": tmp_path,
                      "draws": np.int64(3), "ok": np.bool_(True), "none": None})
    assert plain == {"mAP": 0.5, "ids": [0, 1], "size": [64, 32], "dir": str(tmp_path), "draws": 3,
                     "ok": True, "none": None}
    assert [type(plain[k]) for k in ("mAP", "draws", "ok")] == [float, int, bool]
    save_checkpoint({"model": {"w": torch.ones(1)}, "best": plain}, tmp_path / "x.pth")
    assert load_checkpoint(tmp_path / "x.pth")["best"] == plain


def test_a_broken_file_is_a_one_line_error(tmp_path):
    for name, data in (("empty.pth", b""), ("text.pth", b"not a checkpoint")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=f"{name}: not a readable checkpoint") as error:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(error.value)


# ---------------------------------------------------------------------------- two processes


def test_concurrent_saves_to_one_path_never_leave_a_broken_file(tmp_path):
    """Two processes save 40 checkpoints each to one path; every one read back is whole."""
    path, go = tmp_path / "last.pth", tmp_path / "go"
    writer = ("import sys, time, torch; from pathlib import Path\n"
              "from reid.atomic_io import atomic_write\n"  # save_checkpoint's write, without reid.engine's imports
              "me, path, go = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])\n"
              "Path(f'{go}{me}').touch()\n"
              "while not go.exists(): time.sleep(0.001)\n"
              "for i in range(40):\n"
              "    v = float(me * 1000 + i)\n"
              "    state = {'model': {'a': torch.full((50000,), v), 'b': torch.full((50000,), v)}}\n"
              "    atomic_write(path, lambda f: torch.save(state, f))\n")
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(me), str(path), str(go)], env=ENV,
                              stderr=subprocess.PIPE, text=True) for me in (1, 2)]
    while not all(Path(f"{go}{me}").exists() for me in (1, 2)) and all(p.poll() is None for p in procs):
        time.sleep(0.01)  # both writers ready
    go.touch()
    reads = 0
    while any(p.poll() is None for p in procs):
        if path.exists():
            state = load_checkpoint(path)["model"]
            assert torch.equal(state["a"], state["b"]) and len(state["a"].unique()) == 1
            reads += 1
        time.sleep(0.01)
    for p in procs:
        assert p.wait() == 0, p.stderr.read()[-2000:]
    final = load_checkpoint(path)["model"]["a"]
    assert float(final[0]) in (1039.0, 2039.0) and len(final.unique()) == 1
    assert sorted(x.name for x in tmp_path.iterdir()) == ["go", "go1", "go2", "last.pth"]  # no temporary files
    assert reads > 0


@pytest.mark.slow  # three processes: two tools/train.py runs and a CLI start-up
def test_a_second_run_into_a_folder_stops_and_ctrl_c_saves_a_resumable_checkpoint(tmp_path):
    """Run 1 trains; run 2 into its folder exits 2 naming run 1; Ctrl-C stops run 1 (exit 130)
    with one line saying what it saved; the lock is gone with it."""
    args = [sys.executable, "tools/train.py", "--config", "configs/quickstart.yaml",
            *tiny(tmp_path, "train.epochs=50", *SMALL)]
    err_file = tmp_path / "stderr.txt"  # progress bars: a file, not a pipe that could fill up
    with open(err_file, "w") as err_out:
        first = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=err_out, text=True)
    lines = []
    for line in first.stdout:  # wait until it trains (its first epoch's log line)
        lines.append(line)
        if "epoch 1/50" in line:
            break
    second = subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    first.send_signal(signal.SIGINT)
    out, _ = first.communicate(timeout=120)
    lines += out.splitlines()
    err = err_file.read_text()
    assert second.returncode == 2, second.stderr[-2000:]
    assert second.stderr.strip().splitlines() == [
        f"error: output_dir {tmp_path / 'run'} is in use by another run (pid {first.pid} on host "
        f"{os.uname().nodename}, started {second.stderr.split('started ')[1].split(';')[0]}; lock "
        f"{tmp_path / 'run' / LOCK_NAME}); wait for it to finish, choose another output_dir, or pass --force "
        "to write into it anyway"]
    assert first.returncode == 130, err[-2000:]
    stop = [x for x in lines if "interrupted" in x]
    last = tmp_path / "run" / "checkpoints" / "last.pth"
    assert len(stop) == 1 and re.search(
        rf"interrupted (in epoch \d+/50 after iteration \d/3|after epoch \d+/50): saved {last}; "
        r"resume with --resume auto$", stop[0].rstrip()), lines[-5:]
    assert int(load_checkpoint(last)["epoch"]) >= 0 and not (tmp_path / "run" / LOCK_NAME).exists()


def test_a_lock_left_by_a_killed_run_does_not_block(tmp_path):
    holder = ("import fcntl, os, sys, time\n"
              "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
              "fcntl.flock(fd, fcntl.LOCK_EX)\n"
              "os.write(fd, b'{\"pid\": %d, \"host\": \"h\", \"started\": \"t\"}' % os.getpid())\n"
              "print('locked', flush=True)\n"
              "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path / LOCK_NAME)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(RunLockedError, match=rf"in use by another run \(pid {proc.pid} on host h, started t;"):
        with run_lock(tmp_path):
            pass
    warnings = []
    with run_lock(tmp_path, force=True, warn=warnings.append):  # --force writes anyway, with a warning
        pass
    assert warnings == [f"warning: --force: writing into {tmp_path} although another run uses it "
                        f"(pid {proc.pid} on host h, started t)"]
    proc.kill()
    proc.wait()
    assert (tmp_path / LOCK_NAME).exists()  # stale file, no live holder
    with run_lock(tmp_path) as path:
        info = json.loads(path.read_text())
        assert info["pid"] == os.getpid()
        with pytest.raises(RunLockedError):  # a second lock in the same process is refused too
            with run_lock(tmp_path):
                pass
    assert not path.exists()


# ------------------------------------------------------------------------------------ Ctrl-C


def noisy_and_interrupted_at(trainer: Trainer, call: int | None) -> None:
    """Forward hooks: features x (1 + U(0, 0.1)) from torch's global generator (as dropout draws),
    and a real SIGINT to this process during forward pass number ``call`` (1-based)."""
    calls = [0]

    def hook(module, inputs, output):
        calls[0] += 1
        if calls[0] == call:
            os.kill(os.getpid(), signal.SIGINT)
        f = output["features"]
        return {**output, "features": f * (1 + 0.1 * torch.rand_like(f))}

    trainer.model.register_forward_hook(hook)


def test_ctrl_c_mid_epoch_resumes_to_the_uninterrupted_parameters(tmp_path):
    opts = ("train.epochs=2", "augment.erasing.prob=0.5", *SMALL)
    straight = Trainer(load_config(None, tiny(tmp_path / "a", *opts)))
    noisy_and_interrupted_at(straight, None)
    means = straight.train_epoch(0)

    cut = Trainer(load_config(None, tiny(tmp_path / "b", *opts)))
    noisy_and_interrupted_at(cut, 2)  # Ctrl-C during the 2nd step of epoch 1: stop after it
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match=r"in epoch 1/2 after iteration 2/3: saved .*last.pth"):
        cut.fit()
    assert signal.getsignal(signal.SIGINT) is handler  # fit restores the previous handler

    resumed = Trainer(load_config(None, tiny(tmp_path / "b", *opts)), resume="auto")
    noisy_and_interrupted_at(resumed, None)
    assert resumed.start_epoch == 0 and resumed._partial["iteration"] == 2
    assert "at epoch 1/2, iteration 3 (the steps before it are done)" in (tmp_path / "b/run/log.txt").read_text()
    again = resumed.train_epoch(0)  # replays 2 batches, trains the 3rd
    assert torch.equal(params(straight.model), params(resumed.model))
    assert again == means  # the interrupted epoch's logged means include the steps before the cut
    assert resumed._partial is None  # the next epoch starts from its first step


def test_ctrl_c_in_an_epochs_last_step_completes_the_epoch(tmp_path):
    opts = ("train.epochs=3", "train.checkpoint_period=5", *SMALL)
    cut = Trainer(load_config(None, tiny(tmp_path, *opts)))
    noisy_and_interrupted_at(cut, 3)
    with pytest.raises(TrainingInterrupted, match=r"interrupted after epoch 1/3: saved"):
        cut.fit()
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pth")
    assert state["epoch"] == 0 and "partial" not in state
    resumed = Trainer(load_config(None, tiny(tmp_path, *opts)), resume="auto")
    assert resumed.start_epoch == 1 and resumed._partial is None
    assert torch.equal(params(cut.model), params(resumed.model))
