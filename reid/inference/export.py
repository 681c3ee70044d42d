"""Export a trained model to ONNX or TorchScript: float32 input [N, 3, H, W] (dynamic N), already
normalised as the test images are (RGB in [0, 255] -> (x / 255 - pixel_mean) / pixel_std, resized to
``input.size``), output the retrieval features [N, D] the evaluator uses (``test.flip`` averaging in
the graph, L2-normalised in the graph unless ``normalize=False``). The preprocessing is not in the
graph; it is stated in the file's metadata (:func:`export_metadata`): ONNX ``metadata_props``,
TorchScript extra file ``reid.json``."""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reid.atomic_io import atomic_file

FORMATS = ("onnx", "torchscript")
#: ONNX opset of the TorchScript-based exporter (the torch.export-based one writes its default, 18+).
OPSET = 17


class FeatureGraph(nn.Module):
    """``model`` as a plain ``images [N, 3, H, W] -> features [N, D]`` module (eval mode)."""

    def __init__(self, model: nn.Module, flip: bool = False, normalize: bool = True, norm_parts: int = 1):
        super().__init__()
        self.model, self.flip, self.normalize, self.norm_parts = model, bool(flip), bool(normalize), int(norm_parts)
        self.eval()  # the wrapper too: an exporter that restores the mode it found must not restore training

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        f = self.model(images)["features"].float()
        if self.flip:
            f = (f + self.model(torch.flip(images, dims=[3]))["features"].float()) / 2
        if self.normalize:  # as the evaluator (test.norm_parts: each of that many slices on its own)
            n, d = f.shape
            f = nn.functional.normalize(f.reshape(n, self.norm_parts, d // self.norm_parts), dim=2).reshape(n, d)
        return f


def export_metadata(cfg: Any, normalize: bool, checkpoint: str | os.PathLike | None = None) -> dict[str, str]:
    """What a user of the exported file must know, as strings: input layout, size and normalisation,
    output, the model and its source."""
    h, w = (int(v) for v in cfg.input.size)
    return {
        "reid.model": str(cfg.model.name),
        "reid.input": f"float32 [N, 3, {h}, {w}] RGB, N dynamic",
        "reid.input_size": json.dumps([h, w]),
        "reid.preprocess": f"resize to input_size ({cfg.input.interpolation}); "
                           "x = (rgb / 255 - pixel_mean) / pixel_std",
        "reid.pixel_mean": json.dumps([float(v) for v in cfg.input.pixel_mean]),
        "reid.pixel_std": json.dumps([float(v) for v in cfg.input.pixel_std]),
        "reid.normalisation_in_graph": "false (apply reid.preprocess to the input)",
        "reid.output": "features [N, D]" + ((", L2-normalised" + (f" per {int(cfg.test.norm_parts)} equal slices"
                                                                  if int(cfg.test.norm_parts) > 1 else ""))
                                            if normalize else ", raw (not L2-normalised)"),
        "reid.flip_averaged": json.dumps(bool(cfg.test.flip)),
        "reid.metric": str(cfg.test.metric),
        "reid.checkpoint": str(checkpoint or ""),
    }


@contextlib.contextmanager
def _quiet_fds():
    """Send file descriptors 1 and 2 to a temporary file meanwhile (the TorchScript-based exporter
    prints its whole IR graph from C++ when it refuses an operator, before the fallback runs)."""
    for stream in (sys.stdout, sys.stderr):  # what was printed before goes out first
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        for fd in (1, 2):
            os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def export_onnx(graph: FeatureGraph, example: torch.Tensor, path: str | os.PathLike,
                metadata: dict[str, str] | None = None, dynamo: bool | None = None) -> Path:
    """Write ``graph`` as ONNX (dynamic batch) with ``metadata``.

    ``dynamo=None`` (default) tries torch.onnx's TorchScript-based exporter first (5-10x faster
    here) and falls back to the torch.export-based one (needs onnxscript) for graphs the former
    refuses (e.g. adaptive pooling to a size that does not divide the feature map: LAGA-Net's
    3 stripes of an 8-row map); ``True`` / ``False`` force one exporter."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = {"input_names": ["images"], "output_names": ["features"]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        done = False
        if not dynamo:
            try:
                with _quiet_fds() if dynamo is None else contextlib.nullcontext():
                    torch.onnx.export(graph, (example,), str(path), dynamo=False, opset_version=OPSET,
                                      dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}}, **names)
                done = True
            except Exception as exc:  # noqa: BLE001 - an operator the legacy exporter lacks
                if dynamo is False:
                    raise RuntimeError(f"ONNX export failed: {str(exc).splitlines()[0]}") from None
        if not done:
            batch = torch.export.Dim("batch", min=1, max=4096)
            program = torch.onnx.export(graph, (example,), dynamo=True, dynamic_shapes=({0: batch},),
                                        verbose=False, **names)
            program.save(str(path))
    proto = onnx.load(str(path))
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path


def export_torchscript(graph: FeatureGraph, example: torch.Tensor, path: str | os.PathLike,
                       metadata: dict[str, str] | None = None) -> Path:
    """Write ``graph`` traced to TorchScript; ``metadata`` as the extra file ``reid.json``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(graph, example, check_trace=False)
    torch.jit.save(traced, str(path), _extra_files={"reid.json": json.dumps(metadata or {}, indent=1)})
    return path


def export_model(model: nn.Module, cfg: Any, path: str | os.PathLike, fmt: str, normalize: bool = True,
                 checkpoint: str | os.PathLike | None = None, batch: int = 2, dynamo: bool | None = None) -> Path:
    """Export ``model`` (with ``cfg``'s input size and ``test.flip``) to ``path`` in ``fmt``
    (onnx | torchscript), traced with a random batch of ``batch`` images; ``dynamo``: see
    :func:`export_onnx`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {FORMATS}")
    graph = FeatureGraph(model.cpu(), flip=bool(cfg.test.flip), normalize=normalize,
                         norm_parts=int(cfg.test.norm_parts))
    example = torch.randn(batch, 3, *(int(v) for v in cfg.input.size), generator=torch.Generator().manual_seed(0))
    meta = export_metadata(cfg, normalize, checkpoint)
    with atomic_file(path) as tmp:  # a failed export leaves a previous file at path as it was
        if fmt == "onnx":
            export_onnx(graph, example, tmp, meta, dynamo=dynamo)
        else:
            export_torchscript(graph, example, tmp, meta)
    return Path(path)


def run_exported(path: str | os.PathLike, fmt: str, images: torch.Tensor) -> torch.Tensor | None:
    """Features of ``images`` from an exported file (onnxruntime / torch.jit); None when ONNX and
    onnxruntime is not installed."""
    if fmt == "torchscript":
        with torch.no_grad():
            return torch.jit.load(str(path))(images)
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": images.numpy()})[0])


def check_export(model: nn.Module, cfg: Any, path: str | os.PathLike, fmt: str, normalize: bool = True,
                 batch: int = 3) -> float | None:
    """Max abs difference between the exported file's features and PyTorch's for a random batch of
    ``batch`` images (a size other than the traced one); None when it cannot be run."""
    images = torch.randn(batch, 3, *(int(v) for v in cfg.input.size), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = FeatureGraph(model.cpu(), flip=bool(cfg.test.flip), normalize=normalize)(images)
    got = run_exported(path, fmt, images)
    return None if got is None else float((got - expected).abs().max())
