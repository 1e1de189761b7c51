"""What an upload did, per landing file and in total: `FileResult` and `UploadReport`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["uploaded", "already uploaded", "would upload", "skipped"]
UPLOADED: Status = "uploaded"
ALREADY_UPLOADED: Status = "already uploaded"
WOULD_UPLOAD: Status = "would upload"  # only in a dry run
SKIPPED: Status = "skipped"


@dataclass
class FileResult:
    """One entry of the landing directory and what happened to it.

    ``keys`` are stage keys relative to the stage location (without the prefix): the objects written for this file
    in this run (status "uploaded"), the objects an earlier upload of the same content wrote ("already uploaded"),
    or the key the file would get ("would upload"; empty for a file that would be split, whose part count is only
    known once it is split).
    """

    name: str
    dataset: str | None
    status: Status
    keys: list[str] = field(default_factory=list)
    bytes: int = 0  # size of the landing file
    parts: int = 0  # number of gzip parts the file was split into; 0 when uploaded as one object
    seconds: float = 0.0  # time spent uploading this file (splitting and compressing included)
    sha256: str | None = None
    rows: int | None = None  # data rows (header excluded); None for .csv.gz files, which are not decompressed
    part_rows: list[int] = field(default_factory=list)  # data rows of each part, for split files
    uploaded_bytes: int = 0  # bytes sent to S3 (the compressed size for split files)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


@dataclass
class UploadReport:
    """The result of one `upload` call.

    ``uploaded_keys`` is what the load procedure receives: the stage keys (relative to the stage location) of the
    objects written in this run. ``staged_keys`` adds the keys of files whose content an earlier run uploaded.
    """

    landing_dir: str
    bucket: str
    prefix: str
    uploaded_at: str  # UTC, YYYYMMDDTHHMMSSZ; part of every key written in this run
    dry_run: bool = False
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    recovered: list[str] = field(default_factory=list)  # what was cleaned up after an interrupted earlier run

    def by_status(self, status: Status) -> list[FileResult]:
        return [f for f in self.files if f.status == status]

    @property
    def uploaded(self) -> list[FileResult]:
        return self.by_status(UPLOADED)

    @property
    def already_uploaded(self) -> list[FileResult]:
        return self.by_status(ALREADY_UPLOADED)

    @property
    def skipped(self) -> list[FileResult]:
        return self.by_status(SKIPPED)

    @property
    def uploaded_keys(self) -> list[str]:
        return [k for f in self.uploaded for k in f.keys]

    @property
    def staged_keys(self) -> list[str]:
        return [k for f in self.files if f.status in (UPLOADED, ALREADY_UPLOADED) for k in f.keys]

    @property
    def totals(self) -> dict[str, Any]:
        uploaded = self.uploaded
        upload_seconds = sum(f.seconds for f in uploaded)
        source_bytes = sum(f.bytes for f in uploaded)
        return {
            "files": len(self.files),
            "uploaded": len(uploaded),
            "already_uploaded": len(self.already_uploaded),
            "would_upload": len(self.by_status(WOULD_UPLOAD)),
            "skipped": len(self.skipped),
            "objects_written": len(self.uploaded_keys),
            "bytes": source_bytes,
            "uploaded_bytes": sum(f.uploaded_bytes for f in uploaded),
            "upload_seconds": round(upload_seconds, 3),
            "bytes_per_second": round(source_bytes / upload_seconds) if upload_seconds > 0 else None,
            "seconds": round(self.seconds, 3),
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything in the report as JSON-serialisable values (``json.dumps(report.to_dict())`` works)."""
        return {
            "landing_dir": self.landing_dir,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "stage_url": f"s3://{self.bucket}/{self.prefix}",
            "uploaded_at": self.uploaded_at,
            "dry_run": self.dry_run,
            "files": [f.to_dict() for f in self.files],
            "uploaded_keys": self.uploaded_keys,
            "staged_keys": self.staged_keys,
            "totals": self.totals,
            "recovered": self.recovered,
        }

    def summary(self) -> str:
        """A plain-text table: one line per landing entry, the keys written or found, and totals."""
        lines = [f"recovered: {note}" for note in self.recovered]
        lines.append(f"{'file':<30} {'status':<17} {'size':>10} {'rows':>12} {'parts':>5} {'seconds':>8}")
        for f in self.files:
            rows = "" if f.rows is None else f"{f.rows:,}"
            parts = str(f.parts) if f.parts else ""
            seconds = f"{f.seconds:.1f}" if f.status == UPLOADED else ""
            size = human_bytes(f.bytes) if f.status != SKIPPED else ""
            lines.append(f"{f.name:<30} {f.status:<17} {size:>10} {rows:>12} {parts:>5} {seconds:>8}".rstrip())
            detail = _keys_line(f.keys)
            if detail:
                lines.append(f"    {detail}")
            if f.note:
                lines.append(f"    {f.note}")
        t = self.totals
        rate = f", {human_bytes(t['bytes_per_second'])}/s" if t["bytes_per_second"] else ""
        counts = [f"{t['uploaded']} uploaded", f"{t['already_uploaded']} already uploaded", f"{t['skipped']} skipped"]
        if self.dry_run:
            counts.insert(0, f"{t['would_upload']} would upload (dry run: nothing was written)")
        lines.append(
            f"total: {', '.join(counts)}; {t['objects_written']} objects, {human_bytes(t['uploaded_bytes'])} sent "
            f"for {human_bytes(t['bytes'])} of landing files in {t['upload_seconds']:.1f} s{rate}"
        )
        lines.append(f"stage: s3://{self.bucket}/{self.prefix}  uploaded_at {self.uploaded_at}")
        return "\n".join(lines)


def _keys_line(keys: list[str]) -> str:
    if not keys:
        return ""
    if len(keys) == 1:
        return f"-> {keys[0]}"
    return f"-> {keys[0]} ... {keys[-1].rsplit('/', 1)[-1]} ({len(keys)} objects)"
