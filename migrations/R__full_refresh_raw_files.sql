-- RAW.FULL_REFRESH_RAW_FILES: rebuild the RAW tables of some datasets to exactly what the stage holds (see the
-- handler's docstring, snowflake/procedures/full_refresh_raw_files.py).
--   CALL RAW.FULL_REFRESH_RAW_FILES();                                    -- every dataset
--   CALL RAW.FULL_REFRESH_RAW_FILES(DATASETS => ['movies']);
--   CALL RAW.FULL_REFRESH_RAW_FILES(DATASETS => ['ratings'], DRY_RUN => TRUE);
-- It empties RAW tables, so only administrators call it: USAGE is granted to no role; its owner,
-- NETFLIX_LOAD_PROCEDURE, is granted to SYSADMIN (and so to ACCOUNTADMIN). The body is the file contracts, the load
-- handler and this handler, inlined from the repository at deploy time. CALL it with AUTOCOMMIT on.
-- the deploying role replaces the procedure, so it must own it: it inherits the owner role (also when the
-- deploying role changed since V1.6.0 ran)
GRANT ROLE NETFLIX_LOAD_PROCEDURE TO ROLE {{ deploy_role }};

CREATE OR REPLACE PROCEDURE {{ database }}.RAW.FULL_REFRESH_RAW_FILES(
    DATASETS ARRAY DEFAULT NULL,
    DRY_RUN BOOLEAN DEFAULT FALSE
)
RETURNS VARIANT
LANGUAGE PYTHON
RUNTIME_VERSION = '3.11'
PACKAGES = ('snowflake-snowpark-python')
HANDLER = 'main'
EXECUTE AS OWNER
COMMENT = 'Empties the RAW tables of the datasets and loads every staged file again; returns a JSON summary'
AS
$$
{% include 'modules/netflix_elt/contracts.py' %}
{% include 'modules/snowflake/procedures/load_raw_files.py' %}
{% include 'modules/snowflake/procedures/full_refresh_raw_files.py' %}
$$;

GRANT OWNERSHIP ON PROCEDURE {{ database }}.RAW.FULL_REFRESH_RAW_FILES(ARRAY, BOOLEAN)
    TO ROLE NETFLIX_LOAD_PROCEDURE REVOKE CURRENT GRANTS;
