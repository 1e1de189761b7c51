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
- the ``TIMEZONE`` session parameter (default ``America/Los_Angeles``; login ``session_parameters``,
  ``ALTER SESSION SET/UNSET TIMEZONE``): ``CURRENT_TIMESTAMP()`` and its synonyms are ``TIMESTAMP_LTZ`` in the
  session's zone (``::TIMESTAMP_NTZ`` is the local wall clock), ``SYSDATE()`` is UTC, every answer reports the zone;
  one clock for every session, procedure and COPY, which administrators may set for tests with
  ``SELECT SYSTEM$EMULATOR_SET_CLOCK('<UTC instant>' | NULL)`` (:mod:`.clock`);
- stored procedures under Snowflake's session rules: the handler's session has the caller's ``TIMEZONE`` and
  ``AUTOCOMMIT``; a transaction it leaves open is rolled back and fails the CALL ("Scoped transaction started in
  stored procedure is incomplete ..."); named temporary objects are refused in owner's-rights procedures
  (:mod:`.procedures`). Stricter than Snowflake: a CALL inside the caller's open transaction is refused;
- long statements answered as Snowflake answers them: "query in progress" after ``SNOWFLAKE_EMULATOR_RESULT_WAIT``
  seconds (default 5) and a result URL the connector polls, ``execute_async`` with ``/monitoring/queries/<id>`` and
  ``RESULT_SCAN``; each statement runs once, even when the connector retries its request; SQL errors are Snowflake
  errors, never HTTP 500 (:mod:`.async_queries`);
- authentication (:mod:`.auth`): users (``CREATE/ALTER/DROP/DESC USER``, ``GRANT ROLE ... TO USER``) with salted
  scrypt password hashes and RSA public keys; logins checked as Snowflake checks them (wrong password or unknown
  user: ``390100``; key-pair JWT not matching the user's ``RSA_PUBLIC_KEY``/``RSA_PUBLIC_KEY_2``: ``390144``; role
  not granted: ``390189``). The bootstrap administrator (role ACCOUNTADMIN) comes from the environment,
  ``SNOWFLAKE_EMULATOR_USER`` and ``SNOWFLAKE_EMULATOR_PASSWORD``; without that password every login is accepted
  (ad-hoc use; a warning says so at start-up). Passwords never reach the log;
- least privilege (:mod:`.access`): roles, role hierarchy, grants (including FUTURE grants), ownership and
  ``GRANT OWNERSHIP``, enforced before each statement of a session whose role is not an administrator's; such a
  role never reaches the emulator's internal catalogue, DuckDB's host functions or the host's files, and a stage
  path never leaves its stage; ``USE ROLE`` and ``CURRENT_ROLE()``; procedures run with their owner's role
  (``EXECUTE AS OWNER``) under an import and builtins guard (:mod:`.procedures`; not a security boundary);
- state that survives a restart: databases, stages, file formats, procedures, users, roles, grants and load
  history (:mod:`.server`).

Start it with ``python -m snowflake.emulator --help``.
"""
