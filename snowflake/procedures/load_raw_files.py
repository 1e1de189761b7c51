"""RAW.LOAD_RAW_FILES: load staged MovieLens files into the RAW tables, incrementally and exactly once.

A Snowpark Python stored procedure handler: ``main(session, files, full_refresh, datasets, dry_run)``.
Deployed by ``migrations/R__load_raw_files.sql``, which inlines ``netflix_elt/contracts.py`` and then this file
into the procedure body; run locally, it imports the contracts module instead. Standard library and Snowpark only.

For each source file on the stage (``<dataset>/<uploaded-at>_<checksum>/<name>``, possibly split into parts):

1. skip it if LOAD_TRACKING already has it, or has the same content (checksum) loaded under another key
   (recorded as DUPLICATE); a split file whose parts are not all staged yet (part keys say "part n of m") is
   reported as INCOMPLETE and left for a later CALL;
2. claim it in LOAD_TRACKING (status LOADING with this CALL's load id) with a MERGE, so two CALLs at once
   never load the same file; a claim older than STALE_CLAIM_MINUTES is taken over;
3. COPY INTO its RAW table with ON_ERROR = CONTINUE, filling the lineage columns;
4. if rows were rejected, re-read the file with VALIDATION_MODE = RETURN_ALL_ERRORS into LOAD_REJECTS (file,
   line, column, error, the rejected line), so that rows parsed = rows loaded + rows rejected;
5. move the loaded rows whose values the contract does not allow (``Column.allowed``: ratings are 0.5 to 5.0 in
   half stars) from the RAW table to LOAD_REJECTS, counted as rejected;
6. record the outcome in LOAD_TRACKING.

One file's failure does not stop the others. The result is a JSON summary: per file dataset, status, rows
parsed/loaded/rejected and first error, totals, and a one-line message.
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
FILE_FORMAT = "RAW.CSV_MOVIELENS"
TRACKING = "RAW.LOAD_TRACKING"
REJECTS = "RAW.LOAD_REJECTS"
STALE_CLAIM_MINUTES = 60
DONE = ("LOADED", "PARTIALLY_LOADED", "DUPLICATE")


def main(session, files=None, full_refresh=False, datasets=None, dry_run=False):
    started = time.time()
    load_id = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
    wanted = _datasets(datasets)
    sources, ignored = _discover(session, files, wanted)

    if full_refresh and not dry_run:
        _truncate(session, wanted)

    tracked = _tracked(session, sources)
    loaded_checksums = _loaded_checksums(session, sources)
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
        duplicate_of = loaded_checksums.get(src["checksum"])
        if duplicate_of and duplicate_of != key:
            results.append(_result(src, "DUPLICATE", duplicate_of=duplicate_of))
            if not dry_run:
                _record_duplicate(session, src, duplicate_of, load_id)
            continue
        if row is not None and row["STATUS"] == "LOADING" and not row["STALE"]:
            results.append(
                _result(
                    src,
                    "SKIPPED",
                    first_error=(
                        f"being loaded by CALL {row['LOAD_ID']} (claimed at {row['CLAIMED_AT']} UTC); if that CALL "
                        f"died, a CALL made {STALE_CLAIM_MINUTES} minutes after the claim takes the file over"
                    ),
                )
            )
            continue
        plan.append(src)
        loaded_checksums.setdefault(src["checksum"], key)

    if dry_run:
        results += [_result(src, "WOULD_LOAD") for src in plan]
        return _summary(load_id, results, ignored, started, dry_run=True, full_refresh=full_refresh)

    claimed = _claim(session, plan, load_id)
    for src in plan:
        if src not in claimed:  # another CALL claimed it between our look and our claim
            results.append(_result(src, "SKIPPED", first_error="being loaded by another CALL that claimed it first"))
    for src in claimed:
        results.append(_load(session, src, load_id, force=bool(full_refresh)))
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


def _discover(session, files, wanted):
    """Source files to consider: {source key: {dataset, name, checksum, objects: [(key, size)]}}."""
    objects: list[tuple[str, int | None]] = []
    if files:
        for f in [files] if isinstance(files, str) else files:
            objects.append((str(f).lstrip("/"), None))
    else:
        for prefix in _list_prefixes(session, wanted):
            for row in session.sql(f"LIST @{STAGE}/{prefix}" if prefix else f"LIST @{STAGE}").collect():
                objects.append((_relative(row[0]), int(row[1])))
    sources: dict[str, dict] = {}
    ignored: list[str] = []
    for key, size in objects:
        parsed = contracts.parse_stage_key(key) if key else None
        if parsed is None:
            ignored.append(key)
            continue
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
    return sources, ignored


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
        key = r["FILE_KEY"]
        if not any(key.startswith(p) for p in prefixes):
            prefixes.append(key.rsplit("/", 1)[0] + "/")
    return sorted(set(prefixes))


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


def _loaded_checksums(session, sources):
    """{checksum: the first key loaded with that content} for the sources' checksums (same content, any name)."""
    checksums = {s["checksum"] for s in sources.values()}
    if not checksums:
        return {}
    rows = _tracking_rows(
        session,
        "CONTENT_CHECKSUM",
        checksums,
        {s["dataset"] for s in sources.values()},
        "CONTENT_CHECKSUM, FILE_KEY",
        " AND STATUS IN ('LOADED', 'PARTIALLY_LOADED')",
    )
    found: dict[str, str] = {}
    for r in rows:
        checksum, key = r["CONTENT_CHECKSUM"], r["FILE_KEY"]
        if checksum in checksums and (checksum not in found or key < found[checksum]):
            found[checksum] = key
    return found


