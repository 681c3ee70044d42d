"""Write the pinned release values of tests/test_recipe_<net>.py into docs/fidelity.md.

    python scripts/fidelity_pins.py          # rewrite the tables
    python scripts/fidelity_pins.py --check  # exit 1 when the doc disagrees with the tests

Each network's table sits between ``<!-- pins:<net> ... -->`` and ``<!-- /pins:<net> -->`` in the
section "Release values pinned by tests"; ``tests/test_recipe_<net>.py`` fails when its table and
its pins differ (tests/recipes.py ``check_doc``).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from recipes import DOC, RELEASES, doc_block, table  # noqa: E402

SECTION = "## Release values pinned by tests"
BEFORE = "## Changes that keep every recipe"
INTRO = (f"{SECTION}\n\nGenerated from `tests/test_recipe_<net>.py` (`python scripts/fidelity_pins.py`): every value "
         "below is asserted against the resolved Market-1501 config, each with the release file:line it "
         "comes from (`lr@E`: the learning rate of the new layers in 0-based epoch E). A config that drifts "
         "fails with `recipe mismatch: KEY: reid VALUE, release VALUE (SOURCE)`.\n")


def render(text: str) -> str:
    if SECTION not in text:
        if BEFORE not in text:
            raise SystemExit(f"error: {DOC} has no '{BEFORE}' section to put the tables before")
        text = text.replace(BEFORE, INTRO + "\n" + BEFORE, 1)
    for net in RELEASES:
        pins = importlib.import_module(f"test_recipe_{net}").PINS
        block, old = table(net, pins), doc_block(net, text)
        if old is not None:
            text = text.replace(old, block)
        else:
            text = text.replace(BEFORE, block + "\n\n" + BEFORE, 1)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the doc is up to date")
    args = parser.parse_args(argv)
    text = DOC.read_text(encoding="utf-8")
    new = render(text)
    if args.check:
        print("docs/fidelity.md is up to date" if new == text else "error: docs/fidelity.md is out of date")
        return int(new != text)
    if new != text:
        from reid.atomic_io import atomic_write_text

        atomic_write_text(DOC, new)
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
