"""PCB, MGN and the multi-granularity attention-fusion network (configs/{pcb,mgn,fusion}): every
config loads with its specified schedule, the networks have the specified heads and output shapes,
each distinct model section (ResNet-18 trunk, small images) runs one optimiser step on CPU (the
learning check shared by every family: test_networks_common.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from nettools import BODY_SETS, ROOT, batch_of, config_files, load, train_step, trainer_parts

from reid.models.heads import ConvReductionHead

FAMILIES = ("pcb", "mgn", "fusion")
RUNGS = ("fusion_1_baseline", "fusion_2_attention", "fusion_3_l2", "fusion_4_l2_l3", "fusion_5_baseline_l2_l3",
         "fusion_6_full")
CONFIGS = [p for f in FAMILIES for p in config_files(f)]
SIZE = (128, 64)  # ResNet-18: layer4 8x4 at stride 1, 4x2 at stride 2
SMALL = ["model.backbone={name: resnet18, last_stride: 1, pretrained: false}", f"input.size=[{SIZE[0]},{SIZE[1]}]"]
NUM_CLASSES = 5


def rel(path: Path) -> str:
    return path.relative_to(ROOT / "configs").as_posix()


def build_small(path: Path, *overrides: str):
    cfg = load(path, *SMALL, *overrides)
    model, _, _ = trainer_parts(cfg, NUM_CLASSES, input_size=tuple(cfg.input.size))
    return cfg, model


def test_all_configs_present():
    names = {rel(p) for p in CONFIGS}
    expected = {f"{f}/{d}.yaml" for f in FAMILIES for d in BODY_SETS}
    expected |= {f"fusion/ablation/{r}.yaml" for r in RUNGS}
    assert names == expected


@pytest.mark.parametrize("path", CONFIGS, ids=rel)
def test_config_loads_with_the_specified_schedule(path):
    cfg = load(path)
    family = rel(path).split("/")[0]
    assert cfg.model.name == "multibranch" and cfg.model.backbone.name == "resnet50"
    assert cfg.model.backbone.pretrained is True and cfg.input.size == [384, 128]
    assert cfg.reference.source, "every config states where its reference numbers come from (or that none exist)"
    if family == "pcb":
        assert cfg.model.trunk == "layer4" and cfg.model.backbone.last_stride == 1
        (branch,) = cfg.model.branches
        assert branch.stripes == 6 and branch.head["name"] == "conv_reduction" and branch.head_dim == 256
        assert set(cfg.losses) == {"ce"} and cfg.losses.ce.epsilon == 0.0
        opt = cfg.optimizer
        assert opt.name == "sgd" and opt.lr == pytest.approx(0.1) and opt.lr_mults == {"backbone": 0.1}
        assert opt.momentum == 0.9 and opt.weight_decay == pytest.approx(5e-4)
        assert cfg.schedule.milestones == [40] and cfg.schedule.gamma == 0.1 and cfg.train.epochs == 60
        assert cfg.schedule.warmup_epochs == 0
    else:
        assert cfg.model.trunk == "layer3[0]"
        assert cfg.losses.triplet.margin == 1.2 and set(cfg.losses) == {"ce", "triplet"}
        assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == pytest.approx(2e-4)
        assert cfg.optimizer.weight_decay == pytest.approx(5e-4) and cfg.train.epochs == 400
        assert cfg.test.flip is True
        if family == "mgn":
            assert cfg.schedule.milestones == [320, 380]
            # MGN-pytorch's documented runs: its default --pool avg; its _init_reduction/_init_fc
            assert cfg.model.init == "mgn" and {b.pooling for b in cfg.model.branches} == {"avg"}
            assert (cfg.sampler.num_ids, cfg.sampler.num_instances) == (16, 4)
        else:
            assert cfg.schedule.milestones == [320, 370]
            assert cfg.sampler.num_ids * cfg.sampler.num_instances == 32
    if path.parent.name != "ablation":  # every data set of a family uses the same network
        market = load(ROOT / "configs" / family / "market1501.yaml")
        assert cfg.model.to_dict() == market.model.to_dict()
        assert cfg.dataset.name == path.stem


#: seed 004's ablation rows (Market R1 / mAP, Duke R1 / mAP) and time table (s / batch), as quoted
#: in models.md (correction)
PAPER = {"fusion_1_baseline": (90.08, 76.37, 83.30, 67.58, 0.131),
         "fusion_2_attention": (91.12, 78.60, 83.42, 68.70, 0.139),
         "fusion_3_l2": (94.18, 85.60, 83.80, 69.70, 0.178),
         "fusion_4_l2_l3": (94.27, 86.24, 84.07, 71.09, 0.292),
         "fusion_5_baseline_l2_l3": (94.71, 87.28, 88.29, 78.49, 0.311),
         "fusion_6_full": (95.82, 88.42, 88.83, 78.86, 0.406)}


def rung(name: str) -> Path:
    return ROOT / "configs" / "fusion" / "ablation" / f"{name}.yaml"


@pytest.mark.parametrize("name", RUNGS)
def test_fusion_ladder_references(name):
    """Every rung carries the paper's Market and Duke numbers (picked by the data set it runs on)
    and its time per batch; the top-level configs' numbers equal the full rung's."""
    from reid.config import reference_for

    m_r1, m_map, d_r1, d_map, seconds = PAPER[name]
    cfg = load(rung(name))
    assert reference_for(cfg) == {"rank1": m_r1, "mAP": m_map}
    assert reference_for(load(rung(name), "dataset.name=dukemtmcreid")) == {"rank1": d_r1, "mAP": d_map}
    assert cfg.reference.step_time == seconds and cfg.reference.source
    if name == RUNGS[-1]:
        for data in ("market1501", "dukemtmcreid"):
            top = load(ROOT / "configs" / "fusion" / f"{data}.yaml")
            assert reference_for(top) == reference_for(cfg, data)


def test_fusion_ladder_ends_at_the_fusion_network_and_passes_through_mgn():
    full = load(ROOT / "configs" / "fusion" / "market1501.yaml")
    assert load(rung(RUNGS[-1])).model.to_dict() == full.model.to_dict()
    plain = load(rung("fusion_5_baseline_l2_l3")).model.to_dict()
    mgn = load(ROOT / "configs" / "mgn" / "market1501.yaml").model.to_dict()
    # the rung is MGN's architecture; pooling and init are recipe choices: the MGN configs follow
    # MGN-pytorch's runs (avg pooling, its init and identical starting reductions), the fusion
    # family the paper's MGN (max pooling)
    for section in (plain, mgn):
        section.pop("init")
        section.pop("same_init")
        for branch in section["branches"]:
            branch.pop("pooling")
    assert plain == mgn


#: per rung: its branches and whether each has CAM + SAM-RPE (Baseline = global; L2 / L3 = stripes)
LADDER = {"fusion_1_baseline": {"global": False},
          "fusion_2_attention": {"global": True},
          "fusion_3_l2": {"global": False, "part2": False},
          "fusion_4_l2_l3": {"part2": False, "part3": False},
          "fusion_5_baseline_l2_l3": {"global": False, "part2": False, "part3": False},
          "fusion_6_full": {"global": True, "part2": True, "part3": True}}
BRANCH_HEADS = {"global": ["global"], "part2": ["part2", "part2.p1", "part2.p2"],
                "part3": ["part3", "part3.p1", "part3.p2", "part3.p3"]}


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_fusion_rungs_structure_and_parameter_counts():
    """Each rung (ResNet-18 trunk, 128x64) has exactly its branches, heads, strides and attention;
    its parameters are the shared trunk's plus its branches', and a branch counts the same in every
    rung that has it (so the ResNet-50 counts in docs/model_zoo.md differ only by branches)."""
    models = {name: build_small(rung(name))[1] for name in RUNGS}
    trunk = {count(m.trunk) for m in models.values()}
    assert len(trunk) == 1
    per_branch: dict[tuple[str, bool], set[int]] = {}
    for name, model in models.items():
        spec = LADDER[name]
        assert [b.spec.name for b in model.branches] == list(spec)
        assert model.head_names == [h for b in spec for h in BRANCH_HEADS[b]]
        for branch in model.branches:
            attention = spec[branch.spec.name]
            assert [type(m).__name__ for m in branch.after] == (["CAM", "SAMRPE"] if attention else [])
            stride = branch.stages[-1][0].strided_convs()[0].stride
            assert stride == ((2, 2) if branch.spec.name == "global" else (1, 1))
            per_branch.setdefault((branch.spec.name, attention), set()).add(count(branch))
        assert count(model) == count(model.trunk) + sum(count(b) for b in model.branches)
        assert model.test_dim == 256 * len(model.head_names)
    assert all(len(v) == 1 for v in per_branch.values()), per_branch
    attention = {b: per_branch[(b, True)].pop() - per_branch[(b, False)].pop() for b in BRANCH_HEADS}
    assert all(v > 0 for v in attention.values())
    total = {name: count(m) for name, m in models.items()}
    assert total["fusion_2_attention"] - total["fusion_1_baseline"] == attention["global"]
    assert total["fusion_6_full"] - total["fusion_5_baseline_l2_l3"] == sum(attention.values())


def test_pcb_outputs():
    _, model = build_small(ROOT / "configs" / "pcb" / "market1501.yaml")
    assert model.head_names == [f"part.p{k}" for k in range(1, 7)]
    x = torch.randn(4, 3, *SIZE)
    out = model.train()(x)
    assert len(out["logits"]) == 6 and all(t.shape == (4, NUM_CLASSES) for t in out["logits"])
    assert out["features"] == []  # CE only
    model.eval()
    with torch.no_grad():
        assert model(x)["features"].shape == (4, 6 * 512)  # G (the release's test feature): 6 pooled stripes


def test_pcb_test_feature_g_is_the_pooled_stripes():
    """neck_feat: before gives PCB's "G" feature: the 6 average-pooled layer4 stripes, unreduced."""
    from reid.models import build_model

    section = load(ROOT / "configs" / "pcb" / "market1501.yaml", *SMALL).model.to_dict()
    section["branches"][0]["neck_feat"] = "before"
    torch.manual_seed(0)
    model = build_model(section, NUM_CLASSES, input_size=(192, 64)).eval()
    x = torch.randn(3, 3, 192, 64)
    with torch.no_grad():
        g = model(x)["features"]
        fmap = model.branches[0].feature_map(model.trunk(x))  # [3, 512, 12, 4]: 6 stripes of 2 rows
    assert g.shape == (3, 6 * 512) and model.test_dim == 6 * 512
    direct = torch.cat([fmap[:, :, 2 * k:2 * k + 2].mean(dim=(2, 3)) for k in range(6)], dim=1)
    torch.testing.assert_close(g, direct)


