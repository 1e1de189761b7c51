"""RAW.LOAD_RAW_FILES: load staged MovieLens files into the RAW tables, incrementally and exactly once.

A Snowpark Python stored procedure handler: ``main(session, files, full_refresh, datasets, dry_run)``.
Deployed by ``migrations/R__load_raw_files.sql``, which inlines ``netflix_elt/contracts.py`` and then this file
into the procedure body; run locally, it imports the contracts module instead. Standard library and Snowpark only.

For each source file on the stage (``<dataset>/<uploaded-at>_<checksum>/<name>``, possibly split into parts):

1. decide and claim, in one transaction (see "Claims"): skip it if LOAD_TRACKING already has it, or has the same
   content (checksum) loaded under another key (recorded as DUPLICATE); a split file whose parts are not all staged
   yet (part keys say "part n of m") is INCOMPLETE, and a file another CALL holds (or whose content another CALL is
   loading under another key) is SKIPPED: both are left for a later CALL. Otherwise claim it (status LOADING with
   this CALL's load id); a FAILED file, or a claim older than STALE_CLAIM_MINUTES, is taken over;
2. COPY INTO its RAW table with ON_ERROR = CONTINUE, filling the lineage columns, through a SELECT that also
   rejects rows with too few or too many fields (see "Field counts");
3. if rows were rejected, re-read the file with VALIDATION_MODE = RETURN_ALL_ERRORS into LOAD_REJECTS (file,
   line, column, error, the rejected line), so that rows parsed = rows loaded + rows rejected; a row the re-read
   reports is never left in RAW. At most MAX_REJECTS_RECORDED rows are recorded per file (FIRST_ERROR says how
   many were not); ROWS_REJECTED is always the true count;
4. move the loaded rows whose values the contract does not allow (``Column.allowed``: ratings are 0.5 to 5.0 in
   half stars) from the RAW table to LOAD_REJECTS, counted as rejected;
5. record the outcome in LOAD_TRACKING.

One file's failure does not stop the others. The result is a JSON summary: per file dataset, status, rows
parsed/loaded/rejected and first error, totals, a one-line message, and a status: FAILED (a file failed), WAITING
(none failed, but files were held by another CALL or not completely staged: a later CALL loads them), PARTIAL
(rows were rejected), SUCCESS, NOTHING_TO_LOAD or DRY_RUN.

Claims. LOAD_TRACKING's primary key is not enforced (Snowflake enforces only NOT NULL), so it cannot keep two CALLs
off one file; the claim protocol does. Every CALL makes all its tracking decisions and claim writes (new
claims, take-overs, DUPLICATE records, a full refresh's emptying) in one transaction, BEGIN ... COMMIT, whose first
statement is ``UPDATE RAW.LOAD_LOCK`` (a one-row table), and reads LOAD_TRACKING only after it. Snowflake's
documented rules make that a mutual exclusion with an up-to-date view
(https://docs.snowflake.com/en/sql-reference/transactions):
- UPDATE, DELETE and MERGE lock what they change until the transaction ends ("Resource locking"): a second CALL's
  UPDATE of the lock row waits until the first CALL's claim transaction has committed or rolled back;
- READ COMMITTED: a statement sees the data committed before the statement began. Every read of LOAD_TRACKING in
  the transaction begins after the lock was granted, so after every earlier claim transaction committed: it sees
  their claims, and the decisions made on it cannot be overtaken by another claimer;
- the claim transaction writes only what it read under the lock. The only LOAD_TRACKING writes outside it are a
  CALL's outcome of its own claim (``WHERE FILE_KEY = ... AND LOAD_ID = <its load id>``, a no-op once the file is
  taken over), so the take-over MERGE re-checks the status it acts on, and the CALL keeps only the files it then
  finds claimed under its load id.
On an error the transaction is rolled back (nothing claimed); it always ends before the handler goes on, and every
other statement autocommits, so the procedure returns with no transaction open (CALLs are made with AUTOCOMMIT on).

Times. Every recorded time (LOADED_AT, CLAIMED_AT, STARTED_AT, FINISHED_AT, REJECTED_AT, the stale-claim limit) is
UTC from SYSDATE(): CURRENT_TIMESTAMP() is in the session's TIMEZONE (by default America/Los_Angeles), whose wall
clock goes back an hour each autumn. A COPY's LOADED_AT is the SYSDATE() read just before it, as a literal:
SYSDATE is not among the functions Snowflake documents for COPY transformations, casts are
(https://docs.snowflake.com/en/user-guide/data-load-transform#supported-functions).

File identity. SOURCE_FILE is METADATA$FILENAME: the stage-relative key, or on an external stage whose URL has a
path, the object's path in the bucket, which starts with that path (``movielens/ratings/...``). The procedure learns
the path from LIST (``s3://<bucket>/<path>/<key>``) and finds a file's rows by ``SOURCE_FILE IN (<both forms of
each staged object>)``: exact values keep Snowflake's pruning on SOURCE_FILE, where a suffix match (LIKE '%key')
would read every micro-partition of the RAW table. LOAD_REJECTS.STAGED_FILE is always the stage-relative key.

Field counts. In a COPY with a SELECT, Snowflake ignores ERROR_ON_COLUMN_COUNT_MISMATCH: a missing field is NULL,
an extra one is dropped (https://docs.snowflake.com/en/user-guide/data-load-transform). The COPY therefore reads
with RAW.CSV_MOVIELENS_LOAD (EMPTY_FIELD_AS_NULL = FALSE, NULL_IF = ()), where a field is NULL only when the row
does not have it, selects NULLIF(NULLIF($k, ''), '\\N') for each column (as RAW.CSV_MOVIELENS reads values), and
makes the first (NOT NULL) column NULL when ``$<n> IS NULL`` (too few fields) or ``$<n+1> IS NOT NULL`` (too many),
so the row is rejected; the re-read, without a transformation, uses the stage's RAW.CSV_MOVIELENS
(ERROR_ON_COLUMN_COUNT_MISMATCH = TRUE) and records the true reason and line. Its target is a permanent, always
empty RAW.LOAD_SHAPE_<table> (an owner's-rights procedure cannot create temporary tables).
"""

