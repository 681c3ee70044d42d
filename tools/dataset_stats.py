#!/usr/bin/env python
"""Print identities, images and cameras per split of a data set read from its real layout.

    python tools/dataset_stats.py --dataset NAME --root DIR [--json] [KEY=VALUE ...]
    python tools/dataset_stats.py --dataset NAME --root DIR --write-replica [--seed S] [--scale X] [--images M]

Train counts include the images held out for validation. ``KEY=VALUE`` pairs are parser options
(e.g. ``source=mat``, ``classic=true``, ``version=v2``), values parsed as YAML. A user error (wrong
root, missing list file, bad names) prints one line and exits with status 2. ``--write-replica``
first writes a synthetic replica of NAME in its real format under DIR (real counts at scale 1).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reid.cli import fraction, run, seed_int  # noqa: E402
from reid.registry import ConfigError  # noqa: E402


def parse_options(pairs: list[str]) -> dict:
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected KEY=VALUE, got '{pair}'")
        out[key] = yaml.safe_load(value)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--dataset", "-d", required=True, help="registered data set name, e.g. market1501")
    parser.add_argument("--root", "-r", required=True, help="data root holding the data set's folder")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")
    parser.add_argument("--write-replica", action="store_true", help="first write a synthetic replica under --root")
    parser.add_argument("--seed", type=seed_int, default=0, help="replica seed")
    parser.add_argument("--scale", type=fraction, default=1.0, help="replica: fraction of the real identities")
    parser.add_argument("--images", default="render", choices=("render", "flat", "empty"), help="replica images")
    parser.add_argument("options", nargs="*", metavar="KEY=VALUE", help="parser options")
    args = parser.parse_args()

    import reid.data.datasets  # noqa: F401  (registers the parsers)
    from reid.registry import DATASETS

    if args.write_replica:
        from reid.testing.replicas import write_replica

        write_replica(args.dataset, args.root, seed=args.seed, scale=args.scale, images=args.images)
    dataset = DATASETS.build(args.dataset, root=args.root, where="dataset", **parse_options(args.options))
    if args.json:
        print(json.dumps(dataset.stats(), indent=2))
    else:
        print(dataset.summary())
    return 0


if __name__ == "__main__":
    run(main)
