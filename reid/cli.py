"""Shared pieces of the command-line tools: user errors print one line, never a traceback."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from reid.registry import UserError


def run(main: Callable[[], int | None]) -> None:
    """Run ``main``; a :class:`UserError` prints ``error: ...`` and exits 2, Ctrl-C exits 130."""
    try:
        code = main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


class ConfigArgumentParser(argparse.ArgumentParser):
    """``parse_args`` accepts ``KEY=VALUE`` overrides anywhere between the options (argparse's
    plain parsing takes positionals in one run only, so ``--resume PATH train.epochs=5`` failed)."""

    def parse_args(self, args=None, namespace=None):
        return self.parse_intermixed_args(args, namespace)


def config_parser(description: str, config_required: bool = True) -> argparse.ArgumentParser:
    """An argument parser with ``--config`` and ``KEY=VALUE`` overrides (before, between or
    after the options); ``config_required=False`` for tools that can take the config stored in a
    checkpoint instead."""
    parser = ConfigArgumentParser(
        description=description,
        epilog="Overrides: dotted KEY=VALUE pairs after the options, e.g. train.epochs=5 "
        "model.backbone.name=resnet18 (values are parsed as YAML).",
    )
    parser.add_argument("--config", "-c", required=config_required,
                        help="YAML config file (see configs/)" + ("" if config_required else
                             "; default: the config stored in the checkpoint"))
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    return parser