import datetime
import time
import types
import uuid

try:
    from netflix_elt import contracts
except ModuleNotFoundError:  # inside Snowflake: the contracts module is inlined above this handler
    contracts = types.SimpleNamespace(**globals())  # type: ignore[assignment]

STAGE = "RAW.LANDING"
FILE_FORMAT = "RAW.CSV_MOVIELENS"  # the stage's: what the validation re-read (no transformation) uses
LOAD_FILE_FORMAT = "RAW.CSV_MOVIELENS_LOAD"  # the COPY's: a missing field is NULL, an empty one ''
NULL_TEXT = "\\N"  # a field of just this is NULL, as RAW.CSV_MOVIELENS reads it (Snowflake's default NULL_IF)
TRACKING = "RAW.LOAD_TRACKING"
REJECTS = "RAW.LOAD_REJECTS"
LOCK = "RAW.LOAD_LOCK"
SHAPE_TABLE_PREFIX = "RAW.LOAD_SHAPE_"
STALE_CLAIM_MINUTES = 60
DONE = ("LOADED", "PARTIALLY_LOADED", "DUPLICATE")
MAX_REJECTS_RECORDED = 10_000  # rejected rows recorded in LOAD_REJECTS per file (a file of garbage has millions)
MAX_RECORD_CHARS = 10_000  # a longer REJECTED_RECORD is cut (LINE and STAGED_FILE say where the whole line is)
MAX_INSERT_BYTES = 512 * 1024  # the SQL text of one INSERT of rejected rows or claims stays below this


NOT_AUTHORISED = (
    "not authorised: LOAD_RAW_FILES does not empty RAW, so FULL_REFRESH => TRUE is refused (nothing was changed). "
    "A full refresh (empty the datasets' RAW tables, their tracking and rejects, and load every staged file again) "
    "is the procedure RAW.FULL_REFRESH_RAW_FILES, which only an administrative role (SYSADMIN or ACCOUNTADMIN) may "
    "call: CALL RAW.FULL_REFRESH_RAW_FILES(DATASETS => ['movies'])"
)


def main(session, files=None, full_refresh=False, datasets=None, dry_run=False):
    """The procedure's handler. ``full_refresh`` is refused: a full refresh empties RAW, which is for
    administrators, through RAW.FULL_REFRESH_RAW_FILES (``snowflake/procedures/full_refresh_raw_files.py``)."""
    if full_refresh:
        raise PermissionError(NOT_AUTHORISED)
    return run(session, files=files, datasets=datasets, dry_run=dry_run)


def run(session, files=None, datasets=None, dry_run=False, full_refresh=False):
    """Discover, decide and claim (one transaction), load each claimed file, summarise. A full refresh lists every
    staged file of the datasets before it changes anything, then, in the claim transaction, empties their RAW
    tables, tracking and rejects and claims every file, so RAW ends up holding exactly the staged files' rows."""
    started = time.time()
    load_id = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
    wanted = _datasets(datasets)
    sources, ignored, stage_path = _discover(session, files, wanted, full_refresh)

    if dry_run:
        if full_refresh:  # the refresh forgets the tracking first: every staged file would be loaded again
            plan, results = _decide(sources, {}, {})
        else:
            plan, results = _decide(sources, _tracked(session, sources), _checksums(session, sources))
        results += [_result(src, "WOULD_LOAD") for src in plan]
        return _summary(load_id, results, ignored, started, dry_run=True, full_refresh=full_refresh)

    claimed, results = _claim(session, sources, load_id, refresh=wanted if full_refresh else None)
    for src in claimed:
        results.append(_load(session, src, load_id, stage_path, force=bool(full_refresh)))
    return _summary(load_id, results, ignored, started, dry_run=False, full_refresh=full_refresh)


# -- discovery ---------------------------------------------------------------------------------------------------


def _datasets(datasets):
    if not datasets:
        return list(contracts.DATASETS)
    if isinstance(datasets, str):
        datasets = [datasets]
    unknown = [d for d in datasets if d not in contracts.CONTRACTS]
    if unknown:
        raise ValueError(f"unknown dataset(s) {', '.join(unknown)}; expected some of: {', '.join(contracts.DATASETS)}")
    return list(datasets)


def _discover(session, files, wanted, full_refresh=False):
    """Source files to consider: {source key: {dataset, name, checksum, objects: [key], size}}, the keys that are
    not MovieLens stage keys, and the stage URL's path in its bucket (see "File identity"; None if unknown)."""
    objects: list[tuple[str, int | None, str | None]] = []  # (stage-relative key, size, LIST name)
    stage_path = None
    if files:
        for f in [files] if isinstance(files, str) else files:
            objects.append((str(f).lstrip("/"), None, None))
    else:
        # a full refresh reloads every staged file of the datasets, however old
        for prefix in [f"{d}/" for d in wanted] if full_refresh else _list_prefixes(session, wanted):
            for row in _list(session, prefix):
                objects.append((_relative(row[0]), int(row[1]), row[0]))
    sources: dict[str, dict] = {}
    ignored: list[str] = []
    for key, size, url in objects:
        parsed = contracts.parse_stage_key(key) if key else None
        if parsed is None:
            ignored.append(key)
            continue
        if stage_path is None and url is not None:
            stage_path = _bucket_path(url, key)
        if parsed.dataset not in wanted:
            continue
        src = sources.setdefault(
            parsed.source_key,
            {
                "key": parsed.source_key,
                "dataset": parsed.dataset,
                "name": parsed.name,
                "checksum": parsed.checksum,
                "objects": [],
                "size": 0,
                "part_numbers": set(),
            },
        )
        src["objects"].append(key)
        src["size"] += size or 0
        src["part_numbers"].add((parsed.part, parsed.parts))
    for src in sources.values():
        src["objects"].sort()
    if files and sources:
        stage_path = _learn_stage_path(session, min(o for s in sources.values() for o in s["objects"]))
    return sources, ignored, stage_path


def _learn_stage_path(session, key):
    """The stage URL's path in its bucket, from LIST of one staged object (None if it is not staged)."""
    try:
        rows = _list(session, key)
    except Exception:  # not staged: the COPY says so, naming the file
        return None
    for row in rows:
        path = _bucket_path(row[0], key)
        if path is not None:
            return path
    return None


