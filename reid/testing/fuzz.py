"""The input fuzzer (issue 23, item 6): wrong values of every kind for every config key, component
keyword and tool argument, generated from their declarations, run through the real loader or the
tool's argument parser in process.

A case is ``{"class", "kind", "key", "args"}``: class ``schema`` / ``component`` (``args``: config
overrides for :func:`reid.config.load_config`) or ``tool`` (``args``: the tool's argv; ``tool``: its
file, ``command``: a sub-command). :func:`run_case` returns ``(outcome, detail)``:

* ``clear``: a UserError (or argparse's exit 2) whose message is one line naming the key;
* ``accepted``: the value loaded and passes its declared check (``check`` of the case);
* ``silent``: the value loaded although its declared check refuses it;
* ``unnamed``: one-line error that does not name the key; ``multiline``: an error of several lines;
* ``traceback``: any other exception; ``hang``: over the per-case time bound.

Only the first two are passes. Replaying cases needs nothing of this module but ``load_config``
and the tools, so the same cases run on an older checkout (``python reid/testing/fuzz.py replay
CASES.json`` with that checkout first on PYTHONPATH) to count what it lets through.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import random
import re
import runpy
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, Iterator

TOOLS = ("train.py", "test.py", "search.py", "extract.py", "export.py", "dataset_stats.py", "visualize.py")
TIME_BOUND_S = 5.0
PASSES = ("clear", "accepted")

#: Wrong values as YAML text, by kind; every key gets each (and its own below).
GENERIC = {
    "wrong type": ["abc", "true", "'7'"],
    "empty": ["''", "[]", "{}", "null"],
    "non-finite": [".inf", "-.inf", ".nan"],
    "out of range": ["-1", "0", "-0.5", "0.5", "2"],
    "huge": ["1e308", "100000000000000000000000000000", "'" + "x" * 5000 + "'"],
    "wrong container": ["[1, 2]", "{a: 1}", "[[1, 2]]", "[abc]"],
}
#: Wrong tool-argument texts, by kind.
TOOL_VALUES = {
    "wrong type": ["x", "1.5", "0x10", "1e3"],
    "empty": [""],
    "non-finite": ["nan", "inf", "-inf"],
    "out of range": ["0", "-1", "-5"],
    "huge": ["1e400", "9" * 400],
}


# ------------------------------------------------------------------------------------- generation


def _yaml_text(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else (
        ".nan" if value != value else (".inf" if value > 0 else "-.inf"))


def _own_values(check: Any, default: Any) -> list[tuple[str, str]]:
    """(kind, YAML) values at and past the edges of ``check``."""
    from reid.checks import Items, Nullable, Range

    if isinstance(check, Nullable):
        check = check.check
    out: list[tuple[str, str]] = []
    if isinstance(check, Range):
        for edge, is_open, step in ((check.lo, check.lo_open, -1), (check.hi, check.hi_open, 1)):
            if edge is not None:
                out.append(("out of range", _yaml_text(edge + step)))
                out.append(("out of range", _yaml_text(edge + step * 1e-9)))
                if is_open:
                    out.append(("out of range", _yaml_text(edge)))
    elif isinstance(check, Items):
        sample = list(default) if isinstance(default, list) and default else [1] * (check.length or 2)
        out += [("wrong shape", _yaml_text(sample + sample[:1])), ("wrong shape", _yaml_text(sample[:-1])),
                ("non-finite", _yaml_text([float("nan")] * len(sample))),
                ("wrong type", _yaml_text(["a"] * len(sample))), ("wrong shape", _yaml_text([sample])),
                ("huge", _yaml_text([1e308] * len(sample))), ("huge", "[" + ", ".join(["1"] * 10000) + "]")]
        if check.ordered and len(sample) > 1:
            out.append(("out of range", _yaml_text(sorted(sample, reverse=True) if sample[0] != sample[-1]
                                                   else [2, 1] + sample[2:])))
    return out


def _values(check: Any, default: Any) -> list[tuple[str, str]]:
    return [(kind, v) for kind, values in GENERIC.items() for v in values] + _own_values(check, default)


def schema_cases() -> list[dict[str, Any]]:
    """Every key of the schema (``VALUE_CHECKS``) with every wrong value."""
    from reid.config import DEFAULTS, VALUE_CHECKS, _lookup

    return [{"class": "schema", "kind": kind, "key": key, "args": [f"{key}={value}"]}
            for key, check in VALUE_CHECKS.items() for kind, value in _values(check, _lookup(DEFAULTS, key))]


def _component_keywords() -> Iterator[tuple[str, str, str, Any, Any, Any]]:
    """(registry kind, component, keyword, annotation, default, namespace) of every registered
    component keyword a config may set."""
    import reid.config as config
    from reid.checks import namespace_of
    from reid.registry import BACKBONES, DATASETS, HEADS, LAYERS, LOSSES, MODELS, POOLINGS

    config._import_components()
    set_by_network = {MODELS: {"num_classes", "backbone", "branches"}, HEADS: {"in_dim", "num_classes"},
                      LAYERS: {"channels", "height", "width"}}  # (backbone, branches: nested, fuzzed apart)
    for registry in (DATASETS, MODELS, LOSSES, BACKBONES, HEADS, POOLINGS, LAYERS):
        for name in registry.names():
            namespace = namespace_of(registry.get(name))
            for key, p in registry.parameters(name).items():
                if key in set_by_network.get(registry, ()):
                    continue
                yield registry.kind, name, key, p.annotation, (None if p.default is p.empty else p.default), namespace


def declared_table() -> list[str]:
    """The rows of docs/checks.md's table of component keyword ranges, from the signatures."""
    from reid.checks import declared_check

    rows: dict[tuple[str, str, str], list[str]] = {}
    for kind, name, key, annotation, default, namespace in _component_keywords():
        check = declared_check(annotation, namespace)[1]
        if check is not None:
            rows.setdefault((kind, key, check.expects(default)), []).append(name)
    return [f"| {kind} | {', '.join(f'`{n}`' for n in names)} | `{key}` | {expects} |"
            for (kind, key, expects), names in rows.items()]


