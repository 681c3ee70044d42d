"""Value checks by meaning, declared where a value is declared (issue 23, item 4): ONE set of check
types for the config schema (``reid.config.VALUE_CHECKS``), component keywords (a signature's
``typing.Annotated[int, Range(1)]``) and tool arguments (``reid.cli``'s argparse types).

A check has ``ok(value) -> bool``, ``expects(default) -> str`` (``"an integer >= 1"``) and
``hint(value) -> str`` (a suffix such as ``"; did you mean 'adam'?"``). Every number check refuses
NaN and the infinities: no key of reid takes a non-finite number. This module imports nothing of
reid but the registry's error types, so every layer may declare checks with it.
"""
from __future__ import annotations

import ast
import inspect
import math
import re
import sys
import typing
from types import UnionType
from typing import Annotated, Any

from .suggest import closest

__all__ = ["Range", "Choice", "Pattern", "Items", "Values", "Flag", "Strings", "Nullable", "Text",
           "Dim", "Count", "Seed", "Stride", "Prob", "Rate", "Fraction", "NonNegative", "Positive", "Size",
           "Labels", "DEVICE", "FINITE", "is_number", "declared_check", "keyword_error", "keyword_problem",
           "expected_types", "literal_choices", "namespace_of", "type_error"]


def _num(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def is_number(value: Any) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Range:
    """Finite numbers in ``[lo, hi]`` (an open end excluded; ``None``: unbounded)."""

    def __init__(self, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                 hi_open: bool = False):
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open

    def ok(self, value: Any) -> bool:
        if not is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)

    def bound(self) -> str:
        if self.lo is None and self.hi is None:
            return "(finite)"
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        if self.lo is None:
            return f"{'<' if self.hi_open else '<='} {_num(self.hi)}"
        return (f"in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}"
                f"{')' if self.hi_open else ']'}")

    def expects(self, default: Any = None) -> str:
        kind = "an integer" if isinstance(default, int) and not isinstance(default, bool) else "a number"
        if self.lo is None and self.hi is None:
            return f"a finite {kind.split()[-1]}"
        return f"{kind} {self.bound()}"

    def hint(self, value: Any) -> str:
        bounded = self.lo is not None or self.hi is not None
        return " (not a finite number)" if bounded and isinstance(value, float) and not math.isfinite(value) else ""


class Choice:
    """One of a fixed set of values (strings; ``types`` widens the accepted YAML types). The same
    check applies to a component keyword annotated ``Literal[...]``."""

    def __init__(self, *values: Any, types: tuple[type, ...] | None = None, text: str = "",
                 aliases: dict[str, str] | None = None):
        self.values, self.types, self.text, self.aliases = values, types, text, aliases or {}

    def ok(self, value: Any) -> bool:
        return any(value == v and type(value) is type(v) for v in self.values)

    def expects(self, default: Any = None) -> str:
        return self.text or "one of " + ", ".join(
            str(v).lower() if isinstance(v, bool) else str(v) for v in self.values)

    def hint(self, value: Any) -> str:
        best = self.aliases.get(str(value).lower()) or closest(
            str(value), [str(v) for v in self.values if isinstance(v, str)])
        return f"; did you mean '{best}'?" if best else ""


class Pattern(Choice):
    """A string matching ``regex`` (``values``: the suggestions for a near miss)."""

    def __init__(self, regex: str, *values: str, text: str, aliases: dict[str, str] | None = None):
        super().__init__(*values, text=text, aliases=aliases)
        self.regex = re.compile(regex)

    def ok(self, value: Any) -> bool:
        return isinstance(value, str) and self.regex.fullmatch(value) is not None


class Text(Pattern):
    """Any string (``nonempty``: with a non-space character)."""

    def __init__(self, nonempty: bool = False, text: str = ""):
        super().__init__(r"\s*\S.*" if nonempty else r"(?s).*",
                         text=text or ("a non-empty string" if nonempty else "a string"))

    def ok(self, value: Any) -> bool:
        return isinstance(value, str) and self.regex.fullmatch(value) is not None


class Flag(Choice):
    """``true`` or ``false``."""

    def __init__(self) -> None:
        super().__init__(True, False, text="true or false")


