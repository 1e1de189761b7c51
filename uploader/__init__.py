"""Uploader: validates landing files against the contracts and streams them to the stage's S3 location.

    from uploader import upload

    report = upload("data/landing", bucket="netflix-landing", prefix="movielens/")
    report.uploaded_keys  # stage keys (relative to the stage location) written by this run, for the load procedure

Nothing is uploaded unless every landing file passes its name and header checks (`LandingError`, a
``ContractError``, otherwise). Content already uploaded is skipped (a content index in the bucket, keyed by sha256).
Large files are split into gzip parts at record ends. See `uploader.core` for the details and ``python -m uploader
--help`` for the command line.
"""

from netflix_elt.contracts import ContractError

from .cli import register_cli, run_cli
from .core import (
    DEFAULT_PART_SIZE,
    DEFAULT_SPLIT_THRESHOLD,
    LandingCheck,
    LandingError,
    LandingFile,
    UploadError,
    check_landing,
    default_transfer_config,
    file_sha256,
    index_key,
    read_index,
    s3_client_from_env,
    upload,
)
from .report import FileResult, UploadReport
from .split import Part, RecordCounter, split_csv

__all__ = [
    "DEFAULT_PART_SIZE",
    "DEFAULT_SPLIT_THRESHOLD",
    "ContractError",
    "FileResult",
    "LandingCheck",
    "LandingError",
    "LandingFile",
    "Part",
    "RecordCounter",
    "UploadError",
    "UploadReport",
    "check_landing",
    "default_transfer_config",
    "file_sha256",
    "index_key",
    "read_index",
    "register_cli",
    "run_cli",
    "s3_client_from_env",
    "split_csv",
    "upload",
]
