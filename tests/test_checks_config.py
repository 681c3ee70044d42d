"""Load-time checks (issue 12): ranges and choice sets of every key are errors naming the file, the
key and what was expected, before any work; the command line takes overrides after any option."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from reid.cli import config_parser
from reid.config import VALUE_CHECKS, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("override, message", [
    # meaningless runs (item 3)
    ("train.epochs=0", "key 'train.epochs' expects an integer >= 1, got 0"),
    ("train.epochs=-3", "key 'train.epochs' expects an integer >= 1, got -3"),
    ("optimizer.lr=1e6", "key 'optimizer.lr' expects a number in (0, 10], got 1000000.0"),
    ("input.pixel_mean=[0.5]", "key 'input.pixel_mean' expects a list of 3 numbers in [0, 1]"),
    ("input.pixel_mean=[123.7,116.3,103.5]", "key 'input.pixel_mean' expects a list of 3 numbers in [0, 1]"),
    # test-side settings (item 4)
    ("test.metric=manhattan", "key 'test.metric' expects one of cosine, euclidean, sqeuclidean, got 'manhattan'"),
    ("test.batch_size=0", "key 'test.batch_size' expects an integer >= 1, got 0"),
    ("test.max_rank=0", "key 'test.max_rank' expects an integer >= 1"),
    # former tracebacks (item 5)
    ("optimizer.lr=0", "key 'optimizer.lr' expects a number in (0, 10], got 0"),
    ("seed=-1", "key 'seed' expects an integer in [0, 4294967295], got -1"),
    ("input.size=[64]", "key 'input.size' expects a list of 2 integers >= 1, e.g. [256, 128] (height, width), "
                        "got [64]"),
    ("input.size=[a,b]", "key 'input.size' expects a list of 2 integers >= 1, e.g. [256, 128] (height, width), "
                         "got ['a', 'b']"),
    ("augment.crop_scale=0.5", "key 'augment.crop_scale' expects a number >= 1, got 0.5"),
    # misleading messages (item 6)
    ("input.size=[0,0]", "key 'input.size' expects a list of 2 integers >= 1"),
    ("input.pixel_std=[0,0,0]", "key 'input.pixel_std' expects a list of 3 numbers in (0, 1]"),
    # the other ranges
    ("augment.flip_prob=1.5", "key 'augment.flip_prob' expects a number in [0, 1], got 1.5"),
    ("train.grad_clip=.nan", "key 'train.grad_clip' expects a number >= 0, got nan"),
    ("augment.erasing.area=[0.4,0.02]", "key 'augment.erasing.area' expects a list of 2 numbers in (0, 1] "
                                        "in increasing order"),
    ("augment.erasing.aspect=0", "key 'augment.erasing.aspect' expects a number in (0, 1]"),
    ("augment.color_jitter.hue=0.7", "key 'augment.color_jitter.hue' expects a number in [0, 0.5]"),
    ("sampler.num_instances=0", "key 'sampler.num_instances' expects an integer >= 1"),
    ("optimizer.momentum=1", "key 'optimizer.momentum' expects a number in [0, 1)"),
    ("optimizer.betas=[0.9]", "key 'optimizer.betas' expects a list of 2 numbers in [0, 1)"),
    ("optimizer.lr_mults={backbone: -1}", "key 'optimizer.lr_mults' expects a mapping to numbers >= 0"),
    ("schedule.milestones=[40,7]", "key 'schedule.milestones' expects a list of integers >= 1 in increasing order"),
    ("schedule.gamma=0", "key 'schedule.gamma' expects a number > 0"),
    ("train.checkpoint_period=0", "key 'train.checkpoint_period' expects an integer >= 1"),
    ("output_dir=", "key 'output_dir' expects a folder path, got ''"),
    ("data.on_device=maybe", "key 'data.on_device' expects auto, true or false, got 'maybe'"),
])
def test_out_of_range_values_are_errors_at_load(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert str(err.value).startswith(f"command line: {message}")


@pytest.mark.parametrize("override, hint", [
    ("schedule.name=cosin", "'cosine'"),
    ("optimizer.name=adamm", "'adam'"),
    ("train.amp=bf61", "'bf16'"),
    ("train.select_on=vall", "'val'"),
    ("train.dtype=float46", "'float64'"),
    ("test.metric=euclidian", "'euclidean'"),
    ("augment.crop=pads", "'pad'"),
    ("augment.erasing.fill=randon", "'random'"),
    ("input.interpolation=bicubc", "'bicubic'"),
    ("data.on_device=ture", "'true'"),
    ("device=cuda0", "'cuda:0'"),
    ("device=gpu", "'cuda'"),
])
def test_choice_strings_suggest_the_closest(override, hint):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"key '{key}' expects .*; did you mean {hint}\?$"):
        load_config(None, [override])


@pytest.mark.parametrize("override", [
    "data.on_device=true", "data.on_device=false", "data.on_device=auto", "device=cuda:1", "device=cpu",
    "optimizer.lr=10", "augment.crop_scale=1", "seed=0", "input.size=[16,16]", "augment.erasing.area=[0.1,0.1]",
])
def test_values_at_the_edges_are_accepted(override):
    load_config(None, [override])


def test_value_errors_name_the_file_that_set_them(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("test: {metric: manhattan}\n")
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("_base_: base.yaml\ntrain: {epochs: 5}\n")
    with pytest.raises(ConfigError, match=rf"^{base}: key 'test.metric' expects one of cosine, euclidean"):
        load_config(cfg)
    cfg.write_text("_base_: base.yaml\ntest: {metric: cosine}\ntrain: {epochs: 0}\n")
    with pytest.raises(ConfigError, match=rf"^{cfg}: key 'train.epochs' expects an integer >= 1, got 0"):
        load_config(cfg)


def test_cosine_floor_above_the_learning_rate_is_an_error():
    with pytest.raises(ConfigError, match=r"key 'schedule.min_lr' \(the cosine floor\) must not exceed optimizer.lr"):
        load_config(None, ["schedule.name=cosine", "optimizer.lr=1e-3", "schedule.min_lr=1e-2"])
    load_config(None, ["schedule.name=multistep", "optimizer.lr=1e-3", "schedule.min_lr=1e-2"])  # unused there


def test_missing_base_names_the_file_including_it(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("_base_: [nowhere/base.yaml]\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert str(err.value).startswith(f"{cfg.resolve()}: _base_ file 'nowhere/base.yaml' not found (looked for ")
    assert str(tmp_path / "nowhere" / "base.yaml") in str(err.value)


def test_choice_sets_are_those_the_code_accepts():
    from reid.data.sampler import EPOCHS, LAST_BATCHES
    from reid.data.store import INTERPOLATIONS
    from reid.data.transforms import ASPECT_SAMPLINGS, CROPS, FILLS
    from reid.engine.optim import OPTIMIZERS
    from reid.engine.schedule import lr_factor
    from reid.engine.trainer import DTYPES, amp_dtype
    from reid.evaluation.distance import METRICS

    def values(key):
        return set(VALUE_CHECKS[key].values)

    assert values("optimizer.name") == set(OPTIMIZERS)
    assert values("augment.crop") == set(CROPS)
    assert values("augment.erasing.fill") == set(FILLS)
    assert values("augment.erasing.aspect_sampling") == set(ASPECT_SAMPLINGS)
    assert values("sampler.epoch") == set(EPOCHS)
    assert values("sampler.last_batch") == set(LAST_BATCHES)
    assert values("input.interpolation") == set(INTERPOLATIONS)
    assert values("train.dtype") == set(DTYPES)
    assert values("test.metric") == set(METRICS)
    schedule = {"warmup_epochs": 0, "warmup_start_lr": 0.0, "milestones": [2], "gamma": 0.1, "min_lr": 0.0}
    for name in values("schedule.name"):
        assert lr_factor(3, {**schedule, "name": name}, 0.1, 10) > 0
    with pytest.raises(ConfigError):
        lr_factor(3, {**schedule, "name": "linear"}, 0.1, 10)
    for mode in values("train.amp"):
        amp_dtype(mode, torch.device("cpu"))
    with pytest.raises(ConfigError):
        amp_dtype("fp32", torch.device("cpu"))


def test_overrides_may_follow_any_option():
    parser = config_parser("test")
    parser.add_argument("--resume")
    parser.add_argument("--summary", action="store_true")
    args = parser.parse_args(["a=1", "--config", "c.yaml", "--resume", "PATH", "train.epochs=5", "--summary", "b=2"])
    assert args.resume == "PATH" and args.summary and args.config == "c.yaml"
    assert args.overrides == ["a=1", "train.epochs=5", "b=2"]


# ------------------------------------------------------------------ issue 23, item 4: ranges where declared

@pytest.mark.parametrize("config, overrides, message", [
    ("bot", ["model.backbone.last_stride=0"], "key 'model.backbone.last_stride' expects an integer in [1, 2], got 0"),
    ("laganet", ["model.embedding_dim=0"], "key 'model.embedding_dim' expects an integer >= 1, got 0"),
    ("laganet", ["model.dropout=1.5"], "key 'model.dropout' expects a number in [0, 1), got 1.5"),
    ("lagnet", ["model.embed_dim=0"], "key 'model.embed_dim' expects an integer >= 1, got 0"),
    ("bdb", ["model.height_ratio=0"], "key 'model.height_ratio' expects a number in (0, 1], got 0"),
    ("mgn", ["model.branches=[{pooling: {name: gem, p: 0}}]"],
     "model.branches[0].pooling: key 'p' expects a number > 0, got 0"),
    ("mgn", ["model.branches=[{head_dim: 0}]"], "model.branches[0]: key 'head_dim' expects an integer >= 1, got 0"),
    ("mgn", ["model.branches=[{head: {name: reduction, dropout: 1}}]"],
     "key 'dropout' expects a number in [0, 1), got 1"),
    ("bot", ["losses.ce.epsilon=5"], "key 'losses.ce.epsilon' expects a number in [0, 1), got 5"),
    ("bot", ["losses.triplet.margin=-0.3"], "key 'losses.triplet.margin' expects a number >= 0, got -0.3"),
    ("bot", ["losses.triplet.margin=.inf"], "key 'losses.triplet.margin' expects a number >= 0, got inf"),
    ("bot", ["losses.ce.weight=-1"], "key 'losses.ce.weight' expects a number >= 0, got -1"),
    ("bot", ["augment.crop_scale=.inf"], "key 'augment.crop_scale' expects a number >= 1, got inf (not a finite"),
    ("bot", ["optimizer.weight_decay=.inf"], "key 'optimizer.weight_decay' expects a number >= 0, got inf"),
    ("bot", ["optimizer.weight_decay=.nan"], "key 'optimizer.weight_decay' expects a number >= 0, got nan"),
    # the relations (RELATIONS in reid/config.py)
    ("bot", ["sampler.num_ids=1"], "key 'sampler.num_ids' must be >= 2 with the triplet loss"),
    ("bot", ["sampler.num_instances=1"], "key 'sampler.num_instances' must be >= 2 with the triplet loss"),
    ("bot", ["input.size=[1,1]"], "key 'input.size' expects each side >= the network's output stride 16"),
    ("laganet", ["model.stripes=30"], "key 'model.stripes' expects at most the 24 rows of the feature map"),
    ("mgn", ["model.branches=[{stripes: 9}]", "input.size=[128,64]"],
     "key 'model.branches[0].stripes' expects at most the 8 rows of the feature map"),
])
def test_values_that_cannot_work_are_refused_at_load(config, overrides, message):
    path = ROOT / "configs" / config / "market1501.yaml"
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides)
    assert str(err.value).startswith("command line: ") and message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("overrides", [
    ["losses.triplet=null", "sampler.num_instances=1", "sampler.num_ids=1"],  # no pairwise loss: K = 1 is fine
    ["input.size=[16,16]"], ["model.backbone.last_stride=2", "input.size=[32,32]"],
])
def test_the_relations_accept_what_works(overrides):
    load_config(ROOT / "configs" / "bot" / "market1501.yaml", overrides)


def test_output_stride_is_what_the_backbones_build():
    from reid.models.backbones.base import output_stride
    from reid.registry import BACKBONES

    for name in ("resnet18", "mobilenetv2"):
        for last in (1, 2):
            backbone = BACKBONES.build(name, last_stride=last)
            assert backbone.output_shape()[backbone.stage_names[-1]].stride == output_stride(last)


@pytest.mark.parametrize("text, message", [
    ("train:\n  epochs: 3\nseed: 1\ntrain:\n  epochs: 5\n", "duplicate key 'train' (lines 1 and 4)"),
    ("a: &a [*a]\n", "an alias refers to its own anchor"),
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)),
     "aliases expand the document past 100000 values"),
])
def test_yaml_that_lies_is_refused_in_one_line(tmp_path, text, message):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert time.perf_counter() - start < 2  # an alias bomb fails fast
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value) and "\n" not in str(err.value)


def test_non_utf8_config_and_duplicate_override_keys(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("seed: 1  # caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"^{path}: not UTF-8 text \(byte 0xe9 at offset 14\)"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"^command line: override 'train': duplicate key 'epochs'"):
        load_config(None, ["train={epochs: 3, epochs: 4}"])


@pytest.mark.parametrize("tool, argv, message", [
    ("search.py", ["--checkpoint", "c", "--query", "q", "--gallery", "g", "--chunk-size", "0"],
     "argument --chunk-size: expected an integer >= 1, got 0"),
    ("extract.py", ["--checkpoint", "c", "--images", "d", "--out", "f.npz", "--batch-size", "-4"],
     "argument --batch-size: expected an integer >= 1, got -4"),
    ("test.py", ["--checkpoint", "c", "--save-ranks", "x"], "argument --save-ranks: expected an integer >= 0, got 'x'"),
    ("dataset_stats.py", ["-d", "market1501", "-r", "r", "--scale", "nan"],
     "argument --scale: expected a number in (0, 1], got nan (not a finite number)"),
    ("visualize.py", ["ranked", "--out", "o.png", "--checkpoints", "a", "b", "--topk", "0"],
     "argument --topk: expected an integer >= 1, got 0"),
    ("search.py", ["--checkpoint", "c", "--query", "q", "--gallery", "g", "--device", "gpu"],
     "argument --device: expected auto, cpu, cuda or cuda:N, got 'gpu'; did you mean 'cuda'?"),
])
def test_tool_arguments_out_of_range_exit_2_in_one_line(capsys, tool, argv, message):
    from reid.testing.fuzz import tool_parser

    with pytest.raises(SystemExit) as exc:
        tool_parser(tool).parse_args(argv)
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert exc.value.code == 2 and len(errors) == 1 and errors[0].endswith(f"error: {message}")
