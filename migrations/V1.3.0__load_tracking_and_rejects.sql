-- Load bookkeeping, written by RAW.LOAD_RAW_FILES.
--
-- LOAD_TRACKING: one row per staged source file (a file split into parts is one row). A file is LOADING while
-- a CALL holds it (a claim older than the procedure's stale-claim limit is taken over by the next CALL), then
-- LOADED (every row loaded), PARTIALLY_LOADED (some rows rejected, see LOAD_REJECTS), FAILED (nothing loaded:
-- FIRST_ERROR says why; the next CALL retries it) or DUPLICATE (same content already loaded under DUPLICATE_OF).
-- Always ROWS_PARSED = ROWS_LOADED + ROWS_REJECTED.
CREATE TABLE IF NOT EXISTS {{ database }}.RAW.LOAD_TRACKING (
    FILE_KEY VARCHAR NOT NULL PRIMARY KEY COMMENT 'stage key of the source file: dataset/uploaded-at_checksum/name',
    DATASET VARCHAR NOT NULL COMMENT 'movies, ratings, tags, links, genome-scores or genome-tags',
    FILE_NAME VARCHAR NOT NULL COMMENT 'landing file name',
    CONTENT_CHECKSUM VARCHAR NOT NULL COMMENT 'first 16 hex digits of the file''s sha256',
    SIZE_BYTES NUMBER(38,0) COMMENT 'bytes on the stage (all parts)',
    PARTS NUMBER(38,0) COMMENT 'staged objects the file was split into (1 if not split)',
    STATUS VARCHAR NOT NULL COMMENT 'LOADING, LOADED, PARTIALLY_LOADED, FAILED or DUPLICATE',
    ROWS_PARSED NUMBER(38,0) COMMENT 'data rows read from the file',
    ROWS_LOADED NUMBER(38,0) COMMENT 'rows written to the RAW table',
    ROWS_REJECTED NUMBER(38,0) COMMENT 'rows recorded in LOAD_REJECTS',
    FIRST_ERROR VARCHAR COMMENT 'first error, if any',
    DUPLICATE_OF VARCHAR COMMENT 'for DUPLICATE: the key under which the same content was loaded',
    LOAD_ID VARCHAR NOT NULL COMMENT 'the CALL that holds or last loaded the file',
    CLAIMED_AT TIMESTAMP_NTZ NOT NULL COMMENT 'when that CALL claimed the file',
    STARTED_AT TIMESTAMP_NTZ COMMENT 'when its COPY started',
    FINISHED_AT TIMESTAMP_NTZ COMMENT 'when its load finished',
    ATTEMPTS NUMBER(38,0) NOT NULL DEFAULT 1 COMMENT 'how many CALLs have tried to load the file'
) COMMENT = 'One row per staged MovieLens file: what was loaded, when, rows parsed/loaded/rejected.';

-- LOAD_REJECTS: every row that was not loaded, with where it is and why.
CREATE TABLE IF NOT EXISTS {{ database }}.RAW.LOAD_REJECTS (
    LOAD_ID VARCHAR NOT NULL COMMENT 'the CALL that found the error',
    FILE_KEY VARCHAR NOT NULL COMMENT 'source file (LOAD_TRACKING.FILE_KEY)',
    STAGED_FILE VARCHAR NOT NULL COMMENT 'staged object (the part, for split files)',
    LINE NUMBER(38,0) COMMENT 'line in the staged object (the header is line 1)',
    ROW_NUMBER NUMBER(38,0) COMMENT 'data row number in the staged object',
    COLUMN_NAME VARCHAR COMMENT 'column at fault, if known',
    ERROR VARCHAR NOT NULL COMMENT 'what is wrong',
    ERROR_CODE NUMBER(38,0) COMMENT 'Snowflake error code',
    REJECTED_RECORD VARCHAR COMMENT 'the rejected line',
    REJECTED_AT TIMESTAMP_NTZ NOT NULL COMMENT 'when it was recorded'
) COMMENT = 'Rows of staged files that were not loaded, with file, line and reason.';
