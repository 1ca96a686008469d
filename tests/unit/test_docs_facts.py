"""What the docs name exists in the code as they name it: variables and their defaults, make
targets, metrics, command options, files, constants, modules, links between the docs and the alert
runbooks, and the template table of docs/dev/contracts.md.

Each test reads the docs (README.md, CHANGELOG.md, docs/**/*.md) as text and checks one kind of
name against its single source: settings.py, the Makefile, metrics.py, each command's parser, the
file tree, the journeys file. Prose is not checked, only names a reader would copy.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from nudge import metrics
from nudge.catalog import shipped_templates
from nudge.cli import COMMANDS
from nudge.journeys import load_journeys
from nudge.settings import SHIPPED_JOURNEYS, Settings
from nudge.topics import Topics

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted(
    [REPO / "README.md", REPO / "CHANGELOG.md", *(REPO / "docs").rglob("*.md")],
    key=str,
)
CONFIGURATION = REPO / "docs" / "configuration.md"
OPERATIONS = REPO / "docs" / "operations.md"
CONTRACTS = REPO / "docs" / "dev" / "contracts.md"
# Where the variables that are not Nudge's settings are read: the build and the local scripts.
TOOLING = [
    REPO / "Makefile",
    REPO / "setup.py",
    *sorted(path for path in (REPO / "deploy").rglob("*.sh") if path.is_file()),
]
# Backticked `nudge_…` names that are not metrics, with the file that makes each one.
NOT_METRICS = {"nudge_vs_ceiling": REPO / "bench" / "bench_sender.py"}
# Backticked `nudge.…` names that are neither modules nor attributes, with the file naming them.
NOT_MODULES = {"nudge.links.http": REPO / "service" / "nudge" / "links" / "routes.py"}


def doc_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def code_spans(text: str) -> Iterator[str]:
    """Inline `code` and every line of the fenced blocks: where names are written to be copied."""
    for block in re.findall(r"```[^\n]*\n(.*?)```", text, re.S):
        yield from block.splitlines()
    yield from re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))


def relative(path: Path) -> str:
    return str(path.relative_to(REPO))


# Environment variables ------------------------------------------------------------------------


class RecordingEnv(dict[str, str]):
    """An environment that remembers every name `Settings.from_env` asks it for."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        super().__init__(values or {})
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return super().__contains__(key)


def variables_read() -> set[str]:
    env = RecordingEnv()
    Settings.from_env(env)
    return env.asked


def variable_rows(text: str) -> dict[str, str]:
    """`| `VARIABLE` | default | meaning |` rows of a settings table: variable → default cell."""
    rows = re.findall(r"^\|\s*`([A-Z][A-Z0-9_]+)`\s*\|([^|\n]*)\|", text, re.M)
    return {name: cell.strip() for name, cell in rows}


def test_configuration_md_lists_exactly_the_variables_settings_reads() -> None:
    """docs/configuration.md is the list of Nudge's variables: none missing, none extra."""
    documented = set(variable_rows(doc_text(CONFIGURATION)))
    assert documented == variables_read()


def test_every_variable_the_docs_name_is_read_somewhere() -> None:
    """A `NUDGE_*`, `SMTP_*` or `KAFKA_*` name in the docs is a setting or read by the tooling."""
    tooling = "\n".join(path.read_text(encoding="utf-8") for path in TOOLING)
    known = variables_read() | set(
        re.findall(r"\b(?:NUDGE|SMTP|KAFKA)_[A-Z0-9_]*[A-Z0-9]", tooling)
    )
    unknown = set()
    for path in DOCS:
        for name, star in re.findall(r"\b((?:NUDGE|SMTP|KAFKA)_[A-Z0-9_]*)(\*?)", doc_text(path)):
            if star:  # `NUDGE_SENDER_*`: some variable with that prefix
                found = any(known_name.startswith(name) for known_name in known)
            else:
                found = name in known
            if not found:
                unknown.add(f"{relative(path)}: {name}{star}")
    assert not unknown