def _bucket_path(url, key):
    """The part of a LIST name between the bucket (or Azure container) and the stage-relative key: 'movielens/' of
    's3://netflix-landing/movielens/ratings/<upload>/ratings.csv'; '' when the stage URL has no path; None if the
    name is not ``<scheme>://<bucket>/...<key>``."""
    scheme, sep, rest = url.partition("://")
    if not sep or not rest.endswith(key):
        return None
    location = rest[: len(rest) - len(key)]  # <bucket>/<path>/
    parts = location.split("/", 2 if scheme.lower() == "azure" else 1)  # azure://<account host>/<container>/...
    return parts[-1] if len(parts) == (3 if scheme.lower() == "azure" else 2) else None


def _stored_names(objects, stage_path):
    """Every form METADATA$FILENAME (so SOURCE_FILE) can take for these staged objects: the stage-relative key and,
    when the stage URL has a path, the object's path in the bucket. Exact values, so that ``SOURCE_FILE IN (...)``
    prunes (see "File identity")."""
    return list(objects) + ([stage_path + o for o in objects] if stage_path else [])


def _missing_parts(src):
    """Why a split file's staged parts are not a complete set (its upload is running or was interrupted), or None.

    Part keys say which part of how many they are; a file is loaded only when every part is staged."""
    counts = {count for _, count in src["part_numbers"]}
    if counts == {None}:
        return None
    if len(counts) != 1 or None in counts:
        return "staged both whole and in parts under one key"
    count = counts.pop()
    missing = sorted(set(range(1, count + 1)) - {n for n, _ in src["part_numbers"]})
    if not missing:
        return None
    return (
        f"only {count - len(missing)} of its {count} parts are staged (missing part {', '.join(map(str, missing[:5]))}"
        f"{', ...' if len(missing) > 5 else ''}): its upload is still running or was interrupted. It is loaded once "
        "every part is there; if the upload was interrupted, run the uploader again (it removes the partial upload "
        "and uploads the file anew)"
    )


# Discovery lists only the part of the stage that can hold files not yet handled. Stage keys start with
# <dataset>/<uploaded-at>, so the keys uploaded since the newest handled upload of a dataset (less a margin for
# uploads that started earlier and finished later, or clocks that disagree) share a few date prefixes, and a CALL's
# cost depends on what arrived since the last one, not on how many files the stage has ever held. A file staged
# under an older upload time is loaded when it is named in FILES, or by a FULL_REFRESH.
LIST_MARGIN = datetime.timedelta(days=1)
MAX_PREFIXES = 3  # per dataset; a longer span is listed by coarser prefixes (days, months, years, everything)


def _list_prefixes(session, wanted):
    """Stage path prefixes to LIST: a few date prefixes per dataset, its whole folder if it has no handled file yet,
    the whole stage if no wanted dataset has one; and the folder of every FAILED or stale LOADING file (retried)."""
    rows = session.sql(
        f"SELECT DATASET, MAX(FILE_KEY) AS NEWEST FROM {TRACKING} WHERE DATASET IN ({_in_list(wanted)}) "
        f"AND STATUS IN ({_in_list(DONE)}) GROUP BY DATASET"
    ).collect()
    newest = {r["DATASET"]: r["NEWEST"] for r in rows}
    if not newest:
        return [""]
    until = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    prefixes = []
    for dataset in wanted:
        parsed = contracts.parse_stage_key(newest.get(dataset) or "")
        if parsed is None:  # nothing of the dataset handled yet: its whole folder
            prefixes.append(dataset + "/")
            continue
        since = datetime.datetime.strptime(parsed.uploaded_at, contracts.UPLOADED_AT_FORMAT) - LIST_MARGIN
        prefixes += [f"{dataset}/{p}" for p in date_prefixes(since.date(), until.date())]
    retry = session.sql(
        f"SELECT FILE_KEY FROM {TRACKING} WHERE DATASET IN ({_in_list(wanted)}) AND (STATUS = 'FAILED' OR "
        f"(STATUS = 'LOADING' AND CLAIMED_AT < {_stale_before()}))"
    ).collect()
    for r in retry:
        parsed = contracts.parse_stage_key(r["FILE_KEY"] or "")
        if parsed is None or parsed.dataset not in wanted:
            continue  # not a stage key the uploader writes: never put into a LIST
        folder = parsed.source_key.rsplit("/", 1)[0] + "/"
        if not any(folder.startswith(p) for p in prefixes):
            prefixes.append(folder)
    return sorted(set(prefixes))


def _list(session, path):
    """LIST the stage, or the part of it under path (a stage key or a prefix of one, made of the contract's
    characters). The location is a quoted literal, as Snowflake allows for paths with special characters
    (https://docs.snowflake.com/en/sql-reference/sql/list): whatever a path holds, it stays one stage path."""
    return session.sql(f"LIST {_q(f'@{STAGE}/{path}' if path else f'@{STAGE}')}").collect()


def date_prefixes(since, until):
    """The fewest uploaded-at prefixes (YYYYMMDD, YYYYMM or YYYY; at most MAX_PREFIXES) that cover every key
    uploaded from the date since through the date until; [""] (everything) for a span of more than a few years."""
    days = (until - since).days + 1
    if days <= MAX_PREFIXES:
        return [(since + datetime.timedelta(days=i)).strftime("%Y%m%d") for i in range(days)]
    months = (until.year - since.year) * 12 + until.month - since.month + 1
    if months <= MAX_PREFIXES:
        return [
            f"{since.year + (since.month - 1 + i) // 12:04d}{(since.month - 1 + i) % 12 + 1:02d}" for i in range(months)
        ]
    years = until.year - since.year + 1
    if years <= MAX_PREFIXES:
        return [f"{since.year + i:04d}" for i in range(years)]
    return [""]


def _relative(url):
    """The stage-relative key of a LIST name (the last three path segments: dataset/upload/file)."""
    parts = url.split("/")
    return "/".join(parts[-3:]) if len(parts) >= 3 else url


