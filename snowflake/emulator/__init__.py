"""Local Snowflake emulator: fakesnow's server mode, extended where it falls short.

LOCAL ONLY. This package never runs against, or inside, a real Snowflake account. It exists so that the
production SQL of this project (migrations, the LOAD_RAW_FILES procedure, the dbt project) runs unchanged on
a laptop. On top of fakesnow it adds:

- ``CREATE [OR REPLACE] PROCEDURE ... LANGUAGE PYTHON ... HANDLER = '...' AS $$ ... $$``, ``DROP PROCEDURE``
  and ``CALL``: the handler runs in this process with a Snowpark session connected back to the emulator over
  HTTP, and its return value is the CALL's result (:mod:`.procedures`);
- ``LIST @external_stage`` with ``PATTERN``, external stages with nested keys (:mod:`.stages`);
- ``COPY INTO <table>`` from stages with ``FILES``/``PATTERN``, transformations (``$n``, ``METADATA$FILENAME``,
  ``METADATA$FILE_ROW_NUMBER``), every ``ON_ERROR`` mode, ``VALIDATION_MODE`` and ``VALIDATE()`` returning the
  rejected records (:mod:`.copy`);
- ``ALTER SESSION SET/UNSET QUERY_TAG`` and ``SYSTEM$CANCEL_ALL_QUERIES`` (:mod:`.cursor`);
- authentication (:mod:`.auth`): users (``CREATE/ALTER/DROP/DESC USER``, ``GRANT ROLE ... TO USER``) with salted
  scrypt password hashes and RSA public keys; logins checked as Snowflake checks them (wrong password or unknown
  user: ``390100``; key-pair JWT not matching the user's ``RSA_PUBLIC_KEY``/``RSA_PUBLIC_KEY_2``: ``390144``; role
  not granted: ``390189``). The bootstrap administrator (role ACCOUNTADMIN) comes from the environment,
  ``SNOWFLAKE_EMULATOR_USER`` and ``SNOWFLAKE_EMULATOR_PASSWORD``; without that password every login is accepted
  (ad-hoc use; a warning says so at start-up). Passwords never reach the log;
- least privilege (:mod:`.access`): roles, role hierarchy, grants (including FUTURE grants) and ownership, enforced
  before each statement of a session whose role is not an administrator's; ``USE ROLE`` and ``CURRENT_ROLE()``;
  procedures run with their owner's role (``EXECUTE AS OWNER``);
- state that survives a restart: databases, stages, file formats, procedures, users, roles, grants and load
  history (:mod:`.server`).

Start it with ``python -m snowflake.emulator --help``.
"""
