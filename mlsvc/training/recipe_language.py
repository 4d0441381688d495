"""Amazon ML's recipe language: a recipe's groups, assignments and outputs parsed and checked against a datasource's
attributes into a plan of what to output, and its token transformations (lowercase, no_punct, ngram, osb,
cartesian) made exactly, as a fitted step. docs/recipes.md is the user's guide."""

from __future__ import annotations

import itertools
import json
import math
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.utils.validation import check_is_fitted

from mlsvc.errors import ErrorCode, MlsvcError, did_you_mean
from mlsvc.resources import Attribute

# A checked expression as plain data (tuples, names, numbers), so that a fitted step holding one stores as it is:
# ("var", name, type) | (function, expression[, expression | number]).
Expr = tuple[Any, ...]

TOKENS = "TOKENS"  # what ngram, osb and a cartesian over text make: a bag of tokens, no longer one text
BUILTIN_GROUPS = {
    "ALL_TEXT": "TEXT",
    "ALL_NUMERIC": "NUMERIC",
    "ALL_CATEGORICAL": "CATEGORICAL",
    "ALL_BINARY": "BINARY",
}
ALL_INPUTS = "ALL_INPUTS"
SECTIONS = ("groups", "assignments", "outputs")
NAME_LIMIT = 64  # Amazon ML's limit on group and assignment names
SPECIAL = frozenset(",'\"\t\r\n()\\")  # characters a name must be quoted to hold (Amazon ML's list)
MAX_OUTPUTS = 100_000  # expressions a recipe may expand to (a cartesian of two big groups multiplies)
MAX_DEPTH = 32  # nesting of calls, and chains of groups or assignments naming each other
MAX_TOKENS = 20_000  # vocabulary of one token output, its most frequent tokens
DESCRIBED = {
    "NUMERIC": "a NUMERIC value",
    "BINARY": "a BINARY value",
    "CATEGORICAL": "a CATEGORICAL value",
    "TEXT": "a TEXT value",
    TOKENS: "tokens (made by ngram, osb or cartesian)",
}

# The ColumnTransformer steps an Amazon ML recipe's plan becomes (mlsvc.training.recipe builds them).
NUMERIC_STEP, NORMALIZE_STEP, BINARY_STEP, CATEGORICAL_STEP = "numeric", "normalize", "binary", "categorical"
BINS_STEP, TOKENS_STEP = "quantile_bin_", "output_"


@dataclass(frozen=True)
class _Function:
    takes: frozenset[str]  # the types its value argument(s) may have
    usage: str
    parameter: tuple[str, int, int] | None = None  # an integer argument: its name and range
    pair: bool = False  # two value arguments (cartesian)


_TEXT = frozenset({"TEXT"})
_NUMBER = frozenset({"NUMERIC"})
FUNCTIONS: dict[str, _Function] = {
    "lowercase": _Function(_TEXT, "lowercase(text)"),
    "no_punct": _Function(_TEXT, "no_punct(text)"),
    "ngram": _Function(_TEXT, "ngram(text, n), n from 2 to 10", ("n", 2, 10)),
    "osb": _Function(_TEXT, "osb(text, window), a window from 2 to 10", ("window", 2, 10)),
    "quantile_bin": _Function(_NUMBER, "quantile_bin(numeric, bins), 2 to 1000 bins", ("bins", 2, 1000)),
    "normalize": _Function(_NUMBER, "normalize(numeric)"),
    # BINARY is an mlsvc extension (Amazon ML crosses categorical and text values): a flag is two levels.
    "cartesian": _Function(
        frozenset({"CATEGORICAL", "TEXT", TOKENS, "BINARY"}), "cartesian(a, b) of categorical or text values", pair=True
    ),
}


# --- the exact transformations ---


def words(text: str) -> list[str]:
    """Amazon ML's tokens of a text: split on whitespace, so punctuation stays on the words it touches."""
    return text.split()


def lowercase(text: str) -> str:
    return text.lower()


def no_punct(text: str) -> str:
    """The text with punctuation (and symbols) removed from the start and end of every word; a word of punctuation
    alone goes, and punctuation inside a word stays ("seat-belts!" becomes "seat-belts")."""
    kept = (_strip_punctuation(w) for w in text.split())
    return " ".join(w for w in kept if w)


def _strip_punctuation(word: str) -> str:
    start, end = 0, len(word)
    while start < end and _is_punctuation(word[start]):
        start += 1
    while end > start and _is_punctuation(word[end - 1]):
        end -= 1
    return word[start:end]


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char)[0] in "PS"


