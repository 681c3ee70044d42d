"""reid.inference: a model from a checkpoint alone, and the evaluator's features of any image."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from inference_tools import SIZE, save_tiny_checkpoint, tiny_overrides
from PIL import Image

from reid.config import ConfigError
from reid.data import build_dataset, to_input
from reid.engine import Evaluator
from reid.engine.checkpoint import CheckpointError
from reid.inference import FeatureExtractor, ImageInputError, load_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inference_api")
    overrides = tiny_overrides(folder)
    return folder, overrides, save_tiny_checkpoint(folder / "ck.pth", None, overrides)


def test_load_model_uses_the_stored_config(tiny):
    folder, overrides, ck = tiny
    model, cfg = load_model(ck)
    assert not model.training and cfg.input.size == list(SIZE) and cfg.model.name == "bot"
    saved = torch.load(ck, weights_only=True)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    _, cfg = load_model(ck, overrides=["test.flip=true"])  # overrides amend the stored config
    assert cfg.test.flip is True and cfg.input.size == list(SIZE)
    with pytest.raises(ConfigError, match="did you mean 'test.flip'"):
        load_model(ck, overrides=["test.flp=true"])


def test_old_checkpoint_needs_a_config_and_loads_with_one(tiny, tmp_path):
    folder, overrides, _ = tiny
    old = save_tiny_checkpoint(tmp_path / "old.pth", None, overrides, num_classes=6, stored_config=False)
    with pytest.raises(CheckpointError, match="holds no config .* --config CFG"):
        load_model(old)
    cfg_file = tmp_path / "cfg.yaml"
    from reid.config import load_config, save_config
    save_config(load_config(None, overrides), cfg_file)
    model, cfg = load_model(old, config=cfg_file)  # 6 classes inferred from the classifier weights
    assert model.head.classifier.weight.shape == (6, 512)
    saved = torch.load(old, weights_only=True)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


def test_features_equal_the_evaluators(tiny):
    folder, overrides, ck = tiny
    model, cfg = load_model(ck)
    evaluator = Evaluator(cfg, build_dataset(cfg, verbose=False), torch.device("cpu"))
    paths = [s.path for s in evaluator.samples]
    assert Image.open(paths[0]).size != (SIZE[1], SIZE[0])  # the files are resized on the way
    extractor = FeatureExtractor(ck, batch_size=8)
    for flip in (True, False):
        cfg.test.flip = extractor.flip = flip
        expected = evaluator.features(model)
        got = extractor(paths)
        assert got.shape == expected.shape
        assert float((got - expected).abs().max()) <= 1e-5
    # the same image as a PIL image, a uint8 array or tensor, a batch: the same network input
    first = Image.open(paths[0])
    arr = np.array(first.convert("RGB"))
    stored = evaluator.images[:1]
    for image in (first, arr, torch.from_numpy(arr), arr[None], [paths[0]], paths[0]):
        assert np.array_equal(extractor.prepare(image), stored)
    assert float((extractor(arr) - got[:1]).abs().max()) <= 1e-5
    net_input = to_input(evaluator.images[:3], cfg)  # float tensors are taken as network input
    assert float((extractor(net_input) - got[:3]).abs().max()) <= 1e-5 and extractor.dim == got.shape[1]


def test_raw_features_and_input_errors(tiny):
    _, _, ck = tiny
    raw = FeatureExtractor(ck, normalize=False)
    unit = FeatureExtractor(ck)
    image = np.random.default_rng(0).integers(0, 255, (90, 40, 3), dtype=np.uint8)
    f, u = raw(image), unit(image)
    assert torch.allclose(u.norm(dim=1), torch.ones(1)) and not torch.allclose(f.norm(dim=1), torch.ones(1))
    assert torch.allclose(torch.nn.functional.normalize(f, dim=1), u, atol=1e-6)
    with pytest.raises(ImageInputError, match=r"float tensor must be normalised network input \[N, 3, 64, 32\]"):
        unit(torch.rand(3, 90, 40))
    with pytest.raises(ImageInputError, match="cannot read image"):
        unit(["/nonexistent.jpg"])
    with pytest.raises(ImageInputError, match="expected a path, a PIL image or uint8"):
        unit(image.astype(np.float32))


def test_class_count_inferred_from_every_classifier_of_a_multibranch_net():
    from inference_tools import ROOT

    from reid.config import load_config
    from reid.inference.loading import infer_num_classes
    from reid.models import build_model

    # 96 high: 6 rows at stride 16, one per PCB stripe (fewer rows are refused at load)
    cfg = load_config(ROOT / "configs" / "pcb" / "market1501.yaml",
                      ["model.backbone={name: resnet18, last_stride: 1, pretrained: false}", "input.size=[96,48]"])
    weights = build_model(cfg.model, 11, input_size=cfg.input.size).state_dict()
    assert infer_num_classes(cfg.model, weights, cfg.input.size) == 11
    weights = {k: v for k, v in weights.items() if "classifier" not in k}
    assert infer_num_classes(cfg.model, weights, cfg.input.size) is None  # no classifier: cannot tell
