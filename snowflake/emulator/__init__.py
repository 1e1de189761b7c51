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
- state that survives a restart: databases, stages, file formats, procedures and load history (:mod:`.server`).

Start it with ``python -m snowflake.emulator --help``.
"""