# -- tracking ----------------------------------------------------------------------------------------------------


def _q(value):
    """A SQL string literal."""
    if value is None:
        return "NULL"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "''") + "'"


def _in_list(values):
    return ", ".join(_q(v) for v in values) or "NULL"


# Up to this many source keys are looked up in LOAD_TRACKING by key (IN list); more (a LIST of a long history) are
# matched against the tracking rows of their datasets, which costs far less than parsing a huge IN list.
IN_LIST_LIMIT = 500


def _tracking_rows(session, key_column, keys, datasets, columns, condition=""):
    """Tracking rows whose key_column is one of keys (a superset when there are many keys: all rows of datasets)."""
    where = (
        f"{key_column} IN ({_in_list(sorted(keys))})"
        if len(keys) <= IN_LIST_LIMIT
        else f"DATASET IN ({_in_list(sorted(datasets))})"
    )
    return session.sql(f"SELECT {columns} FROM {TRACKING} WHERE {where}{condition}").collect()


def _tracked(session, sources):
    """{file key: its LOAD_TRACKING row (STATUS, LOAD_ID, CLAIMED_AT, STALE)} for the sources that have one."""
    if not sources:
        return {}
    rows = _tracking_rows(
        session,
        "FILE_KEY",
        set(sources),
        {s["dataset"] for s in sources.values()},
        f"FILE_KEY, STATUS, LOAD_ID, CLAIMED_AT, CLAIMED_AT < {_stale_before()} AS STALE",
    )
    return {r["FILE_KEY"]: r.as_dict() for r in rows if r["FILE_KEY"] in sources}


def _checksums(session, sources):
    """{checksum: the tracking row (FILE_KEY, STATUS, LOAD_ID) of the file that has that content}, for the sources'
    checksums (same content, any name): the first key loaded with it, else a live claim of it."""
    checksums = {s["checksum"] for s in sources.values()}
    if not checksums:
        return {}
    rows = _tracking_rows(
        session,
        "CONTENT_CHECKSUM",
        checksums,
        {s["dataset"] for s in sources.values()},
        f"CONTENT_CHECKSUM, FILE_KEY, STATUS, LOAD_ID, CLAIMED_AT < {_stale_before()} AS STALE",
        " AND STATUS IN ('LOADED', 'PARTIALLY_LOADED', 'LOADING')",
    )
    found: dict[str, dict] = {}
    for r in sorted((r.as_dict() for r in rows), key=lambda r: (r["STATUS"] == "LOADING", r["FILE_KEY"])):
        if r["CONTENT_CHECKSUM"] in checksums and not (r["STATUS"] == "LOADING" and r["STALE"]):
            found.setdefault(r["CONTENT_CHECKSUM"], r)
    return found


def _now_sql():
    """The current UTC time (see "Times")."""
    return "SYSDATE()"


def _stale_before():
    """SQL for the time before which a LOADING claim is stale (taken over by the next CALL)."""
    return f"DATEADD(minute, -{STALE_CLAIM_MINUTES}, {_now_sql()})"


def _decide(sources, tracked, checksums):
    """What to do with each source file, from LOAD_TRACKING as read: (the files to load, the others' results).
    ``checksums`` (see _checksums) gains the planned files, so a second file with the same content in this CALL is
    a DUPLICATE of the first."""
    plan, results = [], []
    for key in sorted(sources):
        src = sources[key]
        row = tracked.get(key)
        if row is not None and row["STATUS"] in DONE:
            continue  # already handled by an earlier CALL
        missing = _missing_parts(src)
        if missing:
            results.append(_result(src, "INCOMPLETE", first_error=missing))
            continue
        same = checksums.get(src["checksum"])
        if same is not None and same["FILE_KEY"] != key:
            if same["STATUS"] == "LOADING":
                results.append(_result(src, "SKIPPED", first_error=_held_elsewhere(same)))
            else:
                results.append(_result(src, "DUPLICATE", duplicate_of=same["FILE_KEY"]))
            continue
        if row is not None and row["STATUS"] == "LOADING" and not row["STALE"]:
            results.append(_result(src, "SKIPPED", first_error=_held(row)))
            continue
        plan.append(src)
        checksums.setdefault(src["checksum"], {"FILE_KEY": key, "STATUS": "PLANNED"})
    return plan, results


def _held(row):
    return (
        f"being loaded by CALL {row['LOAD_ID']} (claimed at {row['CLAIMED_AT']} UTC); if that CALL died, a CALL "
        f"made {STALE_CLAIM_MINUTES} minutes after the claim takes the file over"
    )


def _held_elsewhere(row):
    return (
        f"the same content is being loaded as {row['FILE_KEY']} by CALL {row['LOAD_ID']}; a CALL made after that "
        "one finishes records this file as its duplicate (or loads it, if that load fails)"
    )


def _claim(session, sources, load_id, refresh=None):
    """Decide and claim in one transaction under RAW.LOAD_LOCK (see "Claims" in the module docstring). Returns the
    files this CALL claimed and the results of the others. With ``refresh`` (datasets), the full refresh's emptying
    of their RAW tables, rejects and tracking is part of the same transaction."""
    if not sources and not refresh:
        return [], []  # nothing to decide: no need to wait for the lock
    session.sql("BEGIN").collect()
    try:
        _take_lock(session, load_id)
        if refresh:
            _refuse_while_loading(session, refresh)
            _truncate(session, refresh)
        tracked = _tracked(session, sources)
        plan, results = _decide(sources, tracked, _checksums(session, sources))
        _write_claims(session, plan, tracked, load_id)
        _record_duplicates(session, sources, results, tracked, load_id)
        mine = {
            r["FILE_KEY"]
            for r in session.sql(
                f"SELECT FILE_KEY FROM {TRACKING} WHERE LOAD_ID = {_q(load_id)} AND STATUS = 'LOADING'"
            ).collect()
        }
        session.sql("COMMIT").collect()
    except Exception:
        _rollback(session)
        raise
    for src in plan:
        if src["key"] not in mine:  # a take-over the holder's own outcome overtook: it is done, or failed again
            results.append(
                _result(
                    src, "SKIPPED", first_error="being loaded by the CALL that held it, which finished it meanwhile"
                )
            )
    return [s for s in plan if s["key"] in mine], results


