"""Record-aware CSV scanning and splitting into gzip-compressed parts.

A CSV record ends at a newline that is outside a quoted field. With RFC 4180 quoting (a field that contains a comma,
quote or newline is enclosed in ``"`` and an embedded ``"`` is doubled), the parity of the number of ``"`` seen since
the start of the file says whether a position is inside a quoted field: an escaped ``""`` toggles the state twice.
That is how MovieLens files and the generator quote titles and tags, and it lets both classes here work on whole
chunks with ``bytes.count``/``bytes.split`` (C speed) instead of looking at every byte in Python.

- `RecordCounter` counts the records of a stream fed in chunks.
- `split_csv` cuts a file into parts of about ``part_size`` uncompressed bytes, only at record ends, repeats the
  header line at the top of every part, gzip-compresses each part into a temporary file while reading, and yields the
  parts one by one; memory use is one read chunk plus zlib's state, whatever the file size.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK_SIZE = 1 << 20  # bytes read at a time
QUOTE = b'"'
NEWLINE = b"\n"


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


class _PartWriter:
    """Streams one part through gzip into a temporary file, counting its bytes and records."""

    def __init__(self, number: int, header: bytes, tmp_dir: Path | None, compresslevel: int, stem: str) -> None:
        self.number = number
        fd, name = tempfile.mkstemp(prefix=f".{stem}.part{number:04d}.", suffix=".csv.gz", dir=tmp_dir)
        self.path = Path(name)
        self._raw: BinaryIO = os.fdopen(fd, "wb")
        # no file name and a fixed mtime in the gzip header: the same input gives the same bytes
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, compresslevel=compresslevel, mtime=0)
        self._gz.write(header)
        self.bytes = len(header)
        self.source_bytes = 0
        self.counter = RecordCounter()

    def write(self, data: bytes) -> None:
        self._gz.write(data)
        self.counter.feed(data)
        self.bytes += len(data)
        self.source_bytes += len(data)

    def finish(self) -> Part:
        self._gz.close()
        self._raw.close()
        return Part(
            number=self.number,
            path=self.path,
            rows=self.counter.total,
            bytes=self.bytes,
            source_bytes=self.source_bytes,
            compressed_bytes=self.path.stat().st_size,
        )

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self._gz.close()
        with contextlib.suppress(Exception):
            self._raw.close()
        self.path.unlink(missing_ok=True)


def split_csv(
    path: Path,
    part_size: int,
    *,
    tmp_dir: Path | None = None,
    compresslevel: int = 1,
    chunk_size: int = CHUNK_SIZE,
) -> Generator[Part, None, None]:
    """Split a CSV file into gzip-compressed parts of about ``part_size`` uncompressed bytes, yielding each part.

    A part is cut at the first record end at or after ``part_size`` bytes, so a part is at most one record larger
    than ``part_size`` (or larger, if a single quoted field spans more), and a record is never split between parts.
    Every part starts with the source's header line, so each one loads with SKIP_HEADER = 1; the data rows of the
    parts, concatenated, are exactly the source's data rows. A file with a header and no rows gives one part with
    only the header.

    Parts are written to temporary files in ``tmp_dir`` (default: the system temp directory). A yielded part's file
    belongs to the consumer, which deletes it; the file being written is deleted if the generator is closed early or
    fails. Each part is complete before it is yielded, so the consumer can upload part n while part n + 1 is written.
    """
    if part_size < 1:
        raise ValueError(f"part_size must be at least 1 byte, got {part_size}")
    stem = path.name
    writer: _PartWriter | None = None
    try:
        with open(path, "rb") as src:
            header = src.readline()
            if header and not header.endswith(NEWLINE):
                header += NEWLINE
            number = 0
            source_header = len(header)
            while chunk := src.read(chunk_size):
                while chunk:
                    if writer is None:
                        number += 1
                        writer = _PartWriter(number, header, tmp_dir, compresslevel, stem)
                        if number == 1:
                            writer.source_bytes = source_header
                    room = part_size - writer.bytes
                    if len(chunk) < room:
                        writer.write(chunk)
                        break
                    end = find_record_end(chunk, max(room - 1, 0), writer.counter.in_quotes)
                    if end < 0:
                        writer.write(chunk)
                        break
                    writer.write(chunk[: end + 1])
                    chunk = chunk[end + 1 :]
                    part = writer.finish()
                    writer = None
                    yield part
            if writer is None and number == 0:  # header only
                writer = _PartWriter(1, header, tmp_dir, compresslevel, stem)
                writer.source_bytes = source_header
            if writer is not None:
                part = writer.finish()
                writer = None
                yield part
    finally:
        if writer is not None:
            writer.discard()
