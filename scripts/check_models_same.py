"""Build every config's model (pretrained off, fixed seed) and record the parameter count, the
eval-mode output of a fixed small input and the training-mode output keys; compare two records.

Usage: ``python scripts/check_models_same.py record OUT.pt`` (run with PYTHONPATH at a checkout);
``python scripts/check_models_same.py compare A.pt B.pt``. Models with the same model section,
class count and input size are built once. The backbone is ResNet-18 when ``--r18`` is given
(faster; the same code paths).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def record(out: str, r18: bool) -> None:
    from reid.config import load_config
    from reid.models import build_model

    torch.set_num_threads(1)
    root = Path.cwd() / "configs"
    results: dict[str, dict] = {}
    seen: dict[str, str] = {}
    for path in sorted(root.rglob("*.yaml")):
        if "_base_" in path.parts:
            continue
        over = ["model.backbone.pretrained=false"]
        cfg = load_config(path, over)
        model_cfg = dict(cfg.model)
        if r18:
            model_cfg["backbone"] = {**model_cfg["backbone"], "name": "resnet18"}
        size = [int(v) for v in cfg.input.size]
        key = json.dumps([model_cfg, size], sort_keys=True, default=str)
        rel = str(path.relative_to(root))
        if key in seen:
            results[rel] = {"same_as": seen[key]}
            continue
        seen[key] = rel
        torch.manual_seed(0)
        model = build_model(model_cfg, 7, input_size=size)
        n = sum(p.numel() for p in model.parameters())
        g = torch.Generator().manual_seed(1)
        x = torch.randn(2, 3, *size, generator=g)
        model.eval()
        with torch.no_grad():
            out_eval = model(x)
        model.train()
        torch.manual_seed(2)
        x4 = torch.randn(4, 3, *size, generator=g)
        out_train = model(x4)
        shapes = {k: ([list(t.shape) for t in v] if isinstance(v, (list, tuple)) else list(v.shape))
                  for k, v in out_train.items()}
        results[rel] = {"params": n, "eval": {k: (v.clone() if isinstance(v, torch.Tensor) else [t.clone() for t in v])
                                              for k, v in out_eval.items()},
                        "train_shapes": shapes}
        print(rel, n, {k: list(v.shape) for k, v in out_eval.items() if isinstance(v, torch.Tensor)}, flush=True)
    torch.save(results, out)


def compare(a: str, b: str) -> int:
    ra, rb = torch.load(a, weights_only=False), torch.load(b, weights_only=False)
    bad = 0
    for name in sorted(set(ra) | set(rb)):
        x, y = ra.get(name), rb.get(name)
        if x is None or y is None:
            print(f"{name}: only in {'B' if x is None else 'A'}")
            bad += 1
            continue
        if "same_as" in x or "same_as" in y:
            if x.get("same_as") != y.get("same_as"):
                print(f"{name}: dedup differs {x.get('same_as')} vs {y.get('same_as')}")
            continue
        msgs = []
        if x["params"] != y["params"]:
            msgs.append(f"params {x['params']} vs {y['params']}")
        ea, eb = x["eval"], y["eval"]
        for k in sorted(set(ea) | set(eb)):
            if k not in ea or k not in eb:
                msgs.append(f"eval key {k} only in one")
                continue
            ta = ea[k] if isinstance(ea[k], list) else [ea[k]]
            tb = eb[k] if isinstance(eb[k], list) else [eb[k]]
            if len(ta) != len(tb) or any(u.shape != v.shape or not torch.equal(u, v) for u, v in zip(ta, tb)):
                diff = max(float((u - v).abs().max()) if u.shape == v.shape else float("inf") for u, v in zip(ta, tb))
                msgs.append(f"eval {k} differs (max abs {diff:.3g})")
        if x["train_shapes"] != y["train_shapes"]:
            msgs.append(f"train outputs {x['train_shapes']} vs {y['train_shapes']}")
        print(f"{name}: {'SAME' if not msgs else '; '.join(msgs)} (params {x['params']:,})")
        bad += bool(msgs)
    print(f"{bad} differing of {len(ra)}")
    return int(bad > 0)


if __name__ == "__main__":
    if sys.argv[1] == "record":
        record(sys.argv[2], "--r18" in sys.argv)
    else:
        sys.exit(compare(sys.argv[2], sys.argv[3]))
