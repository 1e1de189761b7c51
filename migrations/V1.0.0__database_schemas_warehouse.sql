-- The database, its schemas and the warehouse the pipeline uses.
--   RAW        files as loaded, one table per MovieLens file, plus load tracking and rejects
--   STAGING    dbt staging views (cleaned, typed, deduplicated)
--   CORE       dbt dimensions and facts (Kimball)
--   MARTS      dbt marts that BI users query
--   SNAPSHOTS  dbt snapshots (history of catalogue changes)
CREATE DATABASE IF NOT EXISTS {{ database }};
CREATE SCHEMA IF NOT EXISTS {{ database }}.RAW WITH MANAGED ACCESS;
CREATE SCHEMA IF NOT EXISTS {{ database }}.STAGING;
CREATE SCHEMA IF NOT EXISTS {{ database }}.CORE;
CREATE SCHEMA IF NOT EXISTS {{ database }}.MARTS;
CREATE SCHEMA IF NOT EXISTS {{ database }}.SNAPSHOTS;

CREATE WAREHOUSE IF NOT EXISTS {{ warehouse }}
    WAREHOUSE_SIZE = XSMALL AUTO_SUSPEND = 60 AUTO_RESUME = TRUE INITIALLY_SUSPENDED = TRUE;