def test_mgn_pooling_and_init_as_released():
    """MGN config: average pooling of the global map and the stripes; reductions Conv kaiming fan_in
    with BN weights N(1, 0.02), classifiers kaiming fan_out (std sqrt(2 / classes)), bias 0.
    init default: conv fan_out, BN weights 1, classifiers N(0, 0.001). The recipe's reductions start
    identical (model.same_init, as the release's deep copies); the distributions are checked over
    eight independent draws (same_init=false)."""
    same, _, _ = trainer_parts(load(ROOT / "configs" / "mgn" / "market1501.yaml", *SMALL), 751, input_size=SIZE)
    first, *others = [h.reduction.state_dict() for b in same.branches for h in b.heads]
    assert len(others) == 7 and all(torch.equal(first[k], o[k]) for o in others for k in first)
    cfg = load(ROOT / "configs" / "mgn" / "market1501.yaml", *SMALL, "model.same_init=false")
    model, _, _ = trainer_parts(cfg, 751, input_size=SIZE)
    part2 = model.branches[1]
    x = torch.randn(2, 3, *SIZE)
    model.eval()
    with torch.no_grad():
        fmap = part2.feature_map(model.trunk(x))  # [2, 512, 8, 4]: two stripes of 4 rows
        outs = part2(model.trunk(x))
    want = [fmap.mean(dim=(2, 3)), fmap[:, :, :4].mean(dim=(2, 3)), fmap[:, :, 4:].mean(dim=(2, 3))]
    for head, out, pooled in zip(part2.heads, outs, want):
        torch.testing.assert_close(out.feature, head.reduction(pooled[:, :, None, None]).flatten(1))
    heads = [h for b in model.branches for h in b.heads]

    def std(ts):
        return float(torch.cat([t.detach().flatten() for t in ts]).std())

    assert std(h.reduction[0].weight for h in heads) == pytest.approx((2 / 512) ** 0.5, rel=0.03)  # fan_in
    assert std(h.reduction[1].weight for h in heads) == pytest.approx(0.02, rel=0.1)
    assert std(h.classifier.weight for h in heads) == pytest.approx((2 / 751) ** 0.5, rel=0.03)
    assert all(bool((h.classifier.bias == 0).all()) for h in heads)
    heads = [ConvReductionHead(512, 751, 256, init="default") for _ in range(8)]  # model.init: default
    assert std(h.reduction[0].weight for h in heads) == pytest.approx((2 / 256) ** 0.5, rel=0.03)  # fan_out
    assert all(bool((h.reduction[1].weight == 1).all()) for h in heads)
    assert std(h.classifier.weight for h in heads) == pytest.approx(0.001, rel=0.03)