class Items:
    """A list of ``length`` (None: any) numbers of type ``kind``, each within ``each``;
    ``ordered``: in increasing (non-decreasing) order."""

    def __init__(self, length: int | None, kind: type, each: Range, *, ordered: bool = False,
                 example: str = ""):
        self.length, self.kind, self.each, self.ordered, self.example = length, kind, each, ordered, example

    def _is_kind(self, x: Any) -> bool:
        kinds = (int, float) if self.kind is float else (self.kind,)
        return isinstance(x, kinds) and not isinstance(x, bool)

    def ok(self, value: Any) -> bool:
        if not isinstance(value, list) or (self.length is not None and len(value) != self.length):
            return False
        if not all(self._is_kind(x) and self.each.ok(x) for x in value):
            return False
        return not self.ordered or all(a <= b for a, b in zip(value, value[1:]))

    def expects(self, default: Any = None) -> str:
        count = "" if self.length is None else f"{self.length} "
        kind = "integers" if self.kind is int else "numbers"
        text = f"a list of {count}{kind} {self.each.bound()}"
        text += " in increasing order" if self.ordered else ""
        return text + (f", e.g. {self.example}" if self.example else "")

    def hint(self, value: Any) -> str:
        return ""


class Values(Items):
    """A mapping from strings to numbers within ``each``."""

    def __init__(self, each: Range):
        super().__init__(None, float, each)

    def ok(self, value: Any) -> bool:
        return (isinstance(value, dict) and all(isinstance(k, str) for k in value)
                and super().ok(list(value.values())))

    def expects(self, default: Any = None) -> str:
        return f"a mapping to numbers {self.each.bound()}"


class Strings:
    """A list of non-empty strings."""

    def ok(self, value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(x, str) and x.strip() for x in value)

    def expects(self, default: Any = None) -> str:
        return "a list of non-empty strings"

    def hint(self, value: Any) -> str:
        return ""


class Nullable:
    """``null`` or a value passing ``check``."""

    def __init__(self, check: Any):
        self.check = check

    def ok(self, value: Any) -> bool:
        return value is None or self.check.ok(value)

    def expects(self, default: Any = None) -> str:
        return f"{self.check.expects(default)} or null"

    def hint(self, value: Any) -> str:
        return self.check.hint(value)


Check = typing.Union[Range, Choice, Items, Strings, Nullable]


#: Keyword types with their range, for component signatures (``dim: Dim = 1024``).
Dim = Annotated[int, Range(1)]  # a width, a count of parts or stripes, a reduction ratio: >= 1
Count = Annotated[int, Range(0)]  # a count that may be 0
Seed = Annotated[int, Range(0, 2**32 - 1)]
Stride = Annotated[int, Range(1, 2)]  # a backbone stage's stride
Prob = Annotated[float, Range(0, 1)]  # a probability or a threshold in [0, 1]
Rate = Annotated[float, Range(0, 1, hi_open=True)]  # a dropout rate or label-smoothing epsilon in [0, 1)
Fraction = Annotated[float, Range(0, 1, lo_open=True)]  # a share of a side in (0, 1]
NonNegative = Annotated[float, Range(0)]  # a margin, a weight, a slope
Positive = Annotated[float, Range(0, lo_open=True)]  # an epsilon, a GeM power
Size = Annotated[list | None, Nullable(Items(2, int, Range(1), example="[384, 128] as [height, width]"))]
Labels = Annotated[list, Items(None, int, Range(0))]
#: A torch device (the config's ``device`` and the tools' ``--device``).
DEVICE = Pattern(r"auto|cpu|cuda(:[0-9]+)?", "auto", "cpu", "cuda", "cuda:0",
                 text="auto, cpu, cuda or cuda:N", aliases={"gpu": "cuda", "cuda:": "cuda:0"})


def declared_check(annotation: Any, namespace: dict[str, Any]) -> tuple[Any, Any]:
    """``(base annotation, check or None)`` of a keyword annotated ``Annotated[T, CHECK]`` or an
    alias of one (``Dim`` above; a string under ``from __future__ import annotations`` is evaluated
    in ``namespace``, the defining module's globals); others come back unchanged with no check."""
    resolved = annotation
    if isinstance(annotation, str) and annotation.strip().isidentifier():
        resolved = namespace.get(annotation.strip(), annotation)
    elif isinstance(annotation, str) and "Annotated[" in annotation:
        try:
            resolved = eval(annotation, dict(namespace))  # noqa: S307 - reid's own source annotations
        except Exception as exc:  # a broken declaration is a bug of reid, not of the user's config
            raise TypeError(f"cannot evaluate the annotation {annotation!r}: {exc}") from exc
    if typing.get_origin(resolved) is typing.Annotated:
        base, *extras = typing.get_args(resolved)
        checks = [x for x in extras if hasattr(x, "ok") and hasattr(x, "expects")]
        return base, (checks[0] if checks else None)
    return annotation, None