def ngrams(tokens: Sequence[str], n: int) -> list[str]:
    """Every run of 1 to ``n`` consecutive tokens, joined by a space."""
    return [" ".join(tokens[i : i + k]) for k in range(1, n + 1) for i in range(len(tokens) - k + 1)]


def osb(tokens: Sequence[str], window: int) -> list[str]:
    """Orthogonal sparse bigrams: each token with each of the next ``window - 1``, joined by one underscore per
    position apart ("the_quick", "the__brown", "the___fox")."""
    n = len(tokens)
    return [tokens[i] + "_" * d + tokens[i + d] for i in range(n) for d in range(1, window) if i + d < n]


def cartesian(left: Sequence[str], right: Sequence[str]) -> list[str]:
    """Every token of one side with every token of the other, joined by an underscore."""
    return [f"{a}_{b}" for a in left for b in right]


def quantile_edges(values: np.ndarray, bins: int) -> tuple[float, np.ndarray]:
    """What quantile_bin learns, as the recipe's direct quantile_bin output learns it (SimpleImputer's median,
    then KBinsDiscretizer's quantile edges, averaged_inverted_cdf, narrow bins merged): the value a missing number
    takes and the inner edges."""
    present = values[~np.isnan(values)]
    fill = float(np.median(present)) if present.size else 0.0
    column = np.where(np.isnan(values), fill, values)
    if column.size == 0 or column.min() == column.max():
        return fill, np.empty(0)
    edges = np.percentile(column, np.linspace(0, 100, bins + 1), method="averaged_inverted_cdf")
    edges = edges[np.ediff1d(edges, to_begin=np.inf) > 1e-8]
    return fill, np.asarray(edges[1:-1], dtype=np.float64)


def bin_level(index: int) -> str:
    return f"bin{index}"


# --- names and rendering ---


def name_text(name: str) -> str:
    """A name as a recipe writes it: bare when it starts with a letter and holds nothing special, else quoted."""
    plain = bool(name) and name[0].isalpha() and name == name.strip() and not (set(name) & SPECIAL)
    if plain and "//" not in name:
        return name
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def render(expr: Expr) -> str:
    """A checked expression as recipe text (the label of what it outputs)."""
    head = expr[0]
    if head == "var":
        return name_text(expr[1])
    if head == "cartesian":
        return f"cartesian({render(expr[1])}, {render(expr[2])})"
    if len(expr) == 3:
        return f"{head}({render(expr[1])}, {expr[2]})"
    return f"{head}({render(expr[1])})"


def type_of(expr: Expr) -> str:
    head = expr[0]
    if head == "var":
        return str(expr[2])
    if head in ("lowercase", "no_punct"):
        return "TEXT"
    if head == "quantile_bin":
        return "CATEGORICAL"
    if head == "normalize":
        return "NUMERIC"
    if head == "cartesian":
        return "CATEGORICAL" if {type_of(expr[1]), type_of(expr[2])} <= {"CATEGORICAL", "BINARY"} else TOKENS
    return TOKENS  # ngram, osb


def columns_of(expr: Expr) -> list[str]:
    """The variables an expression reads, in the order it names them."""
    if expr[0] == "var":
        return [expr[1]]
    found = [c for part in expr[1:] if isinstance(part, tuple) for c in columns_of(part)]
    return list(dict.fromkeys(found))


# --- parsing: recipe text into trees ---


@dataclass(frozen=True)
class _Name:
    text: str
    quoted: bool


@dataclass(frozen=True)
class _Call:
    function: str
    args: tuple[_Name | _Call, ...]


_Node = _Name | _Call


@dataclass(frozen=True)
class _Entry:
    """One expression of the recipe as written: where it is, its text, its tree and its comment."""

    where: str
    source: str
    node: _Node
    comment: str

    def bad(self, problem: str) -> MlsvcError:
        return _bad(self.where, self.source, problem)


def _bad(where: str, source: str, problem: str) -> MlsvcError:
    return MlsvcError(
        ErrorCode.VALIDATION_ERROR, f"recipe {where} '{source}': {problem}", {"where": where, "expression": source}
    )


def _shape(problem: str) -> MlsvcError:
    example = '{"groups": {"G": "group(a, b)"}, "assignments": {"x": "lowercase(title)"}, "outputs": ["ALL_INPUTS"]}'
    return MlsvcError(ErrorCode.VALIDATION_ERROR, f"{problem}; an Amazon ML recipe is like {example}")


Token = tuple[str, str, bool]  # kind ("(", ")", "," or "name"), text, quoted


