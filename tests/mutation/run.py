"""``make mutation``: break the code on purpose, one way at a time, and check that the tests catch each break.

tests/mutation/mutations.toml lists the breaks (``[[mutation]]``: id, claims, file, find, replace, tests, why). For
each one the runner applies ``find`` -> ``replace`` (``find`` must occur exactly once in ``file``) in a scratch copy
of the working tree and runs its ``tests`` there with the repository's .venv python, the copy first on PYTHONPATH,
so the copy's netflix_elt, uploader, snowflake/emulator, snowflake/procedures, migrations, dbt project, DAG and
tests are the ones that run (the emulator a test starts and the procedure it deploys included). A break is

- killed: pytest exits 1 with one of the listed tests failed (or errored in its setup or teardown; a server that
  "did not start" in the setup, or found its port taken, counts only if it happens again when run once more);
- survived: pytest exits 0: the listed tests pass on the broken code;
- error: anything else (a collection error, a usage error, a timeout): the break proves nothing either way.

A baseline run of every listed test on the unbroken copy (one pytest run per test module) must pass with none skipped:
a test that fails or skips without a break cannot show that it catches one. The baseline's modules and the breaks
share one queue, longest first, so that the workers finish together; if a module's baseline fails, no kill counts.
The run exits 1 if the baseline failed or a break survived or errored.

Tests that deploy the migrations take them from a snapshot of an earlier deploy of the same code when there is one
(tests/snapshots.py; the workers share one folder of snapshots): only a break that changes what the
versioned scripts read applies them all again; a break in a procedure is deployed by schemachange as on any deploy.
A few module fixtures that build a whole warehouse (test_report, test_certify, test_docs, the loads of test_dbt and
test_fidelity_dbt) are kept the same way, under a key over every file but those their build does not read or does
again after a restore (report.py, the certification's checks, docs.py, the dbt project).

    .venv/bin/python tests/mutation/run.py [--quick] [--only ID ...] [--workers N] [--list] [--no-baseline] [--timeout S]

Every mutation runs (the whole list covers every row of docs/claims.md); --quick leaves out those marked
``slow = true`` (tests that run Airflow, a dbt build or the report: a minute or more each), for a quicker look.

Each worker has its own copy (made once; the broken file is restored after each break; a git repository sharing the
working tree's history and index, for the tests that read them) and its own pytest base temporary directory, where
the tests keep their stacks' state. The tests start their servers on ports the kernel hands out (tests/conftest.py's
``free_port`` binds port 0), as ``make test``'s parallel workers do: two workers get the same port only if the kernel
hands it out twice within a moment, and then the second server's start fails with "port ... is already in use",
which the runner does not count as a kill: it runs that mutation's tests once more (on other ports), and only a
failure that happens again counts. Servers a test run leaves behind are stopped after it (by their pid: those
whose command line or working directory is in the worker's directory).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import itertools
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MUTATIONS = Path(__file__).resolve().parent / "mutations.toml"
PYTHON = REPO / ".venv" / "bin" / "python"
EXCLUDED = (".venv/", ".stack/", "data/")  # never copied (the copy links the venv; state and data are local)
ID = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*\Z")
CLAIM = re.compile(r"C\d{2,}\Z")
FIELDS = {"id", "claims", "file", "find", "replace", "tests", "why"}
OPTIONAL = {"timeout", "slow"}
STOP_GRACE = 30.0  # seconds a test run has to tear down its servers after SIGINT before it is killed


class Invalid(Exception):
    """mutations.toml is not usable as it is."""


@dataclasses.dataclass(frozen=True)
class Mutation:
    id: str
    claims: tuple[str, ...]
    file: str
    find: str
    replace: str
    tests: tuple[str, ...]
    why: str
    timeout: float | None = None
    slow: bool = False  # its tests take a minute or more (Airflow, a dbt build, the report): left out by --quick


@dataclasses.dataclass
class Outcome:
    mutation: Mutation
    result: str  # killed | survived | error
    killed_by: str = ""
    detail: str = ""
    seconds: float = 0.0
    log: Path | None = None


# -- the list of mutations ---------------------------------------------------------------------------------------


def load(path: Path = MUTATIONS) -> list[Mutation]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise Invalid(f"{path}: {err}") from err
    entries = data.get("mutation")
    if not isinstance(entries, list) or not entries:
        raise Invalid(f"{path}: no [[mutation]] entries")
    out: list[Mutation] = []
    seen: set[str] = set()
    for n, e in enumerate(entries, start=1):
        if not isinstance(e, dict):
            raise Invalid(f"{path}: [[mutation]] entry {n} is not a table")
        name = e.get("id", f"entry {n}")
        missing, unknown = FIELDS - set(e), set(e) - FIELDS - OPTIONAL
        if missing or unknown:
            raise Invalid(
                f"mutation {name}: "
                + "; ".join(
                    t
                    for t in (
                        missing and f"missing {', '.join(sorted(missing))}",
                        unknown and f"unknown {', '.join(sorted(unknown))}",
                    )
                    if t
                )
            )
        if not isinstance(name, str) or not ID.match(name):
            raise Invalid(f"mutation {name!r}: the id must be kebab-case (a-z, 0-9, -)")
        if name in seen:
            raise Invalid(f"mutation {name}: the id is used twice")
        seen.add(name)
        claims, tests = e["claims"], e["tests"]
        if not isinstance(claims, list) or not claims or not all(isinstance(c, str) and CLAIM.match(c) for c in claims):
            raise Invalid(f"mutation {name}: claims must be a non-empty list of claim ids (C01, C02, ...)")
        if (
            not isinstance(tests, list)
            or not tests
            or not all(isinstance(t, str) and t.startswith("tests/") for t in tests)
        ):
            raise Invalid(f"mutation {name}: tests must be a non-empty list of pytest node ids under tests/")
        for key in ("file", "find", "replace", "why"):
            if not isinstance(e[key], str) or (key != "replace" and not e[key]):
                raise Invalid(f"mutation {name}: {key} must be a non-empty string")
        if e["find"] == e["replace"]:
            raise Invalid(f"mutation {name}: replace is the same as find")
        if not isinstance(e.get("slow", False), bool):
            raise Invalid(f"mutation {name}: slow must be true or false")
        timeout = e.get("timeout")
        if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
            raise Invalid(f"mutation {name}: timeout must be a positive number of seconds")
        out.append(
            Mutation(
                id=name,
                claims=tuple(claims),
                file=e["file"],
                find=e["find"],
                replace=e["replace"],
                tests=tuple(tests),
                why=e["why"],
                timeout=float(timeout) if timeout is not None else None,
                slow=e.get("slow", False),
            )
        )
    return out


def in_module_order(tests: list[str] | tuple[str, ...], tree: Path) -> list[str]:
    """The tests in the order pytest runs a module's tests (the order of their definitions), modules in the order
    first given: the tests of one module share its fixtures, and some build on what an earlier one left."""
    modules: dict[str, list[str]] = {}
    for t in tests:
        modules.setdefault(t.split("::", 1)[0], []).append(t)
    ordered: list[str] = []
    for module, ts in modules.items():
        try:
            text = (tree / module).read_text(encoding="utf-8")
        except OSError:
            ordered += ts
            continue

        def position(t: str, text: str = text) -> int:
            name = t.split("::")[-1].split("[", 1)[0]
            found = re.search(rf"^(?:async )?def {re.escape(name)}\b|^class {re.escape(name)}\b", text, re.MULTILINE)
            return found.start() if found else len(text)

        ordered += sorted(ts, key=position)
    return ordered


def check_applicable(mutations: list[Mutation], tree: Path) -> None:
    """Every ``find`` occurs exactly once in its file of ``tree``."""
    problems = []
    for m in mutations:
        target = tree / m.file
        if not target.is_file():
            problems.append(f"{m.id}: {m.file} is not a file of the working tree")
            continue
        count = target.read_text(encoding="utf-8").count(m.find)
        if count != 1:
            problems.append(f"{m.id}: its find text occurs {count} times in {m.file} (it must occur exactly once)")
    if problems:
        raise Invalid("mutations that cannot be applied:\n  " + "\n  ".join(problems))


# -- scratch copies ----------------------------------------------------------------------------------------------


def tree_files() -> list[str]:
    """The working tree's files as git sees them (tracked and untracked, not ignored), less .venv, .stack and data."""
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout
    names = sorted({n for n in out.decode("utf-8", "surrogateescape").split("\0") if n})
    return [n for n in names if not n.startswith(EXCLUDED) and os.path.lexists(REPO / n)]