def _now_sql():
    return "CURRENT_TIMESTAMP()::TIMESTAMP_NTZ"


def _stale_before():
    """SQL for the time before which a LOADING claim is stale (taken over by the next CALL)."""
    return f"DATEADD(minute, -{STALE_CLAIM_MINUTES}, {_now_sql()})"


def _claim(session, plan, load_id):
    """Claim the planned files for this CALL; returns those it got (another CALL may have won some)."""
    if not plan:
        return []
    values = ", ".join(
        f"({_q(s['key'])}, {_q(s['dataset'])}, {_q(s['name'])}, {_q(s['checksum'])}, {s['size']}, {len(s['objects'])})"
        for s in plan
    )
    session.sql(
        f"MERGE INTO {TRACKING} t USING (SELECT column1 AS FILE_KEY, column2 AS DATASET, column3 AS FILE_NAME, "
        f"column4 AS CONTENT_CHECKSUM, column5 AS SIZE_BYTES, column6 AS PARTS FROM VALUES {values}) s "
        "ON t.FILE_KEY = s.FILE_KEY "
        f"WHEN MATCHED AND (t.STATUS = 'FAILED' OR (t.STATUS = 'LOADING' AND t.CLAIMED_AT < {_stale_before()})) THEN UPDATE SET "
        f"STATUS = 'LOADING', LOAD_ID = {_q(load_id)}, CLAIMED_AT = {_now_sql()}, ATTEMPTS = t.ATTEMPTS + 1, "
        "ROWS_PARSED = NULL, ROWS_LOADED = NULL, ROWS_REJECTED = NULL, FIRST_ERROR = NULL, FINISHED_AT = NULL, "
        "SIZE_BYTES = s.SIZE_BYTES, PARTS = s.PARTS "
        "WHEN NOT MATCHED THEN INSERT (FILE_KEY, DATASET, FILE_NAME, CONTENT_CHECKSUM, SIZE_BYTES, PARTS, STATUS, "
        f"LOAD_ID, CLAIMED_AT, ATTEMPTS) VALUES (s.FILE_KEY, s.DATASET, s.FILE_NAME, s.CONTENT_CHECKSUM, s.SIZE_BYTES, "
        f"s.PARTS, 'LOADING', {_q(load_id)}, {_now_sql()}, 1)"
    ).collect()
    mine = {
        r["FILE_KEY"]
        for r in session.sql(
            f"SELECT FILE_KEY FROM {TRACKING} WHERE LOAD_ID = {_q(load_id)} AND STATUS = 'LOADING'"
        ).collect()
    }
    return [s for s in plan if s["key"] in mine]


