-- RAW.LOAD_RAW_FILES: incremental, exactly-once load of staged MovieLens files (see the handler's docstring).
--   CALL RAW.LOAD_RAW_FILES();                                   -- load every new staged file
--   CALL RAW.LOAD_RAW_FILES(FILES => ['ratings/20261130T061502Z_3f2a9c0d1e4b5a6f/ratings_20240721.csv']);
--   CALL RAW.LOAD_RAW_FILES(DATASETS => ['ratings'], DRY_RUN => TRUE);
--   CALL RAW.LOAD_RAW_FILES(FULL_REFRESH => TRUE);               -- rebuild RAW from every staged file
-- The body is the file contracts followed by the handler, inlined from the repository at deploy time.
-- CALL it with AUTOCOMMIT on (the default): its one explicit transaction (the claims) ends before it returns, and
-- its other statements commit one by one, so a CALL interrupted midway leaves every file either claimed or done.
CREATE OR REPLACE PROCEDURE {{ database }}.RAW.LOAD_RAW_FILES(
    FILES ARRAY DEFAULT NULL,
    FULL_REFRESH BOOLEAN DEFAULT FALSE,
    DATASETS ARRAY DEFAULT NULL,
    DRY_RUN BOOLEAN DEFAULT FALSE
)
RETURNS VARIANT
LANGUAGE PYTHON
RUNTIME_VERSION = '3.11'
PACKAGES = ('snowflake-snowpark-python')
HANDLER = 'main'
EXECUTE AS OWNER
COMMENT = 'Loads new staged MovieLens files into RAW exactly once; returns a JSON summary'
AS
$$
{% include 'modules/netflix_elt/contracts.py' %}
{% include 'modules/snowflake/procedures/load_raw_files.py' %}
$$;

GRANT USAGE ON PROCEDURE {{ database }}.RAW.LOAD_RAW_FILES(ARRAY, BOOLEAN, ARRAY, BOOLEAN) TO ROLE NETFLIX_LOADER;
