"""Config system: _base_ inheritance, overrides, schema validation with suggestions, resolved dump."""
from __future__ import annotations

from pathlib import Path

import pytest

from reid.config import ConfigError, load_config, parse_overrides, save_config
from reid.registry import BACKBONES, LOSSES, MODELS, Registry

ROOT = Path(__file__).resolve().parents[1]


@MODELS.register("_toy_model")
class ToyModel:
    def __init__(self, num_classes: int, width: int = 8, dropout: float = 0.5,
                 backbone: dict = {"name": "_toy_backbone"}, tag: str | None = None):  # noqa: B006
        self.kwargs = dict(width=width, dropout=dropout, backbone=backbone, tag=tag)


@BACKBONES.register("_toy_backbone")
def toy_backbone(depth: int = 18, pretrained: bool = False):
    return depth, pretrained


@LOSSES.register("_toy_loss")
class ToyLoss:
    def __init__(self, margin: float = 0.3, input: str = "features"):
        self.margin = margin


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_are_complete_without_a_file():
    cfg = load_config(None, ["model.name=_toy_model", "losses={t: {name: _toy_loss}}"])
    assert cfg.train.epochs == 120
    assert cfg.model.width == 8 and cfg.model.backbone == {"name": "_toy_backbone", "depth": 18,
                                                           "pretrained": False}
    assert cfg.losses == {"t": {"name": "_toy_loss", "weight": 1.0, "margin": 0.3, "input": "features"}}


def test_base_inheritance_deep_merges_in_order(tmp_path):
    write(tmp_path, "_base_/a.yaml", "train: {epochs: 10, log_period: 5}\nmodel: {name: _toy_model, width: 4}\n")
    write(tmp_path, "_base_/b.yaml", "train: {epochs: 20}\nsampler: {num_ids: 8}\n")
    cfg_path = write(tmp_path, "exp/run.yaml", "_base_: [../_base_/a.yaml, ../_base_/b.yaml]\n"
                     "model: {dropout: 0.1}\nlosses: {t: {name: _toy_loss}}\n")
    cfg = load_config(cfg_path)
    assert cfg.train.epochs == 20 and cfg.train.log_period == 5  # b after a, deep merge
    assert cfg.sampler.num_ids == 8 and cfg.sampler.num_instances == 4
    assert cfg.model.width == 4 and cfg.model.dropout == 0.1


def test_delete_replaces_an_inherited_section(tmp_path):
    write(tmp_path, "base.yaml", "losses: {t: {name: _toy_loss, margin: 1.2}}\nmodel: {name: _toy_model}\n")
    cfg_path = write(tmp_path, "run.yaml", "_base_: base.yaml\nlosses: {_delete_: true, u: {name: _toy_loss}}\n")
    cfg = load_config(cfg_path)
    assert list(cfg.losses) == ["u"] and cfg.losses.u.margin == 0.3


def test_null_removes_an_inherited_loss(tmp_path):
    write(tmp_path, "base.yaml", "losses: {t: {name: _toy_loss}, u: {name: _toy_loss}}\nmodel: {name: _toy_model}\n")
    cfg = load_config(write(tmp_path, "run.yaml", "_base_: base.yaml\nlosses: {u: null}\n"))
    assert list(cfg.losses) == ["t"]


def test_overrides_are_typed_and_win(tmp_path):
    cfg_path = write(tmp_path, "run.yaml", "model: {name: _toy_model}\nlosses: {t: {name: _toy_loss}}\n")
    cfg = load_config(cfg_path, ["train.epochs=3", "optimizer.lr=1e-3", "train.channels_last=true",
                                 "input.size=[64,32]", "model.backbone.depth=50", "losses.t.weight=2"])
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.optimizer.lr == pytest.approx(1e-3)
    assert cfg.train.channels_last is True
    assert cfg.input.size == [64, 32]
    assert cfg.model.backbone.depth == 50
    assert cfg.losses.t.weight == 2


def test_parse_overrides_rejects_malformed():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["train.epochs"])
    assert parse_overrides(["a.b=1", "a.c=x"]) == {"a": {"b": 1, "c": "x"}}


