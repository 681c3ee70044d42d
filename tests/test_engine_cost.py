"""The step-cost counter (reid.engine.cost) against FLOPs counted by hand."""
import torch
from torch import nn

from reid.engine.cost import count_flops, matmul_peak_gflops


def test_conv_flops_equal_the_hand_count_forward_and_backward():
    b, cin, cout, h, w, k = 2, 3, 4, 5, 6, 3
    conv = nn.Conv2d(cin, cout, k, padding=1, bias=False)
    x = torch.randn(b, cin, h, w, requires_grad=True)
    forward = 2 * b * cout * h * w * cin * k * k  # one multiply-add per weight per output position
    assert count_flops(lambda: conv(x)) == forward
    # backward: the input gradient and the weight gradient each cost one forward
    assert count_flops(lambda: conv(x).sum().backward()) == 3 * forward


def test_linear_flops_and_frozen_input():
    lin = nn.Linear(7, 5)
    x = torch.randn(3, 7)  # no input gradient: backward computes the weight gradient only
    assert count_flops(lambda: lin(x)) == 2 * 3 * 7 * 5
    assert count_flops(lambda: lin(x).sum().backward()) == 2 * (2 * 3 * 7 * 5)


def test_matmul_peak_is_a_positive_rate():
    assert matmul_peak_gflops("cpu", n=128, repeats=1) > 0


def test_allocation_peak_counts_tensor_bytes_exactly():
    from reid.engine.cost import AllocationPeak

    with AllocationPeak() as peak:
        a = torch.empty(1000)  # 4,000 bytes
        b = torch.empty(500, dtype=torch.float64)  # 4,000 bytes: peak 8,000
        del a
        c = torch.empty(250)  # 1,000 bytes: 5,000 now, below the peak
    assert (peak.bytes, peak.end_bytes) == (8000, 5000)
    del b, c


def test_allocation_peak_of_a_backward_ends_with_the_gradients():
    from reid.engine.cost import AllocationPeak, tensor_bytes

    lin = nn.Linear(100, 200)
    x = torch.randn(32, 100)
    with AllocationPeak() as peak:
        lin(x).relu().sum().backward()
    grads = tensor_bytes(p.grad for p in lin.parameters())
    assert grads == 4 * (100 * 200 + 200)
    assert peak.end_bytes == grads  # activations and temporaries are freed, the gradients stay
    # the output [32, 200] and the relu's output live together in forward, before any gradient
    assert peak.bytes >= grads + 32 * 200 * 4


def _blocks():
    torch.manual_seed(0)
    return nn.Sequential(*(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
                           for _ in range(3)), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))


def test_checkpointed_modules_train_exactly_as_plain_and_keep_less():
    import copy

    from reid.engine.cost import AllocationPeak
    from reid.models.checkpointing import checkpoint_modules

    plain = _blocks().train()
    ckpt = copy.deepcopy(plain)
    assert checkpoint_modules(ckpt, ["[0-2]", "1.*"]) == ["0", "1", "2"]  # "1.*" is inside "1"
    x = torch.randn(64, 4, 8, 8)  # one activation: 64 KiB
    kept, peaks = [], []
    for net in (plain, ckpt):
        with AllocationPeak() as forward:
            loss = net(x).square().sum()
        del loss
        with AllocationPeak() as peak:  # (not nestable: one profiler at a time)
            net(x).square().sum().backward()
        kept.append(forward.end_bytes)
        peaks.append(peak.bytes)
    # plain keeps each block's conv input, BN input and ReLU output; checkpointed, each block's output only
    assert kept[1] < 0.6 * kept[0] and peaks[1] < peaks[0]
    for (name, a), b in zip(plain.state_dict().items(), ckpt.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name  # BN running stats updated once
    for a, b in zip(plain.parameters(), ckpt.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5)
    ckpt.eval()
    with torch.no_grad():
        assert torch.allclose(ckpt(x), plain.eval()(x), atol=1e-6)


def test_checkpoint_pattern_matching_nothing_names_the_closest_module():
    import pytest

    from reid.models.checkpointing import checkpoint_modules
    from reid.registry import ConfigError

    with pytest.raises(ConfigError, match=r"train.checkpoint_modules: .*'backbone.layer9'.*did you mean"):
        checkpoint_modules(nn.ModuleDict({"backbone": nn.ModuleDict({"layer3": nn.Linear(2, 2)})}), ["backbone.layer9"])


def test_step_memory_extends_linearly_to_a_third_batch():
    """The step counted at P = 2 and 3 predicts the count at P = 5 (the config's P) within 3%."""
    from pathlib import Path

    from reid.config import load_config
    from reid.engine.step_time import TrainStep, counted_step, random_batch, step_memory
    from reid.models import build_model

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "configs" / "bot" / "market1501.yaml", [
        "model.backbone={name: resnet18, last_stride: 1, pretrained: false}", "input.size=[128,64]",
        "sampler.num_ids=5", "sampler.num_instances=2", "device=cpu"])
    torch.manual_seed(0)
    model = build_model(cfg.model, 5, input_size=cfg.input.size)
    m = step_memory(cfg, model, probe_ids=(2, 3))
    assert m["batch"] == 10 and [b for b, _ in m["probes"]] == [4, 6]
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    assert m["weights"] == weights and m["per_image"] > 0
    trainable = [p for p in model.parameters() if p.requires_grad]  # (BoT's neck BN bias is frozen)
    assert m["optimizer"] == sum(2 * p.numel() * 4 + 4 for p in trainable)  # Adam: two moments and a step
    assert m["total"] == m["resident"] + m["step"]
    train = TrainStep(cfg, model)
    train.step(random_batch(cfg, train.device, num_ids=2))
    first, kept, update = counted_step(train, random_batch(cfg, train.device, num_ids=5))
    counted = max(first, kept + update)
    assert abs(counted - m["step"]) < 0.03 * counted