def keyword_error(key: str, value: Any, check: Any, default: Any = None) -> str | None:
    """The message for ``value`` of ``key`` failing ``check`` (None when it passes)."""
    if check is None or check.ok(value):
        return None
    return f"key '{key}' expects {check.expects(default)}, got {value!r}{check.hint(value)}"


_TYPE_NAMES = {
    "int": int, "float": float, "bool": bool, "str": str, "list": list, "tuple": list,
    "dict": dict, "None": type(None), "Sequence": list,
}


def expected_types(default: Any, annotation: Any) -> tuple[type, ...] | None:
    """Accepted YAML types for a value, from its default or (simple) annotation; None = any."""
    if default is not None and default is not inspect.Parameter.empty:
        if isinstance(default, bool):
            return (bool,)
        if isinstance(default, int):
            return (int,)
        if isinstance(default, float):
            return (float, int)
        if isinstance(default, str):
            return (str,)
        if isinstance(default, (list, tuple)):
            return (list,)
        if isinstance(default, dict):
            return (dict,)
        return None
    if isinstance(annotation, str):
        types: list[type] = []
        for part in annotation.split("|"):
            base = part.strip().split("[", 1)[0].split(".")[-1]
            if base not in _TYPE_NAMES:
                return None
            types.append(_TYPE_NAMES[base])
        if float in types:
            types.append(int)
        return tuple(types)
    if annotation in (int, float, bool, str, list, dict):
        return (annotation, int) if annotation is float else (annotation,)
    if typing.get_origin(annotation) in (list, dict):
        return (typing.get_origin(annotation),)
    if typing.get_origin(annotation) in (typing.Union, UnionType):
        parts = [expected_types(None, a) if a is not type(None) else (type(None),)
                 for a in typing.get_args(annotation)]
        return None if any(p is None for p in parts) else tuple(t for p in parts for t in p)
    return None


_LITERAL = re.compile(r"^\s*(?:typing\.)?Literal\[(.*)\]\s*$", re.S)


def literal_choices(annotation: Any, namespace: dict[str, Any] | None = None) -> tuple[Any, ...] | None:
    """The values of a ``Literal[...]`` annotation (a string under ``from __future__ import
    annotations``, the typing object, or the name of a module-level alias such as ``Neck =
    Literal["bnneck", "none"]`` looked up in ``namespace``), else None: a component keyword
    annotated so is one of a fixed set of values, checked when the config loads."""
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    if isinstance(annotation, str) and namespace is not None and annotation.strip().isidentifier():
        alias = namespace.get(annotation.strip())
        if typing.get_origin(alias) is typing.Literal:
            return typing.get_args(alias)
    match = _LITERAL.match(annotation) if isinstance(annotation, str) else None
    if match is None:
        return None
    try:
        values = ast.literal_eval(f"({match.group(1)},)")
    except (ValueError, SyntaxError):
        return None
    return tuple(values)


def namespace_of(component: Any) -> dict[str, Any]:
    """The globals of the module defining ``component`` (where its annotations' names live)."""
    module = sys.modules.get(getattr(component, "__module__", ""), None)
    return vars(module) if module is not None else {}

FINITE = Range()  # the check of a float keyword declared without one


def type_error(key: str, value: Any, types: tuple[type, ...] | None, default: Any = None) -> str | None:
    """``key 'K' expects int, got str 'ten'`` when ``value`` is not one of ``types`` (None: any;
    ``None`` passes where the default is None or ``types`` allow it)."""
    if types is None or (value is None and (default is None or type(None) in types)):
        return None
    if isinstance(value, types) and not (isinstance(value, bool) and bool not in types):
        return None
    names = " or ".join(sorted({t.__name__ for t in types if t is not type(None)}))
    return f"key '{key}' expects {names}, got {type(value).__name__} {value!r}"


def keyword_problem(key: str, value: Any, annotation: Any, default: Any, namespace: dict[str, Any]) -> str | None:
    """The one check of a component keyword's value, from its declaration: a ``Literal`` choice,
    else its type (from the default or the annotation) and its declared range (``Annotated``;
    a float without one must be finite). ``default``: None where the parameter has none.
    Returns the message (``key 'K' expects ...``) or None. reid.config and Registry.check_kwargs
    both call it."""
    base, check = declared_check(annotation, namespace)
    choices = literal_choices(base, namespace)
    if choices is not None:
        check = Choice(*choices)
    else:
        problem = type_error(key, value, expected_types(default, base), default)
        if problem:
            return problem
        if check is None and isinstance(value, float):
            check = FINITE
    if value is None and default is None:
        return None
    return keyword_error(key, value, check, default)