def _record_duplicate(session, src, duplicate_of, load_id):
    session.sql(
        f"MERGE INTO {TRACKING} t USING (SELECT {_q(src['key'])} AS FILE_KEY) s ON t.FILE_KEY = s.FILE_KEY "
        f"WHEN NOT MATCHED THEN INSERT (FILE_KEY, DATASET, FILE_NAME, CONTENT_CHECKSUM, SIZE_BYTES, PARTS, STATUS, "
        "DUPLICATE_OF, ROWS_PARSED, ROWS_LOADED, ROWS_REJECTED, LOAD_ID, CLAIMED_AT, FINISHED_AT, ATTEMPTS) VALUES ("
        f"{_q(src['key'])}, {_q(src['dataset'])}, {_q(src['name'])}, {_q(src['checksum'])}, {src['size']}, "
        f"{len(src['objects'])}, 'DUPLICATE', {_q(duplicate_of)}, 0, 0, 0, {_q(load_id)}, {_now_sql()}, "
        f"{_now_sql()}, 1)"
    ).collect()


# -- loading -----------------------------------------------------------------------------------------------------


def copy_statement(contract, objects, load_id, force=False):
    """The COPY INTO that loads a source file's staged objects into its RAW table, lineage columns filled."""
    columns = [c.raw_name for c in contract.columns] + [name for name, _ in contracts.LINEAGE_COLUMNS]
    fields = ", ".join(f"${i}" for i in range(1, len(contract.columns) + 1))
    files = ", ".join(_q(o) for o in objects)
    return (
        f"COPY INTO {contract.qualified_raw_table} ({', '.join(columns)}) FROM (SELECT {fields}, METADATA$FILENAME, "
        f"METADATA$FILE_ROW_NUMBER, {_q(load_id)}, {_now_sql()} FROM @{STAGE}) "
        f"FILES = ({files}) FILE_FORMAT = (FORMAT_NAME = '{FILE_FORMAT}') ON_ERROR = CONTINUE"
        + (" FORCE = TRUE" if force else "")
    )


def _load(session, src, load_id, force):
    contract = contracts.CONTRACTS[src["dataset"]]
    table = contract.qualified_raw_table
    copy = copy_statement(contract, src["objects"], load_id, force)
    # when the COPY started is recorded with the outcome (one statement per file fewer), on the same clock
    started = time.monotonic()
    parsed = loaded = rejected = 0
    first_error = None
    unreadable = False
    try:
        rows = [r.as_dict() for r in session.sql(copy).collect()]
        if rows and "status" in rows[0] and len(rows[0]) == 1:
            # the load metadata says these objects were loaded already. If their rows are in RAW, an earlier CALL
            # committed its COPY but not its tracking: count them rather than load them twice. If not, load again.
            parsed = loaded = _rows_in_raw(session, table, src["objects"])
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
            recorded = _record_rejects(session, contract, src, load_id)
            if recorded != rejected and first_error is None:
                first_error = f"{rejected} rows rejected, {recorded} recorded"
        disallowed, disallowed_error = _reject_disallowed_values(session, contract, src, load_id)
        loaded -= disallowed
        rejected += disallowed
        first_error = first_error or disallowed_error
        failed = unreadable or (rejected and not loaded)
        status = "FAILED" if failed else ("PARTIALLY_LOADED" if rejected else "LOADED")
    except Exception as e:  # one file's failure must not lose the others' results
        status, first_error = "FAILED", _error_text(e)
    session.sql(
        f"UPDATE {TRACKING} SET STATUS = {_q(status)}, ROWS_PARSED = {parsed}, ROWS_LOADED = {loaded}, "
        f"ROWS_REJECTED = {rejected}, FIRST_ERROR = {_q(first_error)}, "
        f"STARTED_AT = DATEADD(millisecond, -{int((time.monotonic() - started) * 1000)}, {_now_sql()}), "
        f"FINISHED_AT = {_now_sql()} "
        f"WHERE FILE_KEY = {_q(src['key'])} AND LOAD_ID = {_q(load_id)}"
    ).collect()
    return _result(src, status, parsed, loaded, rejected, first_error)


def _rejects_recorded(session, src):
    return int(session.sql(f"SELECT COUNT(*) FROM {REJECTS} WHERE FILE_KEY = {_q(src['key'])}").collect()[0][0])


def _rows_in_raw(session, table, objects):
    return int(session.sql(f"SELECT COUNT(*) FROM {table} WHERE SOURCE_FILE IN ({_in_list(objects)})").collect()[0][0])


