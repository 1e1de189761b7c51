"""Record-aware CSV scanning and splitting into gzip-compressed parts.

A CSV record ends at a newline that is outside a quoted field. With RFC 4180 quoting (a field that contains a comma,
quote or newline is enclosed in ``"`` and an embedded ``"`` is doubled), the parity of the number of ``"`` seen since
the start of the file says whether a position is inside a quoted field: an escaped ``""`` toggles the state twice.
That is how MovieLens files and the generator quote titles and tags, and it lets both classes here work on whole
chunks with ``bytes.count``/``bytes.split`` (C speed) instead of looking at every byte in Python.

- `RecordCounter` counts the records of a stream fed in chunks (and knows whether it ends inside a quoted field).
- `GzipInflater` decompresses a gzip stream fed in chunks and says whether it is corrupt or truncated.
- `PartPlanner` (and `plan_parts`, for a whole file) finds where a file is cut into parts of about ``part_size``
  uncompressed bytes, only at record ends, from chunks fed in order.
- `split_csv` compresses the planned parts into temporary gzip files (the header line repeated at the top of each),
  several at once in threads (ISA-L's igzip, which releases the GIL and is about 3x faster than zlib at level 1),
  and yields them in order; memory use is one read chunk and a compressor per thread, whatever the file size.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from isal import igzip, isal_zlib

CHUNK_SIZE = 1 << 20  # bytes read at a time
QUOTE = b'"'
NEWLINE = b"\n"
DEFAULT_WORKERS = max(1, min(4, os.cpu_count() or 1))  # parts compressed at once


class RecordCounter:
    """Counts CSV records in bytes fed chunk by chunk, tracking whether the stream is inside a quoted field.

    ``records`` counts record-ending newlines; `total` also counts a last record that has no final newline. A
    newline inside a quoted field (``"a tag\\nwith a newline"``) does not end a record.
    """

    def __init__(self) -> None:
        self.in_quotes = False
        self.records = 0
        self.unterminated = False  # bytes after the last record end (a record without its newline, so far)

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        if not self.in_quotes and QUOTE not in chunk:
            self.records += chunk.count(NEWLINE)
        else:
            segments = chunk.split(QUOTE)
            # segments[0] continues the state at the chunk start; every quote flips it
            first_outside = 1 if self.in_quotes else 0
            self.records += sum(s.count(NEWLINE) for s in segments[first_outside::2])
            if len(segments) % 2 == 0:  # an odd number of quotes
                self.in_quotes = not self.in_quotes
        self.unterminated = self.in_quotes or not chunk.endswith(NEWLINE)

    @property
    def total(self) -> int:
        """Records seen, counting a final record without a trailing newline."""
        return self.records + (1 if self.unterminated else 0)


def unclosed_quote_problem(counter: RecordCounter) -> str | None:
    """What to tell the user about a stream that ended inside a quoted field, or None if it did not.

    With every quote of the stream counted, an odd count means a quoted field that never ends: a loader would read
    every line after its opening quote as part of that one field. It opens in the record after the last complete
    one: record ``records + 1`` counting the header, so data row ``records``."""
    if not counter.in_quotes:
        return None
    row = max(counter.records, 1)
    return (
        f'a quoted field never ends: data row {row} opens a " that is not closed, so every line after it would be '
        'read as part of that field. Close the quote (inside a quoted field, write a " as "") and run the upload '
        "again."
    )


class GzipInflater:
    """Decompresses a gzip stream (every member of it) fed chunk by chunk, passing the data to ``on_data``, and finds
    what would stop a loader from reading it: corrupt compressed data, or a stream cut short (a truncated file)."""

    OUT_CHUNK = 8 << 20  # most decompressed bytes held at once, whatever the compression ratio

    def __init__(self, on_data: Callable[[bytes], None] | None = None) -> None:
        self._inflate = isal_zlib.decompressobj(31)  # wbits 16 + 15: a gzip member
        self._on_data = on_data
        self._fed = 0
        self.problem: str | None = None

    def feed(self, chunk: bytes) -> None:
        self._fed += len(chunk)
        while chunk and self.problem is None:
            if self._inflate.eof:  # another member follows (anything else after the last one is an error)
                self._inflate = isal_zlib.decompressobj(31)
            try:
                data = self._inflate.decompress(chunk, self.OUT_CHUNK)
            except isal_zlib.error as e:  # type: ignore[misc]  # IsalError is an Exception
                self.problem = (
                    f"not a readable gzip file: its compressed data is corrupt ({e}). Compress the CSV file again "
                    "with gzip, and run the upload again."
                )
                return
            if data and self._on_data is not None:
                self._on_data(data)
            chunk = self._inflate.unused_data if self._inflate.eof else self._inflate.unconsumed_tail

    def finish(self) -> str | None:
        """The problem found, if any (also a stream that ends before its last member does)."""
        if self.problem is None and not self._inflate.eof:
            self.problem = (
                f"not a complete gzip file: it ends after {self._fed:,} bytes, in the middle of its compressed data "
                "(cut short by an interrupted copy or download, or still being written). Copy or compress it again, "
                "and run the upload again."
            )
        return self.problem


def find_record_end(chunk: bytes, start: int, in_quotes: bool) -> int:
    """Index of the first record-ending newline in ``chunk`` at or after ``start``, or -1.

    ``in_quotes`` is the quote state at the beginning of ``chunk``.
    """
    if chunk.count(QUOTE, 0, start) % 2:
        in_quotes = not in_quotes
    pos = start
    while True:
        quote = chunk.find(QUOTE, pos)
        if in_quotes:
            if quote < 0:
                return -1
            in_quotes = False
            pos = quote + 1
            continue
        newline = chunk.find(NEWLINE, pos)
        if newline >= 0 and (quote < 0 or newline < quote):
            return newline
        if quote < 0:
            return -1
        in_quotes = True
        pos = quote + 1


@dataclass(frozen=True)
class Part:
    """One gzip-compressed part of a split file, in a temporary file the consumer deletes after use."""

    number: int  # 1-based
    path: Path
    rows: int  # data records (the header line is not counted)
    bytes: int  # uncompressed size, header line included
    source_bytes: int  # bytes of the source file this part covers (part 1 includes the source's header line)
    compressed_bytes: int


@dataclass(frozen=True)
class PartRange:
    """Where a part's data rows are in the source file: bytes [start, end), and how many records they hold."""

    number: int  # 1-based
    start: int
    end: int
    rows: int


