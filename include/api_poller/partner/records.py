"""Where things are in a response body: the records, the total, the next cursor or link.

A source names places in the parsed JSON body with a small path language, compiled once when the
source file is read (so a malformed path is a parse-time error naming the file and field):

* dotted paths: ``data.items``, ``meta.total``, ``links.next``;
* a JSONPath subset: ``$.data.items``, ``$.items[*]``, ``$['odd key']``, ``$.pages[0].next``;
* ``$`` (or ``$[*]``) for a body that is itself the list of records.

``RecordsPath.extract(body)`` returns the page's records (a list of JSON objects) or raises
``ResponseShapeError`` saying where the path stopped matching. ``ValuePath.find(body)`` returns the
value at a path or ``None`` when absent or null; ``read_total`` turns it into a count and refuses
anything that is not a whole, non-negative number.

Both path types are frozen, hashable and picklable; ``str(path)`` gives back the source's text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from api_poller.core.errors import ResponseShapeError

# A step is a key of an object (str), an index of a list (int), or "every element" (WILDCARD).
WILDCARD = "[*]"
Step = str | int

_BRACKET = re.compile(r"\[(?:\*|-?\d+|'[^']*'|\"[^\"]*\")\]")
_NAME = re.compile(r"[^.\[\]'\"\s]+")


def _parse_steps(text: str) -> tuple[tuple[Step, ...], bool]:
    """Steps of a path and whether it ends with ``[*]``; ValueError says what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("must be a non-empty path such as data.items or $.data.items")
    if text != text.strip():
        raise ValueError(f"{text!r} has leading or trailing spaces")
    rest = text[1:] if text.startswith("$") else "." + text
    steps: list[Step] = []
    wildcard = False
    position = 0
    while position < len(rest):
        if wildcard:
            raise ValueError(f"{text!r}: [*] is only allowed at the end of a path")
        if rest[position] == ".":
            name = _NAME.match(rest, position + 1)
            if not name:
                raise ValueError(f"{text!r}: expected a key name after '.' at position {position}")
            steps.append(name.group())
            position = name.end()
            continue
        bracket = _BRACKET.match(rest, position)
        if not bracket:
            raise ValueError(
                f"{text!r}: unexpected {rest[position]!r}; use dotted keys (data.items) or "
                "$.key, $['key'], $.list[0], a final [*]"
            )
        inner = bracket.group()[1:-1]
        if inner == "*":
            wildcard = True
        elif inner[0] in "'\"":
            steps.append(inner[1:-1])
        else:
            steps.append(int(inner))
        position = bracket.end()
    return tuple(steps), wildcard


def _walk(document: Any, steps: tuple[Step, ...]) -> tuple[bool, Any, str]:
    """Follow the steps: (found, value, why not found)."""
    value = document
    walked = "$"
    for step in steps:
        if isinstance(step, int):
            if not isinstance(value, list):
                return False, None, f"{walked} is {_kind(value)}, not a list"
            if not -len(value) <= step < len(value):
                return False, None, f"{walked} has {len(value)} elements, no [{step}]"
            value = value[step]
            walked += f"[{step}]"
        else:
            if not isinstance(value, Mapping):
                return False, None, f"{walked} is {_kind(value)}, not an object"
            if step not in value:
                keys = ", ".join(sorted(map(str, value))[:10]) or "none"
                return False, None, f"{walked} has no key {step!r} (its keys: {keys})"
            value = value[step]
            walked += f".{step}"
    return True, value, ""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


@dataclass(frozen=True)
class RecordsPath:
    """Where a page's records are: compiled from the source's ``records`` field."""

    text: str
    steps: tuple[Step, ...]

    @classmethod
    def parse(cls, text: str) -> RecordsPath:
        """Compile a records path; ValueError (with the reason) if it is malformed."""
        steps, _ = _parse_steps(text)
        return cls(text=text, steps=steps)

    def __str__(self) -> str:
        return self.text

    def extract(self, document: Any) -> list[dict[str, Any]]:
        """The page's records. A null at the path is an empty page; anything else not a list of
        objects raises ResponseShapeError saying what was found instead."""
        found, value, why = _walk(document, self.steps)
        if not found:
            raise ResponseShapeError(f"records path {self.text!r} matches nothing: {why}")
        if value is None:
            return []
        if not isinstance(value, list):
            raise ResponseShapeError(f"records path {self.text!r} is {_kind(value)}, not a list")
        for index, record in enumerate(value):
            if not isinstance(record, Mapping):
                raise ResponseShapeError(
                    f"records path {self.text!r}: record {index} is {_kind(record)}, not an object"
                )
        return value


@dataclass(frozen=True)
class ValuePath:
    """Where one value is (a total, a cursor, a has_more flag, a next link); no ``[*]``."""

    text: str
    steps: tuple[Step, ...]

    @classmethod
    def parse(cls, text: str) -> ValuePath:
        steps, wildcard = _parse_steps(text)
        if wildcard:
            raise ValueError(f"{text!r}: [*] selects many values; name one value")
        if not steps:
            raise ValueError(f"{text!r} is the whole body; name one value inside it")
        return cls(text=text, steps=steps)

    def __str__(self) -> str:
        return self.text

    def find(self, document: Any) -> Any:
        """The value at the path, or None when it is absent or null."""
        found, value, _ = _walk(document, self.steps)
        return value if found else None

    def locate(self, document: Any) -> tuple[bool, Any]:
        """(whether the path exists, its value): tells an absent key from a null."""
        found, value, _ = _walk(document, self.steps)
        return found, value

    def explain_missing(self, document: Any) -> str:
        """Why ``find`` gave None: for error messages."""
        found, value, why = _walk(document, self.steps)
        return "it is null" if found and value is None else why


def read_total(path: ValuePath, document: Any, *, required: bool = False) -> int | None:
    """A count (records or pages) at ``path``: None when null (the total is unknown), or absent
    unless ``required`` (the first response, where an absent total is likely a wrong path).

    A whole number, or a string of digits (some APIs quote numbers), is accepted; anything else
    (a word, a fraction, a negative number, a boolean) raises ResponseShapeError.
    """
    found, value = path.locate(document)
    if not found and required:
        why = path.explain_missing(document)
        raise ResponseShapeError(f"total path {path.text!r} matches nothing in the first response: {why}")
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ResponseShapeError(
            f"total at {path.text!r} is {value!r} ({_kind(value)}), not a whole non-negative number"
        )
    return value
