"""Nothing a user has trained is lost (issue 23, items 1, 2 and 5): operating-system errors are one
line naming the path and the cause and leave the previous file intact; a run folder holding a run
is resumed or moved aside, never replaced; a refused resume changes nothing; SIGTERM saves like
Ctrl-C; stale temporaries are removed; tools never write over their inputs; a checkpoint's stored
paths are never followed."""
from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from inference_tools import save_tiny_checkpoint, tiny_overrides
from nettools import tiny_run_overrides
from PIL import Image

import reid.atomic_io as atomic_io
from reid.atomic_io import PathError, atomic_write_text, check_apart, remove_stale_temporaries
from reid.cli import run
from reid.config import load_config
from reid.engine import Trainer
from reid.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from reid.engine.guards import RunPathError
from reid.engine.interrupt import TrainingInterrupted
from reid.inference.loading import checkpoint_config

ROOT = Path(__file__).resolve().parents[1]


SHARED: list[Path] = []  # one synthetic data set and image store for the module's runs


@pytest.fixture(scope="module", autouse=True)
def shared_data(tmp_path_factory):
    SHARED[:] = [tmp_path_factory.mktemp("safe_runs_data")]
    yield
    SHARED.clear()


def tiny(tmp_path: Path, *extra: str) -> list[str]:
    """A run of 2 steps of 2 x 2 images on 8 synthetic identities at 64x32 (data: module-wide)."""
    data = [f"dataset.root={SHARED[0] / 'datasets'}", f"data.cache_dir={SHARED[0] / 'cache'}"] if SHARED else []
    return tiny_run_overrides(tmp_path, *data, *extra, ids=8, test_ids=4, images_per_id=4, p=2, k=2, iters=2)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (what 'nothing changed' compares)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def dead_pid() -> int:
    """The pid of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------------- operating-system errors


class FailingFile(io.RawIOBase):
    """A file whose writes fail with ``code`` after ``after`` bytes (a disk filling up)."""

    def __init__(self, path, code: int, after: int = 100):
        self.f, self.code, self.after, self.n = open(path, "xb"), code, after, 0

    def writable(self):
        return True

    def write(self, data):
        self.n += len(data)
        if self.n > self.after:
            raise OSError(self.code, os.strerror(self.code))
        return self.f.write(data)

    def fileno(self):
        return self.f.fileno()

    def close(self):
        self.f.close()
        super().close()


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left on the device (disk full)"),
                                         (errno.EDQUOT, "disk quota exceeded"),
                                         (errno.EROFS, "read-only file system"),
                                         (errno.EACCES, "permission denied")])
def test_a_failing_checkpoint_write_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch, code, words):
    path = tmp_path / "last.pth"
    save_checkpoint({"model": {"w": torch.zeros(3)}}, path)
    before = path.read_bytes()
    monkeypatch.setattr(atomic_io, "open", lambda p, mode="r": FailingFile(p, code), raising=False)
    with pytest.raises(PathError) as err:  # torch.save wraps the OSError in its RuntimeError 'unexpected pos'
        save_checkpoint({"model": {"w": torch.ones(100000)}}, path)
    assert str(err.value) == f"{path}: cannot write: {words} (the previous file is unchanged)"
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.pth"]


def test_files_as_folders_are_one_line_errors(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(PathError, match=rf"^{tmp_path / 'afile'}/sub: cannot create the folder: it is under the "
                                        rf"file {tmp_path / 'afile'}, not a folder$"):
        atomic_write_text(tmp_path / "afile" / "sub" / "config.yaml", "a: 1")
    with pytest.raises(PathError, match=rf"^{tmp_path}: cannot write: is a folder, not a file$"):
        atomic_write_text(tmp_path, "a: 1")


def test_the_tools_print_any_os_error_as_one_line(tmp_path, capsys):
    def main():
        open(tmp_path / "missing" / "x.txt")

    with pytest.raises(SystemExit) as exit_:
        run(main)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing' / 'x.txt'}: no such file or folder\n"


def test_stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead, live = f".last.pth.{dead_pid()}.0123abcd.tmp", f".last.pth.{os.getpid()}.0123abcd.tmp"
    for name in (dead, live, "notes.tmp"):
        (tmp_path / name).write_text("x")
    assert remove_stale_temporaries(tmp_path) == [tmp_path / dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live, "notes.tmp"])


def test_a_killed_data_set_generation_leaves_no_folder_behind(tmp_path):
    """A synthetic set generated (or CUHK03 extracted) into a temporary folder by a process that was
    killed leaves that folder; the next generation beside it removes it and keeps a live one's."""
    from reid.data.datasets.synthetic import synthetic

    dead = tmp_path / f".synthetic-0123456789ab.{dead_pid()}.0123abcd.tmp"
    live = tmp_path / f".synthetic-ba9876543210.{os.getpid()}.0123abcd.tmp"
    for folder in (dead, live):
        (folder / "Market-1501-v15.09.15").mkdir(parents=True)
        (folder / "Market-1501-v15.09.15" / "0001_c1s1_000001_00.jpg").write_bytes(b"half an image")
    ds = synthetic(str(tmp_path), num_ids=2, num_test_ids=2, images_per_id=4, cameras=2, height=16, width=8,
                   query_per_id=1, masks=False)
    assert len(ds.train) == 8
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([live.name, next(p.name for p in tmp_path.iterdir() if p.name.startswith("synthetic-"))])
    assert remove_stale_temporaries(tmp_path) == []  # the live process's folder is kept


