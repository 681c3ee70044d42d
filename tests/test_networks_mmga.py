"""MMGA: outputs and attention-map sizes; the mask guidance loss against a direct formula (area
resizing, missing-mask zeroing, LIP label grouping, mask encodings); every configs/mmga config's
recipe; masks in the trainer (the step and learning checks shared by every family: test_networks_common.py)."""
from __future__ import annotations

import math

import pytest
import torch
from nettools import R18, ROOT, SIZE, body_maps, config_files, config_id, load
from nettools import masked_batch_of as batch_of

from reid.config import load_config
from reid.losses.mask import LIP_LOWER, LIP_UPPER, MaskGuidanceLoss, group_labels
from reid.models import build_model

NET = "mmga"
CONFIGS = config_files(NET)


def label_maps(b: int, size, seed: int = 0) -> torch.Tensor:
    """Random LIP label maps [B, H, W]: background, head/upper rows, lower rows."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 20, (b, *size), generator=g)


# ----------------------------------------------------------------------------------- network


def test_outputs_and_attention_maps():
    torch.manual_seed(0)
    model = build_model({"name": NET, "backbone": R18}, 5)
    assert model.module1.target_channels == 256 and model.module2.target_channels == 512  # SE sizes
    x = batch_of()["images"]
    out = model.train()(x)
    assert set(out) == {"logits", "features", "attention_maps"}
    assert [t.shape for t in out["logits"]] == [(8, 5)] * 3
    assert [t.shape for t in out["features"]] == [(8, 512)] * 3
    m1, m2 = out["attention_maps"]
    assert m1.shape == (8, 1, 8, 4) and m2.shape == (8, 3, 4, 2)  # layer2 map = 2x the layer3 map
    assert 0 < float(m1.detach().min()) and float(m2.detach().max()) < 1
    with torch.no_grad():
        ev = model.eval()(x)
    assert ev["features"].shape == (8, 3 * 512)


def test_resnet50_sizes_at_256x128():
    model = build_model({"name": NET, "backbone": {"name": "resnet50", "last_stride": 1}}, 751)
    assert (model.module1.channels, model.module1.target_channels) == (512, 1024)
    assert (model.module2.channels, model.module2.target_channels) == (1024, 2048)
    assert model.feature_dim == 3 * 2048


# ------------------------------------------------------------------------------- mask loss


def direct_mask_loss(maps: list[torch.Tensor], masks: torch.Tensor, valid: torch.Tensor) -> float:
    """(1/V) sum_b valid_b sum_maps sum_m sqrt(mean (S - area_resize(mask))^2), V = max(1, sum valid),
    by loops."""
    b = masks.shape[0]
    total = 0.0
    for i in range(b):
        if not bool(valid[i]):
            continue
        for s in maps:
            k, h, w = s.shape[1:]
            for m in range(k):
                full = masks[i, m].double()
                fh, fw = full.shape[0] // h, full.shape[1] // w
                err = 0.0
                for y in range(h):
                    for x in range(w):
                        target = full[y * fh:(y + 1) * fh, x * fw:(x + 1) * fw].mean()
                        err += float((s[i, m, y, x].detach().double() - target) ** 2)
                total += math.sqrt(err / (h * w))
    return total / max(1, int(valid.sum()))


def test_label_grouping_is_lip():
    labels = torch.arange(20).view(1, 4, 5)
    masks = group_labels(labels)
    assert masks.shape == (1, 3, 4, 5)
    flat = masks.view(3, 20)
    assert flat[0].nonzero().flatten().tolist() == list(range(1, 20))
    assert flat[1].nonzero().flatten().tolist() == [1, 2, 3, 4, 5, 6, 7, 11, 13, 14, 15] == LIP_UPPER
    assert flat[2].nonzero().flatten().tolist() == [8, 9, 10, 12, 16, 17, 18, 19] == LIP_LOWER


def test_mask_loss_matches_direct_formula_with_missing_masks():
    g = torch.Generator().manual_seed(0)
    b = 4
    maps = [torch.rand(b, 1, 8, 4, generator=g).requires_grad_(), torch.rand(b, 3, 4, 2, generator=g).requires_grad_()]
    labels = label_maps(b, (32, 16), seed=1)
    valid = torch.tensor([True, False, True, True])
    loss_fn = MaskGuidanceLoss()
    loss = loss_fn({"attention_maps": maps}, {"masks": labels, "mask_valid": valid})
    want = direct_mask_loss(maps, group_labels(labels), valid)
    assert float(loss.detach()) == pytest.approx(want, rel=1e-5)
    assert loss_fn.last_missing == 1 and loss_fn.missing == 1
    loss.backward()
    assert float(maps[0].grad[1].abs().sum()) == 0.0 and float(maps[0].grad[0].abs().sum()) > 0
    # the same masks as 3 binary channels (float, or uint8 0/255) give the same loss
    binary = group_labels(labels)
    for masks in (binary, (binary * 255).to(torch.uint8), labels[:, None].to(torch.uint8)):
        again = MaskGuidanceLoss()({"attention_maps": maps}, {"masks": masks, "mask_valid": valid})
        assert float(again.detach()) == pytest.approx(want, rel=1e-5)
    # a zero-filled (empty) mask counts as missing; no mask_valid: every other sample counts
    empty = labels.clone()
    empty[1] = 0
    loss_fn = MaskGuidanceLoss()
    assert float(loss_fn({"attention_maps": maps}, {"masks": empty}).detach()) == pytest.approx(want, rel=1e-5)
    assert loss_fn.last_missing == 1
    all_valid = MaskGuidanceLoss()({"attention_maps": maps}, {"masks": labels})
    assert float(all_valid.detach()) == pytest.approx(direct_mask_loss(maps, binary, torch.ones(b, dtype=torch.bool)),
                                                      rel=1e-5)


def test_mixed_validity_is_the_loss_of_the_valid_samples_alone():
    """A batch with samples without a mask gives the loss (and gradients) of the batch of its valid
    samples alone; a batch with none valid gives exactly 0 and zero gradients."""
    g = torch.Generator().manual_seed(3)
    b = 6
    maps = [torch.rand(b, 1, 8, 4, generator=g), torch.rand(b, 3, 4, 2, generator=g)]
    labels = body_maps(b, (32, 16))
    labels[4] = 0  # an empty stand-in like the store's, flagged missing as well
    valid = torch.tensor([True, False, True, False, False, True])
    mixed = [m.clone().requires_grad_() for m in maps]
    loss = MaskGuidanceLoss()({"attention_maps": mixed}, {"masks": labels, "mask_valid": valid})
    alone = [m[valid].clone().requires_grad_() for m in maps]
    want = MaskGuidanceLoss()({"attention_maps": alone}, {"masks": labels[valid]})
    direct = direct_mask_loss(alone, group_labels(labels[valid]), torch.ones(3, dtype=torch.bool))
    assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-6) == pytest.approx(direct, rel=1e-5)
    loss.backward()
    want.backward()
    for m, a in zip(mixed, alone):
        assert torch.allclose(m.grad[valid], a.grad) and float(m.grad[~valid].abs().sum()) == 0.0
    none = [m.clone().requires_grad_() for m in maps]
    fn = MaskGuidanceLoss()
    zero = fn({"attention_maps": none}, {"masks": labels, "mask_valid": torch.zeros(b, dtype=torch.bool)})
    zero.backward()
    assert zero.item() == 0.0 and all(float(m.grad.abs().sum()) == 0.0 for m in none)
    assert fn.last_missing == b and fn.missing == b


def test_custom_label_grouping_and_missing_masks_key():
    labels = torch.tensor([[[0, 1], [2, 3]]])
    maps = [torch.full((1, 3, 2, 2), 0.5)]
    loss = MaskGuidanceLoss(upper_labels=[1], lower_labels=[2, 3])({"attention_maps": maps}, {"masks": labels})
    masks = torch.tensor([[[[0, 1], [1, 1]], [[0, 1], [0, 0]], [[0, 0], [1, 1]]]], dtype=torch.float)
    assert float(loss) == pytest.approx(direct_mask_loss(maps, masks, torch.tensor([True])))
    with pytest.raises(KeyError, match="require_masks"):
        MaskGuidanceLoss()({"attention_maps": maps}, {"pids": torch.zeros(1)})
    lenient = MaskGuidanceLoss(require_masks=False)
    assert float(lenient({"attention_maps": maps}, {"pids": torch.zeros(1)})) == 0.0 and lenient.missing == 1


# --------------------------------------------------------------------------------- configs


@pytest.mark.parametrize("path", CONFIGS, ids=config_id)
def test_config_recipe(path):
    cfg = load(path)
    assert cfg.model.name == NET and cfg.model.backbone.last_stride == 1
    assert cfg.losses.mask.name == "mask_guidance" and cfg.losses.mask.weight == 1.0
    assert cfg.losses.triplet.margin == 0.3 and cfg.losses.ce.epsilon == 0.1
    if path.stem in ("market1501", "dukemtmcreid"):
        assert cfg.reference.rank1 and cfg.reference.mAP


def test_mmga_config_requires_masks_unless_switched_off(tmp_path):
    """The MMGA configs require masks (losses.mask.require_masks, a validated bool): a synthetic set
    without any mask stops the training data build; require_masks=false builds it without masks."""
    from reid.data import DatasetError, build_dataset, build_train_loader
    from reid.registry import ConfigError

    args = [f"data.cache_dir={tmp_path / 'cache'}", "dataset={name: synthetic, _delete_: true}",
            f"dataset.root={tmp_path / 'datasets'}", "dataset.num_ids=2", "dataset.num_test_ids=1",
            "dataset.images_per_id=4", "dataset.height=64", "dataset.width=32", "dataset.masks=false",
            "input.size=[32,16]", "sampler.num_ids=2", "sampler.num_instances=4", "data.workers=1",
            "model.backbone={name: resnet18, last_stride: 1, pretrained: false}"]
    path = ROOT / "configs" / NET / "market1501.yaml"
    cfg = load_config(path, args)
    assert cfg.losses.mask.require_masks is True
    ds = build_dataset(cfg, verbose=False)
    with pytest.raises(DatasetError, match=r"^synthetic: no training image has a .*masks/bounding_box_train"):
        build_train_loader(cfg, ds, "cpu")
    loader = build_train_loader(load_config(path, [*args, "losses.mask.require_masks=false"]), ds, "cpu")
    assert "masks" not in next(iter(loader))
    with pytest.raises(ConfigError, match="expects bool"):
        load_config(path, [*args, "losses.mask.require_masks=1"])
    with pytest.raises(ConfigError, match="did you mean 'losses.mask.require_masks'"):
        load_config(path, [*args, "losses.mask.require_mask=false"])


def test_trainer_logs_samples_without_masks_per_epoch(tmp_path):
    """Some synthetic mask files deleted: two epochs of one step train, and each epoch's log line
    gives that epoch's count of samples without a mask (the batch's false ``mask_valid`` flags), not
    a running total."""
    import os

    from reid import engine
    from reid.data import build_dataset

    cfg = load_config(ROOT / "configs" / NET / "market1501.yaml", [
        f"output_dir={tmp_path / 'run'}", f"data.cache_dir={tmp_path / 'cache'}",
        "dataset={name: synthetic, _delete_: true}", f"dataset.root={tmp_path / 'datasets'}",
        "dataset.num_ids=4", "dataset.num_test_ids=2", "dataset.images_per_id=4", "dataset.height=64",
        "dataset.width=32", "input.size=[32,16]", "sampler.num_ids=2", "sampler.num_instances=4",
        "model.backbone={name: resnet18, last_stride: 1, pretrained: false}",
        "schedule.name=constant", "schedule.warmup_epochs=0", "train.epochs=2", "train.iters_per_epoch=1",
        "data.workers=1",
    ])
    for s in build_dataset(cfg, verbose=False).train[::2]:
        os.remove(s.mask)
    trainer = engine.Trainer(cfg)
    flags: list[torch.Tensor] = []
    trainer.losses.losses["mask"].register_forward_hook(lambda m, args, out: flags.append(args[1]["mask_valid"]))
    counts = []
    for epoch in range(2):
        trainer.train_epoch(epoch)
        counts.append(int((~flags[epoch]).sum()))
    assert len(flags) == 2 and counts[0] > 0
    lines = [line for line in (tmp_path / "run" / "log.txt").read_text().splitlines() if " epoch " in f" {line}"]
    assert [int(line.split("samples without a mask: ")[1].split(")")[0]) for line in lines] == counts


@pytest.mark.slow
def test_trains_end_to_end_on_synthetic_masks(tmp_path):
    """Through the trainer: the synthetic set's part masks reach the mask loss as label maps."""
    from reid import engine

    cfg = load_config(ROOT / "configs" / NET / "market1501.yaml", [
        f"output_dir={tmp_path / 'run'}", f"data.cache_dir={tmp_path / 'cache'}",
        "dataset={name: synthetic, _delete_: true}", f"dataset.root={tmp_path / 'datasets'}",
        "dataset.num_ids=8", "dataset.num_test_ids=4", "dataset.images_per_id=4",
        f"input.size=[{SIZE[0]},{SIZE[1]}]", "augment.erasing.prob=0", "sampler.num_ids=2", "sampler.num_instances=4",
        "model.backbone={name: resnet18, last_stride: 1, pretrained: false}", "optimizer.lr=1e-3",
        "schedule.name=constant", "schedule.warmup_epochs=0", "train.epochs=1", "train.iters_per_epoch=3",
        "data.workers=1", "test.batch_size=64",
    ])
    trainer = engine.Trainer(cfg)
    seen, original = [], trainer.losses

    def spy(outputs, batch):
        total, parts = original(outputs, batch)
        seen.append((batch["masks"].shape, float(parts["mask"])))
        return total, parts

    trainer.losses = spy
    trainer.fit()
    assert len(seen) == 3 and all(shape == (8, *SIZE) and 0 < m < 10 for shape, m in seen)