def _take_lock(session, load_id):
    """The claim transaction's first statement: wait for the claim lock (held until COMMIT or ROLLBACK)."""
    rows = session.sql(f"UPDATE {LOCK} SET HELD_BY = {_q(load_id)}, TAKEN_AT = {_now_sql()}").collect()
    if not rows or not int(rows[0][0]):
        raise RuntimeError(
            f"{LOCK} has no row, so CALLs cannot take turns claiming files: run the migrations (netflix-elt deploy, "
            "or schemachange deploy), which create it with its row"
        )


def _rollback(session):
    """Roll the claim transaction back. An error doing so is returned, not raised: the error that brought us here
    is the one to report (and a session that cannot roll back has lost its transaction anyway)."""
    try:
        session.sql("ROLLBACK").collect()
    except Exception as e:
        return e
    return None


def _write_claims(session, plan, tracked, load_id):
    """Claim the planned files: insert the new ones, take over the FAILED and stale ones (re-checking that status,
    which only the holder's own outcome can have changed since it was read)."""
    new = [s for s in plan if s["key"] not in tracked]
    _insert_rows(
        session,
        f"{TRACKING} (FILE_KEY, DATASET, FILE_NAME, CONTENT_CHECKSUM, SIZE_BYTES, PARTS, STATUS, LOAD_ID, CLAIMED_AT, "
        "ATTEMPTS)",
        [
            f"({_q(s['key'])}, {_q(s['dataset'])}, {_q(s['name'])}, {_q(s['checksum'])}, {s['size']}, "
            f"{len(s['objects'])}, 'LOADING', {_q(load_id)}, {_now_sql()}, 1)"
            for s in new
        ],
    )
    taken = [s for s in plan if s["key"] in tracked]
    if not taken:
        return
    values = ", ".join(f"({_q(s['key'])}, {s['size']}, {len(s['objects'])})" for s in taken)
    session.sql(
        f"MERGE INTO {TRACKING} t USING (SELECT column1 AS FILE_KEY, column2 AS SIZE_BYTES, column3 AS PARTS "
        f"FROM VALUES {values}) s ON t.FILE_KEY = s.FILE_KEY "
        f"WHEN MATCHED AND (t.STATUS = 'FAILED' OR (t.STATUS = 'LOADING' AND t.CLAIMED_AT < {_stale_before()})) "
        f"THEN UPDATE SET STATUS = 'LOADING', LOAD_ID = {_q(load_id)}, CLAIMED_AT = {_now_sql()}, "
        "ATTEMPTS = t.ATTEMPTS + 1, ROWS_PARSED = NULL, ROWS_LOADED = NULL, ROWS_REJECTED = NULL, FIRST_ERROR = NULL, "
        "STARTED_AT = NULL, FINISHED_AT = NULL, SIZE_BYTES = s.SIZE_BYTES, PARTS = s.PARTS"
    ).collect()


def _record_duplicates(session, sources, results, tracked, load_id):
    """Record the DUPLICATE results: a new tracking row, or the file's FAILED or stale row marked DUPLICATE."""
    duplicates = [(sources[r["file"]], r["duplicate_of"]) for r in results if r["status"] == "DUPLICATE"]
    for src, of in duplicates:
        if src["key"] in tracked:
            session.sql(
                f"UPDATE {TRACKING} SET STATUS = 'DUPLICATE', DUPLICATE_OF = {_q(of)}, ROWS_PARSED = 0, "
                f"ROWS_LOADED = 0, ROWS_REJECTED = 0, FIRST_ERROR = NULL, LOAD_ID = {_q(load_id)}, "
                f"FINISHED_AT = {_now_sql()} WHERE FILE_KEY = {_q(src['key'])}"
            ).collect()
    _insert_rows(
        session,
        f"{TRACKING} (FILE_KEY, DATASET, FILE_NAME, CONTENT_CHECKSUM, SIZE_BYTES, PARTS, STATUS, DUPLICATE_OF, "
        "ROWS_PARSED, ROWS_LOADED, ROWS_REJECTED, LOAD_ID, CLAIMED_AT, FINISHED_AT, ATTEMPTS)",
        [
            f"({_q(s['key'])}, {_q(s['dataset'])}, {_q(s['name'])}, {_q(s['checksum'])}, {s['size']}, "
            f"{len(s['objects'])}, 'DUPLICATE', {_q(of)}, 0, 0, 0, {_q(load_id)}, {_now_sql()}, {_now_sql()}, 1)"
            for s, of in duplicates
            if s["key"] not in tracked
        ],
    )


def _insert_rows(session, target, rows):
    """INSERT INTO target VALUES rows (SQL tuples, any iterable), in statements of at most about MAX_INSERT_BYTES
    of SQL text. Returns how many rows were inserted."""
    batch: list[str] = []
    size = count = 0
    for row in rows:
        n = len(row.encode("utf-8")) + 2
        if batch and size + n > MAX_INSERT_BYTES:
            session.sql(f"INSERT INTO {target} VALUES {', '.join(batch)}").collect()
            batch, size = [], 0
        batch.append(row)
        size += n
        count += 1
    if batch:
        session.sql(f"INSERT INTO {target} VALUES {', '.join(batch)}").collect()
    return count


# -- loading -----------------------------------------------------------------------------------------------------


def copy_statement(contract, objects, load_id, force=False, loaded_at=None):
    """The COPY INTO that loads a source file's staged objects into its RAW table, lineage columns filled, rejecting
    rows with too few or too many fields (see "Field counts"). ``loaded_at``: the UTC time for LOADED_AT (a
    datetime, default now), written as a literal (see "Times")."""
    n = len(contract.columns)
    columns = [c.raw_name for c in contract.columns] + [name for name, _ in contracts.LINEAGE_COLUMNS]
    values = [f"NULLIF(NULLIF(${i}, ''), {_q(NULL_TEXT)})" for i in range(1, n + 1)]
    # the first column is NOT NULL in every contract: NULL there rejects the row; the re-read says why
    values[0] = f"CASE WHEN ${n} IS NULL OR ${n + 1} IS NOT NULL THEN NULL ELSE {values[0]} END"
    files = ", ".join(_q(o) for o in objects)
    return (
        f"COPY INTO {contract.qualified_raw_table} ({', '.join(columns)}) FROM (SELECT {', '.join(values)}, "
        f"METADATA$FILENAME, METADATA$FILE_ROW_NUMBER, {_q(load_id)}, {_timestamp(loaded_at)} FROM @{STAGE}) "
        f"FILES = ({files}) FILE_FORMAT = (FORMAT_NAME = '{LOAD_FILE_FORMAT}') ON_ERROR = CONTINUE"
        + (" FORCE = TRUE" if force else "")
    )