def test_an_output_that_is_an_input_is_refused(tmp_path):
    ck = tmp_path / "ck.pth"
    ck.write_bytes(b"weights")
    os.link(ck, tmp_path / "hard.pth")
    for out in (ck, tmp_path / "." / "ck.pth", tmp_path / "hard.pth"):
        with pytest.raises(PathError, match=rf"^--out {out} is the file --checkpoint {ck} that this command reads"):
            check_apart({"--out": out}, {"--checkpoint": ck, "--config": None})
    check_apart({"--out": tmp_path / "new.pt"}, {"--checkpoint": ck, "--images": [tmp_path / "a.jpg"]})


def run_tool(tool: str, argv: list[str], monkeypatch, capsys) -> tuple[int, list[str]]:
    """(exit code, stderr lines) of ``tools/<tool>.py`` run in this process through reid.cli.run."""
    module = __import__("runpy").run_path(str(ROOT / "tools" / f"{tool}.py"), run_name="tool")
    monkeypatch.setattr(sys, "argv", [tool, *argv])
    with pytest.raises(SystemExit) as exit_:
        run(module["main"])
    return exit_.value.code, capsys.readouterr().err.strip().splitlines()


TOOLS = [("export", ["--format", "torchscript", "--out", "{out}"]),
         ("extract", ["--images", "{tmp}", "--out", "{out}"]),
         ("visualize", ["curves", "--run", "{tmp}", "--out", "{out}"])]


