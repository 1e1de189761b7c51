-- Least privilege for loading. The load procedures run with their owner's rights (EXECUTE AS OWNER), so their owner
-- holds what loading needs and nobody else does:
--   NETFLIX_LOAD_PROCEDURE  owns RAW.LOAD_RAW_FILES and RAW.FULL_REFRESH_RAW_FILES (R__ scripts transfer ownership to
--                           it): uses the stage and the file formats, SELECT/INSERT/UPDATE/DELETE/TRUNCATE on the RAW
--                           tables; no user is given this role
--   NETFLIX_LOADER          calls RAW.LOAD_RAW_FILES and reads what it recorded (LOAD_TRACKING, LOAD_REJECTS); it no
--                           longer reads or writes any RAW table, uses the stage or the file formats itself
-- A role inherits the privileges, ownership included, of the roles granted to it: NETFLIX_LOAD_PROCEDURE is granted to
-- SYSADMIN (so to ACCOUNTADMIN) and to the deploying role, which must own the procedures to CREATE OR REPLACE them.
CREATE ROLE IF NOT EXISTS NETFLIX_LOAD_PROCEDURE
    COMMENT = 'Owns the RAW load procedures, which run with its privileges: the stage, the file formats, DML on RAW';
GRANT ROLE NETFLIX_LOAD_PROCEDURE TO ROLE SYSADMIN;
GRANT ROLE NETFLIX_LOAD_PROCEDURE TO ROLE {{ deploy_role }};

GRANT USAGE ON DATABASE {{ database }} TO ROLE NETFLIX_LOAD_PROCEDURE;
GRANT USAGE ON SCHEMA {{ database }}.RAW TO ROLE NETFLIX_LOAD_PROCEDURE;
GRANT USAGE ON FILE FORMAT {{ database }}.RAW.CSV_MOVIELENS TO ROLE NETFLIX_LOAD_PROCEDURE;
GRANT USAGE ON FILE FORMAT {{ database }}.RAW.CSV_MOVIELENS_LOAD TO ROLE NETFLIX_LOAD_PROCEDURE;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA {{ database }}.RAW TO ROLE NETFLIX_LOAD_PROCEDURE;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON FUTURE TABLES IN SCHEMA {{ database }}.RAW TO ROLE NETFLIX_LOAD_PROCEDURE;

-- the loader: what V1.4.0 and V1.5.0 granted beyond calling the procedure, taken back
REVOKE SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA {{ database }}.RAW FROM ROLE NETFLIX_LOADER;
REVOKE SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON FUTURE TABLES IN SCHEMA {{ database }}.RAW FROM ROLE NETFLIX_LOADER;
REVOKE USAGE ON FILE FORMAT {{ database }}.RAW.CSV_MOVIELENS FROM ROLE NETFLIX_LOADER;
REVOKE USAGE ON FILE FORMAT {{ database }}.RAW.CSV_MOVIELENS_LOAD FROM ROLE NETFLIX_LOADER;
GRANT SELECT ON TABLE {{ database }}.RAW.LOAD_TRACKING TO ROLE NETFLIX_LOADER;
GRANT SELECT ON TABLE {{ database }}.RAW.LOAD_REJECTS TO ROLE NETFLIX_LOADER;
