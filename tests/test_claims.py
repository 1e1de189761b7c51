"""docs/claims.md: every promise of README.md with the tests that prove it, and tests/mutation/mutations.toml, the
deliberate breaks that `make mutation` applies to show those tests catch them.

Fast and without servers: the claims table is well formed and follows the README's sections; every test it names
exists (found with ``ast`` in its file: a module-level ``def``/``async def test_...`` or ``Class::method``; a
``[param]`` suffix is ignored); every claim is broken by at least one mutation and every claim a mutation names is
in the table; every mutation's ``find`` text occurs exactly once in its file, its ``replace`` differs, and the tests
it names exist.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tests.conftest import REPO
from tests.mutation import run

CLAIMS = REPO / "docs" / "claims.md"
MUTATIONS = REPO / "tests" / "mutation" / "mutations.toml"
README = REPO / "README.md"

HEADER = ["id", "README section", "promise", "proven by"]
CLAIM_ID = re.compile(r"C\d{2,3}")


# -- test node ids -----------------------------------------------------------------------------------------------------


@cache
def _definitions(path: Path) -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """The module-level functions of a test file, and the methods of each of its classes."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    functions = frozenset(node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef))
    classes = {
        node.name: frozenset(
            item.name for item in node.body if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
        )
        for node in tree.body
        if isinstance(node, ast.ClassDef)
    }
    return functions, classes


def missing_test(node_id: str) -> str | None:
    """Why the pytest node id ``tests/x.py::test_y`` (or ``tests/x.py::Class::test_y``, with an optional ``[param]``)
    names no test, or None when it names one."""
    path, sep, name = node_id.partition("::")
    if not sep or not path.startswith("tests/") or not path.endswith(".py"):
        return f"{node_id!r} is not a test node id (tests/<file>.py::<test>)"
    file = REPO / path
    if not file.is_file():
        return f"{path} does not exist"
    name = re.sub(r"\[.*\]$", "", name)
    functions, classes = _definitions(file)
    parts = name.split("::")
    if len(parts) == 1:
        if not parts[0].startswith("test"):
            return f"{parts[0]} in {path} is not a test (its name must start with test)"
        if parts[0] not in functions:
            return f"{path} has no test function {parts[0]}"
        return None
    if len(parts) == 2:
        cls, method = parts
        if cls not in classes:
            return f"{path} has no class {cls}"
        if not method.startswith("test") or method not in classes[cls]:
            return f"{path}::{cls} has no test method {method}"
        return None
    return f"{node_id!r} has too many parts"


# -- docs/claims.md ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    id: str
    section: str
    promise: str
    tests: tuple[str, ...]
    line: int


def _cells(line: str) -> list[str]:
    """The cells of a markdown table row (``\\|`` is a pipe inside a cell)."""
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", inner)]


def claims() -> list[Claim]:
    """The rows of the claims table, in order."""
    lines = CLAIMS.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("|") and _cells(line) == HEADER]
    assert len(starts) == 1, f"{CLAIMS.relative_to(REPO)} must have one table with the columns {' | '.join(HEADER)}"
    start = starts[0]
    assert set(_cells(lines[start + 1])) <= {"---", ":---", "---:", ":---:"}, "the header must be followed by ---"
    rows = []
    for number, line in enumerate(lines[start + 2 :], start=start + 3):
        if not line.startswith("|"):
            break
        cells = _cells(line)
        assert len(cells) == 4, f"docs/claims.md line {number}: {len(cells)} cells, expected 4: {line[:120]}"
        id_, section, promise, proof = cells
        tests = tuple(re.findall(r"`([^`]+)`", proof))
        leftover = re.sub(r"`[^`]+`", "", proof).replace("<br>", "").replace(",", "").strip()
        assert not leftover, (
            f"docs/claims.md line {number}: only test ids in backticks in 'proven by', not {leftover!r}"
        )
        rows.append(Claim(id_, section, promise, tests, number))
    return rows


def readme_sections() -> list[str]:
    """The README's `## ` sections, as the claims table names them (without backticks)."""
    return [
        line.removeprefix("## ").replace("`", "").strip()
        for line in README.read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    ]


def test_the_claims_table_follows_the_readme_and_names_tests_in_every_row() -> None:
    rows = claims()
    assert rows, "docs/claims.md has no claims"
    bad_ids = [f"line {c.line}: {c.id!r}" for c in rows if not CLAIM_ID.fullmatch(c.id)]
    assert not bad_ids, f"claim ids are C01, C02, ...: {bad_ids}"
    numbers = [int(c.id[1:]) for c in rows]
    assert numbers == list(range(1, len(rows) + 1)), "claim ids must run C01, C02, ... without gaps or repeats"
    assert not [c.id for c in rows if not c.promise], "every claim says what it promises"
    assert not [c.id for c in rows if not c.tests], "every claim names at least one test"

    sections = readme_sections()
    unknown = [f"{c.id}: {c.section!r}" for c in rows if c.section not in sections]
    assert not unknown, f"claims in no `## ` section of README.md: {unknown}"
    order = [sections.index(c.section) for c in rows]
    assert order == sorted(order), "claims must follow the README's order of sections"
    without = [s for s in sections if s not in {c.section for c in rows}]
    assert not without, f"README sections with no claim in docs/claims.md: {without}"


def test_every_test_a_claim_names_exists() -> None:
    missing = [f"{c.id}: {reason}" for c in claims() for t in c.tests if (reason := missing_test(t))]
    assert not missing, "claims name tests that do not exist:\n" + "\n".join(missing)


# -- tests/mutation/mutations.toml ---------------------------------------------------------------------------------------


def mutations() -> list[run.Mutation]:
    """The list `make mutation` reads, read and checked as it reads it (fields, ids, claim ids, find != replace)."""
    try:
        return run.load(MUTATIONS)
    except run.Invalid as e:
        raise AssertionError(str(e)) from None


def test_every_claim_is_broken_by_a_mutation_and_every_mutation_names_real_claims() -> None:
    table = {c.id for c in claims()}
    problems = [f"mutation {m.id}: claim {c} is not in docs/claims.md" for m in mutations() for c in m.claims
                if c not in table]  # fmt: skip
    broken = {c for m in mutations() for c in m.claims}
    problems += [f"claim {c} is broken by no mutation" for c in sorted(table - broken, key=lambda c: int(c[1:]))]
    assert not problems, "\n".join(problems)


def test_every_mutation_applies_once_changes_the_code_and_names_existing_tests() -> None:
    listed = mutations()
    try:
        run.check_applicable(listed, REPO)  # its find text occurs exactly once in its file
    except run.Invalid as e:
        raise AssertionError(str(e)) from None
    problems = [f"mutation {m.id}: {reason}" for m in listed for t in m.tests if (reason := missing_test(t))]
    assert not problems, "\n".join(problems)