def _lex(text: str, where: str) -> tuple[list[Token], str]:
    """The tokens of one expression, and the comment after '//'."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
        elif text.startswith("//", i):
            return tokens, text[i + 2 :].strip()
        elif char in "(),":
            tokens.append((char, char, False))
            i += 1
        elif char in "'\"":
            value, i = _quoted(text, i, where)
            tokens.append(("name", value, True))
        elif char == "\\":
            raise _bad(where, text, "a backslash belongs inside a quoted name ('like\\'this')")
        else:
            j = i
            while j < n and text[j] not in SPECIAL and not text.startswith("//", j):
                j += 1
            tokens.append(("name", text[i:j].rstrip(), False))
            i = j
    return tokens, ""


def _quoted(text: str, start: int, where: str) -> tuple[str, int]:
    quote, out, i = text[start], [], start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif char == quote:
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    raise _bad(where, text, f"the name quoted at character {start + 1} has no closing {quote}")


class _Parser:
    """Recursive descent over one expression: NAME | NAME '(' expr (',' expr)* ')'."""

    def __init__(self, text: str, where: str) -> None:
        self.text, self.where = text, where
        self.tokens, self.comment = _lex(text, where)
        self.i = 0

    def entry(self) -> _Entry:
        if not self.tokens:
            raise self._bad("it is empty; write a variable, a group, an assignment or a transformation")
        node = self._node(0)
        if self.i < len(self.tokens):
            raise self._bad(
                f"'{self.tokens[self.i][1]}' follows a complete expression; join expressions by listing each"
            )
        return _Entry(self.where, self.text, node, self.comment)

    def _node(self, depth: int) -> _Node:
        if depth > MAX_DEPTH:
            raise self._bad(f"transformations nest more than {MAX_DEPTH} deep")
        kind, value, quoted = self._next("a name")
        if kind != "name":
            raise self._bad(f"a name is missing before '{value}'")
        if not self.i < len(self.tokens) or self.tokens[self.i][0] != "(":
            return _Name(value, quoted)
        self.i += 1
        args: list[_Node] = []
        while True:
            args.append(self._node(depth + 1))
            kind, separator, _ = self._next(f"',' or ')' to close {value}(")
            if kind == ")":
                return _Call(value, tuple(args))
            if kind != ",":
                raise self._bad(f"',' or ')' should follow an argument of {value}(, not '{separator}'")

    def _next(self, expected: str) -> Token:
        if self.i >= len(self.tokens):
            raise self._bad(f"it ends where {expected} should be")
        self.i += 1
        return self.tokens[self.i - 1]

    def _bad(self, problem: str) -> MlsvcError:
        return _bad(self.where, self.text, problem)


def render_node(node: _Node) -> str:
    """An expression tree as recipe text, as written but spaced and quoted one way."""
    if isinstance(node, _Name):
        return name_text(node.text) if node.quoted or not node.text.isdigit() else node.text
    spec = FUNCTIONS.get(node.function)
    args = [
        a.text if spec and spec.parameter and i == 1 and isinstance(a, _Name) else render_node(a)
        for i, a in enumerate(node.args)
    ]
    return f"{node.function}({', '.join(args)})"


@dataclass(frozen=True)
class _Recipe:
    groups: dict[str, _Entry]
    assignments: dict[str, _Entry]
    outputs: list[_Entry]

    def normalized(self) -> dict[str, Any]:
        """The recipe as given, each expression spaced and quoted one way, its comment kept."""
        return {
            "groups": {name: _written(e) for name, e in self.groups.items()},
            "assignments": {name: _written(e) for name, e in self.assignments.items()},
            "outputs": [_written(e) for e in self.outputs],
        }


def _written(entry: _Entry) -> str:
    text = render_node(entry.node)
    return f"{text} // {entry.comment}" if entry.comment else text


def is_amazon_recipe(recipe: Any) -> bool:
    """Whether a recipe is in Amazon ML's language (it has groups, assignments or outputs)."""
    return isinstance(recipe, Mapping) and any(key in recipe for key in SECTIONS)