@pytest.mark.parametrize("tool, args", TOOLS)
def test_no_tool_writes_over_the_checkpoint_it_reads(tmp_path, monkeypatch, capsys, tool, args):
    if tool == "visualize":
        pytest.importorskip("matplotlib")
    ck = save_tiny_checkpoint(tmp_path / "checkpoints" / "best.pth", None, tiny_overrides(tmp_path))  # loadable
    Image.new("RGB", (32, 64)).save(tmp_path / "a.png")
    before = ck.read_bytes()
    argv = [a.format(out=ck, tmp=tmp_path) for a in args]
    code, err = run_tool(tool, argv if tool == "visualize" else ["--checkpoint", str(ck), *argv], monkeypatch, capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: --out {ck} is the file --") and "choose another --out" in err[0]
    assert ck.read_bytes() == before


@pytest.mark.parametrize("tool, args", TOOLS)
def test_an_out_that_cannot_be_written_fails_before_any_work(tmp_path, monkeypatch, capsys, tool, args):
    if tool == "visualize":
        pytest.importorskip("matplotlib")
    ck = save_checkpoint({"model": {"w": torch.zeros(3)}}, tmp_path / "ck.pth") or tmp_path / "ck.pth"
    (tmp_path / "afile").write_text("x")
    for out, words in ((tmp_path / "afile" / "f.out", f"--out: '{tmp_path / 'afile'}' is a file, not a folder"),
                       (tmp_path, f"--out: '{tmp_path}' is a folder, not a file")):
        argv = [a.format(out=out, tmp=tmp_path) for a in args]
        code, err = run_tool(tool, argv if tool == "visualize" else ["--checkpoint", str(ck), *argv], monkeypatch,
                             capsys)
        assert code == 2 and err == [f"error: {words}; choose another --out"]


# ------------------------------------------------------------------------------ run folders


def test_a_folder_holding_a_run_is_refused_before_any_work(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.pth").write_bytes(b"trained weights")
    (out / "metrics.json").write_text("{}")
    before = snapshot(tmp_path)
    with pytest.raises(RunPathError) as err:
        Trainer(load_config(None, tiny(tmp_path)))
    assert str(err.value).startswith(f"output_dir {out} holds a previous run (checkpoints/last.pth, metrics.json); "
                                     f"continue it with --resume auto, or pass --overwrite to move it aside (to "
                                     f"{out}.old-YYYYmmdd-HHMMSS; nothing is deleted), or choose another output_dir")
    assert snapshot(tmp_path) == before  # no data set, cache, log or config written
    with pytest.raises(RunPathError, match="pass one of them"):
        Trainer(load_config(None, tiny(tmp_path)), resume="auto", overwrite=True)


def test_overwrite_moves_the_run_aside_and_stale_temporaries_go(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "best.pth").write_bytes(b"trained weights")
    (out / "log.txt").write_text("the first run\n")
    old = snapshot(out)
    stale = out / "checkpoints" / f".last.pth.{dead_pid()}.0123abcd.tmp"
    trainer = Trainer(load_config(None, tiny(tmp_path)), overwrite=True)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and snapshot(aside[0]) == old  # everything moved, byte for byte
    log = (out / "log.txt").read_text()
    assert f"=> --overwrite: moved the previous run in {out} to {aside[0]}\n" in log and "the first run" not in log
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "log.txt", "tb"]
    # a killed writer's temporary file is removed by the next run that owns the folder
    (out / "checkpoints").mkdir()
    stale.write_bytes(b"half a checkpoint")
    trainer.save("last", 0)
    Trainer(load_config(None, tiny(tmp_path)), resume="auto")
    assert not stale.exists()
    assert f"=> removed {stale}, left by a writer that was killed\n" in (out / "log.txt").read_text()


def test_a_refused_resume_changes_nothing_and_a_changed_recipe_is_named(tmp_path):
    trainer = Trainer(load_config(None, tiny(tmp_path)))
    trainer.save("last", 0)
    before = snapshot(tmp_path / "run")
    with pytest.raises(CheckpointError) as err:
        Trainer(load_config(None, tiny(tmp_path, "input.size=[96,48]")), resume="auto")
    assert str(err.value) == (f"{tmp_path / 'run/checkpoints/last.pth'}: was trained with another model or input than "
                              "this config has (input.size [64, 32] -> [96, 48]; checkpoint -> config); resume with "
                              "the checkpoint's values, or start a new run (--overwrite or another output_dir)")
    assert snapshot(tmp_path / "run") == before  # config.yaml, log.txt, tb/ as they were
    Trainer(load_config(None, tiny(tmp_path, "optimizer.lr=0.01", "train.grad_clip=5")), resume="auto")
    assert [line.split(" ", 1)[1] for line in (tmp_path / "run" / "log.txt").read_text().splitlines()
            if "changed recipe" in line] == [
        "warning: resuming with a changed recipe (optimizer.lr 0.001 -> 0.01, train.grad_clip 0.0 -> 5; "
        "checkpoint -> config); the run continues with the config's values"]
    assert load_config(tmp_path / "run" / "config.yaml").optimizer.lr == 0.01


def test_sigterm_mid_epoch_saves_a_resumable_checkpoint(tmp_path):
    trainer = Trainer(load_config(None, tiny(tmp_path, "train.epochs=2", "train.iters_per_epoch=3")))
    calls = [0]

    def hook(module, inputs, output):
        calls[0] += 1
        if calls[0] == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # what timeout, Slurm and docker stop send

    trainer.model.register_forward_hook(hook)
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match=r"in epoch 1/2 after iteration 2/3: saved .*last.pth") as stop:
        trainer.fit()
    assert stop.value.signum == signal.SIGTERM and signal.getsignal(signal.SIGTERM) is handler
    # the checkpoint Ctrl-C saves (its exact resume: test_engine_safety.py)
    assert load_checkpoint(trainer.out / "checkpoints" / "last.pth")["partial"]["iteration"] == 2
    def main():
        raise stop.value

    with pytest.raises(SystemExit) as exit_:  # the tools exit 128 + 15
        run(main)
    assert exit_.value.code == 143


# ---------------------------------------------------------------------------- a checkpoint is data


def test_a_checkpoints_stored_paths_are_never_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "base.yaml").write_text("train: {epochs: [not, valid\n")  # an error if it were read
    stored = load_config(None, tiny(victim)).to_dict()
    stored["_base_"] = str(victim / "base.yaml")
    stored["model"]["backbone"].update(pretrained=True, weights=str(victim / "weights.pth"))
    state = {"model": {}, "config": stored, "num_classes": 8}
    cfg = checkpoint_config(state, tmp_path / "ck.pth", None, [f"dataset.root={tmp_path / 'mine'}"])
    assert cfg.dataset.root == str(tmp_path / "mine")  # the user's command
    assert (cfg.data.cache_dir, cfg.output_dir) == (".cache/reid", "outputs/run")  # the defaults, not the victim's
    assert cfg.model.backbone.weights is None and cfg.model.backbone.pretrained is False
    assert (cfg.input.size, cfg.dataset.num_ids) == ([64, 32], 8)  # the model and data contract are kept
    assert sorted(p.name for p in victim.iterdir()) == ["base.yaml"]


def test_an_image_bomb_and_a_killed_store_builder_in_the_cache(tmp_path, monkeypatch):
    from reid.data.datasets.base import DatasetError
    from reid.data.store import build_image_store

    Image.new("RGB", (64, 64)).save(tmp_path / "big.png")
    stale = tmp_path / "cache" / f".images-0123456789abcdef.npy.{dead_pid()}.0123abcd.tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"half a store")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 4096 pixels > 2 x 100: PIL's DecompressionBombError
    with pytest.raises(DatasetError, match=rf"^{tmp_path / 'big.png'}: cannot decode image \(Image size \(4096 "):
        build_image_store([str(tmp_path / "big.png")], (8, 4), tmp_path / "cache", workers=1)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == []  # the stale store and its own temporary