def make_copy(files: list[str], worker_dir: Path) -> Path:
    """A copy of the working tree in ``worker_dir/<repository name>``, with its modification times (so make sees
    .venv/.installed as up to date), .venv linked to the repository's, and ``../shared`` (the GroupLens sample the
    tests read) linked beside it."""
    copy = worker_dir / REPO.name
    for name in files:
        src, dst = REPO / name, copy / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst, follow_symlinks=False)
    (copy / ".venv").symlink_to(REPO / ".venv")
    git_repository(copy)
    if (REPO.parent / "shared").exists():
        (worker_dir / "shared").symlink_to(REPO.parent / "shared")
    return copy


def git_repository(copy: Path) -> None:
    """Make the copy a git repository with the working tree's history and index (tests read ``git ls-files`` and
    ``git log``): its objects are the repository's (an alternate, read only), HEAD the same commit, the index a copy."""
    source = Path(
        subprocess.run(
            ["git", "rev-parse", "--absolute-git-dir"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    subprocess.run(["git", "init", "-q", str(copy)], check=True)
    (copy / ".git" / "objects" / "info" / "alternates").write_text(f"{source / 'objects'}\n")
    subprocess.run(["git", "update-ref", "HEAD", head.strip()], cwd=copy, check=True)
    if (source / "index").exists():
        shutil.copy2(source / "index", copy / ".git" / "index")


_APPLIED = itertools.count(1)


@contextlib.contextmanager
def applied(copy: Path, m: Mutation) -> Iterator[None]:
    """The mutation applied to the copy, then the file restored (bytes and modification time)."""
    target = copy / m.file
    original = target.read_bytes()
    stat = target.stat()
    text = original.decode("utf-8")
    if text.count(m.find) != 1:
        raise Invalid(f"{m.id}: its find text occurs {text.count(m.find)} times in {m.file} of the copy")
    try:
        target.write_bytes(text.replace(m.find, m.replace).encode("utf-8"))
        # a modification time of its own (whole seconds later than the original's, as bytecode records them): the
        # bytecode compiled from another break of the same size is never taken for this one's
        later = stat.st_mtime_ns + next(_APPLIED) * 1_000_000_000
        os.utime(target, ns=(stat.st_atime_ns, later))
        yield
    finally:
        target.write_bytes(original)
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))


# -- running pytest ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    returncode: int | None  # None: timed out or stopped
    outcomes: dict[str, list[str]]  # node id -> outcomes (passed, failed, setup error, teardown error, skipped)
    messages: dict[str, str]
    seconds: float
    log: Path


class Worker:
    def __init__(self, index: int, root: Path, files: list[str]) -> None:
        self.index = index
        self.dir = root / f"worker{index}"
        self.dir.mkdir()
        self.copy = make_copy(files, self.dir)
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(self.copy), *filter(None, [env.get("PYTHONPATH")])])
        # bytecode is kept between runs (each Python process of a run would compile the copy's modules again): a
        # .pyc is used only while its source has the modification time (in whole seconds) and size it was compiled
        # from; each break gets a modification time of its own and its restore the original one (see applied), so
        # no bytecode of one version of a file is used for another
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for name in ("PYTEST_ADDOPTS", "NETFLIX_ELT_STACK_DIR", "AIRFLOW_HOME", "VIRTUAL_ENV"):
            env.pop(name, None)
        # deployed stacks from a snapshot of an earlier deploy of the same code (tests/snapshots.py), in one folder
        # that the workers share: a break that changes nothing the migrations read skips re-applying them
        env["NETFLIX_ELT_TEST_SNAPSHOTS"] = str(self.dir.parent / "snapshots")
        return env

    def pytest(
        self, tests: list[str] | tuple[str, ...], log: Path, timeout: float, stop: threading.Event, x: bool
    ) -> Run:
        self.runs += 1
        basetemp = self.dir / f"tmp{self.runs}"
        junit = self.dir / f"junit{self.runs}.xml"
        argv = [str(PYTHON), "-m", "pytest", *tests, "-p", "no:cacheprovider", "-q", "--no-header", "-rfEs"]
        argv += ["--basetemp", str(basetemp), "--junitxml", str(junit), "-o", "junit_family=xunit1"]
        if x:
            argv.append("-x")
        if importlib.util.find_spec("pytest_randomly") is not None:
            argv += ["-p", "no:randomly"]
        started = time.monotonic()
        with log.open("wb") as out:
            out.write(("$ " + " ".join(argv) + f"\n  (in {self.copy})\n\n").encode())
            out.flush()
            self.proc = subprocess.Popen(
                argv, cwd=self.copy, env=self.env(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_default_sigint,
            )  # fmt: skip
            returncode: int | None = None
            try:
                while True:
                    try:
                        returncode = self.proc.wait(timeout=0.5)
                        break
                    except subprocess.TimeoutExpired:
                        if stop.is_set() or time.monotonic() - started > timeout:
                            if not stop.is_set():
                                out.write(f"\n\n*** timed out after {timeout:.0f} s: stopped ***\n".encode())
                            self.stop()
                            break
            finally:
                self.proc = None
                self.sweep()
        outcomes, messages = junit_outcomes(junit)
        shutil.rmtree(basetemp, ignore_errors=True)
        return Run(returncode, outcomes, messages, time.monotonic() - started, log)

    def stop(self) -> None:
        """Stop the running pytest: SIGINT (its fixtures stop their servers), then SIGKILL to its process group."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def sweep(self) -> int:
        """Kill what a test run left behind in this worker's directory (servers started in sessions of their own
        and not stopped: their command line or working directory is in the worker's directory). Returns how many."""
        mine = str(self.dir) + os.sep
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if mine in cmdline or (cwd + os.sep).startswith(mine):
                found.append(int(entry.name))
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in found:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            if sig == signal.SIGTERM and found:
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in found):
                    time.sleep(0.1)
        return len(found)