@pytest.mark.parametrize("family", ["mgn", "fusion"])
def test_mgn_style_outputs(family):
    _, model = build_small(ROOT / "configs" / family / "market1501.yaml")
    assert model.head_names == ["global", "part2", "part2.p1", "part2.p2", "part3", "part3.p1", "part3.p2",
                                "part3.p3"]
    strides = [b.stages[-1][0].strided_convs()[0].stride for b in model.branches]  # layer4's stride
    assert strides == [(2, 2), (1, 1), (1, 1)]
    attention = [[type(m).__name__ for m in b.after] for b in model.branches]
    assert attention == ([["CAM", "SAMRPE"]] * 3 if family == "fusion" else [[]] * 3)
    x = torch.randn(4, 3, *SIZE)
    out = model.train()(x)
    assert len(out["logits"]) == 8 and all(t.shape == (4, NUM_CLASSES) for t in out["logits"])
    assert len(out["features"]) == 3 and all(t.shape == (4, 256) for t in out["features"])
    model.eval()
    with torch.no_grad():
        assert model(x)["features"].shape == (4, 8 * 256)  # 2,048-D test feature
    assert model.test_dim == 2048


#: one config per distinct model section (every data set shares its family's market1501 section)
STEP_CONFIGS = [ROOT / "configs" / f for f in (
    "pcb/market1501.yaml", "mgn/market1501.yaml", "fusion/market1501.yaml",
    "fusion/ablation/fusion_1_baseline.yaml", "fusion/ablation/fusion_2_attention.yaml",
    "fusion/ablation/fusion_3_l2.yaml", "fusion/ablation/fusion_4_l2_l3.yaml")]
HEADS = {"pcb": (6, 0), "mgn": (8, 3), "fusion": (8, 3), "fusion_1_baseline": (1, 1),
         "fusion_2_attention": (1, 1), "fusion_3_l2": (4, 2), "fusion_4_l2_l3": (7, 2)}


@pytest.mark.parametrize("path", STEP_CONFIGS, ids=rel)
def test_model_builds_and_trains_a_step(path):
    cfg = load(path, *SMALL)
    model, losses, optimizer = trainer_parts(cfg, NUM_CLASSES, input_size=SIZE)
    batch = batch_of(4, 2, SIZE)
    key = path.stem if path.parent.name == "ablation" else path.parent.name
    with torch.no_grad():
        outputs = model(batch["images"])
    assert (len(outputs["logits"]), len(outputs["features"])) == HEADS[key]
    before = [p.detach().clone() for p in model.parameters()]
    total, parts = train_step(model, losses, optimizer, batch)
    assert set(parts) == set(cfg.losses) and torch.isfinite(total)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
