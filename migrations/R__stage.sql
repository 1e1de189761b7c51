-- The external stage on the S3 location the uploader writes to. In a real account it authenticates through a
-- storage integration (created once by ACCOUNTADMIN, see the README); no keys ever appear in SQL. Repeatable:
-- re-created whenever the URL or integration changes.
CREATE OR REPLACE STAGE {{ database }}.RAW.LANDING
    URL = '{{ stage_url }}'
    {% if storage_integration %}STORAGE_INTEGRATION = {{ storage_integration }}{% endif %}
    FILE_FORMAT = (FORMAT_NAME = '{{ database }}.RAW.CSV_MOVIELENS')
    COMMENT = 'MovieLens files uploaded by netflix-elt: <dataset>/<uploaded-at>_<checksum>/<file name>';

-- only the load procedures read it (they run as NETFLIX_LOAD_PROCEDURE, see V1.6.0); NETFLIX_LOADER calls them
GRANT USAGE ON STAGE {{ database }}.RAW.LANDING TO ROLE NETFLIX_LOAD_PROCEDURE;
