"""Every option with a fixed set of values, and every registry-backed name, fails at
``load_config`` with a "did you mean" (issue 13, item 7): before a data set or a trainer exists."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from reid.config import VALUE_CHECKS, Choice, ConfigError, literal_choices, load_config
from reid.registry import LOSSES

ROOT = Path(__file__).resolve().parents[1]


def choice_values() -> list[tuple[str, str]]:
    """(key, value) for each string value of each choice (and suggesting pattern) in the schema."""
    return [(key, v) for key, check in VALUE_CHECKS.items() if isinstance(check, Choice)
            for v in check.values if isinstance(v, str)]


def test_every_choice_key_is_covered():
    keys = {key for key, _ in choice_values()}
    assert {"schedule.name", "train.amp", "train.dtype", "train.select_on", "device", "optimizer.name",
            "sampler.epoch", "sampler.last_batch", "test.metric", "augment.crop", "input.interpolation",
            "data.on_device", "augment.erasing.fill", "augment.erasing.aspect_sampling"} <= keys


@pytest.mark.parametrize(("key", "value"), choice_values())
def test_a_mistyped_choice_fails_at_load_with_a_suggestion(tmp_path, key, value):
    typo = value + "x"
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"{key}={typo}", f"data.cache_dir={tmp_path / 'cache'}",
                           f"dataset.root={tmp_path / 'data'}"])
    assert str(err.value).startswith(f"command line: key '{key}' expects ")
    assert str(err.value).endswith(f"got '{typo}'; did you mean '{value}'?")
    assert list(tmp_path.iterdir()) == []  # nothing built: no data set, no image store


@pytest.mark.parametrize(("override", "message"), [
    ("model.name=bott", "unknown model 'bott' at 'model.name'; did you mean 'bot'?"),
    ("dataset.name=market150", "unknown dataset 'market150' at 'dataset.name'; did you mean 'market1501'?"),
    ("losses.ce.name=cross_entropi", "unknown loss 'cross_entropi' at 'losses.ce.name'; did you mean 'cross_entropy'?"),
    ("model.backbone.name=resnet5", "unknown backbone 'resnet5' at 'model.backbone.name'; did you mean 'resnet50'?"),
    ("reference.datasets={market150: {mAP: 1}}",
     "unknown data set 'market150' at 'reference.datasets.market150'; did you mean 'market1501'?"),
])
def test_a_mistyped_registry_name_fails_at_load_with_a_suggestion(tmp_path, override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override, f"data.cache_dir={tmp_path / 'cache'}"])
    assert str(err.value) == f"command line: {message}"
    assert list(tmp_path.iterdir()) == []


def test_literal_annotations_of_a_component_are_checked_at_load():
    """A component keyword annotated ``Literal[...]`` is a choice: checked when the config loads."""
    assert literal_choices("Literal['sum', 'mean']") == ("sum", "mean")
    assert literal_choices("typing.Literal[1, 2]") == (1, 2)
    assert literal_choices("str") is None and literal_choices(str) is None

    def probe(reduce: Literal["sum", "mean"] = "mean", p: int = 2):  # a string annotation here
        return None

    LOSSES.register("_literal_probe")(probe)
    try:
        cfg = load_config(None, ["losses.x={name: _literal_probe, reduce: sum}"])
        assert cfg.losses.x.reduce == "sum"
        with pytest.raises(ConfigError) as err:
            load_config(None, ["losses.x={name: _literal_probe, reduce: summ}"])
        assert str(err.value) == ("command line: key 'losses.x.reduce' expects one of sum, mean, got 'summ'; "
                                  "did you mean 'sum'?")
    finally:
        LOSSES._items.pop("_literal_probe")


def test_engine_choice_sets_are_those_the_config_accepts():
    from reid.engine.amp import AMP_MODES
    from reid.engine.schedule import SCHEDULES

    assert set(VALUE_CHECKS["train.amp"].values) == set(AMP_MODES)
    assert set(VALUE_CHECKS["schedule.name"].values) == set(SCHEDULES)


def test_yaml_on_off_words_are_strings_and_booleans_are_true_false(tmp_path):
    """YAML 1.1 would read a bare ``off`` as False; ``train.amp=off`` must be the choice 'off'."""
    cfg = load_config(ROOT / "configs" / "quickstart.yaml", ["train.amp=off", "test.flip=true"])
    assert cfg.train.amp == "off" and cfg.test.flip is True
    with pytest.raises(ConfigError, match="test.flip"):
        load_config(ROOT / "configs" / "quickstart.yaml", ["test.flip=yes"])


@pytest.mark.parametrize("config, override, suggested", [
    ("bot", "model.neck=bnnek", "bnneck"),
    ("bot", "model.neck_feat=aftr", "after"),
    ("bdb", "model.neck=bneck", "bnneck"),
    ("lagnet", "model.part_triplet=stripe", "stripes"),
    ("lagnet", "model.stripes_from=pool", "pooled"),
    ("lagnet", "model.las_pooling=ad", "add"),
    ("rganet", "model.neck_feat=befor", "before"),
    ("laganet", "model.triplet_input=dropot", "dropout"),
    ("bot", "losses.triplet.metric=cosin", "cosine"),
    ("bot", "losses.ce.reduce=meen", "mean"),
    ("lagnet", "losses.attention_reg.update=lst", "last"),
    ("bot", "dataset={name: cuhk03_labeled, source: mta}", "mat"),
])
def test_network_loss_and_dataset_choices_fail_at_load(config, override, suggested):
    """Component keywords with a fixed set of values (``Literal`` aliases such as ``BdbNeck``) are
    checked when the config loads, before any data set or model is built."""
    with pytest.raises(ConfigError, match=f"did you mean '{suggested}'"):
        load_config(ROOT / "configs" / config / "market1501.yaml", [override])