def junit_outcomes(path: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    """{node id: [outcome, ...]} and {node id: first message} from a pytest JUnit XML report (xunit1)."""
    outcomes: dict[str, list[str]] = {}
    messages: dict[str, str] = {}
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return outcomes, messages
    for case in root.iter("testcase"):
        file, classname, name = case.get("file", ""), case.get("classname", ""), case.get("name", "")
        module = file[:-3].replace("/", ".") if file.endswith(".py") else ""
        inner = classname[len(module) + 1 :] if module and classname.startswith(module + ".") else ""
        nodeid = "::".join(p for p in (file, *inner.split("."), name) if p)
        kinds = []
        for child in case:
            message = child.get("message", "") or ""
            if child.tag == "failure":
                kinds.append("failed")
            elif child.tag == "error":
                kinds.append("teardown error" if "teardown" in message else "setup error")
            elif child.tag == "skipped":
                kinds.append("skipped")
            else:
                continue
            messages.setdefault(nodeid, message.strip().splitlines()[0] if message.strip() else child.tag)
        outcomes.setdefault(nodeid, []).extend(kinds or ["passed"])
    return outcomes, messages


def listed(nodeid: str, tests: tuple[str, ...] | list[str]) -> bool:
    """Whether a collected node id is one of the listed tests (a node id, a parametrized one's base, or a module)."""
    return any(nodeid == t or nodeid.startswith((t + "::", t + "[")) for t in tests)


def judge(m: Mutation, run: Run, retried: bool = False) -> Outcome:
    """The outcome of a mutation's test run. A server that could not start because its port was in use is an error
    (the kernel handed the port out twice), and so is a listed test that errored in its setup (a fixture's server
    too slow to start on a busy machine), unless it happened again on a second run (``retried``): then the break
    itself is what the setup trips on, and the failure counts."""
    bad = {n: [k for k in ks if k != "passed" and k != "skipped"] for n, ks in run.outcomes.items()}
    bad = {n: ks for n, ks in bad.items() if ks}
    timeouts = [n for n in bad if "Timeout" in run.messages.get(n, "") and "pytest-timeout" in run.messages.get(n, "")]
    if run.returncode is None:
        return Outcome(m, "error", detail="timed out or stopped", seconds=run.seconds, log=run.log)
    if timeouts:
        return Outcome(m, "error", detail=f"pytest-timeout in {timeouts[0]}", seconds=run.seconds, log=run.log)
    if run.returncode == 0:
        return Outcome(m, "survived", seconds=run.seconds, log=run.log)
    if run.returncode == 1:
        for nodeid, kinds in bad.items():
            if not retried and "is already in use" in run.messages.get(nodeid, ""):
                return Outcome(m, "error", detail=f"port collision in {nodeid}", seconds=run.seconds, log=run.log)
            if listed(nodeid, m.tests):
                if not retried and kinds[0] == "setup error":
                    return Outcome(m, "error", detail=f"setup error in {nodeid}: {run.messages.get(nodeid, '')}",
                                   seconds=run.seconds, log=run.log)  # fmt: skip
                how = "" if kinds[0] == "failed" else f" ({kinds[0]})"
                return Outcome(m, "killed", killed_by=nodeid + how, detail=run.messages.get(nodeid, ""),
                               seconds=run.seconds, log=run.log)  # fmt: skip
        return Outcome(
            m, "error", detail="pytest exit 1 without a failing listed test", seconds=run.seconds, log=run.log
        )
    meaning = {2: "interrupted or collection error", 3: "internal error", 4: "usage error", 5: "no tests collected"}
    return Outcome(
        m,
        "error",
        detail=f"pytest exit {run.returncode}: {meaning.get(run.returncode, 'unexpected')}",
        seconds=run.seconds,
        log=run.log,
    )


# -- the run -----------------------------------------------------------------------------------------------------


def union(mutations: list[Mutation]) -> list[str]:
    seen: dict[str, None] = {}
    for m in mutations:
        for t in m.tests:
            seen.setdefault(t, None)
    return list(seen)


SLOW = re.compile(r"pytest\.mark\.slow\(minutes=([0-9.]+)\)")


def module_minutes(tree: Path, module: str) -> float:
    """A module's cost as its ``pytest.mark.slow(minutes=...)`` says (half a minute without one)."""
    try:
        found = SLOW.search((tree / module).read_text(encoding="utf-8"))
    except OSError:
        found = None
    return float(found.group(1)) if found else 0.5


def baseline_jobs(tests: list[str], tree: Path) -> list[tuple[float, str, list[str]]]:
    """The baseline as one job per test module (a module's tests share its fixtures): (estimated seconds, module,
    its listed tests in the order pytest runs them)."""
    modules: dict[str, list[str]] = {}
    for t in in_module_order(tests, tree):
        modules.setdefault(t.split("::", 1)[0], []).append(t)
    return [(module_minutes(tree, module) * 60, module, ts) for module, ts in modules.items()]


def estimate(m: Mutation, tree: Path) -> float:
    """A break's estimated seconds, to start the long ones first: a slow one costs what its costliest module does,
    another a quarter of that (its tests stop at the first failure, most within seconds of their fixtures)."""
    minutes = max(module_minutes(tree, t.split("::", 1)[0]) for t in m.tests)
    return minutes * 60 * (1.0 if m.slow else 0.25)


class Printer:
    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self, text: str = "") -> None:
        with self.lock:
            print(text, flush=True)