@pytest.mark.parametrize(
    "text, key, hint",
    [
        ("trian: {epochs: 1}\n", "trian", "train"),
        ("train: {epohcs: 1}\n", "train.epohcs", "train.epochs"),
        ("optimizer: {lrr: 0.1}\n", "optimizer.lrr", "optimizer.lr"),
        ("model: {name: _toy_model, widht: 3}\n", "model.widht", "width"),
        ("model: {name: _toy_model, backbone: {name: _toy_backbone, dept: 3}}\n", "model.backbone.dept", "depth"),
        ("losses: {t: {name: _toy_loss, margn: 1}}\n", "losses.t.margn", "margin"),
        ("lr: 0.1\n", "lr", "optimizer.lr"),
    ],
)
def test_unknown_keys_name_file_key_and_closest(tmp_path, text, key, hint):
    base = "" if "model:" in text else "model: {name: _toy_model}\n"
    losses = "" if "losses:" in text else "losses: {t: {name: _toy_loss}}\n"
    path = write(tmp_path, "bad.yaml", base + losses + text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and f"'{key}'" in msg and hint in msg


def test_unknown_key_in_base_names_the_base_file(tmp_path):
    base = write(tmp_path, "_base_/b.yaml", "train: {epoch: 3}\n")
    path = write(tmp_path, "run.yaml", "_base_: _base_/b.yaml\nmodel: {name: _toy_model}\n"
                 "losses: {t: {name: _toy_loss}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(base.resolve()) in str(err.value) and "train.epochs" in str(err.value)


def test_override_errors_name_the_command_line(tmp_path):
    path = write(tmp_path, "run.yaml", "model: {name: _toy_model}\nlosses: {t: {name: _toy_loss}}\n")
    with pytest.raises(ConfigError, match=r"command line: unknown key 'train.epoc'.*train.epochs"):
        load_config(path, ["train.epoc=3"])


@pytest.mark.parametrize(
    "override, key",
    [("train.epochs=abc", "train.epochs"), ("train.channels_last=3", "train.channels_last"),
     ("optimizer.lr=fast", "optimizer.lr"), ("input.size=5", "input.size"),
     ("model.width=2.5", "model.width"), ("model.dropout=x", "model.dropout")],
)
def test_wrong_types_are_errors(tmp_path, override, key):
    path = write(tmp_path, "run.yaml", "model: {name: _toy_model}\nlosses: {t: {name: _toy_loss}}\n")
    with pytest.raises(ConfigError, match=rf"'{key}' expects"):
        load_config(path, [override])


def test_ints_are_accepted_for_floats_and_none_for_optional(tmp_path):
    path = write(tmp_path, "run.yaml", "model: {name: _toy_model, dropout: 0, tag: null}\n"
                 "losses: {t: {name: _toy_loss, margin: 1}}\n")
    cfg = load_config(path, ["model.tag=abc"])
    assert cfg.model.dropout == 0 and cfg.model.tag == "abc"


def test_unknown_component_names_suggest(tmp_path):
    path = write(tmp_path, "run.yaml", "model: {name: _toy_modle}\nlosses: {t: {name: _toy_loss}}\n")
    with pytest.raises(ConfigError, match="did you mean '_toy_model'"):
        load_config(path)


def test_bad_yaml_and_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(tmp_path, "bad.yaml", "train: [1, 2\n"))
    with pytest.raises(ConfigError, match="circular"):
        load_config(write(tmp_path, "loop.yaml", "_base_: loop.yaml\n"))


def test_resolved_config_round_trips(tmp_path):
    path = write(tmp_path, "run.yaml", "model: {name: _toy_model, width: 3}\nlosses: {t: {name: _toy_loss}}\n")
    cfg = load_config(path, ["train.epochs=7"])
    save_config(cfg, tmp_path / "out" / "config.yaml")
    again = load_config(tmp_path / "out" / "config.yaml")
    assert again == cfg


def test_registry_build_checks_keywords():
    reg = Registry("thing")

    @reg.register("a")
    def make_a(size: int = 1):
        return size

    assert reg.build("a", size=3) == 3
    with pytest.raises(ConfigError, match="did you mean 'size'"):
        reg.build("a", sise=3)
    with pytest.raises(ConfigError, match="unknown thing 'b'"):
        reg.get("b")


def test_every_shipped_config_loads():
    configs = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if "_base_" not in p.parts)
    assert configs, "no configs found"
    for path in configs:
        load_config(path)


def test_nested_section_without_name_merges_onto_its_default(tmp_path):
    path = write(tmp_path, "run.yaml", "model: {name: _toy_model}\nlosses: {t: {name: _toy_loss}}\n")
    cfg = load_config(path, ["model.backbone.depth=50"])
    assert cfg.model.backbone == {"name": "_toy_backbone", "depth": 50, "pretrained": False}


def test_reference_per_data_set_is_validated_and_looked_up(tmp_path):
    from reid.config import reference_for

    base = write(tmp_path, "base.yaml", "model: {name: _toy_model}\nlosses: {t: {name: _toy_loss}}\n"
                 "dataset: {name: market1501}\nreference: {rank1: 95.0, mAP: 88.0}\n")
    flat = load_config(base)
    assert reference_for(flat) == {"rank1": 95.0, "mAP": 88.0}
    assert flat.reference.datasets == {} and flat.reference.step_time is None
    run = write(tmp_path, "run.yaml", "_base_: base.yaml\nreference:\n  _delete_: true\n  step_time: 0.131\n"
                "  datasets: {market1501: {rank1: 90.08, mAP: 76}, dukemtmcreid: {mAP: 67.58}}\n")
    cfg = load_config(run)
    assert reference_for(cfg) == {"rank1": 90.08, "mAP": 76}
    assert reference_for(load_config(run, ["dataset.name=dukemtmcreid"])) == {"rank1": None, "mAP": 67.58}
    assert reference_for(cfg, "msmt17") == {"rank1": None, "mAP": None}  # not listed: no numbers
    assert cfg.reference.step_time == 0.131
    with pytest.raises(ConfigError, match=r"unknown data set 'market' at 'reference.datasets.market'.*market1501"):
        load_config(run, ["reference.datasets={market: {rank1: 1}}"])
    with pytest.raises(ConfigError, match=r"'reference.datasets.market1501.rank'.*reference.datasets.market1501.rank1"):
        load_config(run, ["reference.datasets={market1501: {rank: 1}}"])
    for bad in ("reference.datasets={market1501: {mAP: high}}", "reference.step_time=fast", "reference.rank1=[1]"):
        with pytest.raises(ConfigError, match=r"expects a number (in \[0, 100\]|> 0) or null"):
            load_config(base if "rank1=" in bad else run, [bad])
    with pytest.raises(ConfigError, match="both flat rank1/mAP and per-data-set numbers"):
        load_config(base, ["reference.datasets={market1501: {rank1: 1}}"])