def _reject_disallowed_values(session, contract, src, load_id):
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
    where = f"SOURCE_FILE IN ({_in_list(src['objects'])}) AND ({' OR '.join(breaks(c) for _, c in checked)})"
    error = "CASE " + " ".join(f"WHEN {breaks(c)} THEN {message(c)}" for _, c in checked) + " END"
    column = "CASE " + " ".join(f"WHEN {breaks(c)} THEN {position(i, c)}" for i, c in checked) + " END"
    record = " || ',' || ".join(_csv_field_sql(c) for c in contract.columns)
    moved = session.sql(
        f"INSERT INTO {REJECTS} (LOAD_ID, FILE_KEY, STAGED_FILE, LINE, ROW_NUMBER, COLUMN_NAME, ERROR, ERROR_CODE, "
        f"REJECTED_RECORD, REJECTED_AT) SELECT {_q(load_id)}, {_q(src['key'])}, SOURCE_FILE, SOURCE_ROW_NUMBER + 1, "
        f"SOURCE_ROW_NUMBER, {column}, {error}, NULL, {record}, {_now_sql()} FROM {table} WHERE {where}"
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
    """Re-read the file in validation mode (which Snowflake allows only without transformation, hence a temporary
    table shaped like the file) and record every rejected row."""
    shape = "LOAD_SHAPE_" + contract.raw_table
    cols = ", ".join(f"{c.raw_name} {c.sql_type}{'' if c.nullable else ' NOT NULL'}" for c in contract.columns)
    session.sql(f"CREATE OR REPLACE TEMPORARY TABLE {shape} ({cols})").collect()
    files = ", ".join(_q(o) for o in src["objects"])
    errors = session.sql(
        f"COPY INTO {shape} FROM @{STAGE} FILES = ({files}) FILE_FORMAT = (FORMAT_NAME = '{FILE_FORMAT}') "
        "VALIDATION_MODE = RETURN_ALL_ERRORS"
    ).collect()
    session.sql(f"DROP TABLE IF EXISTS {shape}").collect()
    if not errors:
        return 0
    values = []
    for e in errors:
        d = {k.upper(): v for k, v in e.as_dict().items()}
        values.append(
            f"({_q(load_id)}, {_q(src['key'])}, {_q(_relative(str(d.get('FILE'))))}, {_num(d.get('LINE'))}, "
            f"{_num(d.get('ROW_NUMBER'))}, {_q(d.get('COLUMN_NAME'))}, {_q(d.get('ERROR'))}, {_num(d.get('CODE'))}, "
            f"{_q(d.get('REJECTED_RECORD'))}, {_now_sql()})"
        )
    for i in range(0, len(values), 1000):
        session.sql(
            f"INSERT INTO {REJECTS} (LOAD_ID, FILE_KEY, STAGED_FILE, LINE, ROW_NUMBER, COLUMN_NAME, ERROR, "
            f"ERROR_CODE, REJECTED_RECORD, REJECTED_AT) VALUES {', '.join(values[i : i + 1000])}"
        ).collect()
    return len(values)


def _num(v):
    return "NULL" if v is None else str(int(v))


def _error_text(e):
    text = str(e).strip()
    return text.splitlines()[0][:1000] if text else type(e).__name__


def _truncate(session, wanted):
    """Full refresh: empty the RAW tables of the datasets and forget their tracking and rejects."""
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
        status = "FAILED" if totals["failed"] else ("PARTIAL" if totals["rows_rejected"] else "SUCCESS")
        message = (
            f"{totals['loaded'] + totals['partially_loaded']} file(s) loaded, {totals['rows_loaded']:,} rows; "
            f"{totals['rows_rejected']:,} rows rejected (see RAW.LOAD_REJECTS); {totals['failed']} file(s) failed; "
            f"{totals['duplicates']} duplicate(s) skipped"
        )
        for left, what in (("INCOMPLETE", "not completely staged"), ("SKIPPED", "held by another CALL")):
            waiting = [r for r in results if r["status"] == left]
            if waiting:
                message += f". {len(waiting)} file(s) {what}, left for a later CALL: " + "; ".join(
                    f"{r['file']}: {r['first_error']}" for r in waiting[:3]
                )
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