def documented_defaults() -> Iterator[tuple[str, str, str]]:
    for path in DOCS:
        for name, cell in variable_rows(doc_text(path)).items():
            yield relative(path), name, cell


def without_random_secret(settings: Settings) -> Settings:
    return dataclasses.replace(settings, token_secret=b"", token_secret_random=False)


@pytest.mark.parametrize(("doc", "name", "cell"), list(documented_defaults()))
def test_a_documented_default_is_the_code_s_default(doc: str, name: str, cell: str) -> None:
    """Setting a variable to its documented default changes nothing; no default is left blank."""
    assert cell, f"{doc}: {name} has an empty default cell (write — or what applies)"
    value = re.fullmatch(r"`([^`]+)`", cell) or re.fullmatch(r"(\d+(?:\.\d+)?)", cell)
    if value is None or name not in variables_read():
        return  # a description ("random per process", "the shop name"), or a tooling variable
    explicit = Settings.from_env({name: value.group(1)})
    assert without_random_secret(explicit) == without_random_secret(Settings.from_env({})), (
        f"{doc}: {name} default {cell}"
    )


# Make targets, commands and their options -----------------------------------------------------


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-zA-Z0-9_-]+):", doc_text(REPO / "Makefile"), re.M))


def test_every_make_target_the_docs_name_exists() -> None:
    """`make X` in the docs' code is a target of the Makefile."""
    targets = make_targets()
    missing = {
        f"{relative(path)}: make {target}"
        for path in DOCS
        for span in code_spans(doc_text(path))
        for target in re.findall(r"\bmake ([a-z][a-z0-9-]*)", span)
        if target not in targets
    }
    assert not missing


def command_options() -> dict[str, set[str]]:
    options = {}
    for name, (module, _) in COMMANDS.items():
        parser = argparse.ArgumentParser()
        importlib.import_module(module).add_arguments(parser)
        options[name] = {flag for action in parser._actions for flag in action.option_strings}
    return options


def test_every_option_written_after_a_nudge_command_is_one_of_its_options() -> None:
    """`nudge web --trusted-proxy …`: each option in a command line of the docs is that
    command's own (text after `#` or a pipe belongs to something else)."""
    options = command_options()
    command = re.compile(r"\bnudge (" + "|".join(map(re.escape, COMMANDS)) + r")\b([^#|\n]*)")
    wrong = set()
    for path in DOCS:
        for span in code_spans(doc_text(path)):
            for name, rest in command.findall(span):
                for option in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", rest):
                    if option not in options[name]:
                        wrong.add(f"{relative(path)}: nudge {name} {option}")
    assert not wrong


# Metrics -------------------------------------------------------------------------------------


def exposed_metric_names() -> set[str]:
    """Every name a scrape shows: counters with `_total`, info with `_info`, histogram samples."""
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            (family,) = value.describe()
            suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
            names.add(str(family.name) + suffix)
            if family.type == "histogram":
                names |= {f"{family.name}_{part}" for part in ("bucket", "count", "sum")}
    return names


def metric_names_in(text: str) -> set[str]:
    """`nudge_*` names, with `nudge_x_{a,b}` expanded to `nudge_x_a` and `nudge_x_b`."""
    found = set()
    for stem, options in re.findall(r"\b(nudge_[a-z0-9_]*_)\{([a-z0-9_,]+)\}", text):
        found |= {stem + option for option in options.split(",")}
    text = re.sub(r"\b(nudge_[a-z0-9_]*_)\{[a-z0-9_,]+\}", "", text)
    return found | set(re.findall(r"\bnudge_[a-z0-9_]*[a-z0-9]", text))