def _timestamp(value):
    """A TIMESTAMP_NTZ literal of a UTC time (a datetime, or the text SYSDATE() returned; default now)."""
    if value is None:
        value = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    text = value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else str(value)
    return f"{_q(text)}::TIMESTAMP_NTZ"


def _sysdate(session):
    return session.sql(f"SELECT {_now_sql()}").collect()[0][0]


def _renew_claim(session, src, load_id):
    """Just before a file's COPY, renew this CALL's claim (CLAIMED_AT now). False if the claim is no longer this
    CALL's: a file waits its turn while earlier ones load, and after STALE_CLAIM_MINUTES another CALL may take it
    over; loading it here too would load its rows twice (after a full refresh's TRUNCATE, COPY's load metadata no
    longer knows it)."""
    rows = session.sql(
        f"UPDATE {TRACKING} SET CLAIMED_AT = {_now_sql()} WHERE FILE_KEY = {_q(src['key'])} "
        f"AND LOAD_ID = {_q(load_id)} AND STATUS = 'LOADING'"
    ).collect()
    return bool(rows and int(rows[0][0]))


def _load(session, src, load_id, stage_path, force):
    if not _renew_claim(session, src, load_id):
        return _result(
            src,
            "SKIPPED",
            first_error=f"taken over by another CALL while this one was loading earlier files ({STALE_CLAIM_MINUTES} "
            "minutes after the claim); that CALL loads it",
        )
    contract = contracts.CONTRACTS[src["dataset"]]
    table = contract.qualified_raw_table
    stored = _stored_names(src["objects"], stage_path)
    parsed = loaded = rejected = 0
    first_error = None
    unreadable = False
    started_at = None
    try:
        started_at = _sysdate(session)  # STARTED_AT, and every loaded row's LOADED_AT
        copy = copy_statement(contract, src["objects"], load_id, force, loaded_at=started_at)
        rows = [r.as_dict() for r in session.sql(copy).collect()]
        if rows and "status" in rows[0] and len(rows[0]) == 1:
            # the load metadata says these objects were loaded already. If their rows are in RAW, an earlier CALL
            # committed its COPY but not its tracking: count them rather than load them twice. If not, load again.
            parsed = loaded = _rows_in_raw(session, table, stored)
            if not loaded:
                rows = [r.as_dict() for r in session.sql(copy + " FORCE = TRUE").collect()]
            else:  # and the rows that CALL recorded as rejected
                rejected = _rejects_recorded(session, src)
                parsed += rejected
        for r in rows:
            if "rows_parsed" not in r:
                continue
            parsed += int(r["rows_parsed"] or 0)
            loaded += int(r["rows_loaded"] or 0)
            if r.get("first_error") and first_error is None:
                first_error = r["first_error"]
            # a file COPY could not read at all (e.g. corrupt compression) has no rows to count
            unreadable = unreadable or (r.get("status") == "LOAD_FAILED" and not r.get("rows_parsed"))
        rejected = parsed - loaded
        if rejected and rows and "rows_parsed" in rows[0]:
            recorded, reason = _record_rejects(session, contract, src, load_id)
            moved = _drop_rows_rejected_on_reread(session, table, src, load_id, stored) if recorded else 0
            loaded, rejected = loaded - moved, rejected + moved
            first_error = reason or first_error
            if recorded < rejected:
                first_error = "; ".join(t for t in (first_error, _not_recorded(rejected, recorded)) if t)
        disallowed, disallowed_error = _reject_disallowed_values(session, contract, src, load_id, stored)
        loaded -= disallowed
        rejected += disallowed
        first_error = first_error or disallowed_error
        failed = unreadable or (rejected and not loaded)
        status = "FAILED" if failed else ("PARTIALLY_LOADED" if rejected else "LOADED")
    except Exception as e:  # one file's failure must not lose the others' results
        status, first_error = "FAILED", _error_text(e)
    started = _timestamp(started_at) if started_at is not None else "NULL"
    session.sql(
        f"UPDATE {TRACKING} SET STATUS = {_q(status)}, ROWS_PARSED = {parsed}, ROWS_LOADED = {loaded}, "
        f"ROWS_REJECTED = {rejected}, FIRST_ERROR = {_q(first_error)}, STARTED_AT = {started}, "
        f"FINISHED_AT = {_now_sql()} WHERE FILE_KEY = {_q(src['key'])} AND LOAD_ID = {_q(load_id)}"
    ).collect()
    return _result(src, status, parsed, loaded, rejected, first_error)


def _not_recorded(rejected, recorded):
    why = f" (it keeps the first {MAX_REJECTS_RECORDED:,} of a file)" if recorded >= MAX_REJECTS_RECORDED else ""
    return f"{rejected - recorded:,} of the {rejected:,} rejected rows are not recorded in {REJECTS}{why}"


def _rejects_recorded(session, src):
    return int(session.sql(f"SELECT COUNT(*) FROM {REJECTS} WHERE FILE_KEY = {_q(src['key'])}").collect()[0][0])


def _rows_in_raw(session, table, stored):
    return int(session.sql(f"SELECT COUNT(*) FROM {table} WHERE SOURCE_FILE IN ({_in_list(stored)})").collect()[0][0])


def _staged_file_sql(objects):
    """SQL for LOAD_REJECTS.STAGED_FILE (the stage-relative key) of a RAW row of these objects, whichever form its
    SOURCE_FILE has: its last len(key) characters (a file's objects have keys of one length: the file, or its parts
    ``.partNNNNofNNNN.csv.gz``; a file staged both whole and in parts is never loaded)."""
    return f"RIGHT(SOURCE_FILE, {len(objects[0])})"


