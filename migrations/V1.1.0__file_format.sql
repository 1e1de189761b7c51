-- How every MovieLens CSV file is parsed (the same for all six; see netflix_elt/contracts.py):
-- comma-separated, one header line, fields optionally quoted with " (inner quotes doubled), UTF-8,
-- an empty unquoted field is NULL (links.tmdbId), gzip detected from the file name.
CREATE FILE FORMAT IF NOT EXISTS {{ database }}.RAW.CSV_MOVIELENS
    TYPE = CSV
    FIELD_DELIMITER = ','
    SKIP_HEADER = 1
    FIELD_OPTIONALLY_ENCLOSED_BY = '"'
    EMPTY_FIELD_AS_NULL = TRUE
    ERROR_ON_COLUMN_COUNT_MISMATCH = TRUE
    ENCODING = 'UTF8'
    COMPRESSION = AUTO
    COMMENT = 'MovieLens CSV files: header line, optional double quotes, UTF-8';
