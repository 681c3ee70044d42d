"""Recipe pins: a release's value for each point of a resolved config, with the release file:line it
comes from (``tests/test_recipe_<net>.py``; the releases at the commits in :data:`RELEASES`).

``check(cfg, pins)`` fails listing every drift as ``recipe mismatch: KEY: reid VALUE, release VALUE
(SOURCE)``. A key is a dotted config key (``model.branches[0].head.input_dropout``) or a derived
quantity: ``lr@E`` (the new layers' learning rate in 0-based epoch E, from ``reid.engine.schedule``)
or ``batches per Market epoch`` (``identities`` epochs: exact from Market-1501's 751 training
identities). ``table(net, pins)`` renders the pins as the Markdown table of ``docs/fidelity.md``
(``python scripts/fidelity_pins.py`` writes them there; ``check_doc`` keeps the two equal).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, NamedTuple

from reid.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "fidelity.md"
MARKET_IDS = 751  # Market-1501's training identities

#: the released code each recipe is pinned to: (network, repository, commit read)
RELEASES = {
    "bot": ("BoT", "michuanhaohao/reid-strong-baseline", "3da7e6f03164a92e696cb6da059b1cd771b0346d"),
    "pcb": ("PCB", "syfafterzy/PCB_RPP_for_reID", "e29cf54486427d1423277d4c793e39ac0eeff87c"),
    "mgn": ("MGN", "seathiefwang/MGN-pytorch", "384e82002e40b71157506e23d71e6709fa830757"),
    "rganet": ("RGA-Net", "microsoft/Relation-Aware-Global-Attention-Networks",
               "cdc9965e779d383ddf17c25472d732c029a0e2ec"),
    "lagnet": ("LAG-Net", "SWJTU-3DVision/LAG-Net", "e225258584537ad5db2ee11dcdf934c0d4356a4b"),
    "bdb": ("BDB", "daizuozhuo/batch-dropblock-network", "21c99abb8d85cfb29d56fc57d09c1ecdfe6b6be5"),
    "laganet": ("LAGA-Net", "paper; nearest code nathanlem1/MBA-Net", "2c6349acb41283d5cbca7eb52a648e00bd57f834"),
}


class Pin(NamedTuple):
    """One pinned point: ``key`` (see the module docstring), the release's ``value``, its ``source``."""

    key: str
    value: Any
    source: str


def market(net: str) -> Any:
    """The resolved Market-1501 config of ``net``."""
    return load_config(ROOT / "configs" / net / "market1501.yaml")


def value(cfg: Any, key: str) -> Any:
    """reid's value of ``key`` in the resolved ``cfg`` (a KeyError names a key that does not exist)."""
    if key.startswith("lr@"):
        from reid.engine.schedule import lr_factor

        base = float(cfg["optimizer"]["lr"])
        return base * lr_factor(int(key[3:]), cfg["schedule"], base, int(cfg["train"]["epochs"]))
    if key == "batches per Market epoch":
        from reid.data.sampler import batches_per_epoch

        s = cfg["sampler"]
        assert s["epoch"] == "identities", "images epochs depend on every identity's image count"
        return batches_per_epoch([s["num_instances"]] * MARKET_IDS, s["num_ids"], s["num_instances"], s["epoch"],
                                 s["last_batch"])
    node = cfg
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", key):
        if part.startswith("["):
            node = node[int(part[1:-1])]
        else:
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"recipe pin names a key the config does not have: {key}")
            node = node[part]
    return node


def same(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-9 relative (a YAML 3.5e-4 and the release's 0.00035 are one number)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return a == b and type(a) is type(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)
    return a == b


def plain(v: Any) -> Any:
    return v.to_dict() if hasattr(v, "to_dict") else v


def mismatches(cfg: Any, pins: list[Pin]) -> list[str]:
    """One line per pin whose reid value differs from the release's."""
    out = []
    for pin in pins:
        mine = plain(value(cfg, pin.key))
        if not same(mine, pin.value):
            out.append(f"recipe mismatch: {pin.key}: reid {mine!r}, release {pin.value!r} ({pin.source})")
    return out


def check(cfg: Any, pins: list[Pin]) -> None:
    keys = [p.key for p in pins]
    assert len(set(keys)) == len(keys), "a key is pinned twice"
    bad = mismatches(cfg, pins)
    assert not bad, "\n".join(bad)


def _cell(v: Any) -> str:
    text = repr(v) if isinstance(v, str) else str(v).replace("True", "true").replace("False", "false")
    return text.replace("|", "\\|")


def table(net: str, pins: list[Pin]) -> str:
    """The Markdown block of ``net``'s pins (between its markers in docs/fidelity.md)."""
    name, repo, commit = RELEASES[net]
    lines = [f"<!-- pins:{net} (generated by scripts/fidelity_pins.py from tests/test_recipe_{net}.py) -->",
             f"**{name}**: `configs/{net}/market1501.yaml` against {repo} at `{commit[:12]}`",
             "", "| key | release = reid | release source |", "| --- | --- | --- |"]
    lines += [f"| `{p.key}` | {_cell(p.value)} | {p.source} |" for p in pins]
    lines.append(f"<!-- /pins:{net} -->")
    return "\n".join(lines)


def doc_block(net: str, text: str | None = None) -> str | None:
    """The block of ``net`` in docs/fidelity.md as it is now (None when absent)."""
    text = DOC.read_text(encoding="utf-8") if text is None else text
    m = re.search(rf"<!-- pins:{net} .*?<!-- /pins:{net} -->", text, re.S)
    return m.group(0) if m else None


def check_doc(net: str, pins: list[Pin]) -> None:
    assert doc_block(net) == table(net, pins), (
        f"docs/fidelity.md disagrees with tests/test_recipe_{net}.py: run python scripts/fidelity_pins.py")