def _reject_disallowed_values(session, contract, src, load_id, stored):
    """Move the file's rows whose values the contract does not allow (a rating of 7.0 or 3.7: NUMBER(2,1) holds them,
    the contract does not) from the RAW table to LOAD_REJECTS, rejected records first, so that no row is lost even if
    the CALL dies in between. Returns how many rows were moved and the first one's error."""
    checked = [(i, c) for i, c in enumerate(contract.columns, start=1) if c.allowed]
    if not checked:
        return 0, None

    def breaks(c):
        return f"{c.raw_name} NOT IN ({', '.join(str(v) for v in c.allowed)})"

    def message(c):
        value = f" || {c.raw_name}::VARCHAR || "
        return _q("Value '") + value + _q(f"' of {c.header} is not allowed ({c.description})")

    def position(i, c):
        return _q(f'"{contract.raw_table}"["{c.raw_name}":{i}]')

    table = contract.qualified_raw_table
    where = f"SOURCE_FILE IN ({_in_list(stored)}) AND ({' OR '.join(breaks(c) for _, c in checked)})"
    error = "CASE " + " ".join(f"WHEN {breaks(c)} THEN {message(c)}" for _, c in checked) + " END"
    column = "CASE " + " ".join(f"WHEN {breaks(c)} THEN {position(i, c)}" for i, c in checked) + " END"
    record = " || ',' || ".join(_csv_field_sql(c) for c in contract.columns)
    moved = session.sql(
        f"INSERT INTO {REJECTS} (LOAD_ID, FILE_KEY, STAGED_FILE, LINE, ROW_NUMBER, COLUMN_NAME, ERROR, ERROR_CODE, "
        f"REJECTED_RECORD, REJECTED_AT) SELECT {_q(load_id)}, {_q(src['key'])}, {_staged_file_sql(src['objects'])}, "
        f"SOURCE_ROW_NUMBER + 1, SOURCE_ROW_NUMBER, {column}, {error}, NULL, {record}, {_now_sql()} FROM {table} "
        f"WHERE {where}"
    ).collect()
    count = int(moved[0][0]) if moved else 0
    if not count:
        return 0, None
    session.sql(f"DELETE FROM {table} WHERE {where}").collect()
    first = session.sql(
        f"SELECT ERROR FROM {REJECTS} WHERE LOAD_ID = {_q(load_id)} AND FILE_KEY = {_q(src['key'])} "
        "AND ERROR_CODE IS NULL ORDER BY STAGED_FILE, LINE LIMIT 1"
    ).collect()
    return count, first[0][0] if first else None


def _csv_field_sql(column):
    """SQL for a RAW column's value written back as a CSV field (quoted when it holds a quote, comma or newline)."""
    value = f"{column.raw_name}::VARCHAR"
    if column.sql_type == "VARCHAR":
        value = (
            f"IFF(CONTAINS({value}, '\"') OR CONTAINS({value}, ',') OR CONTAINS({value}, CHR(10)), "
            f"'\"' || REPLACE({value}, '\"', '\"\"') || '\"', {value})"
        )
    return f"COALESCE({value}, '')"


def _record_rejects(session, contract, src, load_id):
    """Re-read the file in validation mode (which Snowflake allows only without transformation, hence the permanent,
    always empty RAW.LOAD_SHAPE_<table> shaped like the file) and record its rejected rows: streamed, at most
    MAX_REJECTS_RECORDED, in INSERTs of bounded size. Returns how many were recorded and the first one's error."""
    files = ", ".join(_q(o) for o in src["objects"])
    errors = session.sql(
        f"COPY INTO {SHAPE_TABLE_PREFIX}{contract.raw_table} FROM @{STAGE} FILES = ({files}) "
        f"FILE_FORMAT = (FORMAT_NAME = '{FILE_FORMAT}') VALIDATION_MODE = RETURN_ALL_ERRORS"
    ).to_local_iterator()
    first: list = []

    def records():
        n = 0
        for e in errors:
            d = {k.upper(): v for k, v in e.as_dict().items()}
            if not d.get("ERROR"):  # not an error row (a status row: nothing to validate)
                continue
            if n >= MAX_REJECTS_RECORDED:
                return
            n += 1
            staged, line, error = _relative(str(d.get("FILE"))), d.get("LINE"), _cut(d.get("ERROR"), 2000)
            if not first or (staged, line or 0) < first[0][:2]:
                first[:] = [(staged, line or 0, error)]
            yield (
                f"({_q(load_id)}, {_q(src['key'])}, {_q(staged)}, {_num(line)}, {_num(d.get('ROW_NUMBER'))}, "
                f"{_q(_cut(d.get('COLUMN_NAME'), 1000))}, {_q(error)}, {_num(d.get('CODE'))}, "
                f"{_q(_cut(d.get('REJECTED_RECORD'), MAX_RECORD_CHARS))}, {_now_sql()})"
            )

    recorded = _insert_rows(
        session,
        f"{REJECTS} (LOAD_ID, FILE_KEY, STAGED_FILE, LINE, ROW_NUMBER, COLUMN_NAME, ERROR, ERROR_CODE, "
        "REJECTED_RECORD, REJECTED_AT)",
        records(),
    )
    return recorded, first[0][2] if first else None


def _drop_rows_rejected_on_reread(session, table, src, load_id, stored):
    """Delete from RAW the rows of this load that the re-read recorded as rejected (the COPY loaded them: the two
    readings disagree, e.g. on a quoted empty field). Returns how many were deleted."""
    rejected = (
        f"SELECT STAGED_FILE || '#' || ROW_NUMBER FROM {REJECTS} WHERE LOAD_ID = {_q(load_id)} "
        f"AND FILE_KEY = {_q(src['key'])} AND ERROR_CODE IS NOT NULL"
    )
    deleted = session.sql(
        f"DELETE FROM {table} WHERE LOAD_ID = {_q(load_id)} AND SOURCE_FILE IN ({_in_list(stored)}) "
        f"AND {_staged_file_sql(src['objects'])} || '#' || SOURCE_ROW_NUMBER IN ({rejected})"
    ).collect()
    return int(deleted[0][0]) if deleted else 0


