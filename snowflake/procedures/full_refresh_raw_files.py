"""RAW.FULL_REFRESH_RAW_FILES: rebuild the RAW tables of some datasets to exactly what the stage holds.

A Snowpark Python stored procedure handler: ``main(session, datasets, dry_run)``. Deployed by
``migrations/R__full_refresh_raw_files.sql``, which inlines ``netflix_elt/contracts.py``,
``snowflake/procedures/load_raw_files.py`` and then this file into the procedure body; run locally, it imports them.

It lists every staged file of the datasets (every upload-date prefix, however old) before it changes anything; then,
in LOAD_RAW_FILES's claim transaction, it empties the datasets' RAW tables, LOAD_TRACKING and LOAD_REJECTS rows and
claims every listed file, and loads each one as LOAD_RAW_FILES does. It refuses to start while another CALL is
loading a file of those datasets. Emptying RAW is for administrators: the migrations grant USAGE on this procedure
to no role, so only its owner's role and the roles that inherit it (SYSADMIN, ACCOUNTADMIN) may call it; a
NETFLIX_LOADER session gets Snowflake's "does not exist or not authorized".
"""

import types

try:
    from snowflake.procedures import load_raw_files as loader
except ModuleNotFoundError:  # inside Snowflake: the load handler is inlined above this one
    loader = types.SimpleNamespace(**globals())  # type: ignore[assignment]


def main(session, datasets=None, dry_run=False):
    """The procedure's handler: LOAD_RAW_FILES's run with every staged file of the datasets (default: all six)."""
    return loader.run(session, files=None, datasets=datasets, dry_run=dry_run, full_refresh=True)
