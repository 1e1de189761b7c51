"""Validate a landing directory against the file contracts and upload its files to the stage's S3 location.

`upload` works in three phases, and writes nothing until the first two have passed:

1. **Check** (`check_landing`): list the landing directory (not recursively), ignore hidden and temporary files
   (``.*``, ``~*``, ``*.part``, ``*.partial``, ``*.tmp``, ...), report directories and non-data files (``README.txt``)
   as skipped, and check every data file's name and header line against ``netflix_elt.contracts``. If any file
   fails, raise a `LandingError` that lists every bad file with what was expected and what was found; nothing is
   uploaded. A symbolic link is followed only to a file inside the landing directory: one that points out of it is
   never read (a data file name makes it an error, any other a skip), so neither its content nor its first line
   can end up on S3 or in a message.
2. **Identify**: stream each file through sha256 (1 MiB reads), and look up the content index in the bucket,
   ``_netflix_elt_index/{prefix}sha256/{sha256}.json`` (outside the stage's location). Content that is already there is not uploaded again, whatever the
   file's name now (``ratings.csv`` copied to ``ratings_20240722.csv`` is "already uploaded"). The same read finds
   what would keep a loader from reading a file whole: a quoted field that never ends, or a .csv.gz file that is
   corrupt or truncated (it is decompressed on the way). Such files raise a `LandingError`; nothing is uploaded.
3. **Upload**: each file goes to ``{prefix}{stage_key(dataset, uploaded_at, sha256, name)}`` through boto3's
   managed transfer (multipart, a few threads, bounded memory; a failed multipart upload is aborted). A file larger
   than ``split_threshold`` is cut at record ends (found during the identify pass) into gzip-compressed parts of
   about ``part_size`` bytes, each starting with the header line, compressed a few at a time in threads and
   uploaded as ``stage_key(..., part=n, parts=count)``. The index object is written last, after
   every object of the file is in place; if anything fails, the objects already written for that file are deleted
   and no index is written, so the next run uploads the file again.

Uploads to one destination (bucket and prefix) from one machine take turns: a run holds a lock file in the
uploader's state directory (``NETFLIX_ELT_UPLOAD_STATE_DIR``, default ``~/.local/state/netflix-elt/uploads``) from
the identify phase to the end, so a second run waits and then finds the first run's files already uploaded. Before
a file is sent, the keys it will have are written to a journal next to the lock, and cleared once its index is
written. A run that was killed (power loss, ``kill -9``) leaves its journal behind, and the next run first deletes
the objects of the unfinished file and aborts its multipart uploads. Multipart uploads under the prefix started
more than a day ago (by a run on another machine that died) are aborted too.

Every object carries metadata ``sha256`` (full hex), ``source-file`` and ``source-size``; the index object is what
the uploader relies on, because not every S3-compatible server keeps metadata (rclone's does not across restarts).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import json
import math
import os
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from netflix_elt import contracts
from netflix_elt.contracts import ContractError

from .lock import UploadJournal, abort_orphaned_multipart_uploads, destination_lock
from .report import ALREADY_UPLOADED, SKIPPED, UPLOADED, WOULD_UPLOAD, FileResult, UploadReport, human_bytes
from .split import (
    GzipInflater,
    Part,
    PartPlan,
    PartPlanner,
    PartRange,
    RecordCounter,
    compress_part,
    discard,
    plan_parts,
    split_csv,
    unclosed_quote_problem,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

MiB = 1 << 20
DEFAULT_SPLIT_THRESHOLD = 256 * MiB  # files larger than this (uncompressed) are split into gzip parts
DEFAULT_PART_SIZE = 128 * MiB  # uncompressed bytes per part
DEFAULT_COMPRESSLEVEL = 1  # gzip level of parts: ~5x faster than level 6 on MovieLens CSV, parts ~20% larger
MULTIPART_CHUNK_SIZE = 16 * MiB
MULTIPART_CONCURRENCY = 4
SPECULATIVE_PARTS = 2  # parts of a file compressed while it is still being hashed
HASH_CHUNK_SIZE = 1 * MiB
MAX_HEADER_BYTES = 64 * 1024
INDEX_ROOT = "_netflix_elt_index/"  # outside the stage's location, so LIST @stage sees only data files
INDEX_VERSION = 1
ORPHAN_MULTIPART_AGE = dt.timedelta(days=1)  # multipart uploads under the prefix older than this are aborted
DEFAULT_MAX_ATTEMPTS = 8  # S3 requests are retried with exponential backoff (botocore "standard" mode)
DEFAULT_S3_TIMEOUT = 60.0  # seconds to connect, and to wait for each answer, before a request is retried

TEMP_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".swp", "~")
DATA_SUFFIXES = (".gz", ".zip", ".bz2", ".xz", ".zst", ".tsv", ".parquet")

ProgressCallback = Callable[[float], None]


class LandingError(ContractError):
    """Landing files that do not meet their contracts. Nothing was uploaded.

    ``problems`` has one message per bad file (each names the file, says what was expected and what was found);
    ``str(error)`` lists them all and says what to do.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        count = f"{len(problems)} landing file{'s' if len(problems) != 1 else ''}"
        body = "\n\n".join(problems)
        super().__init__(
            f"{count} did not pass the file contracts, so nothing was uploaded:\n\n{body}\n\n"
            "Fix or remove these files (or move them out of the landing directory) and run the upload again."
        )


