"""Every configs/laganet YAML loads, has the specified schedule and losses, and its model (with a
ResNet-18 trunk and small images) builds and runs one optimiser step on CPU."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from reid.config import load_config
from reid.losses import build_losses
from reid.models import build_model
from reid.registry import DATASETS

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "configs" / "laganet").rglob("*.yaml") if "_base_" not in p.parts)
HANDS = ("hands11k", "hd")
SMALL = ["model.backbone={name: resnet18, last_stride: 1, pretrained: false}"]


def dataset_of(path: Path) -> str | None:
    """The data set a config names (the file's own ``dataset.name``, else its bases', last wins)."""
    data = yaml.safe_load(path.read_text()) or {}
    name = (data.get("dataset") or {}).get("name")
    bases = data.get("_base_", [])
    for base in [] if name else ([bases] if isinstance(bases, str) else bases):
        name = dataset_of(path.parent / base) or name
    return name


def is_hands(path: Path) -> bool:
    return path.stem.startswith(HANDS) or path.parent.name == "ablation_hands"


def load(path: Path, *overrides: str):
    import reid.data  # noqa: F401  (registers the data sets)

    name = dataset_of(path)
    if name not in DATASETS:
        pytest.skip(f"data set '{name}' is not registered yet (reid/data)")
    return load_config(path, list(overrides))


def test_all_configs_present():
    names = {p.relative_to(ROOT / "configs" / "laganet").as_posix() for p in CONFIGS}
    expected = {f"{n}.yaml" for n in ("market1501", "dukemtmcreid", "cuhk03_labeled", "cuhk03_detected", "msmt17",
                                      "hands11k_dorsal_right", "hands11k_dorsal_left", "hands11k_palmar_right",
                                      "hands11k_palmar_left", "hd")}
    expected |= {f"{d}/laganet_{r}.yaml" for r in ("1_global", "2_local", "3_cam", "4_full")
                 for d in ("ablation", "ablation_hands")}
    assert names == expected


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(ROOT / "configs").as_posix())
def test_config_loads_with_the_specified_schedule(path):
    cfg = load(path)
    hands = is_hands(path)
    assert cfg.model.name == "laganet" and cfg.model.backbone.last_stride == 1
    assert (cfg.sampler.num_ids, cfg.sampler.num_instances) == (5, 4)
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == pytest.approx(8e-4)
    assert cfg.optimizer.weight_decay == pytest.approx(5e-4) and cfg.optimizer.lr_mults == {"backbone": 0.1}
    assert cfg.schedule.warmup_epochs == 10 and cfg.schedule.warmup_start_lr == pytest.approx(8e-6)
    assert cfg.schedule.milestones == [40, 60] and cfg.schedule.gamma == 0.5 and cfg.train.epochs == 70
    assert cfg.losses.ce.epsilon == 0.1 and cfg.losses.ce.reduce == "sum" and cfg.losses.ce.weight == 1.0
    assert cfg.losses.triplet.margin == 1.2 and cfg.losses.triplet.weight == pytest.approx(0.1)
    assert cfg.model.triplet_input == "embedding"  # the paper's learned embeddings (before dropout)
    assert cfg.train.amp == "off"  # fp32, as the paper and the MBA code; train.amp=bf16 to speed up
    # hands: the best epoch on the validation images, every epoch (MBA train.py); body: the final model
    assert (cfg.train.select_on, cfg.train.eval_period) == (("val", 1) if hands else ("test", 0))
    assert cfg.input.size == ([324, 324] if hands else [384, 128])
    assert cfg.augment.erasing.prob == (0.0 if hands else 0.5)
    if hands:
        jitter = cfg.augment.color_jitter
        assert (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue) == (0.1, 0.1, 0.1, 0.0)
        assert round(cfg.input.size[0] * cfg.augment.crop_scale) == 356
    else:
        assert cfg.augment.crop_scale == 1.125 and cfg.augment.color_jitter.prob > 0
    if path.parent.name == "ablation_hands":  # Table III's 11k palmar-right column: the body ladder's networks
        assert cfg.dataset.name == "hands11k_palmar_right"
        body = load(path.parent.parent / "ablation" / path.name)
        assert cfg.model.to_dict() == body.model.to_dict()
        small = load(path, *SMALL)
        model = build_model(small.model, 5, input_size=(32, 32))
        assert len(model.head_names) == {"laganet_1_global": 1, "laganet_2_local": 4, "laganet_3_cam": 5}.get(
            path.stem, 6)
    switches = {k: cfg.model[k] for k in ("use_local", "use_cam", "use_sam")}
    ladder = {"laganet_1_global": (False, False, False), "laganet_2_local": (True, False, False),
              "laganet_3_cam": (True, True, False)}
    assert tuple(switches.values()) == ladder.get(path.stem, (True, True, True))
    if not path.parent.name.startswith("ablation"):  # every data set uses the same network (built below once)
        assert cfg.model.to_dict() == load(STEP_CONFIGS[0]).model.to_dict()


#: one config per distinct model section: every data set shares market1501's (checked above)
STEP_CONFIGS = [ROOT / "configs" / "laganet" / f for f in (
    "market1501.yaml", "hd.yaml", "ablation/laganet_1_global.yaml", "ablation/laganet_2_local.yaml",
    "ablation/laganet_3_cam.yaml")]


@pytest.mark.parametrize("path", STEP_CONFIGS, ids=lambda p: p.relative_to(ROOT / "configs").as_posix())
def test_model_builds_and_trains_a_step(path):
    hands = is_hands(path)
    size = (48, 48) if hands else (48, 16)  # 3 rows at stride 16: one per stripe (checked at load)
    small = load(path, *SMALL, f"input.size=[{size[0]},{size[1]}]")
    from reid.engine.optim import build_optimizer
    torch.manual_seed(0)
    model = build_model(small.model, 5, input_size=tuple(small.input.size))
    losses = build_losses(small.losses)
    optimizer = build_optimizer(small.optimizer, model)
    assert {g["name"] for g in optimizer.param_groups} == {"backbone", "new"}
    batch = {"images": torch.randn(8, 3, *size), "pids": torch.arange(4).repeat_interleave(2)}
    outputs = model.train()(batch["images"])
    total, parts = losses(outputs, batch)
    assert set(parts) == {"ce", "triplet"} and torch.isfinite(total)
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    n_heads = {"laganet_1_global": 1, "laganet_2_local": 4, "laganet_3_cam": 5}.get(path.stem, 6)
    assert len(outputs["logits"]) == len(outputs["features"]) == n_heads