def _component_args(kind: str, name: str, key: str, value: str) -> tuple[list[str], str]:
    """Overrides setting keyword ``key`` of component ``name`` to ``value`` and the key the error names."""
    if kind == "dataset":
        return [f"dataset={{name: {name}, {key}: {value}}}"], f"dataset.{key}"
    if kind == "model":
        return [f"model={{name: {name}, {key}: {value}}}"], f"model.{key}"
    if kind == "loss":
        return [f"losses.fuzz={{name: {name}, {key}: {value}}}"], f"losses.fuzz.{key}"
    if kind == "backbone":
        return [f"model.backbone={{name: {name}, {key}: {value}}}"], f"model.backbone.{key}"
    branch = {"head": f"{{head: {{name: {name}, {key}: {value}}}}}",
              "pooling": f"{{pooling: {{name: {name}, {key}: {value}}}}}",
              "layer": f"{{before: [{{name: {name}, {key}: {value}}}]}}"}[kind]
    return ["model.name=multibranch", f"model.branches=[{branch}]"], key


def component_cases() -> list[dict[str, Any]]:
    """Every keyword of every registered component (loss ``weight`` included) with every wrong value."""
    from reid.checks import declared_check

    cases = []
    for kind, name, key, annotation, default, namespace in _component_keywords():
        check = declared_check(annotation, namespace)[1]
        for value_kind, value in _values(check, default):
            args, named = _component_args(kind, name, key, value)
            cases.append({"class": "component", "kind": value_kind, "key": named, "args": args,
                          "component": [kind, name, key]})
    for value_kind, value in _values(None, 1.0):
        cases.append({"class": "component", "kind": value_kind, "key": "losses.fuzz.weight",
                      "args": [f"losses.fuzz={{name: cross_entropy, weight: {value}}}"],
                      "component": ["loss", "cross_entropy", "weight"]})
    return cases


class _Captured(BaseException):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