def parse_recipe_json(text: str | bytes, what: str = "recipe") -> dict[str, Any]:
    """A recipe sent as a JSON document (Amazon ML's Recipe, or a file at recipe_uri): JSON only, an object."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise MlsvcError(ErrorCode.VALIDATION_ERROR, f"{what} is not UTF-8 text: {exc.reason}") from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MlsvcError(
            ErrorCode.VALIDATION_ERROR, f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise MlsvcError(ErrorCode.VALIDATION_ERROR, f"{what} nests JSON too deeply to be a recipe") from exc
    if not isinstance(value, dict):
        raise _shape(f"{what} is a JSON {type(value).__name__}, not an object")
    return value


def _parse(recipe: Mapping[str, Any]) -> _Recipe:
    unknown = [key for key in recipe if key not in SECTIONS]
    if unknown:
        raise _shape(f"the recipe has unknown sections {unknown}; it takes 'groups', 'assignments' and 'outputs'")
    outputs = recipe.get("outputs")
    if not isinstance(outputs, list) or not outputs:
        raise _shape("the recipe needs 'outputs', a non-empty list of what the model learns from")
    if not all(isinstance(o, str) for o in outputs):
        raise _shape("each of the recipe's 'outputs' is a string such as \"lowercase(title)\"")
    return _Recipe(
        _definitions(recipe, "groups"),
        _definitions(recipe, "assignments"),
        [_Parser(text, f"outputs[{i}]").entry() for i, text in enumerate(outputs)],
    )


def _definitions(recipe: Mapping[str, Any], section: str) -> dict[str, _Entry]:
    given = recipe.get(section) or {}
    if not isinstance(given, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in given.items()):
        raise _shape(f"the recipe's '{section}' maps names to expressions, both strings")
    entries: dict[str, _Entry] = {}
    for key, text in given.items():
        name = _definition_name(key, section)
        if name in entries:
            raise _shape(f"the recipe's '{section}' defines '{name}' twice")
        entries[name] = _Parser(text, f"{section}.{name}").entry()
    return entries


def _definition_name(key: str, section: str) -> str:
    name = key[1:-1] if len(key) >= 2 and key[0] == key[-1] and key[0] in "'\"" else key
    if not 1 <= len(name) <= NAME_LIMIT:
        raise _shape(f"the name '{key}' in '{section}' must be 1 to {NAME_LIMIT} characters")
    return name


# --- checking: trees against the attributes ---


@dataclass(frozen=True)
class TokenOutput:
    """A recipe output made of tokens: its expression, its label (the expression as text) and the columns it reads."""

    expression: Expr
    label: str
    columns: list[str]


@dataclass
class Plan:
    """What a checked recipe outputs, by the step that makes it: numeric columns as they are and normalized, binary
    and categorical columns, quantile bins by their number, and token outputs (text, ngram, osb, cartesian);
    ``recipe`` is the recipe as given, normalized."""

    recipe: dict[str, Any]
    numeric: list[str] = field(default_factory=list)
    normalized: list[str] = field(default_factory=list)
    binary: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    bins: dict[int, list[str]] = field(default_factory=dict)
    tokens: list[TokenOutput] = field(default_factory=list)

    def add(self, expr: Expr) -> None:
        head, kind = expr[0], type_of(expr)
        if head == "var" and kind != "TEXT":
            by_kind = {"NUMERIC": self.numeric, "BINARY": self.binary, "CATEGORICAL": self.categorical}
            by_kind[kind].append(expr[1])
        elif head == "normalize":
            self.normalized.append(expr[1][1])
        elif head == "quantile_bin":
            self.bins.setdefault(int(expr[2]), []).append(expr[1][1])
        else:
            self.tokens.append(TokenOutput(expr, render(expr), columns_of(expr)))


def check_recipe(recipe: Mapping[str, Any], features: Sequence[Attribute]) -> Plan:
    """Parse an Amazon ML recipe and check it against the features (every attribute but the target and the row
    id): every name known, every transformation given what it takes, no output twice. Raises a VALIDATION_ERROR
    that names the expression and what would fix it."""
    parsed = _parse(recipe)
    checker = _Checker(parsed, features)
    plan = Plan(parsed.normalized())
    seen: dict[str, _Entry] = {}
    for entry in parsed.outputs:
        for expr in checker.resolve(entry.node, entry):
            label = render(expr)
            if label in seen:
                first = seen[label]
                by = "it outputs" if first is entry else f"{first.where} '{first.source}' outputs"
                raise entry.bad(f"'{label}' is output twice ({by} it too); output each expression once")
            seen[label] = entry
            plan.add(expr)
            if len(seen) > MAX_OUTPUTS:
                raise entry.bad(f"the recipe makes more than {MAX_OUTPUTS:,} outputs; output fewer combinations")
    return plan


class _Checker:
    """Resolves names (assignments, groups, built-in groups, variables) and applies transformations to them."""

    def __init__(self, recipe: _Recipe, features: Sequence[Attribute]) -> None:
        self.recipe = recipe
        self.types = {a.attributeName: a.attributeType.value for a in features}
        self.order = {a.attributeName: i for i, a in enumerate(features)}
        self._groups: dict[str, list[str]] = {}
        self._assigned: dict[str, list[Expr]] = {}
        self._open: list[str] = []  # the groups and assignments being resolved, to catch a cycle
        self._check_definition_names()

    def _check_definition_names(self) -> None:
        for section, entries in (("groups", self.recipe.groups), ("assignments", self.recipe.assignments)):
            for name, entry in entries.items():
                if name in self.types:
                    raise entry.bad(f"'{name}' is the name of a variable; give the {section[:-1]} another name")
                if name in BUILTIN_GROUPS or name == ALL_INPUTS:
                    raise entry.bad(f"'{name}' is a built-in group; give the {section[:-1]} another name")
        both = set(self.recipe.groups) & set(self.recipe.assignments)
        if both:
            name = sorted(both)[0]
            raise self.recipe.assignments[name].bad(f"'{name}' names a group too; give one of them another name")

    # groups

    def is_group(self, name: str) -> bool:
        return name == ALL_INPUTS or name in BUILTIN_GROUPS or name in self.recipe.groups

    def members(self, name: str) -> list[str]:
        if name == ALL_INPUTS:
            return list(self.order)
        if name in BUILTIN_GROUPS:
            return [n for n in self.order if self.types[n] == BUILTIN_GROUPS[name]]
        if name not in self._groups:
            self._groups[name] = self._define_group(name)
        return self._groups[name]

    def _define_group(self, name: str) -> list[str]:
        entry = self.recipe.groups[name]
        node = entry.node
        if not isinstance(node, _Call) or node.function not in ("group", "group_remove"):
            raise entry.bad("a group is group(var1, var2, …) or group_remove(GROUP, var1, …)")
        with self._opened(name, entry):
            parts = [self._group_part(arg, entry) for arg in node.args]
        if node.function == "group":
            return self._ordered({m for part in parts for m in part})
        first = node.args[0]
        if not (isinstance(first, _Name) and self.is_group(first.text)):
            raise entry.bad(
                f"group_remove takes a group first, then what to remove; '{render_node(first)}' is not a group"
            )
        removed = {m for part in parts[1:] for m in part}
        absent = sorted(removed - set(parts[0]))
        if absent:
            raise entry.bad(f"{absent} are not in {first.text}, so they cannot be removed from it")
        return [m for m in parts[0] if m not in removed]

    def _group_part(self, arg: _Node, entry: _Entry) -> list[str]:
        if isinstance(arg, _Call):
            raise entry.bad(
                f"a group holds variables and groups; '{render_node(arg)}' is a transformation: "
                "apply it to the group in 'assignments' or 'outputs' instead"
            )
        name = arg.text
        if name == ALL_INPUTS:
            raise entry.bad("a group cannot include ALL_INPUTS; output ALL_INPUTS itself, or group the types you want")
        if name in self.types:
            return [name]
        if self.is_group(name):
            return self.members(name)
        if name in self.recipe.assignments:
            raise entry.bad(f"'{name}' is an assignment; a group holds variables and groups")
        raise entry.bad(self._unknown(name))

    def _ordered(self, names: set[str]) -> list[str]:
        return sorted(names, key=self.order.__getitem__)

    # expressions

    def resolve(self, node: _Node, entry: _Entry) -> list[Expr]:
        """The checked expressions a node stands for: one per member where it names a group."""
        if isinstance(node, _Name):
            return self._named(node.text, entry)
        if node.function in ("group", "group_remove"):
            raise entry.bad(f"{node.function}(…) defines a group in 'groups'; name the group here")
        spec = FUNCTIONS.get(node.function)
        if spec is None:
            known = list(FUNCTIONS)
            raise entry.bad(
                f"'{node.function}' is not a transformation{did_you_mean(node.function, known)}; they are {known}"
            )
        arity = 2 if spec.pair or spec.parameter else 1
        if len(node.args) != arity:
            raise entry.bad(f"{node.function} takes {arity} argument{'s' if arity > 1 else ''}: {spec.usage}")
        number = self._number(node, spec, entry) if spec.parameter else None
        given = node.args[: 2 if spec.pair else 1]
        values = [self.resolve(a, entry) for a in given]
        groups = [a.text if isinstance(a, _Name) and self.is_group(a.text) else "" for a in given]
        return [
            self._apply(node.function, spec, combo, groups, number, entry)
            for combo in self._combinations(values, entry)
        ]

    def _named(self, name: str, entry: _Entry) -> list[Expr]:
        if name in self.recipe.assignments:
            if name not in self._assigned:
                assigned = self.recipe.assignments[name]
                with self._opened(name, assigned):
                    self._assigned[name] = self.resolve(assigned.node, assigned)
            return self._assigned[name]
        if self.is_group(name):
            members = self.members(name)
            if not members:
                kind = BUILTIN_GROUPS.get(name)
                why = f"the datasource has no {kind} attributes" if kind else "it has no members"
                raise entry.bad(f"group {name} is empty: {why}")
            return [("var", m, self.types[m]) for m in members]
        if name in self.types:
            return [("var", name, self.types[name])]
        raise entry.bad(self._unknown(name))

    def _unknown(self, name: str) -> str:
        known = [*self.types, *self.recipe.groups, *self.recipe.assignments, *BUILTIN_GROUPS, ALL_INPUTS]
        return (
            f"'{name}' is not a variable, group or assignment{did_you_mean(name, known)}; the variables are the "
            f"datasource's input attributes (not its target or row id): {list(self.types)[:20]}"
            + (" …" if len(self.types) > 20 else "")
        )

    def _number(self, node: _Call, spec: _Function, entry: _Entry) -> int:
        assert spec.parameter is not None
        label, low, high = spec.parameter
        arg = node.args[1]
        text = arg.text if isinstance(arg, _Name) and not arg.quoted else render_node(arg)
        value = int(text) if text.isascii() and text.isdigit() else None
        if value is None or not low <= value <= high:
            hint = ""
            if node.function == "ngram" and value == 1:
                hint = " (1-word tokens are the text's own words: output the text itself)"
            raise entry.bad(
                f"{node.function}'s {label} must be a whole number from {low} to {high}, not '{text}'{hint}"
            )
        return value

    @staticmethod
    def _combinations(values: list[list[Expr]], entry: _Entry) -> list[tuple[Expr, ...]]:
        if len(values) == 1:
            return [(v,) for v in values[0]]
        if len(values[0]) * len(values[1]) > MAX_OUTPUTS:
            raise entry.bad(f"its groups make more than {MAX_OUTPUTS:,} cartesian pairs; cross smaller groups")
        pairs: list[tuple[Expr, ...]] = []
        seen: set[frozenset[Expr]] = set()
        for a, b in itertools.product(values[0], values[1]):
            key = frozenset((a, b))
            if a != b and key not in seen:  # a group crossed with itself: each pair once, nothing with itself
                seen.add(key)
                pairs.append((a, b))
        return pairs

    def _apply(
        self,
        function: str,
        spec: _Function,
        args: tuple[Expr, ...],
        groups: list[str],
        number: int | None,
        entry: _Entry,
    ) -> Expr:
        """``function`` of checked arguments (``groups``: the group each was a member of, if any)."""
        for arg, group in zip(args, groups, strict=True):
            kind = type_of(arg)
            if kind not in spec.takes:
                member = f" (a member of {group})" if group else ""
                raise entry.bad(
                    f"{function} takes {_takes(spec)} ({spec.usage}); {render(arg)}{member} is {DESCRIBED[kind]}"
                    + _hint(function, arg, kind)
                )
        inner = args[0]
        # normalize is affine and increasing: normalizing twice, or before binning by quantiles, changes nothing.
        if function == "normalize" and inner[0] == "normalize":
            return inner
        if function == "quantile_bin" and inner[0] == "normalize":
            inner = inner[1]
        if spec.pair:
            return (function, *args)
        return (function, inner) if number is None else (function, inner, number)

    def _opened(self, name: str, entry: _Entry) -> _Opened:
        return _Opened(self._open, name, entry)


class _Opened:
    """Marks a group or assignment as being resolved while the block runs, refusing cycles and endless chains."""

    def __init__(self, stack: list[str], name: str, entry: _Entry) -> None:
        self.stack, self.name, self.entry = stack, name, entry

    def __enter__(self) -> None:
        if self.name in self.stack:
            cycle = " → ".join([*self.stack[self.stack.index(self.name) :], self.name])
            raise self.entry.bad(f"'{self.name}' is defined in terms of itself ({cycle})")
        if len(self.stack) >= MAX_DEPTH:
            raise self.entry.bad(f"groups and assignments name each other more than {MAX_DEPTH} deep")
        self.stack.append(self.name)

    def __exit__(self, *exc: object) -> None:
        self.stack.pop()


def _takes(spec: _Function) -> str:
    kinds = [k for k in ("TEXT", "CATEGORICAL", "NUMERIC") if k in spec.takes]
    return " or ".join(f"{k} values" for k in kinds)


def _hint(function: str, arg: Expr, kind: str) -> str:
    """What would fix a transformation given a value of the wrong type."""
    shown = render(arg)
    if kind == TOKENS:
        return f" — apply {function} to the text before it becomes tokens, e.g. ngram({function}(title), 2)"
    if kind == "NUMERIC":
        if function == "cartesian":
            return f" — cross its quantile bins instead: quantile_bin({shown}, 10)"
        return f" — a number can be output as it is, normalize({shown}) or quantile_bin({shown}, 10)"
    if kind == "BINARY":
        return f" — a binary value is used as 0/1: output {shown} as it is"
    numeric_function = "NUMERIC" in FUNCTIONS[function].takes
    if kind == "CATEGORICAL":
        if arg[0] == "quantile_bin":
            return " — quantile bins are categories already: output them, or cross them with cartesian"
        declare = "NUMERIC if its values are numbers" if numeric_function else "TEXT in the schema to use its words"
        return f" — output {shown} as it is (one-hot), or declare the attribute {declare}"
    if numeric_function:
        return f" — a text is used as its words: output {shown}, or declare the attribute NUMERIC if it holds numbers"
    return f" — a text is used as its words: output {shown}, or transform it with lowercase, no_punct, ngram or osb"


# --- the fitted step that makes a token output ---


def given_tokens(tokens: list[str]) -> list[str]:
    """The analyzer of a token output's vectorizer: the tokens TokenFeatures made, as they are."""
    return tokens


