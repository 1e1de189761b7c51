"""Secrets: none in the repository (detect-secrets against .secrets.baseline, also run by `make lint`), and a
credential given to the pipeline never shows up in what it prints when that credential is refused."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from netflix_elt.generate import generate
from netflix_elt.stack import LocalStack
from tests.conftest import REPO, make_stack

HOOK = Path(sys.executable).parent / "detect-secrets-hook"


def _scan(files: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HOOK), "--baseline", str(REPO / ".secrets.baseline"), *files],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_repository_has_no_secrets() -> None:
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    assert len(files) > 50
    result = _scan(files, REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_scanner_finds_a_planted_secret(tmp_path: Path) -> None:
    planted = tmp_path / "settings.py"
    planted.write_text(
        'AWS_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8Lk3Vn7Q"\n'  # pragma: allowlist secret
        "PRIVATE_KEY = '''-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\n"  # pragma: allowlist secret
        "-----END RSA PRIVATE KEY-----'''\n"
    )
    result = _scan([planted.name], tmp_path)
    assert result.returncode != 0
    assert "settings.py" in result.stdout
    assert "Secret Keyword" in result.stdout or "Private Key" in result.stdout


def test_a_refused_s3_secret_is_never_printed(stack: LocalStack, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    generate(landing, scale="tiny")
    secret = "Wrong" + uuid.uuid4().hex + "Secret"  # pragma: allowlist secret (made up, refused by the server)
    env = {
        **os.environ,
        **stack.env(),
        "AWS_SECRET_ACCESS_KEY": secret,
        "NETFLIX_ELT_PREFIX": f"t{uuid.uuid4().hex[:10]}/",
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(
        [sys.executable, "-m", "uploader", str(landing), "--no-progress"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "access denied" in output.lower() or "signature" in output.lower(), output
    assert secret not in output


def test_the_generated_credentials_are_never_readable_by_others_not_even_while_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a umask that lets everyone read new files, the credentials file is private from its first byte: its mode
    is seen while it is written (when it is flushed to disk), not only after ``up`` has fixed what it found."""
    modes: list[int] = []
    fsync = os.fsync

    def watched(fd: int) -> None:
        modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", watched)
    umask = os.umask(0)
    try:
        stack = make_stack(tmp_path / "stack")
        creds = stack.credentials()
    finally:
        os.umask(umask)
    assert modes == [0o600]
    assert stat.S_IMODE(stack.credentials_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(stack.root.stat().st_mode) == 0o700
    assert set(creds) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "SNOWFLAKE_PASSWORD"}
