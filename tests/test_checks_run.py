"""Run-time checks (issue 12) without training: folders and --resume before any work, the loss
guards, checkpoint mismatches, unevaluable query/gallery splits, short CSV rows, and the counts of
images drawn with replacement or stretched."""
from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

from reid.cli import run
from reid.config import load_config
from reid.data.build import log_sampler_shortfall
from reid.data.datasets.base import DatasetError, ReidDataset, Sample
from reid.data.datasets.hands import CSV_COLUMNS, read_hand_info
from reid.data.store import build_image_store, stretched
from reid.engine import Trainer
from reid.engine.checkpoint import CheckpointError
from reid.engine.evaluator import check_draws
from reid.engine.guards import (
    LossWatch,
    RunPathError,
    load_model_state,
    non_finite_loss,
    state_mismatch,
)
from reid.registry import UserError


class Records(logging.Handler):
    """Collects the messages of a logger (the 'reid' logger does not propagate to caplog)."""

    def __init__(self, name: str = "reid"):
        super().__init__(logging.INFO)
        self.messages: list[str] = []
        self.logger = logging.getLogger(name)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> Records:
        self.level = self.logger.level
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self.level)


# ------------------------------------------------------------------------------ folders, resume


def paths_cfg(tmp_path, output_dir, cache_dir=None):
    return load_config(None, [f"output_dir={output_dir}", f"data.cache_dir={cache_dir or tmp_path / 'cache'}"])


