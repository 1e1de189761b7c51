"""README's performance figures are copied from committed benchmark results, never written by hand.

Every number in the README's "## Performance" section, in its tables and in its prose, must be printed in one of
the results files the section names (``benchmarks/results/*.md`` or ``.json``), with the same digits, and with the
same unit when the README gives one (``4.20 s``, ``1.03x``, ``78 MB``); a table row with a figure in it must be a row
of one of those files, copied whole; each of those results files must name the commit it measured, and that commit
must be in this checkout's history. A figure edited by hand, a figure kept after its
results were regenerated, or a results file without its commit fails here. No server is started.

The figures a results file offers are its summary and its provenance: its "## Every run" appendix (each round's
time, whose medians the summary gives) is left out, so that README quotes medians and a hand-edited figure is not
excused by a single run's time that happens to equal it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.conftest import REPO
from tests.test_readme_claims import readme_section

# Text in the section that holds digits but is no measured figure. Each entry must occur in the section, so that
# the list cannot outlive what it excuses.
NOT_FIGURES = {
    "ml-32m": "the name of the generator's full scale (also in the results files' names)",
    "ML-32M": "the name of the MovieLens dataset the full scale imitates",
    "--part-size 384MiB": "an example of the uploader's option, not a measurement",
    "100–250 MB compressed": "Snowflake's documented recommendation for the size of files to load",
    "an X-Small has 8": "Snowflake's documented number of threads of an X-Small warehouse, not a measurement",
}
EVERY_RUN = "\n## Every run"
RESULTS_FILE = re.compile(r"benchmarks/results/([\w.-]+\.(?:md|json))")
COMMIT_ID = re.compile(r"`([0-9a-f]{7,40})`")
COMMIT_MEASURED = re.compile(r"Commit measured: `([0-9a-f]{40})`")
# a number (thousands separated by commas, decimals by a point) and the unit right after it, if any
FIGURE = re.compile(r"(?<![\w.])(\d+(?:,\d{3})*(?:\.\d+)?)(x\b| s\b| MB/s| MB\b| GB\b| GiB\b|%)?")


def figures(text: str) -> list[tuple[str, str]]:
    """(number, unit) pairs, unit '' when none follows the number."""
    return [(m[1], (m[2] or "").strip()) for m in FIGURE.finditer(text)]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout


def test_every_readme_performance_figure_is_in_a_results_file_that_names_its_commit() -> None:
    section = readme_section("Performance")

    # the results files the section names: tracked by git, each naming a commit of this checkout's history
    names = sorted(set(RESULTS_FILE.findall(section)))
    assert names, "the Performance section names no benchmarks/results file"
    tracked = set(git("ls-files", "benchmarks/results").split())
    history = set(git("rev-list", "HEAD").split())
    results: dict[str, str] = {}
    commits: dict[str, str] = {}
    for name in names:
        path = Path("benchmarks/results") / name
        assert str(path) in tracked, f"{path} is named by README's Performance section but not committed"
        text = (REPO / path).read_text(encoding="utf-8")
        measured = COMMIT_MEASURED.findall(text) if name.endswith(".md") else re.findall(r'"commit": "(\w+)"', text)
        assert len(set(measured)) == 1, f"{path} does not name the one commit it measured: {measured}"
        assert measured[0] in history, f"{path} measured commit {measured[0]}, which is not in HEAD's history"
        results[name], commits[name] = text, measured[0]

    # commit ids quoted in the section are those of the results files
    for commit in COMMIT_ID.findall(section):
        assert any(c.startswith(commit) for c in commits.values()), (
            f"README's Performance section quotes commit {commit}, which none of {names} measured"
        )
    checked = COMMIT_ID.sub(" ", section)
    for text, why in NOT_FIGURES.items():
        assert text in checked, f"{text!r} ({why}) is excused from the check but no longer in the section"
        checked = checked.replace(text, " ")

    summaries = [text.split(EVERY_RUN)[0] for text in results.values()]
    rows = {line.strip() for text in summaries for line in text.splitlines() if line.startswith("|")}
    copied = [line for line in section.splitlines() if line.startswith("|") and re.search(r"\d", line)]
    not_copied = [line for line in copied if line.strip() not in rows]
    assert not not_copied, f"table rows in README's Performance section that no results file it names has: {not_copied}"

    printed = {pair for text in summaries for pair in figures(text)}
    printed_numbers = {number for number, _ in printed}
    readme = figures(checked)
    assert len(readme) >= 20, f"only {len(readme)} figures found in the Performance section: {readme}"
    missing = [
        f"{number} {unit}".strip()
        for number, unit in readme
        if not ((number, unit) in printed if unit else number in printed_numbers)
    ]
    assert not missing, (
        f"figures in README's Performance section that no results file it names ({', '.join(names)}) prints, "
        f"with that unit: {missing}"
    )
