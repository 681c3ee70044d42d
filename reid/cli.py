"""Shared pieces of the command-line tools: user errors print one line, never a traceback."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any, Callable

from reid.atomic_io import describe
from reid.checks import DEVICE, Range
from reid.registry import UserError


class Terminated(KeyboardInterrupt):
    """SIGTERM outside training: unwinds like Ctrl-C (locks and temporary files are cleaned up)."""

    signum = int(signal.SIGTERM)


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


def run(main: Callable[[], int | None]) -> None:
    """Run ``main``; a :class:`UserError` or an ``OSError`` (a file or folder the system refuses)
    prints one line ``error: ...`` and exits 2; Ctrl-C exits 130 and SIGTERM 143 (128 + signal),
    both after the clean-up a Ctrl-C does (training: a resumable checkpoint)."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        code = main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # every path reid writes is worded where it is written; this is the net
        print(f"error: {describe(exc)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        print("interrupted", file=sys.stderr)
        sys.exit(128 + int(getattr(exc, "signum", signal.SIGINT)))
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
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


# ------------------------------------------------------------------- argument types (issue 23, item 4)
# Every tool's numeric and device arguments use these: a bad value is argparse's own one-line
# ``error: argument --topk: expected an integer >= 1, got 0`` (exit 2), with reid.checks' ranges.


def checked(kind: type, check: Any, default: Any = None) -> Callable[[str], Any]:
    """An argparse ``type``: the text as ``kind`` (int, float or str) passing ``check``."""
    example = default if default is not None else (kind() if kind in (int, float) else None)

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = text
        if not check.ok(value):
            shown = text if isinstance(value, (int, float)) else repr(text)
            raise argparse.ArgumentTypeError(f"expected {check.expects(example)}, got {shown}{check.hint(value)}")
        return value

    convert.__name__ = f"{kind.__name__} {check.expects(example)}"  # argparse's fallback message
    convert.check = check  # type: ignore[attr-defined]  # read by the fuzzer (tests/test_fuzz_inputs.py)
    return convert


positive_int = checked(int, Range(1))
nonneg_int = checked(int, Range(0))
seed_int = checked(int, Range(0, 2**32 - 1))
fraction = checked(float, Range(0, 1, lo_open=True), 1.0)
device = checked(str, DEVICE)
