-- RAW.LOAD_RAW_FILES: incremental, exactly-once load of staged MovieLens files (see the handler's docstring).
--   CALL RAW.LOAD_RAW_FILES();                                   -- load every new staged file
--   CALL RAW.LOAD_RAW_FILES(FILES => ['ratings/20261130T061502Z_3f2a9c0d1e4b5a6f/ratings_20240721.csv']);
--   CALL RAW.LOAD_RAW_FILES(DATASETS => ['ratings'], DRY_RUN => TRUE);
-- FULL_REFRESH => TRUE is refused ("not authorised"): a full refresh is RAW.FULL_REFRESH_RAW_FILES, for administrators.
-- The body is the file contracts followed by the handler, inlined from the repository at deploy time.
-- CALL it with AUTOCOMMIT on (the default): its one explicit transaction (the claims) ends before it returns, and
-- its other statements commit one by one, so a CALL interrupted midway leaves every file either claimed or done.
-- the deploying role replaces the procedure, so it must own it: it inherits the owner role (also when the
-- deploying role changed since V1.6.0 ran)
GRANT ROLE NETFLIX_LOAD_PROCEDURE TO ROLE {{ deploy_role }};

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

-- It runs with its owner's privileges, so its owner is NETFLIX_LOAD_PROCEDURE (see V1.6.0), not the deploying role.
-- CREATE OR REPLACE makes a new object owned by the role that created it: ownership is transferred on every deploy.
GRANT OWNERSHIP ON PROCEDURE {{ database }}.RAW.LOAD_RAW_FILES(ARRAY, BOOLEAN, ARRAY, BOOLEAN)
    TO ROLE NETFLIX_LOAD_PROCEDURE REVOKE CURRENT GRANTS;
GRANT USAGE ON PROCEDURE {{ database }}.RAW.LOAD_RAW_FILES(ARRAY, BOOLEAN, ARRAY, BOOLEAN) TO ROLE NETFLIX_LOADER;
