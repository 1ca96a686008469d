"""YAML with line numbers, and a collector of problems that each name file, line and field.

`load_yaml` returns plain dicts and lists whose mappings remember the line of every key
(`Node.line_of`), so the loader can say `journeys.yaml:42: journeys.cart.steps[0].wait.delay`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import yaml

from nudge.errors import ConfigError


class LineDict(dict[Any, Any]):
    """A mapping from a YAML file that knows where it and each of its keys were written."""

    line: int = 0
    key_lines: dict[Any, int]
    # (key, line, line of its first occurrence) for each key written again in this mapping
    repeated: tuple[tuple[Any, int, int], ...] = ()

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    # Keys written in this mapping itself, not merged in by `<<: *anchor`: only a key written
    # twice here is a mistake (overriding a merged key is what a merge is for).
    own = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    own_lines: dict[Any, int] = {}
    repeated: list[tuple[Any, int, int]] = []
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if id(key_node) in own:
            if key in own_lines:
                repeated.append((key, line, own_lines[key]))
            else:
                own_lines[key] = line
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = line
    if repeated:
        result.repeated = tuple(repeated)
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


# The `field` of a problem with the file as a whole: it cannot be read.
UNREADABLE: Final = "(file)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One thing wrong with a journeys file, where it is, and how to fix it."""

    file: str
    line: int
    field: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = "" if self.field == UNREADABLE else f" {self.field}:"
        text = f"{where}:{field} {self.message}"
        return f"{text}\n    hint: {self.hint}" if self.hint else text


class JourneysFileError(ConfigError):
    """A journeys file that cannot be used; `problems` lists every finding with file and line."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class Problems:
    """Collects problems so that one run of `nudge validate` reports all of them."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[Problem] = []

    def add(self, line: int, field: str, message: str, hint: str = "") -> None:
        self.items.append(
            Problem(file=self.file, line=line, field=field, message=message, hint=hint)
        )

    def raise_if_any(self) -> None:
        if self.items:
            raise JourneysFileError(self.items)


def report_repeated_keys(data: Any, problems: Problems) -> None:
    """Note every key written twice in one mapping: YAML silently keeps the last, so a pasted
    journey whose name was left unchanged would replace the first one."""
    seen: set[int] = set()  # aliases can make a node appear twice (or inside itself)

    def walk(node: Any, where: str) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, LineDict):
            for key, line, first in node.repeated:
                problems.add(
                    line,
                    f"{where}.{key}" if where else str(key),
                    f"written twice in one mapping (first on line {first}); only this one counts",
                    "rename one of them (a pasted block?) or delete it",
                )
            for key, value in node.items():
                walk(value, f"{where}.{key}" if where else str(key))
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{where}[{index}]")

    walk(data, "")


def load_yaml(text: str, file: str) -> Any:
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        line = mark.line + 1 if mark is not None else 0
        raise JourneysFileError(
            [
                Problem(
                    file=file,
                    line=line,
                    field="(syntax)",
                    message=str(err.problem or err),
                    hint="check indentation and quoting near this line",
                )
            ]
        ) from err
    except yaml.YAMLError as err:
        raise JourneysFileError(
            [Problem(file=file, line=0, field="(syntax)", message=str(err))]
        ) from err


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """`did you mean 'x'?` for the closest choice, or the list of choices when none is close."""
    options = sorted(choices)
    close = difflib.get_close_matches(value, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "choose one of: " + ", ".join(options)