class TokenFeatures(TransformerMixin, BaseEstimator):
    """One recipe output made of tokens (a text's words, lowercase, no_punct, ngram, osb, cartesian): each row's
    tokens exactly as Amazon ML's transformations make them, weighted by TF-IDF over the ``max_tokens`` most
    frequent tokens seen at fit (quantile bins inside a cartesian are learned at fit too)."""

    def __init__(self, expression: Expr, label: str, max_tokens: int = MAX_TOKENS) -> None:
        self.expression = expression
        self.label = label
        self.max_tokens = max_tokens

    def fit(self, X: pd.DataFrame, y: Any = None) -> TokenFeatures:
        self.bins_ = {render(n): quantile_edges(_column(X, n[1]), int(n[2])) for n in _bin_nodes(self.expression)}
        tokens = self.tokens(X)
        if not any(tokens):
            raise MlsvcError(
                ErrorCode.INVALID_DATA,
                f"recipe output '{self.label}' makes no tokens from the {len(tokens):,} training rows (its values "
                "are missing, or too short for it); output something else",
            )
        self.vectorizer_ = TfidfVectorizer(
            analyzer=given_tokens, lowercase=False, token_pattern=None, sublinear_tf=True, max_features=self.max_tokens
        ).fit(tokens)
        return self

    def transform(self, X: pd.DataFrame) -> sparse.csr_matrix:
        check_is_fitted(self, "vectorizer_")
        return self.vectorizer_.transform(self.tokens(X))

    def tokens(self, X: pd.DataFrame) -> list[list[str]]:
        """Each row's tokens."""
        return _as_tokens(_evaluate(self.expression, X, self.bins_), self.expression)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "vectorizer_")
        return np.asarray([f"{self.label}={t}" for t in self.vectorizer_.get_feature_names_out()], dtype=object)


