"""Where staged files live, for the emulator: external (S3) and internal stages.

An external stage's URL is ``s3://bucket/prefix/``. The emulator reads the same bytes the S3 server holds, in
one of two ways:

- through the S3 API (boto3 for listing, an ``s3fs`` filesystem registered in DuckDB for reading): works with any
  S3-compatible endpoint;
- straight from the S3 server's data directory, when the server is the local stack's ``rclone serve s3``, which
  stores each object ``bucket/key`` as the plain file ``<root>/bucket/key``. Same bytes, no HTTP: the fastest
  faithful way, and the default of the local stack. Objects still being uploaded (rclone's temporary multipart
  files) are not visible, as on S3.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fakesnow.transforms import stage as fs_stage

from .procedures import first


@dataclass(frozen=True)
class StagedFile:
    url: str  # full location, as Snowflake's LIST and COPY results show it for external stages
    relative: str  # path relative to the stage's location (METADATA$FILENAME)
    size: int
    etag: str  # content version: S3 ETag, or size and modification time for local files
    last_modified: dt.datetime
    read_path: str  # what DuckDB's readers open


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
                yield from self._iter_local(self.s3.local_root / bucket, base, prefix, f"s3://{bucket}/")
            else:
                yield from self._iter_s3(bucket, base, prefix)
        else:
            root = Path(location)
            yield from self._iter_local(root, "", prefix, None)

    def _iter_local(self, root: Path, base: str, prefix: str, url_prefix: str | None) -> Iterator[StagedFile]:
        full_prefix = base + prefix
        start = root / full_prefix.rsplit("/", 1)[0] if "/" in full_prefix else root
        if not start.is_dir():
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
                st = path.stat()
                yield StagedFile(
                    url=(url_prefix + key) if url_prefix else str(path),
                    relative=key[len(base) :],
                    size=st.st_size,
                    etag=f"{st.st_size:x}-{st.st_mtime_ns:x}",
                    last_modified=dt.datetime.fromtimestamp(st.st_mtime, dt.UTC),
                    read_path=str(path),
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