def test_every_metric_the_docs_name_is_exposed() -> None:
    """A `nudge_*` name in the docs is a metric of metrics.py, or the start of one (a grep)."""
    exposed = exposed_metric_names()
    for name, maker in NOT_METRICS.items():
        assert name in maker.read_text(encoding="utf-8")
    unknown = {
        f"{relative(path)}: {name}"
        for path in DOCS
        for name in metric_names_in(doc_text(path))
        if name not in exposed
        and name not in NOT_METRICS
        and not any(metric.startswith(name) for metric in exposed)
    }
    assert not unknown


def test_operations_md_lists_every_metric() -> None:
    """docs/operations.md's table has every metric Nudge exposes, by its scraped name."""
    listed = metric_names_in(doc_text(OPERATIONS))
    sampled = {name for name in exposed_metric_names() if not name.endswith(("_count", "_sum"))}
    families = {name.removesuffix("_bucket") for name in sampled}
    assert families - listed == set()


# Files, modules, constants ---------------------------------------------------------------------

PATH = re.compile(r"(?<![\w/.-])((?:service|deploy|tests|bench|chaos|helm|docs)/[\w./*<>-]*[\w*>])")


def test_every_repository_path_the_docs_name_exists() -> None:
    """`service/…`, `deploy/…`, `tests/…` and the like name a file or folder that is there
    (`<name>` and `*` stand for any part; compiled `.so` files are built, not shipped)."""
    missing = set()
    for path in DOCS:
        for named in PATH.findall(doc_text(path)):
            if named.endswith(".so"):
                continue
            pattern = re.sub(r"<[^>]*>", "*", named.rstrip("."))
            if not any(REPO.glob(pattern)) and not (REPO / pattern).exists():
                missing.add(f"{relative(path)}: {named}")
    assert not missing


def modules_by_name() -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for folder in ("service/nudge", "bench", "chaos"):
        for source in (REPO / folder).rglob("*.py"):
            if source.name != "__init__.py":
                found.setdefault(source.stem, []).append(source)
    return found


def defines(source: Path, name: str) -> bool:
    """`name` is assigned, or a function or class, at any level of `source`."""
    pattern = rf"^\s*(?:async\s+def|def|class)\s+{name}\b|^\s*{name}\s*(?::[^=\n]*)?="
    return re.search(pattern, source.read_text(encoding="utf-8"), re.M) is not None


def test_every_module_constant_the_docs_name_is_defined_there() -> None:
    """`state.MAX_VIEWS`, `handler.MAX_STATE_BYTES`: the module defines the constant."""
    modules = modules_by_name()
    wrong = set()
    for path in DOCS:
        for module, name in re.findall(r"`(\w+)\.([A-Z][A-Z0-9_]+)`", doc_text(path)):
            sources = modules.get(module, [])
            if len(sources) == 1 and not defines(sources[0], name):
                wrong.add(f"{relative(path)}: {module}.{name}")
    assert not wrong


def test_names_said_to_be_in_a_file_are_defined_there() -> None:
    """ "(`TIMER_RETRY_FIRST`, `TIMER_RETRY_MAX` in `handler.py`)": that file defines them."""
    sources = [source for found in modules_by_name().values() for source in found]
    wrong = set()
    for path in DOCS:
        for names, file in re.findall(r"((?:`\w+`,?\s*)+)in\s+`([\w/.-]+\.py)`", doc_text(path)):
            matches = [
                s for s in sources if relative(s) == file or relative(s).endswith("/" + file)
            ]
            assert len(matches) == 1, f"{relative(path)}: `{file}` names {len(matches)} files"
            for name in re.findall(r"`(\w+)`", names):
                if not defines(matches[0], name):
                    wrong.add(f"{relative(path)}: {name} in {file}")
    assert not wrong


