"""Watching a process tree for leaks: the command line of every process (``ps`` shows each process's argv to
every local user) and the addresses each one listens on."""

from __future__ import annotations

import configparser
import contextlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


@dataclass
class Seen:
    """What a process showed while it was watched: its command line and the addresses it listened on."""

    cmdline: str = ""
    listening: set[tuple[str, int]] = field(default_factory=set)


def _family(roots: Iterable[int]) -> list[psutil.Process]:
    out: list[psutil.Process] = []
    for pid in roots:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            out += [root, *root.children(recursive=True)]
    return out


def observe(roots: Iterable[int], seen: dict[int, Seen], sockets: bool = True) -> None:
    """Record the command line (and, with ``sockets``, the listening sockets) of ``roots`` and all their
    descendants."""
    for proc in _family(roots):
        try:
            cmdline = "\0".join(proc.cmdline())
            listening = (
                {
                    (c.laddr.ip, c.laddr.port)
                    for c in proc.net_connections(kind="inet")
                    if c.status == psutil.CONN_LISTEN
                }
                if sockets
                else set()
            )
        except psutil.Error:
            continue
        entry = seen.setdefault(proc.pid, Seen())
        if cmdline and cmdline not in entry.cmdline.split("\n"):  # every command line the process had (exec)
            entry.cmdline = f"{entry.cmdline}\n{cmdline}" if entry.cmdline else cmdline
        entry.listening |= listening


class Watcher:
    """Observes a process tree in a thread until stopped: command lines every half second, listening sockets (dearer
    to read) every 1.5 s; a server listens for as long as it runs."""

    def __init__(self, roots: Iterable[int], extra_roots: Any = None) -> None:
        self.roots = list(roots)
        self.extra_roots = extra_roots or (lambda: [])
        self.seen: dict[int, Seen] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            observe([*self.roots, *self.extra_roots()], self.seen, sockets=n % 3 == 0)
            n += 1
            self._stop.wait(0.5)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def secrets_on_command_lines(seen: dict[int, Seen], secrets: dict[str, str]) -> list[str]:
    return [
        f"{name} in the command line of pid {pid}: {s.cmdline.replace(chr(0), ' ')[:200]}"
        for pid, s in seen.items()
        for name, value in secrets.items()
        if value and value in s.cmdline
    ]


def listening_beyond_loopback(seen: dict[int, Seen]) -> list[str]:
    return [
        f"pid {pid} listens on {ip}:{port} ({s.cmdline.replace(chr(0), ' ')[:120]})"
        for pid, s in seen.items()
        for ip, port in sorted(s.listening)
        if ip != "127.0.0.1"
    ]


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def airflow_secrets(home: Path) -> dict[str, str]:
    """The Airflow login and the keys in Airflow's configuration that sign or encrypt anything."""
    out = {"Airflow admin password": json.loads((home / "passwords.json").read_text())["admin"]}
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(home / "airflow.cfg")
    for section, option in (("core", "fernet_key"), ("api_auth", "jwt_secret"), ("api", "secret_key")):
        if value := cfg.get(section, option, fallback=""):
            out[f"[{section}] {option}"] = value
    return out


def contains_args(args: list[str], part: list[str]) -> bool:
    return any(args[i : i + len(part)] == part for i in range(len(args)))


def read_env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