def _bin_nodes(expr: Expr) -> Iterator[Expr]:
    if expr[0] == "quantile_bin":
        yield expr
    for part in expr[1:]:
        if isinstance(part, tuple):
            yield from _bin_nodes(part)


def _evaluate(expr: Expr, X: pd.DataFrame, bins: Mapping[str, tuple[float, np.ndarray]]) -> Any:
    """An expression's value on every row: texts and categories (None where missing), numbers, or token lists."""
    head = expr[0]
    if head == "var":
        return _column(X, expr)
    if head in ("lowercase", "no_punct"):
        change = lowercase if head == "lowercase" else no_punct
        return [None if v is None else change(v) for v in _evaluate(expr[1], X, bins)]
    if head in ("ngram", "osb"):
        make = ngrams if head == "ngram" else osb
        return [[] if v is None else make(words(v), int(expr[2])) for v in _evaluate(expr[1], X, bins)]
    if head == "quantile_bin":
        fill, inner = bins[render(expr)]
        values = _evaluate(expr[1], X, bins)
        levels = np.searchsorted(inner, np.where(np.isnan(values), fill, values), side="right")
        return [bin_level(i) for i in levels.tolist()]
    if head == "cartesian":
        left = _as_tokens(_evaluate(expr[1], X, bins), expr[1])
        right = _as_tokens(_evaluate(expr[2], X, bins), expr[2])
        return [cartesian(a, b) for a, b in zip(left, right, strict=True)]
    raise ValueError(f"{render(expr)} does not make tokens")


