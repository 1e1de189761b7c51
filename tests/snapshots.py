"""Deployed local stacks from a snapshot of an earlier deploy of the same code, when ``NETFLIX_ELT_TEST_SNAPSHOTS``
names a folder to keep them in (``make mutation`` sets it: each break's tests would otherwise apply every migration
again, some ten seconds each time, although most breaks change nothing a migration reads).

A snapshot is the stack's state after ``schemachange deploy`` (the emulator's state folder and the generated
credentials it was deployed with), taken with the servers stopped, under a key that hashes everything the versioned
scripts' result depends on: those scripts and schemachange's configuration, the emulator, the code that runs the
deploy, the locked package versions and the target's settings. The repeatable scripts (the procedures, with the
contracts and handlers they inline) are not in the key: schemachange itself applies again the ones whose rendered
text changed since the snapshot, as it does on any later deploy, so a break in a procedure is deployed as it is.
Without the variable, :func:`deploy` is ``netflix-elt deploy`` and nothing else.

:func:`ran` does the same one level up, for a module fixture whose command loads or builds a whole warehouse: the
stack's state after the command and its output, under a key over every file of the working tree but the few the
fixture names (files the command does not read, or whose part of its work the fixture does again after a restore)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from netflix_elt import pipeline
from netflix_elt.stack import LocalStack

REPO = Path(__file__).resolve().parent.parent
ENV = "NETFLIX_ELT_TEST_SNAPSHOTS"

# what the versioned scripts' result depends on (files and folders of the repository)
VERSIONED_INPUTS = (
    "migrations/schemachange-config.yml",
    "snowflake/emulator",
    "netflix_elt/config.py",
    "netflix_elt/stack.py",
    "netflix_elt/pipeline.py",
    "requirements.lock",
    "tests/snapshots.py",
)
# what the repeatable scripts render from: applied again by schemachange when it changed
REPEATABLE_INPUTS = ("netflix_elt/contracts.py", "snowflake/procedures")
# the login a deploy runs with (its role is the one the scripts grant the procedures' owner role to)
LOGIN_ENV = ("SNOWFLAKE_USER", "SNOWFLAKE_ROLE", "SNOWFLAKE_PRIVATE_KEY_PATH")


def settings_env() -> list[str]:
    """The variables schemachange's configuration reads (its ``env_var('NAME', ...)``s), and the login's."""
    config = (REPO / "migrations" / "schemachange-config.yml").read_text()
    return sorted({*re.findall(r"env_var\('([A-Z0-9_]+)'", config), *LOGIN_ENV})


def _target(stack: LocalStack) -> list[str]:
    """What a key holds of the target: its settings, and the variables of schemachange's configuration and login."""
    s = stack.settings
    return [s.database, s.warehouse, s.bucket, s.prefix, *(f"{k}={os.environ.get(k, '')}" for k in settings_env())]