@dataclass(frozen=True)
class PartPlan:
    """How a CSV file is cut into parts: its header line (with a newline), where its data rows start, the parts."""

    header: bytes
    data_start: int
    ranges: list[PartRange]


class PartPlanner:
    """Finds where a CSV byte stream fed chunk by chunk (from its first byte) is cut into parts of about
    ``part_size`` bytes: at the first record end at or after ``part_size`` bytes of a part, header line included.

    It runs alongside other passes over the file (the uploader feeds it the chunks it hashes), so planning costs no
    extra read. `finish` returns the `PartPlan`.
    """

    def __init__(self, part_size: int, on_cut: Callable[[bytes, int, PartRange], None] | None = None) -> None:
        if part_size < 1:
            raise ValueError(f"part_size must be at least 1 byte, got {part_size}")
        self.part_size = part_size
        self.header = b""
        self.data_start = 0
        self.ranges: list[PartRange] = []
        self._in_header = True
        self._offset = 0  # bytes fed so far
        self._start = 0  # where the current part's data starts
        self._counter: RecordCounter | None = None
        self._on_cut = on_cut  # called with (header, data start, part) as each part's end is found

    def feed(self, chunk: bytes) -> None:
        if self._in_header:
            newline = chunk.find(NEWLINE)
            if newline < 0:
                self.header += chunk
                self._offset += len(chunk)
                return
            self.header += chunk[: newline + 1]
            self._offset += newline + 1
            self.data_start = self._offset
            self._in_header = False
            chunk = chunk[newline + 1 :]
        while chunk:
            if self._counter is None:
                self._counter, self._start = RecordCounter(), self._offset
            room = self.part_size - len(self.header) - (self._offset - self._start)
            end = -1 if len(chunk) < room else find_record_end(chunk, max(room - 1, 0), self._counter.in_quotes)
            if end < 0:
                self._counter.feed(chunk)
                self._offset += len(chunk)
                return
            self._counter.feed(chunk[: end + 1])
            self._offset += end + 1
            chunk = chunk[end + 1 :]
            self._cut()

    def _cut(self) -> None:
        assert self._counter is not None
        self.ranges.append(PartRange(len(self.ranges) + 1, self._start, self._offset, self._counter.total))
        self._counter = None
        if self._on_cut is not None:
            self._on_cut(self.header, self.data_start, self.ranges[-1])

    def finish(self) -> PartPlan:
        if self._counter is not None:
            self._cut()
        if self._in_header:  # a header line without a newline and nothing after it
            self.data_start = self._offset
        header = self.header if not self.header or self.header.endswith(NEWLINE) else self.header + NEWLINE
        return PartPlan(header, self.data_start, list(self.ranges))


