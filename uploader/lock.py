"""Uploads to one destination take turns, and a killed upload is cleaned up by the next one.

- `destination_lock`: an exclusive lock (``flock``) on a file named after the destination (bucket and prefix; the
  endpoint is left out, so that one server reached by two URLs is still one destination) in the uploader's state
  directory. The operating system releases it when the holder exits, however it
  exits, so a killed run never blocks the next one.
- `UploadJournal`: the keys of the file being uploaded, written before its first object is sent and cleared after
  its index object is written. A journal found by the next run (under the lock) belongs to a run that died: the
  objects it lists are deleted and their multipart uploads aborted, unless the index shows the file completed.
- `abort_orphaned_multipart_uploads`: multipart uploads under the prefix started long ago (by a run on another
  machine that died) are aborted, so they stop costing storage.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def state_dir() -> Path:
    """Where the uploader keeps its locks and journals: ``NETFLIX_ELT_UPLOAD_STATE_DIR``, else
    ``$XDG_STATE_HOME/netflix-elt/uploads`` (``~/.local/state/netflix-elt/uploads``)."""
    explicit = os.environ.get("NETFLIX_ELT_UPLOAD_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "netflix-elt" / "uploads"


def destination_id(bucket: str, prefix: str) -> str:
    return hashlib.sha256(f"{bucket}\n{prefix}".encode()).hexdigest()[:16]


@contextlib.contextmanager
def destination_lock(
    bucket: str, prefix: str, *, on_wait: Callable[[str], None] | None = None
) -> Iterator[UploadJournal]:
    """Hold the destination's lock (waiting for another run to finish if needed); yield its journal."""
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    ident = destination_id(bucket, prefix)
    lock_path = directory / f"{ident}.lock"
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            message = (
                f"another upload to s3://{bucket}/{prefix} is running ({holder}); waiting for it to finish "
                "(its files will then be found already uploaded)"
            )
            (on_wait or _print_err)(message)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
        handle.flush()
        try:
            yield UploadJournal(directory / f"{ident}.journal.json", bucket)
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _print_err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class UploadJournal:
    """The file being uploaded: its index key and every object key it will have (bucket keys, prefix included)."""

    path: Path | None
    bucket: str
    recovered: list[str] = field(default_factory=list)  # what the last recovery did, for the report

    def begin(self, index_key: str, keys: list[str]) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"bucket": self.bucket, "index": index_key, "keys": keys}))
        tmp.replace(self.path)  # atomic: a reader sees the old journal or the new one, never half of one

    def clear(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def recover(self, client: S3Client, read_index: Callable[[S3Client, str, str], dict[str, Any] | None]) -> None:
        """Undo the file a killed run left unfinished: delete its objects and abort its multipart uploads."""
        if self.path is None or not self.path.exists():
            return
        try:
            entry = json.loads(self.path.read_text())
            bucket, index, keys = entry["bucket"], entry["index"], [str(k) for k in entry["keys"]]
        except (OSError, ValueError, KeyError, TypeError):
            self.clear()  # unreadable: written by a run killed while writing it, before it sent anything
            return
        if read_index(client, bucket, index) is not None:
            self.clear()  # the run was killed after the file completed
            return
        aborted = _abort_multipart(client, bucket, keys)
        for i in range(0, len(keys), 1000):
            client.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True}
            )
        name = keys[0].rsplit("/", 1)[-1].split(".part", 1)[0] if keys else "?"
        note = f"removed what an interrupted earlier upload left of {name}: {len(keys)} object key(s) deleted"
        if aborted:
            note += f", {aborted} unfinished multipart upload(s) aborted"
        self.recovered.append(note)
        self.clear()


def multipart_uploads(client: S3Client, bucket: str, prefix: str) -> Iterator[Any]:
    """The multipart uploads in progress under ``prefix`` (``Key``, ``UploadId``, ``Initiated``)."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    while True:
        try:
            page = client.list_multipart_uploads(**kwargs)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "NoSuchUpload":  # rclone's answer when there are none
                return
            raise
        yield from page.get("Uploads", [])
        if not page.get("IsTruncated"):
            return
        kwargs["KeyMarker"] = page.get("NextKeyMarker", "")
        kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker", "")


def _abort_multipart(client: S3Client, bucket: str, keys: list[str]) -> int:
    if not keys:
        return 0
    wanted = set(keys)
    folder = keys[0].rsplit("/", 1)[0] + "/"  # the keys of one file share its folder
    aborted = 0
    for upload in multipart_uploads(client, bucket, folder):
        if upload["Key"] in wanted:
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            aborted += 1
    return aborted


def abort_orphaned_multipart_uploads(client: S3Client, bucket: str, prefix: str, older_than: dt.timedelta) -> int:
    """Abort multipart uploads under ``prefix`` initiated more than ``older_than`` ago. Best effort: a server that
    cannot list multipart uploads is left alone."""
    cutoff = dt.datetime.now(dt.UTC) - older_than
    aborted = 0
    try:
        for upload in multipart_uploads(client, bucket, prefix):
            initiated = upload.get("Initiated")
            if isinstance(initiated, dt.datetime) and initiated.astimezone(dt.UTC) < cutoff:
                client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                aborted += 1
    except (BotoCoreError, ClientError):
        pass
    return aborted