def _cut(text, limit):
    """Text cut to about limit characters, saying how long it was (None stays None)."""
    if text is None:
        return None
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters in all)"


def _num(v):
    return "NULL" if v is None else str(int(v))


def _error_text(e):
    text = str(e).strip()
    return text.splitlines()[0][:1000] if text else type(e).__name__


def _refuse_while_loading(session, wanted):
    """A full refresh does not empty RAW while another CALL is loading a file of the datasets: that CALL's rows
    would land in the emptied table after the refresh had counted the file as its own."""
    rows = session.sql(
        f"SELECT FILE_KEY, LOAD_ID, CLAIMED_AT FROM {TRACKING} WHERE DATASET IN ({_in_list(wanted)}) "
        f"AND STATUS = 'LOADING' AND CLAIMED_AT >= {_stale_before()} ORDER BY CLAIMED_AT LIMIT 1"
    ).collect()
    if rows:
        r = rows[0]
        raise RuntimeError(
            f"a load is running: CALL {r['LOAD_ID']} is loading {r['FILE_KEY']} (claimed at {r['CLAIMED_AT']} UTC), "
            "so the full refresh changed nothing. Run it again once that CALL has finished (if that CALL died, "
            f"{STALE_CLAIM_MINUTES} minutes after its claim)"
        )


def _truncate(session, wanted):
    """Full refresh: empty the RAW tables of the datasets and forget their tracking and rejects (inside the claim
    transaction: TRUNCATE is DML in Snowflake, so it does not end the transaction)."""
    for d in wanted:
        session.sql(f"TRUNCATE TABLE {contracts.CONTRACTS[d].qualified_raw_table}").collect()
    session.sql(
        f"DELETE FROM {REJECTS} WHERE FILE_KEY IN (SELECT FILE_KEY FROM {TRACKING} WHERE DATASET IN ({_in_list(wanted)}))"
    ).collect()
    session.sql(f"DELETE FROM {TRACKING} WHERE DATASET IN ({_in_list(wanted)})").collect()


# -- result ------------------------------------------------------------------------------------------------------


def _result(src, status, parsed=0, loaded=0, rejected=0, first_error=None, duplicate_of=None):
    out = {
        "file": src["key"],
        "dataset": src["dataset"],
        "status": status,
        "rows_parsed": parsed,
        "rows_loaded": loaded,
        "rows_rejected": rejected,
        "parts": len(src["objects"]),
    }
    if first_error:
        out["first_error"] = first_error
    if duplicate_of:
        out["duplicate_of"] = duplicate_of
    return out


# files a later CALL loads: (status, why, when)
WAITING_REASONS = (
    ("INCOMPLETE", "not completely staged", "a CALL made once every part is staged loads it"),
    ("SKIPPED", "held by another CALL", "a CALL made after that CALL finishes loads or counts it"),
)


def _status(totals):
    """FAILED if a file failed; else WAITING if files were left for a later CALL (held by another CALL or not
    completely staged); else PARTIAL if rows were rejected; else SUCCESS."""
    if totals["failed"]:
        return "FAILED"
    if totals["incomplete"] or totals["skipped"]:
        return "WAITING"
    return "PARTIAL" if totals["rows_rejected"] else "SUCCESS"


def _summary(load_id, results, ignored, started, dry_run, full_refresh):
    totals = {
        "files": len(results),
        "loaded": sum(1 for r in results if r["status"] == "LOADED"),
        "partially_loaded": sum(1 for r in results if r["status"] == "PARTIALLY_LOADED"),
        "failed": sum(1 for r in results if r["status"] == "FAILED"),
        "duplicates": sum(1 for r in results if r["status"] == "DUPLICATE"),
        "incomplete": sum(1 for r in results if r["status"] == "INCOMPLETE"),
        "skipped": sum(1 for r in results if r["status"] == "SKIPPED"),
        "rows_parsed": sum(r["rows_parsed"] for r in results),
        "rows_loaded": sum(r["rows_loaded"] for r in results),
        "rows_rejected": sum(r["rows_rejected"] for r in results),
    }
    if dry_run:
        status = "DRY_RUN"
        message = f"dry run: {sum(1 for r in results if r['status'] == 'WOULD_LOAD')} file(s) would be loaded"
    elif not results:
        status = "NOTHING_TO_LOAD"
        message = "nothing to load" + ("" if ignored else ": every staged file is already loaded")
    else:
        status = _status(totals)
        message = (
            f"{totals['loaded'] + totals['partially_loaded']} file(s) loaded, {totals['rows_loaded']:,} rows; "
            f"{totals['rows_rejected']:,} rows rejected (see RAW.LOAD_REJECTS); {totals['failed']} file(s) failed; "
            f"{totals['duplicates']} duplicate(s) skipped"
        )
        for left, what, then in WAITING_REASONS:
            waiting = [r for r in results if r["status"] == left]
            if waiting:
                message += f". {len(waiting)} file(s) {what}, left for a later CALL ({then}): " + "; ".join(
                    f"{r['file']}: {r['first_error']}" for r in waiting[:3]
                )
        if status == "WAITING":
            message = "WAITING: not every file could be loaded yet; run the load again later. " + message
        failed = [r for r in results if r["status"] == "FAILED"]
        if failed:
            message += ". Failed: " + "; ".join(f"{r['file']}: {r.get('first_error', 'unknown error')}" for r in failed)
    if ignored:
        message += (
            f". {len(ignored)} key(s) ignored, not the stage key of a MovieLens file "
            "(<dataset>/<uploaded at>_<checksum>/<file name>, as the uploader writes them): "
            + ", ".join(repr(k) for k in ignored[:3])
            + (", ..." if len(ignored) > 3 else "")
        )
    return {
        "status": status,
        "message": message,
        "load_id": load_id,
        "full_refresh": bool(full_refresh),
        "totals": totals,
        "files": results,
        "ignored_keys": ignored[:100],
        "seconds": round(time.time() - started, 3),
    }