def plan_parts(path: Path, part_size: int, *, chunk_size: int = CHUNK_SIZE) -> PartPlan:
    """The `PartPlan` of a CSV file (see `PartPlanner`), in one sequential read. A file with a header and no rows
    has no parts."""
    planner = PartPlanner(part_size)
    with open(path, "rb") as src:
        while chunk := src.read(chunk_size):
            planner.feed(chunk)
    return planner.finish()


def compress_part(
    path: Path,
    header: bytes,
    data_start: int,
    r: PartRange,
    *,
    tmp_dir: Path | None = None,
    compresslevel: int = 1,
    chunk_size: int = CHUNK_SIZE,
) -> Part:
    """Compress one planned part of ``path``, the header line first, into a temporary gzip file in ``tmp_dir``."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.part{r.number:04d}.", suffix=".csv.gz", dir=tmp_dir)
    out = Path(name)
    try:
        # no file name and a fixed mtime in the gzip header: the same input gives the same bytes
        with (
            os.fdopen(fd, "wb") as raw,
            open(path, "rb") as src,
            igzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=compresslevel, mtime=0) as gz,
        ):
            gz.write(header)
            src.seek(r.start)
            left = r.end - r.start
            while left > 0:
                data = src.read(min(chunk_size, left))
                if not data:
                    raise OSError(f"{path.name} became shorter while it was being split")
                gz.write(data)
                left -= len(data)
        return Part(
            number=r.number,
            path=out,
            rows=r.rows,
            bytes=len(header) + r.end - r.start,
            source_bytes=r.end - r.start + (data_start if r.number == 1 else 0),
            compressed_bytes=out.stat().st_size,
        )
    except BaseException:
        out.unlink(missing_ok=True)
        raise


def split_csv(
    path: Path,
    part_size: int,
    *,
    tmp_dir: Path | None = None,
    compresslevel: int = 1,
    chunk_size: int = CHUNK_SIZE,
    workers: int = DEFAULT_WORKERS,
    plan: PartPlan | None = None,
    started: dict[int, Future[Part]] | None = None,
) -> Generator[Part, None, None]:
    """Split a CSV file into gzip-compressed parts of about ``part_size`` uncompressed bytes, yielding each part.

    A part is cut at the first record end at or after ``part_size`` bytes, so a part is at most one record larger
    than ``part_size`` (or larger, if a single quoted field spans more), and a record is never split between parts.
    Every part starts with the source's header line, so each one loads with SKIP_HEADER = 1; the data rows of the
    parts, concatenated, are exactly the source's data rows. A file with a header and no rows gives one part with
    only the header.

    ``plan`` is the file's `PartPlanner` result if a pass over it has made one already (else the file is read once
    more to make it); ``started`` maps part numbers to compressions already running (the generator owns them from
    then on). Parts are compressed by ``workers`` threads, ahead of the consumer by at most that many parts, into temporary
    files in ``tmp_dir`` (default: the system temp directory), and yielded in order. A yielded part's file belongs
    to the consumer, which deletes it; parts not yet yielded are deleted if the generator is closed early or fails.
    """
    plan = plan or plan_parts(path, part_size, chunk_size=chunk_size)
    ranges = plan.ranges or [PartRange(1, plan.data_start, plan.data_start, 0)]  # header only: one part
    started = dict(started or {})
    pending: deque[Future[Part]] = deque()
    todo = deque(ranges)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="uploader-gzip") as pool:
        try:
            while todo or pending:
                while todo and (len(pending) < max(1, workers) or todo[0].number in started):
                    r = todo.popleft()
                    if r.number in started:
                        pending.append(started.pop(r.number))
                    else:
                        pending.append(
                            pool.submit(
                                compress_part,
                                path,
                                plan.header,
                                plan.data_start,
                                r,
                                tmp_dir=tmp_dir,
                                compresslevel=compresslevel,
                                chunk_size=chunk_size,
                            )
                        )
                yield pending.popleft().result()
        finally:
            discard(list(pending) + list(started.values()))


def discard(futures: list[Future[Part]]) -> None:
    """Cancel compressions not started yet and delete the files of the others (waiting for them to finish)."""
    for future in futures:
        future.cancel()
    for future in futures:
        with contextlib.suppress(BaseException):
            if not future.cancelled():
                future.result().path.unlink(missing_ok=True)
