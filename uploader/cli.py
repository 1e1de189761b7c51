"""Command line of the uploader: ``python -m uploader LANDING_DIR`` and the ``upload`` subcommand of netflix-elt."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from netflix_elt.contracts import ContractError, expected_file_names

from .core import DEFAULT_PART_SIZE, DEFAULT_SPLIT_THRESHOLD, UploadError, s3_client_from_env, upload
from .report import human_bytes

EXIT_OK = 0
EXIT_FAILED = 1  # S3 unreachable, access denied, an upload failed
EXIT_CONTRACT = 2  # a landing file broke its contract, or bad usage

_SIZE = re.compile(r"\s*([0-9]+)\s*([kmg]i?b?|b)?\s*", re.IGNORECASE | re.ASCII)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}

DESCRIPTION = f"""\
Upload MovieLens landing files to the stage's S3 location.

Every file in LANDING_DIR (not its subdirectories) is checked first: its name must be one of
  {expected_file_names()}
and its first line must be exactly that file's header. If any file fails, nothing is uploaded, the
problems are printed and the exit code is 2. Hidden and temporary files (.*, *.part, *.tmp, ...) are
ignored; subdirectories and non-data files such as README.txt are skipped.

Files are identified by the sha256 of their content: content already uploaded (recorded in
_netflix_elt_index/<prefix>sha256/<sha256>.json in the bucket) is skipped, even under another file name, so a
rerun uploads nothing new. Each file goes to
  s3://<bucket>/<prefix><dataset>/<uploaded at>_<sha256[:16]>/<file name>
and a plain .csv larger than --split-threshold is split at record ends into gzip parts of about
--part-size bytes, each starting with the header line:
  .../<file name>.part0001of0012.csv.gz, .part0002of0012.csv.gz, ... (the load waits for all of them)

Runs to one bucket and prefix take turns (a second run waits, then finds the files uploaded). A run that
was killed is cleaned up by the next one: the objects of its unfinished file are deleted and its multipart
uploads aborted (state: NETFLIX_ELT_UPLOAD_STATE_DIR, default ~/.local/state/netflix-elt/uploads).

S3: AWS_ENDPOINT_URL (or --endpoint-url) selects an S3-compatible server; without it, AWS with the
default credential chain. For the local stack: eval "$(netflix-elt env)". Failed requests are retried with
backoff (AWS_MAX_ATTEMPTS, default 8; NETFLIX_ELT_S3_TIMEOUT seconds per request, default 60).

Exit codes: 0 done, 1 S3 or upload failure, 2 contract violation or bad arguments."""

EPILOG = """\
examples:
  %(prog)s data/landing
  %(prog)s data/landing --dry-run
  %(prog)s data/landing --split-threshold 64MiB --part-size 32MiB --json"""


def parse_size(text: str) -> int:
    """'1048576', '64KiB', '256M', '1g' -> bytes (binary units)."""
    m = _SIZE.fullmatch(text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size in bytes (e.g. 1048576, 64KiB, 256MiB, 1GiB): {text!r}")
    unit = (m.group(2) or "").lower()[:1]
    return int(m.group(1)) * _UNITS[unit]


def _part_size(text: str) -> int:
    value = parse_size(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1 byte")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The uploader's options, shared by ``python -m uploader`` and ``netflix-elt upload``."""
    parser.add_argument("landing_dir", type=Path, metavar="LANDING_DIR", help="directory holding the landing files")
    parser.add_argument("--bucket", help="S3 bucket of the stage (default: NETFLIX_ELT_BUCKET, else netflix-landing)")
    parser.add_argument(
        "--prefix", help="key prefix of the stage in the bucket (default: NETFLIX_ELT_PREFIX, else movielens/)"
    )
    parser.add_argument(
        "--endpoint-url", help="S3-compatible endpoint (default: AWS_ENDPOINT_URL; unset means AWS itself)"
    )
    parser.add_argument(
        "--split-threshold",
        type=parse_size,
        default=DEFAULT_SPLIT_THRESHOLD,
        metavar="BYTES",
        help=f"split plain .csv files larger than this into gzip parts (default: {human_bytes(DEFAULT_SPLIT_THRESHOLD)}"
        "; units KiB, MiB, GiB accepted)",
    )
    parser.add_argument(
        "--part-size",
        type=_part_size,
        default=DEFAULT_PART_SIZE,
        metavar="BYTES",
        help=f"uncompressed size of each part of a split file (default: {human_bytes(DEFAULT_PART_SIZE)})",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the files and look up what is already uploaded, but upload nothing",
    )
    parser.add_argument(
        "--force", action="store_true", help="upload even content that the index says is already uploaded"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (also off when not a terminal)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the ``upload`` subcommand; its ``func`` takes the parsed namespace and returns an exit code."""
    parser = subparsers.add_parser(
        "upload",
        help="check landing files against the contracts and upload them to the stage's S3 location",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run_cli)
    return parser


def run_cli(args: argparse.Namespace) -> int:
    """Run an upload from parsed arguments; print the report (table or JSON) and return the exit code."""
    from netflix_elt.config import Settings

    settings = Settings.from_env()
    try:
        report = upload(
            args.landing_dir,
            bucket=args.bucket or settings.bucket,
            prefix=settings.prefix if args.prefix is None else args.prefix,
            s3_client=s3_client_from_env(args.endpoint_url),
            split_threshold=args.split_threshold,
            part_size=args.part_size,
            dry_run=args.dry_run,
            progress=not args.no_progress,
            force=args.force,
        )
    except ContractError as e:
        print(f"upload: {e}", file=sys.stderr)
        return EXIT_CONTRACT
    except (FileNotFoundError, NotADirectoryError) as e:
        print(f"upload: {e}", file=sys.stderr)
        return EXIT_CONTRACT
    except UploadError as e:
        print(f"upload: {e}", file=sys.stderr)
        if e.report is not None and e.report.files:
            print("\nbefore the failure:\n" + e.report.summary(), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("upload: interrupted; the file being uploaded was undone, run again to continue", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.summary())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m uploader",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(args)