class UploadError(RuntimeError):
    """S3 could not be reached or an upload failed. ``report`` has what was done before the failure.

    Files reported as uploaded are complete (their index objects are written); the file that failed left no objects
    behind, and a rerun uploads it and every file after it.
    """

    def __init__(self, message: str, report: UploadReport | None = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class LandingFile:
    """A landing file that passed its name and header checks."""

    path: Path
    matched: contracts.FileName
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def dataset(self) -> str:
        return self.matched.contract.dataset


@dataclass
class LandingCheck:
    """Result of `check_landing`: the files to upload, in upload order, and the entries skipped with a note."""

    files: list[LandingFile] = field(default_factory=list)
    skipped: list[FileResult] = field(default_factory=list)


# -- S3 client ---------------------------------------------------------------------------------------------------------


def s3_client_from_env(endpoint_url: str | None = None) -> S3Client:
    """An S3 client configured from the environment (and ``.env``), for AWS or any S3-compatible server.

    The endpoint is ``endpoint_url``, else ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``; with none of them set
    the client talks to AWS. Credentials and region come from boto3's default chain (environment variables, shared
    config and credentials files, SSO, container and instance roles). A custom endpoint gets path-style addressing
    and region us-east-1 unless a region is configured, which is what S3-compatible servers expect. Failed requests
    (connection refused, timeouts, throttling, 5xx) are retried with exponential backoff and jitter, up to
    ``AWS_MAX_ATTEMPTS`` attempts (default 8) in ``AWS_RETRY_MODE`` (default ``standard``); a request that gets no
    answer within ``NETFLIX_ELT_S3_TIMEOUT`` seconds (default 60) counts as failed.
    """
    import boto3
    from botocore.config import Config

    from netflix_elt.config import load_dotenv_file

    load_dotenv_file()
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    attempts = int(os.environ.get("AWS_MAX_ATTEMPTS") or DEFAULT_MAX_ATTEMPTS)
    mode = os.environ.get("AWS_RETRY_MODE") or "standard"
    timeout = float(os.environ.get("NETFLIX_ELT_S3_TIMEOUT") or DEFAULT_S3_TIMEOUT)
    options: dict[str, Any] = {
        "retries": {"total_max_attempts": attempts, "mode": mode},  # AWS_MAX_ATTEMPTS counts the first try too
        "max_pool_connections": 16,
        "connect_timeout": timeout,
        "read_timeout": timeout,
    }
    region = None
    if endpoint:
        options["s3"] = {"addressing_style": "path"}
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.client("s3", endpoint_url=endpoint, region_name=region, config=Config(**options))


def default_transfer_config() -> TransferConfig:
    """boto3 managed transfer settings: 16 MiB multipart parts, 4 threads, in-process (no CRT).

    Uploads go through ``upload_file`` (from a path), which reads each part from disk as it is sent instead of
    buffering it, so memory stays at a few MiB per thread whatever the file size.
    """
    return TransferConfig(
        multipart_threshold=MULTIPART_CHUNK_SIZE,
        multipart_chunksize=MULTIPART_CHUNK_SIZE,
        max_concurrency=MULTIPART_CONCURRENCY,
        use_threads=True,
        preferred_transfer_client="classic",
    )


def normalize_prefix(prefix: str) -> str:
    """'movielens' -> 'movielens/', '/a/b/' -> 'a/b/', '' -> ''."""
    prefix = prefix.lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def index_key(prefix: str, sha256_hex: str) -> str:
    """Bucket key of the content index object for a file's sha256."""
    return f"{INDEX_ROOT}{normalize_prefix(prefix)}sha256/{sha256_hex}.json"


# -- phase 1: check ----------------------------------------------------------------------------------------------------


def is_ignored(name: str) -> bool:
    """Hidden and temporary files: being written, or not meant for upload."""
    lower = name.lower()
    return name.startswith((".", "~")) or lower.endswith(TEMP_SUFFIXES)


def looks_like_data(name: str) -> bool:
    """A name that should be a MovieLens file (so an unknown one is an error, not a skip)."""
    lower = name.lower()
    return ".csv" in lower or lower.endswith(DATA_SUFFIXES)


def read_header_line(path: Path, gzipped: bool) -> str:
    """The first line of a file (through gzip for .gz), decoded as UTF-8. Raises ContractError if unreadable."""
    name = path.name
    try:
        if gzipped:
            with gzip.open(path, "rb") as gz:
                raw = gz.readline(MAX_HEADER_BYTES)
        else:
            with open(path, "rb") as f:
                raw = f.readline(MAX_HEADER_BYTES)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise ContractError(
            f"{name}: not a readable gzip file ({e}). Compress it again with gzip, or, if it is plain CSV, "
            "remove .gz from its name."
        ) from None
    except OSError as e:
        raise ContractError(f"{name}: cannot be read ({e.strerror or e}). Check its permissions.") from None
    if not raw:
        raise ContractError(f"{name}: the file is empty; it must start with the header line.")
    if not gzipped and raw.startswith(b"\x1f\x8b"):
        raise ContractError(f"{name}: the file is gzip-compressed; name it {name}.gz.")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ContractError(
            f"{name}: the header line is not UTF-8 text. Save the file as UTF-8 (MovieLens files are UTF-8)."
        ) from None


def _upload_order(f: LandingFile) -> tuple[str, int, str]:
    # snapshots before daily files, days in order, datasets in contract order within a day
    return (f.matched.date or "", contracts.DATASETS.index(f.dataset), f.name)


def check_landing(landing_dir: str | Path) -> LandingCheck:
    """List a landing directory and check every data file's name and header. Reads only the first line of each file.

    Raises `LandingError` listing every bad file (unknown name, wrong header, empty, not UTF-8, broken gzip, a
    symbolic link out of the landing directory), and FileNotFoundError / NotADirectoryError if ``landing_dir`` is not
    a directory. Hidden and temporary files are ignored; subdirectories (including one named like ``ratings.csv``),
    special files and non-data files such as ``README.txt`` are returned as skipped with a note. Links out of the
    landing directory are never read.
    """
    landing = Path(landing_dir)
    if not landing.exists():
        raise FileNotFoundError(f"landing directory {landing} does not exist")
    if not landing.is_dir():
        raise NotADirectoryError(f"landing directory {landing} is not a directory")
    result = LandingCheck()
    problems: list[str] = []
    real_landing = landing.resolve()
    for path in sorted(landing.iterdir(), key=lambda p: p.name):
        name = path.name
        if is_ignored(name):
            continue
        if _links_out_of(path, real_landing):
            # never followed: a link to ~/.ssh/id_rsa must not be read, let alone uploaded or quoted in a message
            if looks_like_data(name):
                problems.append(
                    f"{contracts.shown_name(name)}: a symbolic link to a file outside the landing directory; such links are not "
                    "followed (the file is not read). To upload that file, copy the file into the landing directory "
                    "in place of the link."
                )
            else:
                note = "a symbolic link to outside the landing directory: not followed, not uploaded"
                result.skipped.append(FileResult(name, None, SKIPPED, note=note))
            continue
        if path.is_dir():
            note = "a directory, not a file: not uploaded (the landing directory is not scanned recursively)"
            result.skipped.append(FileResult(name, _dataset_of(name), SKIPPED, note=note))
            continue
        if not path.is_file():
            note = "not a regular file (broken link, socket or pipe): not uploaded"
            result.skipped.append(FileResult(name, _dataset_of(name), SKIPPED, note=note))
            continue
        if not looks_like_data(name):
            note = "not a data file (only MovieLens .csv and .csv.gz files are uploaded)"
            result.skipped.append(FileResult(name, None, SKIPPED, note=note))
            continue
        try:
            matched = contracts.contract_for(name)
            contracts.check_header(name, matched.contract, read_header_line(path, matched.gzipped))
        except ContractError as e:
            problems.append(str(e))
            continue
        st = path.stat()
        result.files.append(LandingFile(path, matched, st.st_size, st.st_mtime_ns))
    if problems:
        raise LandingError(problems)
    result.files.sort(key=_upload_order)
    return result


def _links_out_of(path: Path, real_landing: Path) -> bool:
    """Whether ``path`` is a symbolic link that leads out of the landing directory (or nowhere: a loop)."""
    if not path.is_symlink():
        return False
    try:
        return not path.resolve().is_relative_to(real_landing)
    except (OSError, RuntimeError):  # a loop of links
        return True


def _dataset_of(name: str) -> str | None:
    matched = contracts.match_file_name(name)
    return matched.contract.dataset if matched else None


# -- phase 2: identify -------------------------------------------------------------------------------------------------


def file_sha256(
    path: Path, *, count_rows: bool = False, on_bytes: ProgressCallback | None = None
) -> tuple[str, int | None]:
    """The file's sha256 (hex), read in 1 MiB chunks, and, if ``count_rows``, its number of CSV data rows.

    Rows are records after the header line, counted outside quoted fields (see `uploader.split.RecordCounter`).
    """
    scanned = _scan(path, count_rows=count_rows, on_bytes=on_bytes)
    return scanned.sha256, scanned.rows


@dataclass
class _Scanned:
    sha256: str
    rows: int | None
    plan: PartPlan | None  # where the file is cut into parts, if it is to be split
    problem: str | None = None  # why a loader could not read the file whole (an unclosed quote, a broken gzip)


def _scan(
    path: Path,
    *,
    count_rows: bool,
    on_bytes: ProgressCallback | None = None,
    part_size: int | None = None,
    on_cut: Callable[[bytes, int, PartRange], None] | None = None,
    gzipped: bool = False,
) -> _Scanned:
    """One read of the file: its sha256, its rows (if ``count_rows``) and, with ``part_size``, its parts (each
    passed to ``on_cut`` as soon as its end is found). With ``count_rows`` or ``gzipped`` (a .csv.gz file is
    decompressed on the way), whatever would keep a loader from reading it whole is the result's ``problem``."""
    digest = hashlib.sha256()
    counter = RecordCounter() if count_rows or gzipped else None
    inflater = GzipInflater(counter.feed if counter is not None else None) if gzipped else None
    planner = PartPlanner(part_size, on_cut) if part_size else None
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_SIZE):
            digest.update(chunk)
            if inflater is not None:
                inflater.feed(chunk)
            elif counter is not None:
                counter.feed(chunk)
            if planner is not None:
                planner.feed(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    rows = max(counter.total - 1, 0) if counter is not None and count_rows else None
    problem = inflater.finish() if inflater is not None else None
    if problem is None and counter is not None:
        problem = unclosed_quote_problem(counter)
    return _Scanned(digest.hexdigest(), rows, planner.finish() if planner is not None else None, problem)


def read_index(client: S3Client, bucket: str, key: str) -> dict[str, Any] | None:
    """The content index object at ``key``, or None if there is none.

    A GET that answers "no such key" means the content was not uploaded; an index object that cannot be parsed
    still counts as present (it is only written after a complete upload) and reads as an empty dict.
    """
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as e:
        if _error_code(e) in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _error_code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


# -- progress ----------------------------------------------------------------------------------------------------------


class _Progress:
    """A thread-safe tqdm byte counter (bytes, rate in bytes/s) or a no-op when disabled."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self._lock = threading.Lock()
        self._bar: Any = None
        if enabled and total > 0:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, leave=True
            )

    def __call__(self, n: float) -> None:
        if self._bar is not None and n:
            with self._lock:
                self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class _ScaledProgress:
    """Credits the progress bar with source bytes while a compressed part of known ratio is sent."""

    def __init__(self, progress: _Progress, source_bytes: int, sent_bytes: int) -> None:
        self._progress = progress
        self._ratio = source_bytes / sent_bytes if sent_bytes else 0.0
        self._source_bytes = source_bytes
        self._sent = 0
        self._credited = 0

    def __call__(self, n: int) -> None:
        self._sent += n  # boto3 reports negative amounts when it rewinds to retry
        target = max(0, min(int(self._sent * self._ratio), self._source_bytes))
        self._progress(target - self._credited)
        self._credited = target

    def finish(self) -> None:
        self._progress(self._source_bytes - self._credited)
        self._credited = self._source_bytes


# -- phase 3: upload ---------------------------------------------------------------------------------------------------


@dataclass
class _Prepared:
    """Left by the identify pass for the upload of a file to split."""

    plan: PartPlan | None = None  # where the file is cut
    started: dict[int, Future[Part]] = field(default_factory=dict)  # its first parts, being compressed


@dataclass
class _Uploader:
    client: S3Client
    bucket: str
    prefix: str
    uploaded_at: str
    split_threshold: int
    part_size: int
    transfer_config: TransferConfig
    tmp_dir: Path | None
    compresslevel: int
    progress: _Progress
    journal: UploadJournal
    left_behind: list[str] = field(default_factory=list)  # keys of a failed file that could not be deleted
    # per file to split: where to cut it (from the identify pass) and its first parts, compressed meanwhile
    prepared: dict[Path, _Prepared] = field(default_factory=dict)
    _pool: ThreadPoolExecutor | None = None

    def compress_ahead(self, lf: LandingFile, prepared: _Prepared) -> Callable[[bytes, int, PartRange], None]:
        """An ``on_cut`` for the identify pass: compress the file's first parts in a thread while the hashing thread
        reads on (on two cores, both are busy instead of one); dropped if the content turns out to be uploaded."""

        def offer(header: bytes, data_start: int, r: PartRange) -> None:
            if len(prepared.started) < SPECULATIVE_PARTS:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uploader-ahead")
                prepared.started[r.number] = self._pool.submit(
                    compress_part,
                    lf.path,
                    header,
                    data_start,
                    r,
                    tmp_dir=self.tmp_dir,
                    compresslevel=self.compresslevel,
                )

        return offer

    def drop(self, path: Path) -> None:
        """Forget what was prepared for a file that will not be uploaded (and delete its compressed parts)."""
        prepared = self.prepared.pop(path, None)
        if prepared is not None:
            discard(list(prepared.started.values()))

    def close(self) -> None:
        """Delete compressed parts that were not uploaded and stop the compression thread."""
        for path in list(self.prepared):
            self.drop(path)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def upload_file(self, lf: LandingFile, sha: str, rows: int | None) -> FileResult:
        began = time.perf_counter()
        result = FileResult(lf.name, lf.dataset, UPLOADED, bytes=lf.size, sha256=sha, rows=rows)
        written: list[str] = []
        try:
            if self.should_split(lf):
                self._upload_parts(lf, sha, result, written)
            else:
                key = contracts.stage_key(lf.dataset, self.uploaded_at, sha, lf.name)
                self.journal.begin(index_key(self.prefix, sha), [self.prefix + key])
                written.append(key)
                self._put_file(lf.path, key, self._metadata(lf, sha), self.progress, gzipped=lf.matched.gzipped)
                result.uploaded_bytes = lf.size
            st = lf.path.stat()
            if (st.st_size, st.st_mtime_ns) != (lf.size, lf.mtime_ns):
                raise UploadError(
                    f"{lf.name} changed while it was being uploaded; the upload of it was undone. Let writers "
                    "create files under a temporary name (.part, .tmp or a leading dot) and rename them when complete."
                )
            if result.parts and rows is not None and sum(result.part_rows) != rows:
                raise UploadError(
                    f"{lf.name}: the parts hold {sum(result.part_rows):,} rows but the file has {rows:,}; "
                    "the upload of it was undone."
                )
            result.keys = list(written)
            self._put_index(lf, sha, result)
        except BaseException:
            if self._delete(written):
                self.journal.clear()
            else:  # S3 may be down: the journal tells the next run to delete them
                self.left_behind = list(written)
            raise
        self.journal.clear()
        result.seconds = round(time.perf_counter() - began, 3)
        return result

    def should_split(self, lf: LandingFile) -> bool:
        return not lf.matched.gzipped and lf.size > self.split_threshold

    def _metadata(self, lf: LandingFile, sha: str) -> dict[str, str]:
        return {"sha256": sha, "source-file": lf.name, "source-size": str(lf.size)}

    def _put_file(
        self, path: Path, key: str, metadata: dict[str, str], callback: Callable[[int], None], *, gzipped: bool
    ) -> None:
        extra = {"Metadata": metadata, "ContentType": "application/gzip" if gzipped else "text/csv"}
        self.client.upload_file(
            str(path), self.bucket, self.prefix + key, ExtraArgs=extra, Config=self.transfer_config, Callback=callback
        )

    def _upload_parts(self, lf: LandingFile, sha: str, result: FileResult, written: list[str]) -> None:
        """Split, compress and upload; part n is uploaded in a worker thread while part n + 1 is compressed."""
        metadata = self._metadata(lf, sha)

        def send(part_path: Path, key: str, part_metadata: dict[str, str], scaled: _ScaledProgress) -> None:
            try:
                self._put_file(part_path, key, part_metadata, scaled, gzipped=True)
                scaled.finish()
            finally:
                part_path.unlink(missing_ok=True)

        prepared = self.prepared.pop(lf.path, None) or _Prepared()
        plan = prepared.plan or plan_parts(lf.path, self.part_size)
        count = max(1, len(plan.ranges))  # a file with a header and no rows is one part
        keys = [
            contracts.stage_key(lf.dataset, self.uploaded_at, sha, lf.name, part=n, parts=count)
            for n in range(1, count + 1)
        ]
        self.journal.begin(index_key(self.prefix, sha), [self.prefix + k for k in keys])
        parts = split_csv(
            lf.path,
            self.part_size,
            tmp_dir=self.tmp_dir,
            compresslevel=self.compresslevel,
            plan=plan,
            started=prepared.started,
        )
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="uploader-part") as pool, contextlib.closing(parts):
            pending: Future[None] | None = None
            for part in parts:
                try:
                    if pending is not None:
                        pending.result()
                except BaseException:
                    part.path.unlink(missing_ok=True)
                    raise
                key = keys[part.number - 1]
                written.append(key)
                result.parts = part.number
                result.part_rows.append(part.rows)
                result.uploaded_bytes += part.compressed_bytes
                part_metadata = {**metadata, "part": str(part.number), "part-rows": str(part.rows)}
                scaled = _ScaledProgress(self.progress, part.source_bytes, part.compressed_bytes)
                pending = pool.submit(send, part.path, key, part_metadata, scaled)
            if pending is not None:
                pending.result()
        result.rows = sum(result.part_rows)

    def _put_index(self, lf: LandingFile, sha: str, result: FileResult) -> None:
        parts = [
            {"key": key, "part": n, "rows": rows}
            for n, (key, rows) in enumerate(zip(result.keys, result.part_rows, strict=False), start=1)
        ]
        document = {
            "version": INDEX_VERSION,
            "sha256": sha,
            "file_name": lf.name,
            "dataset": lf.dataset,
            "size": lf.size,
            "uploaded_at": self.uploaded_at,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "keys": result.keys,
            "rows": result.rows,
            "parts": parts,
            "part_size": self.part_size if parts else None,
        }
        self.client.put_object(
            Bucket=self.bucket,
            Key=index_key(self.prefix, sha),
            Body=(json.dumps(document, indent=1) + "\n").encode("utf-8"),
            ContentType="application/json",
            Metadata={"sha256": sha, "source-file": lf.name, "source-size": str(lf.size)},
        )

    def _delete(self, keys: Iterable[str]) -> bool:
        """Best effort: remove the objects of a file whose upload did not complete. True if that worked."""
        objects: list[ObjectIdentifierTypeDef] = [{"Key": self.prefix + k} for k in keys]
        done = True
        for i in range(0, len(objects), 1000):
            try:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects[i : i + 1000], "Quiet": True})
            except Exception:
                done = False
        return done


def upload(
    landing_dir: str | Path,
    *,
    bucket: str,
    prefix: str,
    s3_client: S3Client | None = None,
    split_threshold: int = DEFAULT_SPLIT_THRESHOLD,
    part_size: int = DEFAULT_PART_SIZE,
    dry_run: bool = False,
    progress: bool = True,
    force: bool = False,
    uploaded_at: dt.datetime | None = None,
    transfer_config: TransferConfig | None = None,
    tmp_dir: str | Path | None = None,
    compresslevel: int = DEFAULT_COMPRESSLEVEL,
) -> UploadReport:
    """Check the landing directory against the contracts, then upload every file whose content is not yet staged.

    - ``bucket``/``prefix``: the stage's S3 location; objects go to ``{prefix}{stage_key(...)}``.
    - ``s3_client``: a boto3 S3 client; default `s3_client_from_env()`.
    - ``split_threshold``: a plain .csv file larger than this many bytes is split into gzip parts of about
      ``part_size`` uncompressed bytes (.csv.gz files are uploaded as they are). ``compresslevel``: gzip level of the
      parts; ``tmp_dir``: where compressed parts are written before they are sent (default: the system temp dir).
    - ``dry_run``: check and identify (which needs S3 read access for the index), upload nothing; files that would
      be uploaded are reported as "would upload".
    - ``progress``: show progress bars (bytes, bytes/s) on stderr; they are also off when stderr is not a terminal.
    - ``force``: upload even content the index says is there (new keys; the load procedure then sees it again).
    - ``uploaded_at``: the upload time in every key of this run (default: now, UTC). One run shares one time.

    Raises `LandingError` (a ContractError) if any file fails its checks, before anything is uploaded, and
    `UploadError` if S3 cannot be reached or an upload fails (with the report of what was done before).
    """
    began = time.perf_counter()
    if part_size < 1:
        raise ValueError(f"part_size must be at least 1 byte, got {part_size}")
    if split_threshold < 0:
        raise ValueError(f"split_threshold must not be negative, got {split_threshold}")
    prefix = normalize_prefix(prefix)
    when = (uploaded_at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    report = UploadReport(
        landing_dir=str(Path(landing_dir).resolve()),
        bucket=bucket,
        prefix=prefix,
        uploaded_at=when.strftime(contracts.UPLOADED_AT_FORMAT),
        dry_run=dry_run,
    )
    checked = check_landing(landing_dir)
    show = progress and sys.stderr.isatty()
    client = s3_client if s3_client is not None else s3_client_from_env()
    attempts = _max_attempts(client)
    uploader = _Uploader(
        client=client,
        bucket=bucket,
        prefix=prefix,
        uploaded_at=report.uploaded_at,
        split_threshold=split_threshold,
        part_size=part_size,
        transfer_config=transfer_config or default_transfer_config(),
        tmp_dir=Path(tmp_dir) if tmp_dir is not None else None,
        compresslevel=compresslevel,
        progress=_Progress(0, "", False),
        journal=UploadJournal(None, bucket),
    )
    results: dict[str, FileResult] = {}
    turn = contextlib.ExitStack()
    try:
        if not dry_run:
            uploader.journal = turn.enter_context(destination_lock(bucket, prefix))
            uploader.journal.recover(client, read_index)
            aborted = abort_orphaned_multipart_uploads(client, bucket, prefix, ORPHAN_MULTIPART_AGE)
            if aborted:
                uploader.journal.recovered.append(f"aborted {aborted} multipart upload(s) abandoned over a day ago")
        todo = _identify(checked.files, uploader, results, force=force, show=show, speculate=not dry_run)
        if dry_run:
            for lf, sha, rows in todo:
                results[lf.name] = _planned(lf, sha, rows, uploader)
        else:
            uploader.progress = _Progress(sum(lf.size for lf, _, _ in todo), "uploading", show)
            try:
                for lf, sha, rows in todo:
                    try:
                        results[lf.name] = uploader.upload_file(lf, sha, rows)
                    except UploadError:
                        raise
                    except (BotoCoreError, ClientError, S3UploadFailedError, OSError) as e:
                        kept = (
                            f"The {len(uploader.left_behind)} object(s) already sent for {lf.name} could not be "
                            "deleted; the next upload deletes them before it starts (a split file is loaded only "
                            "when every part is staged)"
                            if uploader.left_behind
                            else f"Nothing of {lf.name} was kept"
                        )
                        raise UploadError(
                            f"{lf.name}: upload failed: {_describe(e, bucket, attempts)}\n{kept}; files reported as uploaded "
                            "before it are complete. Run the upload again to continue."
                        ) from e
            finally:
                uploader.progress.close()
    except (BotoCoreError, ClientError) as e:
        raise UploadError(f"S3 request failed: {_describe(e, bucket, attempts)}", report) from e
    except UploadError as e:
        e.report = report
        raise
    finally:
        turn.close()
        uploader.close()
        report.recovered = list(uploader.journal.recovered)
        _link_duplicates(results)
        report.files = [results[lf.name] for lf in checked.files if lf.name in results] + checked.skipped
        report.seconds = round(time.perf_counter() - began, 3)
    return report


def _link_duplicates(results: dict[str, FileResult]) -> None:
    """Give a file whose content another file of the same run uploaded that file's keys."""
    by_sha: dict[str | None, FileResult] = {}
    for r in results.values():
        if r.keys:
            by_sha.setdefault(r.sha256, r)
    for r in results.values():
        first = by_sha.get(r.sha256)
        if r.status == ALREADY_UPLOADED and not r.keys and first is not None and first is not r:
            r.keys = list(first.keys)
            r.parts, r.part_rows = first.parts, list(first.part_rows)


def _identify(
    files: list[LandingFile],
    uploader: _Uploader,
    results: dict[str, FileResult],
    *,
    force: bool,
    show: bool,
    speculate: bool = True,
) -> list[tuple[LandingFile, str, int | None]]:
    """Hash every file and look up the index; report content already staged, return the rest in upload order.

    Raises `LandingError` (before anything is uploaded) listing the files a loader could not read whole: a quoted
    field that never ends, a .csv.gz file that is corrupt or truncated."""
    todo: list[tuple[LandingFile, str, int | None]] = []
    seen: dict[str, LandingFile] = {}
    problems: list[str] = []
    bar = _Progress(sum(lf.size for lf in files), "checking", show)
    try:
        for lf in files:
            # what is prepared for the upload of a file to split is used by it, or dropped (by close() at the latest)
            prepared = uploader.prepared.setdefault(lf.path, _Prepared()) if uploader.should_split(lf) else None
            scanned = _scan(
                lf.path,
                count_rows=not lf.matched.gzipped,
                on_bytes=bar,
                part_size=uploader.part_size if prepared is not None else None,
                on_cut=uploader.compress_ahead(lf, prepared) if prepared is not None and speculate else None,
                gzipped=lf.matched.gzipped,
            )
            sha, rows = scanned.sha256, scanned.rows
            if scanned.problem is not None:
                uploader.drop(lf.path)
                problems.append(f"{lf.name}: {scanned.problem}")
                continue
            if sha in seen:
                uploader.drop(lf.path)
                first = seen[sha]
                note = f"same content as {first.name} in this run"
                results[lf.name] = FileResult(
                    lf.name, lf.dataset, ALREADY_UPLOADED, bytes=lf.size, sha256=sha, rows=rows, note=note
                )
                continue
            seen[sha] = lf
            existing = None if force else read_index(uploader.client, uploader.bucket, index_key(uploader.prefix, sha))
            if existing is None:
                if prepared is not None:
                    prepared.plan = scanned.plan
                todo.append((lf, sha, rows))
                continue
            uploader.drop(lf.path)
            keys = [str(k) for k in existing.get("keys", [])]
            when = existing.get("uploaded_at", "?")
            as_name = existing.get("file_name", "?")
            note = f"content uploaded at {when} as {as_name}" if as_name != lf.name else f"uploaded at {when}"
            part_rows = [int(p.get("rows", 0)) for p in existing.get("parts", []) if isinstance(p, dict)]
            results[lf.name] = FileResult(
                lf.name,
                lf.dataset,
                ALREADY_UPLOADED,
                keys=keys,
                bytes=lf.size,
                parts=len(part_rows),
                sha256=sha,
                rows=rows if rows is not None else existing.get("rows"),
                part_rows=part_rows,
                note=note,
            )
    finally:
        bar.close()
    if problems:
        raise LandingError(problems)
    return todo


def _planned(lf: LandingFile, sha: str, rows: int | None, uploader: _Uploader) -> FileResult:
    result = FileResult(lf.name, lf.dataset, WOULD_UPLOAD, bytes=lf.size, sha256=sha, rows=rows)
    if uploader.should_split(lf):
        about = max(1, math.ceil(lf.size / uploader.part_size))
        result.note = f"would be split into about {about} gzip parts of {human_bytes(uploader.part_size)}"
    else:
        result.keys = [contracts.stage_key(lf.dataset, uploader.uploaded_at, sha, lf.name)]
    return result


def _max_attempts(client: Any) -> int | None:
    """How many times the client tries a request (its botocore retry configuration), if it says."""
    retries = getattr(getattr(getattr(client, "meta", None), "config", None), "retries", None)
    value = retries.get("total_max_attempts") if isinstance(retries, dict) else None
    return int(value) if value else None


def _describe(e: BaseException, bucket: str, attempts: int | None = None) -> str:
    """A short explanation of an S3 error, with what to check."""
    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

    if isinstance(e, S3UploadFailedError) and isinstance(e.__cause__, (BotoCoreError, ClientError)):
        return _describe(e.__cause__, bucket, attempts)
    if isinstance(e, NoCredentialsError):
        return (
            "no AWS credentials found. Set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE (for the local "
            "stack: eval $(netflix-elt env))."
        )
    if isinstance(e, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)):
        what = "did not answer in time" if isinstance(e, ReadTimeoutError) else "could not be reached"
        tried = f"each request was tried {attempts} times, " if attempts else "requests were retried "
        return (
            f"{e}\nThe S3 server {what} ({tried}with backoff). Is it running "
            "(for the local stack: netflix-elt up) and is AWS_ENDPOINT_URL right? Slow networks: raise "
            "NETFLIX_ELT_S3_TIMEOUT (seconds per request) or AWS_MAX_ATTEMPTS."
        )
    if isinstance(e, ClientError):
        code = _error_code(e)
        if code == "NoSuchBucket":
            return f"bucket {bucket!r} does not exist. Create it or set NETFLIX_ELT_BUCKET to the stage's bucket."
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return (
                f"access denied ({code}) on bucket {bucket!r}. The uploader needs s3:GetObject, s3:PutObject, "
                "s3:DeleteObject and s3:ListBucket on the stage prefix; check the credentials in use."
            )
    return str(e)