def _column(X: pd.DataFrame, var: Expr) -> Any:
    values = X[var[1]]
    if var[2] == "NUMERIC":
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if var[2] == "BINARY":
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        return [None if math.isnan(v) else str(int(v)) for v in numbers.tolist()]
    return [_present(v) for v in values.tolist()]


def _present(value: Any) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def _as_tokens(values: Any, expr: Expr) -> list[list[str]]:
    """An expression's values as each row's tokens: a text's words, a category (or a bin, or a flag) whole."""
    if expr[0] in ("ngram", "osb", "cartesian"):
        return list(values)
    if type_of(expr) == "TEXT":
        return [[] if v is None else words(v) for v in values]
    return [[] if v is None else [v] for v in values]


# --- feature names of the ColumnTransformer an Amazon ML recipe becomes ---


def output_feature_name(step: str, feature: str) -> str:
    """The ColumnTransformer's name for a feature: the variable, "normalize(x)", "quantile_bin(x, 10)=bin3",
    "plan=basic" or "ngram(title, 2)=the quick" (what each output is, in the recipe's own words)."""
    if step == NORMALIZE_STEP:
        return f"normalize({name_text(feature)})"
    if step.startswith(BINS_STEP):
        column, level = feature.rsplit("_", 1)
        return f"quantile_bin({name_text(column)}, {step.removeprefix(BINS_STEP)})={bin_level(int(float(level)))}"
    return feature