def _files(parts: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for part in parts:
        path = REPO / part
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        elif path.is_file():
            out.append(path)
    return out


def _digest(files: list[Path], *extra: str) -> str:
    h = hashlib.sha256()
    for path in files:
        h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    for value in extra:
        h.update(value.encode() + b"\0")
    return h.hexdigest()[:24]


def versioned_key(stack: LocalStack) -> str:
    scripts = sorted(p for p in (REPO / "migrations").glob("*.sql") if not p.name.startswith("R__"))
    return _digest(scripts + _files(VERSIONED_INPUTS), *_target(stack))


def repeatable_key() -> str:
    return _digest(sorted((REPO / "migrations").glob("R__*.sql")) + _files(REPEATABLE_INPUTS))


@dataclasses.dataclass
class Deployed:
    proc: subprocess.CompletedProcess[str] | None  # schemachange's run (None: restored, nothing left to apply)
    restored: bool  # from a snapshot: the versioned scripts were applied before, to the snapshot's stack


def deploy(stack: LocalStack) -> Deployed:
    """Start ``stack`` if it is not running yet and apply the migrations (asserting that the deploy succeeded), from a
    snapshot when ``NETFLIX_ELT_TEST_SNAPSHOTS`` is set and one of the same code exists (restored before the stack
    starts, or with a restart of a running one). The stack's credentials are then the snapshot's: read them
    (``stack.env()``, ``stack.connect()``) after this."""
    folder = os.environ.get(ENV)
    if not folder:
        stack.up()
        return Deployed(_deploy(stack), restored=False)
    snapshot = Path(folder) / versioned_key(stack)
    repeatable = repeatable_key()
    meta = _restore(stack, snapshot)
    if meta is not None:
        return Deployed(None if meta["repeatable"] == repeatable else _deploy(stack), restored=True)
    stack.up()
    proc = _deploy(stack)
    _save(stack, snapshot, {"repeatable": repeatable})
    return Deployed(proc, restored=False)


def tree_key(stack: LocalStack, excluded: tuple[str, ...]) -> str:
    """A key over every file of the working tree (those git lists: tracked, or new and not ignored) but ``excluded``
    (files, or folders ending in "/"), the target's settings and the variables schemachange's configuration reads."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    files = sorted(
        REPO / f
        for f in set(listed.split("\0")) - {""}
        if (REPO / f).is_file() and not any(f == e or f.startswith(e.rstrip("/") + "/") for e in excluded)
    )
    return _digest(files, *_target(stack))


def ran(
    name: str, stack: LocalStack, root: Path, command: Callable[[], str], excluded: tuple[str, ...]
) -> tuple[str, bool]:
    """``command()`` (it starts ``stack``, builds in it and returns its output; the stack is left running), or, when
    ``NETFLIX_ELT_TEST_SNAPSHOTS`` is set and there is one, a snapshot of an earlier run of it (``name``) on the same
    code: every file the same but ``excluded`` (files, or folders ending in "/", that the command does not read, or
    whose part of its work the caller does again after a restore). Returns the output (with the earlier run's
    ``root`` written as this one's) and whether it was restored; the stack is running. A snapshot is taken only while
    the ``excluded`` files are as git's index has them, so that a restored output never comes from a changed one."""
    folder = os.environ.get(ENV)
    if not folder:
        return command(), False
    snapshot = Path(folder) / f"{name}-{tree_key(stack, excluded)}"
    meta = _restore(stack, snapshot, with_s3=True)
    if meta is not None:
        return str(meta["output"]).replace(str(meta["root"]), str(root)), True
    output = command()
    unchanged = subprocess.run(["git", "diff", "--quiet", "--", *excluded], cwd=REPO).returncode == 0
    if unchanged:
        _save(stack, snapshot, {"output": output, "root": str(root)}, with_s3=True)
    return output, False


def _restore(stack: LocalStack, snapshot: Path, with_s3: bool = False) -> dict | None:
    """The snapshot's state in ``stack`` (stopped first if it runs), started; its meta data. None: no snapshot."""
    if not (snapshot / "meta.json").is_file():
        return None
    if any(service["running"] for service in stack.status().values()):
        stack.down()
    shutil.rmtree(stack.snowflake_dir, ignore_errors=True)
    shutil.copytree(snapshot / "snowflake", stack.snowflake_dir)
    if with_s3:
        shutil.rmtree(stack.s3_dir, ignore_errors=True)
        shutil.copytree(snapshot / "s3", stack.s3_dir)
    shutil.copy2(snapshot / "credentials.env", stack.credentials_file)
    stack.up()
    return dict(json.loads((snapshot / "meta.json").read_text()))


def _save(stack: LocalStack, snapshot: Path, meta: dict, with_s3: bool = False) -> None:
    """Keep ``stack``'s state (the servers stopped meanwhile, then started again) as ``snapshot``."""
    stack.down()
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    partial = snapshot.parent / f".{snapshot.name}.{uuid.uuid4().hex}"
    shutil.copytree(stack.snowflake_dir, partial / "snowflake")
    if with_s3:
        shutil.copytree(stack.s3_dir, partial / "s3")
    shutil.copy2(stack.credentials_file, partial / "credentials.env")
    (partial / "meta.json").write_text(json.dumps(meta))
    try:
        partial.rename(snapshot)  # atomic: of two sessions taking the same snapshot, one keeps its copy
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
    stack.up()


def _deploy(stack: LocalStack) -> subprocess.CompletedProcess[str]:
    proc = pipeline.deploy(stack.settings, quiet=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc
