"""Where staged files live, for the emulator: external (S3) and internal stages.

An external stage's URL is ``s3://bucket/prefix/``. The emulator reads the same bytes the S3 server holds, in
one of two ways:

- through the S3 API (boto3 for listing, an ``s3fs`` filesystem registered in DuckDB for reading): works with any
  S3-compatible endpoint;
- straight from the S3 server's data directory, when the server is the local stack's ``rclone serve s3``, which
  stores each object ``bucket/key`` as the plain file ``<root>/bucket/key``. Same bytes, no HTTP: the fastest
  faithful way, and the default of the local stack. Objects still being uploaded (rclone's temporary multipart
  files) are not visible, as on S3.

A path within a stage (``LIST @stage/<path>``, ``FILES = (...)``, the path of ``COPY ... FROM @stage/<path>``) is a
prefix of object keys, as in Snowflake: it never leaves the stage. On a local directory (an internal stage, or a
bucket served from disk) a key with an empty, ``.`` or ``..`` segment, or a leading ``/``, names no file, and a file or
folder whose real path is outside the stage's directory (a symbolic link pointing out) is not listed: such a path
answers as a path with nothing there (LIST lists nothing, ``FILES`` says "Remote file ... was not found").

Stage URLs: Snowflake's external stages are cloud storage (``s3://``, ``s3gov://``, ``gcs://``, ``azure://``);
:func:`is_cloud_url` says whether a URL is one. Anything else (``file://``, a path) points at the host's file system,
which only administrators may read (:mod:`.access`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fakesnow.transforms import stage as fs_stage
from fakesnow.transforms.options import parse_options
from sqlglot import exp

from .procedures import first


@dataclass(frozen=True)
class StagedFile:
    url: str  # full location, as Snowflake's LIST and COPY results show it for external stages
    relative: str  # path relative to the stage's location (what FILES = (...) and PATTERN name)
    size: int
    etag: str  # content version: S3 ETag, or size and modification time for local files
    last_modified: dt.datetime
    read_path: str  # what DuckDB's readers open

    @property
    def filename(self) -> str:
        """``METADATA$FILENAME``: "includes the full path to the data file" -- for an object in S3 its path in the
        bucket (the stage URL's path included), for an internal stage its path within the stage."""
        if self.url.startswith("s3://"):
            return self.url.split("/", 3)[3]
        return self.relative


@dataclass
class S3Settings:
    endpoint_url: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    region: str = "us-east-1"
    local_root: Path | None = None  # rclone data directory serving the same buckets


class StageStorage:
    def __init__(self, s3: S3Settings):
        self.s3 = s3
        self._client: Any = None

    # -- S3 API -----------------------------------------------------------------------------------------------
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "s3",
                endpoint_url=self.s3.endpoint_url,
                aws_access_key_id=self.s3.access_key,
                aws_secret_access_key=self.s3.secret_key,
                region_name=self.s3.region,
            )
        return self._client

    def register_filesystem(self, duck_conn: Any) -> None:
        """Let DuckDB read s3:// paths through s3fs (DuckDB's httpfs extension can't be installed offline)."""
        if self.s3.local_root is not None:
            return
        import s3fs

        fs = s3fs.S3FileSystem(
            key=self.s3.access_key,
            secret=self.s3.secret_key,
            endpoint_url=self.s3.endpoint_url,
            client_kwargs={"region_name": self.s3.region},
        )
        duck_conn.register_filesystem(fs)

    # -- listing --------------------------------------------------------------------------------------------------
    def list(self, location: str, prefix: str = "") -> list[StagedFile]:
        """Files under ``location`` (a stage URL or internal stage directory) whose relative path starts with
        ``prefix``, sorted by relative path. Nested keys are included."""
        files = list(self._iter(location, prefix))
        files.sort(key=lambda f: f.relative)
        return files

    def stat(self, location: str, relative: str) -> StagedFile | None:
        for f in self._iter(location, relative):
            if f.relative == relative:
                return f
        return None

    def _iter(self, location: str, prefix: str) -> Iterator[StagedFile]:
        if location.startswith("s3://"):
            parsed = urlparse(location)
            bucket, base = parsed.netloc, parsed.path.lstrip("/")
            if base and not base.endswith("/"):
                base += "/"
            if self.s3.local_root is not None:
                if not BUCKET_RX.fullmatch(bucket):
                    return  # not a bucket name: no such bucket (and never a folder outside the S3 server's root)
                yield from self._iter_local(
                    self.s3.local_root / bucket, base, prefix, f"s3://{bucket}/", self.s3.local_root
                )
            else:
                yield from self._iter_s3(bucket, base, prefix)
        else:
            root = Path(location)
            yield from self._iter_local(root, "", prefix, None, root)

    def _iter_local(
        self, root: Path, base: str, prefix: str, url_prefix: str | None, jail: Path
    ) -> Iterator[StagedFile]:
        """Files under ``root`` whose key (path relative to ``root``) starts with ``base + prefix``, never one whose
        real path is outside ``jail`` (the stage's directory, or the S3 server's root) nor one a key cannot name."""
        full_prefix = base + prefix
        if not local_key_ok(full_prefix):
            return
        try:
            real_jail = jail.resolve(strict=True)
            real_root = root.resolve(strict=True)
        except OSError:
            return
        if not _inside(real_root, real_jail):
            return
        start = root / full_prefix.rsplit("/", 1)[0] if "/" in full_prefix else root
        if not start.is_dir() or not _inside(start.resolve(), real_root):
            return
        for dirpath, dirnames, filenames in os.walk(start):
            # descend only into folders that can hold keys with the prefix (as S3 lists only the keys that have it)
            rel = Path(dirpath).relative_to(root).as_posix()
            rel = "" if rel == "." else rel + "/"
            dirnames[:] = [
                d
                for d in dirnames
                if not d.startswith(".")
                and (full_prefix.startswith(f"{rel}{d}/") or f"{rel}{d}".startswith(full_prefix))
            ]
            for name in filenames:
                if name.startswith("."):  # rclone's in-progress multipart uploads and other hidden files
                    continue
                path = Path(dirpath) / name
                key = path.relative_to(root).as_posix()
                if not key.startswith(full_prefix):
                    continue
                try:
                    real = path.resolve(strict=True)
                except OSError:
                    continue  # a dangling link
                if not _inside(real, real_root) or not real.is_file():
                    continue  # a link pointing out of the stage, or not a regular file
                st = real.stat()
                yield StagedFile(
                    url=(url_prefix + key) if url_prefix else str(path),
                    relative=key[len(base) :],
                    size=st.st_size,
                    etag=f"{st.st_size:x}-{st.st_mtime_ns:x}",
                    last_modified=dt.datetime.fromtimestamp(st.st_mtime, dt.UTC),
                    read_path=str(real),
                )

    def _iter_s3(self, bucket: str, base: str, prefix: str) -> Iterator[StagedFile]:
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=base + prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/"):
                    continue
                yield StagedFile(
                    url=f"s3://{bucket}/{key}",
                    relative=key[len(base) :],
                    size=int(obj["Size"]),
                    etag=str(obj.get("ETag", "")).strip('"'),
                    last_modified=obj["LastModified"],
                    read_path=f"s3://{bucket}/{key}",
                )


# S3 bucket names: 3-63 lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit
BUCKET_RX = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
CLOUD_URL_RX = re.compile(r"(s3|s3gov|s3china|gcs|azure)://[^/]+(/.*)?", re.IGNORECASE)


def is_cloud_url(url: str) -> bool:
    """Whether ``url`` is cloud storage, the only kind of location Snowflake's external stages have ("Amazon S3
    buckets, Google Cloud Storage buckets, Microsoft Azure containers")."""
    return bool(CLOUD_URL_RX.fullmatch(url.strip()))


def local_key_ok(key: str) -> bool:
    """Whether ``key`` (a stage path or key prefix) can name files in a local directory without leaving it: no
    leading ``/``, no backslash, no NUL, no ``.``/``..`` segment and no empty segment but the last."""
    if key.startswith("/") or "\\" in key or "\x00" in key:
        return False
    segments = key.split("/")
    return all(s not in ("", ".", "..") for s in segments[:-1]) and segments[-1] not in (".", "..")


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def resolve_stage(duck_conn: Any, ref: str, database: str | None, schema: str | None) -> tuple[str, str, str]:
    """``@db.schema.stage/some/path`` -> (fully qualified stage name, stage location, path within it).

    Raises Snowflake's "does not exist" error for an unknown stage."""
    stage_var, _, path = ref.lstrip("@").partition("/")
    database_name, schema_name, name = fs_stage.parts_from_var(stage_var, database, schema)
    fqname = f"{database_name}.{schema_name}.{name}"
    row = first(
        duck_conn.execute(
            "SELECT url FROM _fs_global._fs_information_schema._fs_stages "
            "WHERE database_name = ? AND schema_name = ? AND name = ?",
            (database_name, schema_name, name),
        )
    )
    if not row:
        raise fs_stage.not_found_error(fqname)
    location = row[0] or fs_stage.internal_dir(fqname)
    return fqname, location, path


def is_external(location: str) -> bool:
    return location.startswith("s3://")


def is_internal(location: str) -> bool:
    """Whether ``location`` is an internal stage's directory (under the emulator's internal stages folder)."""
    try:
        return Path(location).resolve().is_relative_to(Path(fs_stage.LOCAL_BUCKET_PATH).resolve())
    except (OSError, ValueError):
        return False


FILE_FORMATS_TABLE = "_fs_global._fs_information_schema._emu_stage_file_formats"


def _format_options(prop: exp.FileFormatProperty) -> dict[str, Any]:
    """A stage's ``FILE_FORMAT = (...)`` as COPY's options (a ``FORMAT_NAME`` given as an identifier as text)."""
    named = [p for p in prop.expressions if isinstance(p, exp.Property) and p.name.upper() == "FORMAT_NAME"]
    rest = [p for p in prop.expressions if not any(p is n for n in named)]
    options = parse_options(rest)
    for p in named:
        value = p.args.get("value")
        if isinstance(value, exp.Expression):
            options["FORMAT_NAME"] = value.name if isinstance(value, exp.Literal) else value.sql("snowflake")
    return options


def record_file_format(duck_conn: Any, sql: str, database: str | None, schema: str | None) -> None:
    """After ``CREATE [OR REPLACE] STAGE`` ran: remember its ``FILE_FORMAT`` (or that it has none)."""
    import sqlglot

    try:
        expression = sqlglot.parse_one(sql, read="snowflake")
    except sqlglot.errors.ParseError:
        return
    if not isinstance(expression, exp.Create) or str(expression.args.get("kind") or "").upper() != "STAGE":
        return
    table = expression.this
    if not isinstance(table, exp.Table):
        return
    database_name, schema_name, name = (
        part.upper() for part in fs_stage.parts_from_var(table.sql("snowflake"), database, schema)
    )
    properties = expression.args.get("properties")
    prop = next(
        (p for p in (properties.expressions if properties else []) if isinstance(p, exp.FileFormatProperty)), None
    )
    options = _format_options(prop) if prop is not None else {}
    duck_conn.execute(
        f"CREATE TABLE IF NOT EXISTS {FILE_FORMATS_TABLE} (database_name VARCHAR, schema_name VARCHAR, "
        "name VARCHAR, options VARCHAR, PRIMARY KEY (database_name, schema_name, name))"
    )
    if expression.args.get("exists"):  # IF NOT EXISTS: an existing stage keeps its format
        exists = first(
            duck_conn.execute(
                "SELECT count(*) FROM _fs_global._fs_information_schema._fs_stages "
                "WHERE upper(database_name) = ? AND upper(schema_name) = ? AND upper(name) = ?",
                (database_name, schema_name, name),
            )
        )
        known = first(
            duck_conn.execute(
                f"SELECT count(*) FROM {FILE_FORMATS_TABLE} WHERE database_name = ? AND schema_name = ? AND name = ?",
                (database_name, schema_name, name),
            )
        )
        if exists and exists[0] and known and known[0]:
            return
    duck_conn.execute(
        f"INSERT OR REPLACE INTO {FILE_FORMATS_TABLE} VALUES (?, ?, ?, ?)",
        (database_name, schema_name, name, json.dumps(options)),
    )


def stage_file_format(duck_conn: Any, fqname: str) -> dict[str, Any]:
    """The ``FILE_FORMAT`` options a stage was created with (empty: none, CSV defaults)."""
    database_name, schema_name, name = (part.upper() for part in fqname.split("."))
    try:
        row = first(
            duck_conn.execute(
                f"SELECT options FROM {FILE_FORMATS_TABLE} WHERE database_name = ? AND schema_name = ? AND name = ?",
                (database_name, schema_name, name),
            )
        )
    except Exception:  # no stage recorded one yet
        return {}
    return dict(json.loads(row[0])) if row else {}