def short(nodeid: str) -> str:
    return nodeid.removeprefix("tests/")


def baseline_problems(tests: list[str], run: Run) -> list[str]:
    """Why a baseline run does not pass (nothing: it passed, every listed test collected and none skipped)."""
    problems = [f"{t}: not collected" for t in tests if not any(listed(n, [t]) for n in run.outcomes)]
    for nodeid, kinds in run.outcomes.items():
        for kind in kinds:
            if kind != "passed":
                problems.append(f"{nodeid}: {kind}: {run.messages.get(nodeid, '')}"[:300])
    if run.returncode != 0 and not problems:
        problems.append(f"pytest exit {run.returncode} (see the log)")
    return problems


def shown(result: str) -> str:
    """A result as printed: the expected ones in lower case, the others in capitals."""
    return result if result in ("killed", "passed") else result.upper()


def table(outcomes: list[Outcome]) -> str:
    rows = [("mutation", "claims", "result", "killed by", "seconds")]
    for o in outcomes:
        rows.append((o.mutation.id, ",".join(o.mutation.claims), shown(o.result),
                     short(o.killed_by) if o.killed_by else o.detail[:90], f"{o.seconds:.0f}"))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join(c.rjust(widths[i]) if i == 4 else c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _default_sigint() -> None:
    """``preexec_fn`` of a test run: SIGINT stops it (a shell that starts the runner in the background starts it
    with SIGINT ignored, and children inherit that), so that its fixtures stop their servers."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops the run as Ctrl-C does."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tests/mutation/run.py",
        description="Apply each deliberate break of tests/mutation/mutations.toml in a scratch copy and check that "
        "its tests catch it. Exit 1 if a break survived or a run errored.",
    )
    parser.add_argument("--only", nargs="+", metavar="ID", help="run only these mutations")
    parser.add_argument(
        "--workers",
        type=int,
        default=3,
        help="parallel workers, each with its own copy (default 3, as make test: the tests wait on their servers part "
        "of the time, and a third worker keeps two cores busy)",
    )
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="leave out the mutations marked slow (their tests take a minute or more each; the claims they alone "
        "break are then not shown)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline run of the unbroken copy")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutation's test run (default 600)")
    parser.add_argument(
        "--unbroken",
        action="store_true",
        help="run each mutation's tests without its break instead (they must pass): checks that each list of tests "
        "stands on its own",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies (their path is printed)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")

    try:
        mutations = load()
        if args.quick and not args.only and not args.list:
            mutations = [m for m in mutations if not m.slow]
        if args.only:
            unknown = sorted(set(args.only) - {m.id for m in mutations})
            if unknown:
                raise Invalid(f"no mutation with id {', '.join(unknown)} (see --list)")
            mutations = [m for m in mutations if m.id in set(args.only)]
        check_applicable(mutations, REPO)
    except Invalid as e:
        print(f"mutation: {e}", file=sys.stderr)
        return 2
    if args.list:
        for m in mutations:
            print(f"{m.id}  [{', '.join(m.claims)}]  {m.file}{'  (slow)' if m.slow else ''}\n    {m.why}")
            for t in m.tests:
                print(f"    - {t}")
        return 0
    if not PYTHON.exists():
        print(f"mutation: {PYTHON} is missing: run make install first", file=sys.stderr)
        return 2

    say = Printer()
    stop = threading.Event()
    root = Path(tempfile.mkdtemp(prefix="netflix-elt-mutation-"))
    logs = root / "logs"
    logs.mkdir()
    workers: list[Worker] = []
    outcomes: list[Outcome] = []
    baseline_failures: list[str] = []
    started = time.monotonic()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored
    interrupted = False
    try:
        files = tree_files()
        n = min(args.workers, len(mutations))
        workers = [Worker(i, root, files) for i in range(n)]
        check_applicable(mutations, workers[0].copy)
        say(f"{len(mutations)} mutation(s), {n} worker(s); scratch copies of {len(files)} files in {root}")
        # one queue, longest first (the baseline's modules and the breaks alike), so that the workers finish
        # together; a break is judged at once, and counts only if the baseline passes
        jobs: list[tuple[float, int, str, Any]] = []
        if args.unbroken:
            say("--unbroken: each mutation's tests run without its break, and must pass")
        elif not args.no_baseline:
            base = baseline_jobs(union(mutations), workers[0].copy)
            say(f"baseline: the {len(union(mutations))} listed test(s), unbroken, one run per module ({len(base)})")
            jobs += [(cost, 0, module, tests) for cost, module, tests in base]
        jobs += [(estimate(m, workers[0].copy), i, m.id, m) for i, m in enumerate(mutations, start=1)]
        jobs.sort(key=lambda j: (-j[0], j[1]))
        todo: queue.Queue[tuple[float, int, str, Any]] = queue.Queue()
        for job in jobs:
            todo.put(job)
        width = len(str(len(mutations)))

        def work(w: Worker) -> None:
            while not stop.is_set():
                try:
                    _, i, name, payload = todo.get_nowait()
                except queue.Empty:
                    return
                if not isinstance(payload, Mutation):  # a module's baseline
                    log = logs / f"baseline-{name.replace('/', '-')}.log"
                    run = w.pytest(payload, log, 3600, stop, x=False)
                    if stop.is_set():
                        return
                    problems = baseline_problems(payload, run)
                    baseline_failures.extend(problems)
                    say(f"[{'base':>{width * 2 + 1}}] {'passed' if not problems else 'FAILED':<8} {short(name):<44} "
                        f"{run.seconds:6.0f} s  {len(payload)} test(s) unbroken" + (f"  (log {log})" if problems else ""))  # fmt: skip
                    for p in problems:
                        say(f"    {p}")
                    continue
                m = payload
                log = logs / f"{m.id}.log"
                tests = in_module_order(m.tests, w.copy)
                with contextlib.nullcontext() if args.unbroken else applied(w.copy, m):
                    run = w.pytest(tests, log, m.timeout or args.timeout, stop, x=True)
                    o = judge(m, run)
                    if o.detail.startswith(("port collision", "setup error")) and not stop.is_set():  # once more
                        run = w.pytest(tests, log, m.timeout or args.timeout, stop, x=True)
                        o = judge(m, run, retried=True)
                if stop.is_set():
                    return
                if args.unbroken:  # passing is what is expected here
                    o.result = {"survived": "passed", "killed": "FAILED"}.get(o.result, o.result)
                outcomes.append(o)
                what = short(o.killed_by) if o.killed_by else o.detail
                say(f"[{i:>{width}}/{len(mutations)}] {shown(o.result):<8} {m.id:<44} "
                    f"{o.seconds:6.0f} s  {what}" + ("" if o.result in ("killed", "passed") else f"  (log {log})"))  # fmt: skip

        threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    except KeyboardInterrupt:
        interrupted = True
        say("\nstopping: the running tests stop their servers ...")
        stop.set()
        for w in workers:
            w.stop()
        for w in workers:
            w.sweep()
    except Invalid as e:
        print(f"mutation: {e}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
        for w in workers:
            w.stop()
            w.sweep()
            if not args.keep:
                shutil.rmtree(w.dir, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(root / "snapshots", ignore_errors=True)

    order = {m.id: i for i, m in enumerate(mutations)}
    outcomes.sort(key=lambda o: order[o.mutation.id])
    if outcomes:
        say("")
        say(table(outcomes))
    counts = {r: sum(1 for o in outcomes if o.result == r) for r in ("killed", "survived", "error", "passed")}
    say("")
    say(
        (
            f"{counts['passed']} passed unbroken, {len(outcomes) - counts['passed']} did not"
            if args.unbroken
            else f"{counts['killed']} killed, {counts['survived']} survived, {counts['error']} error(s)"
        )
        + (f", {len(mutations) - len(outcomes)} not run (interrupted)" if interrupted else "")
        + f" in {time.monotonic() - started:.0f} s; logs in {logs}"
    )
    if baseline_failures:
        say("the baseline does not pass: a test that fails or skips unbroken cannot show it catches a break, so no "
            "kill counts (see the baseline's lines above)")  # fmt: skip
    if interrupted:
        return 130
    if baseline_failures:
        return 1
    return 0 if counts["passed" if args.unbroken else "killed"] == len(mutations) else 1


if __name__ == "__main__":
    sys.exit(main())
