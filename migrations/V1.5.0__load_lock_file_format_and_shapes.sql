-- What RAW.LOAD_RAW_FILES needs to load correctly under Snowflake's rules (see the handler's docstring).

-- LOAD_LOCK: one row. Every CALL makes its claims in one transaction that starts with an UPDATE of this row, so
-- claimers take turns: an UPDATE holds its lock until the transaction commits, and under READ COMMITTED each
-- statement after the lock sees every claim committed before it (LOAD_TRACKING's primary key is not enforced, so
-- it cannot stop two CALLs from claiming one file).
CREATE TABLE IF NOT EXISTS {{ database }}.RAW.LOAD_LOCK (
    ID NUMBER(38,0) NOT NULL COMMENT 'always 1',
    HELD_BY VARCHAR COMMENT 'the CALL (load id) that last took the lock',
    TAKEN_AT TIMESTAMP_NTZ COMMENT 'UTC time it took the lock'
) COMMENT = 'One row, updated first by every LOAD_RAW_FILES claim transaction so that claims never interleave.';

-- How the procedure's COPY (with a transformation) reads a MovieLens file: as RAW.CSV_MOVIELENS, except that an
-- empty field is '' (EMPTY_FIELD_AS_NULL = FALSE) and no text means NULL (NULL_IF = ()), so a field is NULL only
-- when the row has no such field. Snowflake ignores ERROR_ON_COLUMN_COUNT_MISMATCH in a COPY with a
-- transformation; the procedure's SELECT rejects a row with too few or too many fields itself (its first column is
-- NULL then), and turns '' and '\N' into NULL as RAW.CSV_MOVIELENS does.
CREATE FILE FORMAT IF NOT EXISTS {{ database }}.RAW.CSV_MOVIELENS_LOAD
    TYPE = CSV
    FIELD_DELIMITER = ','
    SKIP_HEADER = 1
    FIELD_OPTIONALLY_ENCLOSED_BY = '"'
    EMPTY_FIELD_AS_NULL = FALSE
    NULL_IF = ()
    ERROR_ON_COLUMN_COUNT_MISMATCH = FALSE
    ENCODING = 'UTF8'
    COMPRESSION = AUTO
    COMMENT = 'MovieLens CSV files as LOAD_RAW_FILES reads them in its COPY: a missing field is NULL, an empty one is empty';

GRANT USAGE ON FILE FORMAT {{ database }}.RAW.CSV_MOVIELENS_LOAD TO ROLE NETFLIX_LOADER;

-- LOAD_SHAPE_<table>: always empty, one per MovieLens file, columns as in netflix_elt/contracts.py (a test checks
-- them). The target of the procedure's re-read of a file with rejected rows (COPY ... VALIDATION_MODE =
-- RETURN_ALL_ERRORS, which loads nothing and allows no transformation, so its target must have the file's
-- columns). Permanent tables: an owner's-rights procedure cannot create temporary ones.
CREATE TABLE IF NOT EXISTS {{ database }}.RAW.LOAD_SHAPE_MOVIES (
    MOVIE_ID NUMBER(38,0) NOT NULL,
    TITLE VARCHAR NOT NULL,
    GENRES VARCHAR NOT NULL
) COMMENT = 'Always empty: the columns of movies.csv, read by LOAD_RAW_FILES to validate rejected rows.';

CREATE TABLE IF NOT EXISTS {{ database }}.RAW.LOAD_SHAPE_RATINGS (
    USER_ID NUMBER(38,0) NOT NULL,
    MOVIE_ID NUMBER(38,0) NOT NULL,
    RATING NUMBER(2,1) NOT NULL,
    EPOCH_SECONDS NUMBER(38,0) NOT NULL
) COMMENT = 'Always empty: the columns of ratings.csv, read by LOAD_RAW_FILES to validate rejected rows.';

CREATE TABLE IF NOT EXISTS {{ database }}.RAW.LOAD_SHAPE_TAGS (
    USER_ID NUMBER(38,0) NOT NULL,
    MOVIE_ID NUMBER(38,0) NOT NULL,
    TAG VARCHAR NOT NULL,
    EPOCH_SECONDS NUMBER(38,0) NOT NULL
) COMMENT = 'Always empty: the columns of tags.csv, read by LOAD_RAW_FILES to validate rejected rows.';

CREATE TABLE IF NOT EXISTS {{ database }}.RAW.LOAD_SHAPE_LINKS (
    MOVIE_ID NUMBER(38,0) NOT NULL,
    IMDB_ID VARCHAR NOT NULL,
    TMDB_ID NUMBER(38,0)
) COMMENT = 'Always empty: the columns of links.csv, read by LOAD_RAW_FILES to validate rejected rows.';

CREATE TABLE IF NOT EXISTS {{ database }}.RAW.LOAD_SHAPE_GENOME_SCORES (
    MOVIE_ID NUMBER(38,0) NOT NULL,
    TAG_ID NUMBER(38,0) NOT NULL,
    RELEVANCE FLOAT NOT NULL
) COMMENT = 'Always empty: the columns of genome-scores.csv, read by LOAD_RAW_FILES to validate rejected rows.';

CREATE TABLE IF NOT EXISTS {{ database }}.RAW.LOAD_SHAPE_GENOME_TAGS (
    TAG_ID NUMBER(38,0) NOT NULL,
    TAG VARCHAR NOT NULL
) COMMENT = 'Always empty: the columns of genome-tags.csv, read by LOAD_RAW_FILES to validate rejected rows.';

-- LOAD_LOCK's one row, last: schemachange runs a script with AUTOCOMMIT off, so this INSERT opens a transaction
-- that the DDL above would otherwise commit early; schemachange commits it with the script's history record.
INSERT INTO {{ database }}.RAW.LOAD_LOCK (ID)
    SELECT 1 FROM (SELECT COUNT(*) AS N FROM {{ database }}.RAW.LOAD_LOCK) WHERE N = 0;