def level_name(feature: str, category: Any) -> str:
    """A one-hot column's name: "plan=basic"."""
    return f"{feature}={category}"


# --- any recipe a model holds, in Amazon ML's language ---

# mlsvc's own transforms: the group of the same treatment, the nearest Amazon ML expression, and what it leaves out.
_AS_AMAZON: dict[str, tuple[str, str, str]] = {
    "impute_median_scale": ("NORMALIZED", "normalize({})", ""),
    "quantile_bins": ("BINNED", "quantile_bin({}, 10)", "mlsvc also marks which values were missing"),
    "impute_most_frequent": ("FLAGS", "{}", ""),
    "one_hot_rare_grouped": ("ONE_HOT", "{}", ""),
    "target_encode": ("TARGET_ENCODED", "{}", "mlsvc target-encodes these; Amazon ML has no target encoding"),
    "tfidf_words_1_2": ("WORDS", "ngram(lowercase(no_punct({})), 2)", "mlsvc weights words and word pairs by TF-IDF"),
}
CROSS_BINS = 5  # how many quantile bins mlsvc's own crosses cut a number into


def as_amazon_recipe(recipe: Mapping[str, Any], features: Sequence[Attribute]) -> dict[str, Any]:
    """Any recipe a model holds, in Amazon ML's language as faithfully as it goes: an Amazon ML recipe as it is
    (normalized); mlsvc's own ({"attributes", "crosses"}) as groups of the same treatment and their outputs, a
    comment saying what Amazon ML's language cannot."""
    if is_amazon_recipe(recipe):
        return check_recipe(recipe, features).recipe
    types = {a.attributeName: a.attributeType.value for a in features}
    by_transform: dict[str, list[str]] = {}
    for a in features:
        transform = (recipe.get("attributes") or {}).get(a.attributeName, "drop")
        if transform != "drop":
            by_transform.setdefault(transform, []).append(a.attributeName)
    groups: dict[str, str] = {}
    outputs: list[str] = []
    for transform, (group, expression, note) in _AS_AMAZON.items():
        members = by_transform.get(transform)
        if members:
            name = _group_for(members, group, types, groups)
            written = expression.format(name)
            outputs.append(f"{written} // {note}" if note else written)
    for a, b in recipe.get("crosses") or []:
        outputs.append(f"cartesian({_cross_side(a, types)}, {_cross_side(b, types)})")
    return {"groups": groups, "assignments": {}, "outputs": outputs}


def _group_for(members: list[str], group: str, types: Mapping[str, str], groups: dict[str, str]) -> str:
    """How the outputs name the members: the variable, the built-in group that has exactly them, or a new group."""
    for builtin, kind in BUILTIN_GROUPS.items():
        if members == [n for n, t in types.items() if t == kind]:
            return builtin
    if len(members) == 1:
        return name_text(members[0])
    name = group
    while name in types or name in groups:
        name += "_GROUP"
    groups[name] = f"group({', '.join(name_text(m) for m in members)})"
    return name


def _cross_side(name: str, types: Mapping[str, str]) -> str:
    return f"quantile_bin({name_text(name)}, {CROSS_BINS})" if types.get(name) == "NUMERIC" else name_text(name)