def test_output_folder_under_a_file_fails_before_any_work(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunPathError) as err:
        Trainer(paths_cfg(tmp_path, tmp_path / "afile" / "run"))
    assert str(err.value) == (f"output_dir: '{tmp_path / 'afile' / 'run'}' is under the file {tmp_path / 'afile'}, "
                              "not a folder; choose another output_dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # no cache, no store, no log
    with pytest.raises(RunPathError, match=r"^output_dir: '.*afile' is a file, not a folder"):
        Trainer(paths_cfg(tmp_path, tmp_path / "afile"))


def test_cache_folder_that_is_a_file_fails_before_any_work(tmp_path):
    (tmp_path / "cache").write_text("x")
    with pytest.raises(RunPathError, match=r"^data.cache_dir: '.*cache' is a file, not a folder"):
        Trainer(paths_cfg(tmp_path, tmp_path / "run"))
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_output_folder_fails_before_any_work(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(RunPathError, match=r"^output_dir: cannot write in .*locked \(permission denied\)"):
            Trainer(paths_cfg(tmp_path, locked / "run"))
    finally:
        locked.chmod(0o700)


def test_resume_without_a_previous_run_fails_before_any_work(tmp_path):
    cfg = paths_cfg(tmp_path, tmp_path / "run")
    with pytest.raises(RunPathError) as err:
        Trainer(cfg, resume="auto")
    assert str(err.value).startswith(f"--resume auto: no previous run in {tmp_path / 'run'} "
                                     f"({tmp_path / 'run' / 'checkpoints' / 'last.pth'} not found)")
    with pytest.raises(RunPathError, match=r"^--resume: checkpoint not found: .*nothing.pth$"):
        Trainer(cfg, resume=str(tmp_path / "nothing.pth"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_cli_prints_a_run_error_as_one_line_and_exits_2(tmp_path, capsys):
    cfg = paths_cfg(tmp_path, tmp_path / "run")
    with pytest.raises(SystemExit) as exit_:
        run(lambda: Trainer(cfg, resume="auto") and 0)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --resume auto: no previous run in ") and err.count("\n") == 1


# --------------------------------------------------------------------------------------- the loss


def test_non_finite_loss_is_a_user_error_naming_the_step_and_terms(capsys):
    images = torch.zeros(2, 3, 4, 4)
    error = non_finite_loss(torch.tensor(float("nan")), {"ce": torch.tensor(float("nan")),
                                                         "triplet": torch.tensor(0.25)}, images, 1, 4)
    assert isinstance(error, UserError) and isinstance(error, FloatingPointError)
    assert str(error) == ("training loss is nan at epoch 2, iteration 5 (ce nan, triplet 0.25); stopped before "
                          "applying it (checkpoints already written are unchanged); try a lower optimizer.lr, "
                          "train.grad_clip > 0 or train.amp=off")
    images[1, 0, 0, 0] = float("inf")
    error = non_finite_loss(torch.tensor(float("inf")), {}, images, 0, 0)
    assert str(error).endswith("the input images are not finite (check input.pixel_mean and input.pixel_std)")

    def fail():
        raise error

    with pytest.raises(SystemExit) as exit_:
        run(fail)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"error: {error}\n"


def test_diverging_loss_is_reported_once():
    with Records() as records:
        watch = LossWatch(logging.getLogger("reid"), factor=100)
        warned = [watch(v, 0, i) for i, v in enumerate([2.0, 150.0, 199.0, 201.0, 5000.0, 1.0, 9000.0])]
    assert warned == [False, False, False, True, False, False, False]
    assert records.messages == [
        "warning: training loss 201 at epoch 1, iteration 4 is over 100x its first value 2: the run is diverging; "
        "try a lower optimizer.lr or train.grad_clip > 0"]


# ------------------------------------------------------------------------------------ checkpoints


def test_state_mismatch_lists_keys_and_the_first_shape():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    other = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 5)).state_dict()
    assert state_mismatch(model, other) == ("shape mismatch: 1.weight is [5, 3] in the checkpoint, [2, 3] in the "
                                            "model (and 1 more shape mismatches)")
    assert state_mismatch(model, model.state_dict()) == ""
    renamed = {("head." + k if k.startswith("1.") else k): v for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_model_state(model, renamed, "ck.pth", "model 'm'", num_classes=(751, 2))
    assert str(err.value) == ("ck.pth: does not fit model 'm': 2 missing keys (1.weight, 1.bias); 2 unexpected keys "
                              "(head.1.weight, head.1.bias); the checkpoint was trained on 751 identities, "
                              "this data set has 2")
    many = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(3)])
    assert state_mismatch(many, {}) == ("6 missing keys (0.weight, 0.bias, 1.weight, ... (3 more))")


# ------------------------------------------------------------------------------- query, gallery


def split(*items):
    return [Sample(f"{pid}_{cam}_{i}.jpg", pid, cam) for i, (pid, cam) in enumerate(items)]


def test_query_without_a_true_match_in_the_gallery_is_an_error():
    query, gallery = split((1, 0), (2, 0)), split((3, 1), (4, 1))
    with pytest.raises(DatasetError) as err:
        check_draws(ReidDataset("toy", [], query, gallery))
    assert str(err.value) == ("data set 'toy': no query of 2 has a gallery image of its identity from another "
                              "camera (2 query identities, 2 gallery identities); the rank metrics need at least one")
    same_camera = split((1, 0), (3, 1))
    with pytest.raises(DatasetError, match="no query of 2 has a gallery image of its identity from another camera"):
        check_draws(ReidDataset("toy", [], query, same_camera))
    check_draws(ReidDataset("toy", [], query, same_camera, protocol="hands"))  # no camera rule there
    check_draws(ReidDataset("toy", [], query, split((1, 1))))
    draws = [(query, split((1, 1))), (query, gallery)]
    with pytest.raises(DatasetError, match="^data set 'toy', draw 1: no query of 2"):
        check_draws(ReidDataset("toy", [], query, gallery, draws=draws))
    with pytest.raises(DatasetError, match="^data set 'toy': the gallery is empty; nothing to evaluate$"):
        check_draws(ReidDataset("toy", [], query, []))


# ------------------------------------------------------------------------------------------ data


def test_short_csv_row_names_file_line_and_field_counts(tmp_path):
    (tmp_path / "Hands").mkdir()
    (tmp_path / "Hands" / "Hand_0.jpg").touch()
    csv_path = tmp_path / "HandInfo.csv"
    csv_path.write_text(",".join(CSV_COLUMNS) + "\n0000000,22,male,fair,0,0,dorsal right,Hand_0.jpg,0\n"
                        "0000001,22,male\n")
    with pytest.raises(DatasetError) as err:
        read_hand_info(tmp_path)
    assert str(err.value).startswith(f"{csv_path}:3: row has 3 fields, the header has 9 (id, age, gender, ")
    csv_path.write_text(",".join(CSV_COLUMNS) + "\n0000000,22,male,fair,0,0,dorsal right,Hand_0.jpg,0,extra\n")
    with pytest.raises(DatasetError, match=r":2: row has 10 fields, the header has 9"):
        read_hand_info(tmp_path)


def test_identities_drawn_with_replacement_are_counted():
    pids = np.array([0, 0, 0, 0, 1, 1, 2, 3, 3, 3])
    with Records() as records:
        assert log_sampler_shortfall(pids, 2, 4) == 3
        assert log_sampler_shortfall(pids, 2, 3) == 2
        assert log_sampler_shortfall(pids, 4, 1) == 0
        assert log_sampler_shortfall(pids, 4, 3) == 2
    assert records.messages == [
        "sampler: 3 of 4 identities have fewer than sampler.num_instances = 4 images; their images are drawn "
        "with replacement",
        "sampler: 2 of 4 identities have fewer than sampler.num_instances = 3 images; their images are drawn "
        "with replacement",
        "sampler: 2 of 4 identities have fewer than sampler.num_instances = 3 images; their images are drawn "
        "with replacement",
        "sampler: a batch of sampler.num_ids x num_instances = 12 images is larger than the 10 training images; "
        "batches repeat images",
    ]


def test_stretched_images_are_counted_when_the_store_is_built(tmp_path):
    # (H, W) against 64 x 32 (W/H = 0.5): ratios 1, 1/500, 20, then 2 and 1/2 (not more than 2x)
    sizes = np.array([[64, 32], [1000, 1], [10, 100], [40, 40], [80, 20]])
    assert stretched(sizes, (64, 32)) == 2
    assert stretched(sizes, (64, 32), limit=1.5) == 4
    paths = []
    for i, (h, w) in enumerate(sizes):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (int(w), int(h)), (i * 40, 0, 0)).save(paths[-1])
    with Records() as records:
        build_image_store(paths, (64, 32), tmp_path / "stores", workers=1)
        build_image_store(paths, (64, 32), tmp_path / "stores", workers=1)  # cached: logged once
    assert records.messages == ["images: 2 of 5 have an aspect ratio more than 2x from that of 64x32 (H x W) "
                                "and are stretched to it"]