def resolves(dotted: str) -> bool:
    """`nudge.sender.sink.SmtpSink`, `chaos.faults`: a module, then attributes of it."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def test_every_nudge_and_chaos_name_the_docs_give_can_be_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`nudge.testkafka.read_topic`, `chaos.stack.Stack`: the module and the name in it exist
    (topic names such as `nudge.deliveries` aside)."""
    monkeypatch.setattr(sys, "path", [str(REPO), *sys.path])  # chaos/ is run from the root
    topics = Topics()
    topic_names = {topics.events, topics.send_commands, topics.deliveries}
    for name, source in NOT_MODULES.items():
        assert name in source.read_text(encoding="utf-8")
    wrong = set()
    for path in DOCS:
        for span in re.findall(r"`((?:nudge|chaos)(?:\.\w+)+)(?:\([^`]*\))?`", doc_text(path)):
            if span in topic_names or span in NOT_MODULES:
                continue
            if not resolves(span):
                wrong.add(f"{relative(path)}: {span}")
    assert not wrong


# Links between the docs, and the alerts' runbooks ---------------------------------------------


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    without_code = re.sub(r"```.*?```", "", doc_text(path), flags=re.S)
    return {anchor(heading) for heading in re.findall(r"^#+ (.*)$", without_code, re.M)}


def test_every_relative_link_in_the_docs_resolves() -> None:
    """`[text](other.md#section)`: the file exists and, for a doc, has that heading."""
    broken = set()
    for path in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc_text(path)):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, fragment = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            missing_section = (
                linked.exists() and bool(fragment) and linked.suffix == ".md"
            ) and fragment not in anchors(linked)
            if not linked.exists() or missing_section:
                broken.add(f"{relative(path)}: {target}")
    assert not broken


def test_every_alert_s_runbook_is_a_section_of_operations_md() -> None:
    """Each alert's `runbook: docs/operations.md#anchor` lands on that alert's section."""
    rules = yaml.safe_load(doc_text(REPO / "deploy" / "prometheus" / "alerts.yml"))
    sections = anchors(OPERATIONS)
    wrong = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            file, _, fragment = rule["annotations"]["runbook"].partition("#")
            if file != "docs/operations.md" or fragment not in sections:
                wrong.add(f"{rule['alert']}: {rule['annotations']['runbook']}")
    assert not wrong


# Templates ------------------------------------------------------------------------------------


def contract_rows() -> list[tuple[str, list[str], list[str], set[str]]]:
    """docs/dev/contracts.md's table: (journey, steps, templates, variables) per row."""
    rows = []
    table = re.findall(
        r"^\| (\w+) / ([\w, ]+) \| ((?:`\w+`(?:, )?)+) \| (.*) \|$", doc_text(CONTRACTS), re.M
    )
    for journey, steps, templates, variables in table:
        plain = re.sub(r"\[[^\]]*\]|\([^)]*\)", "", variables)
        names = {part.strip() for part in plain.split(",") if part.strip() not in ("", "—")}
        rows.append(
            (
                journey,
                [s.strip() for s in steps.split(",")],
                re.findall(r"`(\w+)`", templates),
                names,
            )
        )
    return rows


def test_contracts_md_lists_each_shipped_template_with_its_journey_step() -> None:
    """Every shipped template is in the table once, beside the shipped journey step that sends
    it (the variables of each row are pinned by tests/unit/journeys/test_variables.py)."""
    shipped = load_journeys(SHIPPED_JOURNEYS)
    rows = contract_rows()
    listed = [template for _, _, templates, _ in rows for template in templates]
    assert sorted(listed) == sorted(shipped_templates())
    for journey, steps, templates, _ in rows:
        sends = {step.name: step.template for step in shipped.journey(journey).steps}
        assert [sends[step] for step in steps] == templates, journey


def test_contracts_md_variables_are_the_ones_the_engine_gives() -> None:
    """The variables column is what test_variables.py checks the engine against."""
    from journeys.test_variables import CONTRACT  # tests/unit/journeys, the engine's side

    documented = {
        template: variables
        for _, _, templates, variables in contract_rows()
        for template in templates
    }
    assert documented == CONTRACT