@contextlib.contextmanager
def _capturing() -> Iterator[None]:
    """Make ``parse_args`` raise the parser instead of parsing (to read a tool's declarations)."""
    from reid.cli import ConfigArgumentParser

    def capture(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _Captured(self)

    saved = (argparse.ArgumentParser.parse_args, ConfigArgumentParser.parse_args)
    argparse.ArgumentParser.parse_args = capture  # type: ignore[method-assign]
    ConfigArgumentParser.parse_args = capture  # type: ignore[method-assign]
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_args, ConfigArgumentParser.parse_args = saved  # type: ignore[method-assign]


_PARSERS: dict[str, argparse.ArgumentParser] = {}


def _root() -> Path:
    """The checkout whose ``reid`` is imported (its tools/ are fuzzed)."""
    import reid

    return Path(reid.__file__).resolve().parents[1]


def tool_parser(tool: str) -> argparse.ArgumentParser:
    """The argument parser ``tools/<tool>`` builds (its ``main`` run until it parses)."""
    if tool not in _PARSERS:
        argv = sys.argv
        sys.argv = [tool]
        try:
            with _capturing():
                runpy.run_path(str(_root() / "tools" / tool), run_name="__main__")
        except _Captured as captured:
            _PARSERS[tool] = captured.parser
        finally:
            sys.argv = argv
    return _PARSERS[tool]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {"": parser}


def _required_argv(parser: argparse.ArgumentParser, skip: argparse.Action) -> list[str]:
    """Placeholder values for the required options and positionals except ``skip``."""
    argv: list[str] = []
    groups = [g for g in parser._mutually_exclusive_groups if g.required]
    for action in parser._actions:
        if action is skip or isinstance(action, argparse._HelpAction) or not action.option_strings:
            continue
        in_group = next((g for g in groups if action in g._group_actions), None)
        if not action.required and not (in_group and action is in_group._group_actions[0]):
            continue
        if in_group and skip in in_group._group_actions:
            continue
        n = action.nargs if isinstance(action.nargs, int) else 1
        value = str(action.choices[0]) if action.choices else "x"
        argv += [action.option_strings[0], *[value] * n]
    return argv


def tool_cases() -> list[dict[str, Any]]:
    """Every valued option of every tool (each sub-command) with every wrong text."""
    cases = []
    for tool in TOOLS:
        for command, parser in _subparsers(tool_parser(tool)).items():
            for action in parser._actions:
                if not action.option_strings or action.nargs == 0 or isinstance(action, argparse._HelpAction):
                    continue
                option = action.option_strings[-1]
                n = action.nargs if isinstance(action.nargs, int) else 1
                for kind, values in TOOL_VALUES.items():
                    for value in values:
                        argv = ([command] if command else []) + _required_argv(parser, action) + [option, *[value] * n]
                        cases.append({"class": "tool", "kind": kind, "key": option, "args": argv, "tool": tool,
                                      "command": command})
    return cases


def all_cases() -> list[dict[str, Any]]:
    return schema_cases() + component_cases() + tool_cases()


# ---------------------------------------------------------------------------------------- running


class _Timeout(BaseException):
    pass


@contextlib.contextmanager
def _time_bound(seconds: float) -> Iterator[None]:
    def alarm(signum: int, frame: Any) -> None:
        raise _Timeout()

    try:
        previous = signal.signal(signal.SIGALRM, alarm)
    except (ValueError, AttributeError):  # not the main thread, or no SIGALRM: no bound
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _names(message: str, key: str) -> bool:
    """Whether ``message`` names ``key`` (its dotted path, or its last part as a word)."""
    leaf = key.rsplit(".", 1)[-1]
    return key in message or re.search(rf"(?<![\w-]){re.escape(leaf)}(?![\w-])", message) is not None


def _declared_ok(case: dict[str, Any], cfg: Any) -> bool:
    """Whether the loaded value passes the check declared for it (no check: any value)."""
    import reid.config as config
    from reid.checks import keyword_problem, namespace_of

    if case["class"] == "schema":
        key = case["key"]
        return config.VALUE_CHECKS[key].ok(config._lookup(cfg, key))
    kind, name, key = case["component"]
    raw = config._yaml(case["args"][-1].split("=", 1)[1])
    value = _find(raw, key)
    if key == "weight" and kind == "loss":
        return config.LOSS_EXTRA_CHECKS["weight"].ok(value)
    from reid.registry import BACKBONES, DATASETS, HEADS, LAYERS, LOSSES, MODELS, POOLINGS

    registry = {r.kind: r for r in (DATASETS, MODELS, LOSSES, BACKBONES, HEADS, POOLINGS, LAYERS)}[kind]
    p = registry.parameters(name)[key]
    default = None if p.default is p.empty else p.default
    return keyword_problem(key, value, p.annotation, default, namespace_of(registry.get(name))) is None


def _find(node: Any, key: str) -> Any:
    """The value of ``key`` in the override's YAML value (nested in a branch list for heads/layers)."""
    if isinstance(node, dict):
        if key in node and "name" in node:
            return node[key]
        for v in node.values():
            found = _find(v, key)
            if found is not _NONE:
                return found
    if isinstance(node, list):
        for v in node:
            found = _find(v, key)
            if found is not _NONE:
                return found
    return _NONE if not isinstance(node, (dict, list)) else _NONE


_NONE = object()


def run_case(case: dict[str, Any], judge: bool = True) -> tuple[str, str]:
    """Run one case in process; ``(outcome, detail)`` (see the module docstring). ``judge=False``
    skips the declared-check verdict of an accepted value (for a checkout without reid.checks)."""
    from reid.registry import UserError

    stderr = io.StringIO()
    try:
        with _time_bound(TIME_BOUND_S), contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            if case["class"] == "tool":
                parser = tool_parser(case["tool"])
                parser.parse_args(case["args"])
                result: Any = None
            else:
                from reid.config import load_config

                result = load_config(None, case["args"])
    except _Timeout:
        return "hang", f"over {TIME_BOUND_S} s"
    except SystemExit as exc:
        lines = [line for line in stderr.getvalue().splitlines() if "error:" in line]
        if exc.code != 2 or len(lines) != 1:
            return "multiline", stderr.getvalue()[-300:]
        return ("clear" if _names(lines[0], case["key"]) else "unnamed"), lines[0]
    except UserError as exc:
        message = str(exc)
        if "\n" in message:
            return "multiline", message[:300]
        return ("clear" if _names(message, case["key"]) else "unnamed"), message
    except Exception as exc:  # noqa: BLE001 - the fuzzer reports every other exception
        return "traceback", "".join(traceback.format_exception_only(type(exc), exc)).strip()[:300]
    if case["class"] == "tool":
        return "accepted", ""
    if not judge:
        return "accepted", ""
    return ("accepted", "") if _declared_ok(case, result) else ("silent", f"loaded {case['args'][-1][:120]}")


def sample(cases: list[dict[str, Any]], n: int | None, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` cases drawn with ``seed`` (all when ``n`` is None or larger), every key kept at least once."""
    if n is None or n >= len(cases):
        return cases
    rng = random.Random(seed)
    first: dict[str, dict[str, Any]] = {}
    for case in cases:
        first.setdefault(case["key"] + case.get("tool", ""), case)
    rest = [c for c in cases if all(c is not f for f in first.values())]
    return list(first.values()) + rng.sample(rest, max(0, n - len(first)))


def counts(cases: list[dict[str, Any]], outcomes: list[str]) -> dict[str, dict[str, int]]:
    """{class: {outcome: n}} and {kind: n} of the cases."""
    table: dict[str, dict[str, int]] = {}
    for case, outcome in zip(cases, outcomes):
        for group in (case["class"], "kind: " + case["kind"]):
            row = table.setdefault(group, {})
            row[outcome] = row.get(outcome, 0) + 1
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="dump or replay the input-fuzzer cases")
    parser.add_argument("mode", choices=("dump", "replay", "run"))
    parser.add_argument("file", nargs="?", help="dump: where to write the cases; replay: the cases to run")
    parser.add_argument("--outcomes", help="replay: write the outcome of each case (JSON list) here")
    args = parser.parse_args(argv)
    if args.mode == "dump":
        Path(args.file).write_text(json.dumps(all_cases()))
        return 0
    cases = json.loads(Path(args.file).read_text()) if args.mode == "replay" else all_cases()
    results = [run_case(c, judge=args.mode == "run") for c in cases]
    outcomes = [r[0] for r in results]
    if args.outcomes:
        Path(args.outcomes).write_text(json.dumps(results))
    for group, row in counts(cases, outcomes).items():
        print(f"{group:28s} " + ", ".join(f"{k} {v}" for k, v in sorted(row.items())))
    for case, (outcome, detail) in zip(cases, results):
        if outcome not in PASSES:
            print(f"{outcome}: {case['class']} {' '.join(case['args'])[:150]!r}: {detail[:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
