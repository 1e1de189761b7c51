"""Access control for the emulator: users, roles, warehouses, grants, object ownership, and their enforcement.

fakesnow has no notion of users or roles. The emulator keeps a persistent catalogue of them (``CREATE USER``,
``ALTER USER ... SET PASSWORD/DEFAULT_ROLE/RSA_PUBLIC_KEY``, ``DESC USER``, ``SHOW USERS``, ``CREATE ROLE``,
``GRANT``/``REVOKE``, ``SHOW ROLES``, ``SHOW GRANTS TO ROLE/USER``, ``SHOW GRANTS OF ROLE``,
``SHOW FUTURE GRANTS IN SCHEMA``) and records which role created (owns) each table, view, schema, stage and
procedure. :class:`Privileges` then checks, for a session whose role is not a system administrator role
(ACCOUNTADMIN, SECURITYADMIN, SYSADMIN, USERADMIN, or a role granted one of them), each statement before it runs:

- reads (``SELECT``, the sources of ``INSERT ... SELECT``, ``CREATE ... AS SELECT``, views, ``MERGE ... USING``)
  need SELECT on every table or view named (a view's own reads are its owner's business, as in Snowflake);
- ``INSERT``/``UPDATE``/``DELETE``/``TRUNCATE``/``MERGE``/``COPY INTO`` need that privilege on the target;
  ``COPY``/``LIST`` need USAGE on the stage;
- ``CREATE TABLE/VIEW/STAGE/...`` needs ``CREATE <kind>`` on the schema (``CREATE SCHEMA`` on the database), and
  the creating role becomes the owner; ``DROP``, ``ALTER``, ``COMMENT ON`` and ``CREATE OR REPLACE`` of an existing
  object need OWNERSHIP; ``CALL`` needs USAGE on the procedure;
- every object also needs USAGE on its database and schema;
- users, roles, warehouses, databases, and grants of roles or of objects the role does not own are for
  administrators only;
- ``GRANT OWNERSHIP ON <TABLE|VIEW|STAGE|FILE FORMAT|PROCEDURE|SEQUENCE|SCHEMA> ... TO ROLE r [ { REVOKE | COPY }
  CURRENT GRANTS ]`` moves ownership as Snowflake does: only the owner role (or a role inheriting it) or a role
  with MANAGE GRANTS (ACCOUNTADMIN, SECURITYADMIN) may, and without MANAGE GRANTS only to a role active in the
  session; the object's other grants are revoked (REVOKE), kept (COPY) or, without either, make it fail. The new
  owner holds OWNERSHIP (shown by ``SHOW GRANTS TO ROLE``); an owner's-rights procedure then runs with its rights.
  ``CREATE OR REPLACE`` makes a new object, owned by the role that creates it.

What a non-administrative role never reaches (:meth:`Enforcer.screen`): the emulator's internal catalogue (users
and their password hashes, grants, procedures, owners, COPY bookkeeping: database ``_FS_GLOBAL``, every database's
``_FS_INFORMATION_SCHEMA``, schema ``_EMULATOR``, tables named ``_EMU_*``/``_FS_*``) and DuckDB's catalogues
(``SYSTEM``, ``TEMP``, ``PG_CATALOG``) answer as objects that do not exist, to reads and writes alike, whatever
the statement, quoting or case; ``IDENTIFIER('<name>')`` and session variables are resolved before the check.
``INFORMATION_SCHEMA`` views are readable, never writable. DuckDB's host functions (``read_csv``, ``read_text``,
``glob``, ``query``, ``duckdb_*``, ``current_setting``, ...) are unknown functions; a file name in FROM, or any name
that is not an existing table or view, does not exist. Statements the emulator does not know (DuckDB's ``ATTACH``,
``PRAGMA``, ``INSTALL``, ``COPY ... TO``, ``EXPORT``, ...) and statements it cannot parse are refused, as is more
than one statement at a time. COPY loads only from named stages (a table's own stage for its owner), never from a
URL or path in the statement nor from a stage whose URL is the host's file system; a stage's URL must be cloud
storage (``s3://``, ``gcs://``, ``azure://``).

Privileges come from the role, every role granted to it (``GRANT ROLE a TO ROLE b``, transitively), PUBLIC and
ownership. OWNERSHIP and ALL imply every privilege. A grant on an object stops applying when the object is
re-created after it (``CREATE OR REPLACE`` makes a new object; ``COPY GRANTS`` is not emulated); a FUTURE grant
applies to objects created after it; objects the emulator has no creation record for (created before it kept
them) count as created before any explicit grant and after any future grant. Denials answer as Snowflake does:
``Object '<DB>.<SCHEMA>.<NAME>' does not exist or not authorized.`` (002003) when the role cannot see the object,
``Insufficient privileges to operate on <kind> '<NAME>'`` (003001) when it can but lacks the privilege.

Not checked (documented differences): SHOW/DESCRIBE and INFORMATION_SCHEMA show every object; secondary roles are
never active (as with ``USE SECONDARY ROLES NONE``); USE DATABASE/SCHEMA/WAREHOUSE need no privilege (but never
reach the internal catalogue). Administrators are not checked: they run as the user who started the emulator.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import snowflake.connector.errors
from sqlglot import exp

from . import auth
from .procedures import first, signature_of, sql_error

ROLES = "_fs_global._emulator.roles"
GRANTS = "_fs_global._emulator.grants"
WAREHOUSES = "_fs_global._emulator.warehouses"
USERS = "_fs_global._emulator.users"

SETUP_SQL = f"""
CREATE SCHEMA IF NOT EXISTS _fs_global._emulator;
CREATE TABLE IF NOT EXISTS {ROLES} (name VARCHAR PRIMARY KEY, comment VARCHAR, created_on TIMESTAMP);
CREATE TABLE IF NOT EXISTS {WAREHOUSES} (name VARCHAR PRIMARY KEY, size VARCHAR, created_on TIMESTAMP);
CREATE TABLE IF NOT EXISTS {GRANTS} (
    privilege VARCHAR, granted_on VARCHAR, name VARCHAR, granted_to VARCHAR, grantee_name VARCHAR,
    grant_option BOOLEAN, future BOOLEAN, created_on TIMESTAMP
);
CREATE TABLE IF NOT EXISTS {USERS} (
    name VARCHAR PRIMARY KEY, login_name VARCHAR, password_hash VARCHAR, default_role VARCHAR,
    rsa_public_key VARCHAR, rsa_public_key_2 VARCHAR, disabled BOOLEAN, comment VARCHAR, created_on TIMESTAMP
);
"""

SYSTEM_ROLES = ("ACCOUNTADMIN", "SECURITYADMIN", "USERADMIN", "SYSADMIN", "PUBLIC")
ADMIN_ROLES = auth.ADMIN_ROLES
# the system role hierarchy: ACCOUNTADMIN inherits SECURITYADMIN and SYSADMIN, SECURITYADMIN inherits USERADMIN
SYSTEM_HIERARCHY = {"ACCOUNTADMIN": ("SECURITYADMIN", "SYSADMIN"), "SECURITYADMIN": ("USERADMIN",)}
ACCOUNT = "EMULATOR"

_IDENT = r"(?:\"[^\"]+\"|[\w$]+)"
_NAME = rf"{_IDENT}(?:\.{_IDENT}){{0,2}}"

STATEMENT_RX = re.compile(
    r"^\s*(CREATE\s+(OR\s+REPLACE\s+)?(ROLE|WAREHOUSE|USER)|DROP\s+(ROLE|WAREHOUSE|USER)|ALTER\s+(WAREHOUSE|USER)"
    r"|GRANT\s|REVOKE\s|DESC(RIBE)?\s+USER\s|SHOW\s+(ROLES|GRANTS|FUTURE\s+GRANTS|WAREHOUSES|USERS)"
    r"|USE\s+(SECONDARY\s+ROLES|WAREHOUSE))",
    re.IGNORECASE,
)

# object kinds whose owner the emulator records, as sqlglot names them in CREATE/DROP
OWNED_KINDS = {"TABLE", "VIEW", "STAGE", "SEQUENCE", "FILE FORMAT", "FUNCTION", "MATERIALIZED VIEW", "SCHEMA"}
# objects that only administrators create or drop
ACCOUNT_KINDS = {"DATABASE", "ROLE", "USER", "WAREHOUSE", "INTEGRATION", "STORAGE INTEGRATION", "SHARE"}

log = logging.getLogger("snowflake.emulator")


def norm(name: str) -> str:
    return ".".join(p.strip('"') if p.startswith('"') else p.upper() for p in re.findall(_IDENT, name))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _status(message: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    return ["status"], [(message,)]


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'").replace("\\'", "'")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def insufficient(kind: str, name: str) -> snowflake.connector.errors.ProgrammingError:
    return sql_error(f"SQL access control error:\nInsufficient privileges to operate on {kind} '{name}'", 3001, "42501")


def not_authorized(label: str, name: str, sqlstate: str = "42S02") -> snowflake.connector.errors.ProgrammingError:
    return sql_error(f"SQL compilation error:\n{label} '{name}' does not exist or not authorized.", 2003, sqlstate)


@contextlib.contextmanager
def fresh(duck: Any) -> Iterator[Any]:
    """A connection of its own to the same DuckDB instance, in autocommit: it sees what other sessions committed
    (a session's open transaction would not) and its writes are not part of the session's transaction."""
    conn = duck.cursor()
    try:
        yield conn
    finally:
        conn.close()


# -- users and roles -------------------------------------------------------------------------------------------------
@dataclass
class User:
    name: str
    login_name: str
    password_hash: str | None
    default_role: str | None
    rsa_public_key: str | None
    rsa_public_key_2: str | None
    disabled: bool
    comment: str | None
    created_on: dt.datetime | None

    @property
    def keys(self) -> list[str]:
        return [k for k in (self.rsa_public_key, self.rsa_public_key_2) if k]


_USER_COLUMNS = (
    "name, login_name, password_hash, default_role, rsa_public_key, rsa_public_key_2, disabled, comment, created_on"
)


def find_user(duck: Any, login: str) -> User | None:
    """The user whose LOGIN_NAME (case-insensitive) or name is ``login``."""
    row = first(
        duck.execute(
            f"SELECT {_USER_COLUMNS} FROM {USERS} WHERE upper(login_name) = upper(?) OR name = ? "
            "ORDER BY upper(login_name) = upper(?) DESC LIMIT 1",
            [login, auth.normalise_name(login), login],
        )
    )
    return User(*row) if row else None


def role_exists(duck: Any, role: str) -> bool:
    return role in SYSTEM_ROLES or bool(first(duck.execute(f"SELECT 1 FROM {ROLES} WHERE name = ?", [role])))


def role_closure(duck: Any, roles: Iterable[str]) -> set[str]:
    """The roles and every role they inherit (granted to them, transitively; the system hierarchy; PUBLIC)."""
    edges: dict[str, set[str]] = {}
    for granted, grantee in duck.execute(
        f"SELECT name, grantee_name FROM {GRANTS} WHERE granted_on = 'ROLE' AND granted_to = 'ROLE'"
    ).fetchall():
        edges.setdefault(grantee, set()).add(granted)
    for parent, children in SYSTEM_HIERARCHY.items():
        edges.setdefault(parent, set()).update(children)
    seen: set[str] = set()
    todo = list(roles)
    while todo:
        role = todo.pop()
        if role in seen:
            continue
        seen.add(role)
        todo.extend(edges.get(role, ()))
    seen.add("PUBLIC")
    return seen


def user_roles(duck: Any, user: str) -> set[str]:
    """Every role a user may use: those granted to the user, what they inherit, and PUBLIC."""
    direct = [
        r[0]
        for r in duck.execute(
            f"SELECT name FROM {GRANTS} WHERE granted_on = 'ROLE' AND granted_to = 'USER' AND grantee_name = ?",
            [user],
        ).fetchall()
    ]
    return role_closure(duck, direct)


def bootstrap_admin(duck: Any, name: str, password: str) -> str:
    """Create (or reset the password of) the administrator the emulator is started with; it has ACCOUNTADMIN."""
    user = auth.normalise_name(name)
    password_hash = auth.hash_password(password)
    if first(duck.execute(f"SELECT 1 FROM {USERS} WHERE name = ?", [user])):
        duck.execute(f"UPDATE {USERS} SET password_hash = ?, disabled = FALSE WHERE name = ?", [password_hash, user])
    else:
        duck.execute(
            f"INSERT INTO {USERS} ({_USER_COLUMNS}) VALUES (?, ?, ?, 'ACCOUNTADMIN', NULL, NULL, FALSE, ?, ?)",
            [user, user, password_hash, "bootstrap administrator", _now()],
        )
    if not first(
        duck.execute(
            f"SELECT 1 FROM {GRANTS} WHERE granted_on = 'ROLE' AND name = 'ACCOUNTADMIN' AND granted_to = 'USER' "
            "AND grantee_name = ?",
            [user],
        )
    ):
        duck.execute(
            f"INSERT INTO {GRANTS} VALUES ('USAGE', 'ROLE', 'ACCOUNTADMIN', 'USER', ?, FALSE, FALSE, ?)", [user, _now()]
        )
    return user


# -- ownership -------------------------------------------------------------------------------------------------------
def owners_table(database: str) -> str:
    """Who created each object, per database (a DuckDB transaction writes to one database only)."""
    return f'"{database}"._fs_information_schema._emu_owners'


def _ensure_owners(conn: Any, database: str) -> None:
    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{database}"._fs_information_schema')
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {owners_table(database)} (schema_name VARCHAR, name VARCHAR, "
        "object_type VARCHAR, owner VARCHAR, created_on TIMESTAMP, PRIMARY KEY (schema_name, name))"
    )


@dataclass
class ObjectInfo:
    """What the emulator knows of an object: whether it exists, its kind, its owner and when it was created."""

    exists: bool
    kind: str | None = None
    owner: str | None = None
    created_on: dt.datetime | None = None


def owner_record(conn: Any, database: str, schema: str, name: str) -> tuple[str, str, dt.datetime] | None:
    try:
        row = first(
            conn.execute(
                f"SELECT object_type, owner, created_on FROM {owners_table(database)} "
                "WHERE schema_name = ? AND name = ?",
                [schema, name],
            )
        )
    except Exception:  # no record kept in this database yet
        return None
    return (row[0], row[1], row[2]) if row else None


def record_owner(duck: Any, database: str, schema: str, name: str, kind: str, role: str) -> None:
    with fresh(duck) as conn:
        _ensure_owners(conn, database)
        conn.execute(
            f"INSERT OR REPLACE INTO {owners_table(database)} VALUES (?, ?, ?, ?, ?)",
            [schema, name, kind, role, _now()],
        )


def forget_owner(duck: Any, database: str, schema: str, name: str) -> None:
    with fresh(duck) as conn, contextlib.suppress(Exception):
        conn.execute(f"DELETE FROM {owners_table(database)} WHERE schema_name = ? AND name = ?", [schema, name])


def rename_owner(duck: Any, database: str, old: tuple[str, str], new: tuple[str, str]) -> None:
    with fresh(duck) as conn, contextlib.suppress(Exception):
        conn.execute(f"DELETE FROM {owners_table(database)} WHERE schema_name = ? AND name = ?", list(new))
        conn.execute(
            f"UPDATE {owners_table(database)} SET schema_name = ?, name = ? WHERE schema_name = ? AND name = ?",
            [*new, *old],
        )


def table_kind(duck: Any, database: str, schema: str, name: str) -> str | None:
    """'TABLE' or 'VIEW' if the relation exists (as the given connection sees it), else None."""
    row = first(
        duck.execute(
            "SELECT table_type FROM information_schema.tables WHERE table_catalog = ? AND table_schema = ? "
            "AND table_name = ?",
            [database, schema, name],
        )
    )
    if not row:
        return None
    return "VIEW" if row[0] == "VIEW" else "TABLE"


def schema_exists(duck: Any, database: str, schema: str) -> bool:
    return bool(
        first(
            duck.execute(
                "SELECT 1 FROM information_schema.schemata WHERE upper(catalog_name) = upper(?) AND schema_name = ?",
                [database, schema],
            )
        )
    )


def display_name(name: str) -> str:
    """A granted object's name as SHOW GRANTS writes it: a procedure's argument types separated by ", "."""
    head, paren, args = name.partition("(")
    return head + paren + ", ".join(a.strip() for a in args.split(",")) if paren else name


def transfer_owner(duck: Any, database: str, schema: str, name: str, kind: str, role: str) -> None:
    """GRANT OWNERSHIP: the object's owner is now ``role`` (it keeps its creation time: grants on it still apply)."""
    with fresh(duck) as conn:
        _ensure_owners(conn, database)
        if owner_record(conn, database, schema, name):
            conn.execute(
                f"UPDATE {owners_table(database)} SET owner = ? WHERE schema_name = ? AND name = ?",
                [role, schema, name],
            )
        else:
            conn.execute(f"INSERT INTO {owners_table(database)} VALUES (?, ?, ?, ?, NULL)", [schema, name, kind, role])


def forget_ownership(duck: Any, kinds: Iterable[str], name: str, new_name: str | None = None) -> None:
    """An object was created, replaced or dropped (``new_name``: renamed): an OWNERSHIP grant on the old one goes."""
    kinds = list(kinds)
    marks = ", ".join("?" for _ in kinds)
    with fresh(duck) as conn:
        if new_name is None:
            conn.execute(
                f"DELETE FROM {GRANTS} WHERE privilege = 'OWNERSHIP' AND granted_on IN ({marks}) AND name = ?",
                [*kinds, name],
            )
        else:
            conn.execute(
                f"UPDATE {GRANTS} SET name = ? WHERE privilege = 'OWNERSHIP' AND granted_on IN ({marks}) AND name = ?",
                [new_name, *kinds, name],
            )


def forget_grants(duck: Any, kind: str, name: str, ownership_only: bool = False) -> None:
    """A procedure was replaced or dropped: the grants on it go (only its OWNERSHIP with ``ownership_only``)."""
    if ownership_only:
        forget_ownership(duck, [kind], name)
        return
    with fresh(duck) as conn:
        conn.execute(f"DELETE FROM {GRANTS} WHERE granted_on = ? AND name = ? AND NOT future", [kind, name])


# -- privileges ------------------------------------------------------------------------------------------------------
_IMPLIED = ("ALL", "ALL PRIVILEGES", "OWNERSHIP")
# roles with the account-level MANAGE GRANTS privilege (Snowflake grants it to SECURITYADMIN; ACCOUNTADMIN inherits it)
MANAGE_GRANTS_ROLES = frozenset({"ACCOUNTADMIN", "SECURITYADMIN"})
# objects whose ownership GRANT OWNERSHIP transfers (other kinds keep an OWNERSHIP grant only)
TRANSFERABLE = frozenset({"TABLE", "VIEW", "STAGE", "FILE FORMAT", "PROCEDURE", "SEQUENCE", "FUNCTION", "SCHEMA"})
_SINGLE_TARGET_RX = re.compile(
    rf"(?P<type>DATABASE|SCHEMA|TABLE|VIEW|STAGE|FILE\s+FORMAT|PROCEDURE|FUNCTION|WAREHOUSE|SEQUENCE|"
    rf"INTEGRATION|ACCOUNT)\s*(?P<name>{_NAME})?\s*(?P<sig>\(.*\))?$",
    re.IGNORECASE,
)


class Privileges:
    """What a role may do, from its grants, its inherited roles' and ownership.

    ``session`` is the session's own DuckDB connection (it sees the session's uncommitted objects); catalogue
    reads go through a connection of their own (they see what other sessions committed)."""

    def __init__(self, session: Any, role: str):
        self.session = session
        self.role = role
        self._conn = session.cursor()
        self.roles = role_closure(self._conn, [role])
        self.admin = bool(self.roles & ADMIN_ROLES)
        self._grants: list[tuple[str, str, str, bool, dt.datetime | None]] | None = None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Privileges:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def grants(self) -> list[tuple[str, str, str, bool, dt.datetime | None]]:
        if self._grants is None:
            marks = ", ".join("?" for _ in self.roles)
            self._grants = [
                (r[0], r[1], r[2], bool(r[3]), r[4])
                for r in self._conn.execute(
                    f"SELECT privilege, granted_on, name, future, created_on FROM {GRANTS} "
                    f"WHERE granted_to = 'ROLE' AND grantee_name IN ({marks})",
                    sorted(self.roles),
                ).fetchall()
            ]
        return self._grants

    # -- what is known of an object --------------------------------------------------------------------------------
    def relation(self, database: str, schema: str, name: str) -> ObjectInfo:
        kind = table_kind(self.session, database, schema, name) or table_kind(self.session, "temp", "main", name)
        record = owner_record(self._conn, database, schema, name)
        if record and kind and record[0] in ("TABLE", "VIEW", "MATERIALIZED VIEW"):
            return ObjectInfo(True, kind, record[1], record[2])
        return ObjectInfo(kind is not None, kind)

    def other(self, database: str, schema: str, name: str) -> ObjectInfo:
        record = owner_record(self._conn, database, schema, name)
        if record:
            return ObjectInfo(True, record[0], record[1], record[2])
        return ObjectInfo(False)

    def schema(self, database: str, schema: str) -> ObjectInfo:
        record = owner_record(self._conn, database, schema, "")
        exists = schema_exists(self.session, database, schema)
        if record and exists:
            return ObjectInfo(True, "SCHEMA", record[1], record[2])
        return ObjectInfo(exists, "SCHEMA")

    # -- checks ----------------------------------------------------------------------------------------------------
    def owns(self, info: ObjectInfo) -> bool:
        return info.owner is not None and info.owner in self.roles

    def has(self, privilege: str, kind: str, name: str, info: ObjectInfo | None = None) -> bool:
        """``privilege`` on the object ``kind`` ``name`` (fully qualified; procedures with their signature)."""
        if info is not None and self.owns(info):
            return True
        accepted = {privilege, *_IMPLIED}
        kinds = {"TABLE", "VIEW"} if kind in ("TABLE", "VIEW") else {kind}
        actual = (info.kind if info and info.kind else kind).upper()
        created = info.created_on if info else None
        parent = name.rsplit(".", 1)[0] if "." in name else ""
        database = name.split(".", 1)[0]
        for p, on, gname, future, granted in self.grants:
            if p not in accepted:
                continue
            if not future:
                if on in kinds and gname == name and (created is None or granted is None or granted >= created):
                    return True
                continue
            scope, _, marker = gname.rpartition(".<")
            if marker.rstrip(">") != actual or scope not in (parent, database):
                continue
            if created is None or granted is None or created >= granted:
                return True
        return False

    def any_privilege(self, kind: str, name: str, info: ObjectInfo | None = None) -> bool:
        if info is not None and self.owns(info):
            return True
        kinds = {"TABLE", "VIEW"} if kind in ("TABLE", "VIEW") else {kind}
        privileges = {g[0] for g in self.grants if not g[3] and g[1] in kinds and g[2] == name}
        privileges |= {g[0] for g in self.grants if g[3]}
        return any(self.has(p, kind, name, info) for p in privileges)

    def usage(self, database: str, schema: str | None = None) -> bool:
        """USAGE on the database (and the schema, if given): needed to reach any object in them."""
        if not self.has("USAGE", "DATABASE", database):
            return False
        return schema is None or self.has("USAGE", "SCHEMA", f"{database}.{schema}", self.schema(database, schema))


# -- the catalogue's statements --------------------------------------------------------------------------------------
class AccessCatalog:
    def __init__(
        self,
        duck_conn: Any,
        database: str | None,
        schema: str | None,
        principal: auth.Principal | None = None,
    ):
        self.duck = duck_conn
        self.database = database
        self.schema = schema
        self.principal = principal or auth.Principal(user="", role="ACCOUNTADMIN", any_role=True)

    def handles(self, sql: str) -> bool:
        return bool(STATEMENT_RX.match(sql))

    def _admin(self) -> bool:
        if self.principal.role in ADMIN_ROLES:
            return True
        with Privileges(self.duck, self.principal.role) as privileges:
            return privileges.admin

    def _require_admin(self) -> None:
        if not self._admin():
            raise insufficient("account", ACCOUNT)

    def execute(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        s = sql.strip().rstrip(";")
        u = s.upper()
        if re.match(r"(CREATE\s+(OR\s+REPLACE\s+)?|ALTER\s+|DROP\s+)USER\b", u):
            self._require_admin()
            return self._user_ddl(s)
        if re.match(r"DESC(RIBE)?\s+USER\b", u):
            return self._describe_user(s)
        if m := re.match(
            rf"CREATE\s+(OR\s+REPLACE\s+)?ROLE\s+(IF\s+NOT\s+EXISTS\s+)?({_IDENT})(?:\s+COMMENT\s*=\s*'((?:[^']|'')*)')?",
            s,
            re.IGNORECASE,
        ):
            self._require_admin()
            name = norm(m.group(3))
            exists = first(self.duck.execute(f"SELECT 1 FROM {ROLES} WHERE name = ?", [name]))
            if exists and not m.group(1):
                if m.group(2):
                    return _status(f"{name} already exists, statement succeeded.")
                raise sql_error(f"SQL compilation error:\nObject '{name}' already exists.", 2002, "42710")
            self.duck.execute(f"INSERT OR REPLACE INTO {ROLES} VALUES (?, ?, ?)", [name, m.group(4), _now()])
            return _status(f"Role {name} successfully created.")
        if m := re.match(rf"DROP\s+ROLE\s+(IF\s+EXISTS\s+)?({_IDENT})", s, re.IGNORECASE):
            self._require_admin()
            name = norm(m.group(2))
            self.duck.execute(f"DELETE FROM {ROLES} WHERE name = ?", [name])
            self.duck.execute(
                f"DELETE FROM {GRANTS} WHERE grantee_name = ? OR (granted_on = 'ROLE' AND name = ?)", [name, name]
            )
            return _status(f"{name} successfully dropped.")
        if m := re.match(
            rf"CREATE\s+(OR\s+REPLACE\s+)?WAREHOUSE\s+(IF\s+NOT\s+EXISTS\s+)?({_IDENT})(.*)$",
            s,
            re.IGNORECASE | re.DOTALL,
        ):
            self._require_admin()
            name = norm(m.group(3))
            size = re.search(r"WAREHOUSE_SIZE\s*=\s*'?(\w+)'?", m.group(4), re.IGNORECASE)
            if not first(self.duck.execute(f"SELECT 1 FROM {WAREHOUSES} WHERE name = ?", [name])) or m.group(1):
                self.duck.execute(
                    f"INSERT OR REPLACE INTO {WAREHOUSES} VALUES (?, ?, ?)",
                    [name, size.group(1).upper() if size else "XSMALL", _now()],
                )
            return _status(f"Warehouse {name} successfully created.")
        if re.match(r"(DROP|ALTER)\s+WAREHOUSE", u):
            self._require_admin()
            return _status("Statement executed successfully.")
        if re.match(r"USE\s+(WAREHOUSE|SECONDARY\s+ROLES)", u):
            return _status("Statement executed successfully.")
        if u.startswith("GRANT"):
            return self._grant(s, revoke=False)
        if u.startswith("REVOKE"):
            return self._grant(s, revoke=True)
        if u.startswith("SHOW"):
            return self._show(s)
        raise NotImplementedError(sql)

    # -- users -----------------------------------------------------------------------------------------------------
    def _user_ddl(self, s: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        if m := re.match(
            rf"CREATE\s+(OR\s+REPLACE\s+)?USER\s+(IF\s+NOT\s+EXISTS\s+)?({_IDENT})(.*)$", s, re.IGNORECASE | re.DOTALL
        ):
            name = auth.normalise_name(m.group(3))
            exists = first(self.duck.execute(f"SELECT 1 FROM {USERS} WHERE name = ?", [name]))
            if exists and not m.group(1):
                if m.group(2):
                    return _status(f"{name} already exists, statement succeeded.")
                raise sql_error(f"SQL compilation error:\nUser '{name}' already exists.", 2002, "42710")
            values: dict[str, Any] = {"login_name": name, "disabled": False}
            values.update(self._user_properties(m.group(4)))
            self.duck.execute(f"DELETE FROM {USERS} WHERE name = ?", [name])
            self.duck.execute(
                f"INSERT INTO {USERS} ({_USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    name,
                    values.get("login_name"),
                    values.get("password_hash"),
                    values.get("default_role"),
                    values.get("rsa_public_key"),
                    values.get("rsa_public_key_2"),
                    values.get("disabled", False),
                    values.get("comment"),
                    _now(),
                ],
            )
            return _status(f"User {name} successfully created.")
        if m := re.match(rf"DROP\s+USER\s+(IF\s+EXISTS\s+)?({_IDENT})\s*$", s, re.IGNORECASE):
            name = auth.normalise_name(m.group(2))
            if not self._user_exists(name) and not m.group(1):
                raise not_authorized("User", name, "02000")
            self.duck.execute(f"DELETE FROM {USERS} WHERE name = ?", [name])
            self.duck.execute(f"DELETE FROM {GRANTS} WHERE granted_to = 'USER' AND grantee_name = ?", [name])
            return _status(f"{name} successfully dropped.")
        m = re.match(
            rf"ALTER\s+USER\s+(IF\s+EXISTS\s+)?({_IDENT})\s+(SET|UNSET|RENAME\s+TO)\s+(.*)$",
            s,
            re.IGNORECASE | re.DOTALL,
        )
        if not m:
            raise sql_error("SQL compilation error:\nsyntax error in ALTER USER (SET, UNSET or RENAME TO)", 1003)
        name = auth.normalise_name(m.group(2))
        if not self._user_exists(name):
            if m.group(1):
                return _status("Statement executed successfully.")
            raise not_authorized("User", name, "02000")
        action = re.sub(r"\s+", " ", m.group(3).upper())
        if action == "RENAME TO":
            new = auth.normalise_name(m.group(4).strip())
            self.duck.execute(f"UPDATE {USERS} SET name = ? WHERE name = ?", [new, name])
            self.duck.execute(
                f"UPDATE {GRANTS} SET grantee_name = ? WHERE granted_to = 'USER' AND grantee_name = ?", [new, name]
            )
            return _status("Statement executed successfully.")
        if action == "SET":
            changes = self._user_properties(m.group(4))
        else:
            columns = {
                "PASSWORD": "password_hash",  # pragma: allowlist secret (a column name)
                "DEFAULT_ROLE": "default_role",
                "RSA_PUBLIC_KEY": "rsa_public_key",
                "RSA_PUBLIC_KEY_2": "rsa_public_key_2",
                "COMMENT": "comment",
                "LOGIN_NAME": "login_name",
            }
            changes = {}
            for prop in re.split(r"\s*,\s*|\s+", m.group(4).strip()):
                if prop.upper() in columns:
                    changes[columns[prop.upper()]] = name if prop.upper() == "LOGIN_NAME" else None
        for column, value in changes.items():
            self.duck.execute(f"UPDATE {USERS} SET {column} = ? WHERE name = ?", [value, name])
        return _status("Statement executed successfully.")

    def _user_exists(self, name: str) -> bool:
        return bool(first(self.duck.execute(f"SELECT 1 FROM {USERS} WHERE name = ?", [name])))

    @staticmethod
    def _user_properties(text: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m in re.finditer(
            r"([A-Z_0-9]+)\s*=\s*('(?:[^']|'')*'|\"[^\"]*\"|\([^)]*\)|[^\s]+)", text, re.IGNORECASE | re.DOTALL
        ):
            key, value = m.group(1).upper(), _unquote(m.group(2))
            if key == "PASSWORD":
                out["password_hash"] = auth.hash_password(value) if value else None
            elif key == "LOGIN_NAME":
                out["login_name"] = auth.normalise_name(value)
            elif key == "DEFAULT_ROLE":
                out["default_role"] = norm(value) if value else None
            elif key in ("RSA_PUBLIC_KEY", "RSA_PUBLIC_KEY_2"):
                try:
                    out[key.lower()] = auth.public_key_body(value) if value else None
                except ValueError:
                    raise sql_error(
                        "New public key rejected by current policy. Reason: 'Invalid public key'.", 2029, "22023"
                    ) from None
            elif key == "DISABLED":
                out["disabled"] = value.upper() == "TRUE"
            elif key == "COMMENT":
                out["comment"] = value
        return out

    def _describe_user(self, s: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        m = re.match(rf"DESC(?:RIBE)?\s+USER\s+({_IDENT})", s, re.IGNORECASE)
        if not m:
            raise sql_error("SQL compilation error:\nsyntax error in DESCRIBE USER", 1003)
        name = auth.normalise_name(m.group(1))
        row = first(self.duck.execute(f"SELECT {_USER_COLUMNS} FROM {USERS} WHERE name = ?", [name]))
        if not row or (name != self.principal.user and not self._admin()):
            raise not_authorized("User", name, "02000")
        user = User(*row)

        def fp(key: str | None) -> str | None:
            return auth.fingerprint(key) if key else None

        props = [
            ("NAME", user.name),
            ("COMMENT", user.comment),
            ("LOGIN_NAME", user.login_name),
            ("DISABLED", str(bool(user.disabled)).lower()),
            ("DEFAULT_ROLE", user.default_role),
            ("PASSWORD", "********" if user.password_hash else None),
            ("HAS_PASSWORD", str(bool(user.password_hash)).lower()),
            ("RSA_PUBLIC_KEY", user.rsa_public_key),
            ("RSA_PUBLIC_KEY_FP", fp(user.rsa_public_key)),
            ("RSA_PUBLIC_KEY_2", user.rsa_public_key_2),
            ("RSA_PUBLIC_KEY_2_FP", fp(user.rsa_public_key_2)),
        ]
        return ["property", "value", "default", "description"], [(k, v, None, None) for k, v in props]

    # -- GRANT / REVOKE ----------------------------------------------------------------------------------------------
    def _grant(self, s: str, revoke: bool) -> tuple[list[str], list[tuple[Any, ...]]]:
        verb, prep = ("REVOKE", "FROM") if revoke else ("GRANT", "TO")
        if m := re.match(rf"{verb}\s+ROLE\s+({_IDENT})\s+{prep}\s+(ROLE|USER)\s+({_IDENT})", s, re.IGNORECASE):
            self._require_admin()
            role, kind = norm(m.group(1)), m.group(2).upper()
            grantee = norm(m.group(3)) if kind == "ROLE" else auth.normalise_name(m.group(3))
            self._require_role(role)
            if kind == "ROLE":
                self._require_role(grantee)
            elif not self._user_exists(grantee):
                raise not_authorized("User", grantee, "02000")
            self._store(revoke, "USAGE", "ROLE", role, kind, grantee, False, False)
            return _status("Statement executed successfully.")
        if not revoke and (
            m := re.match(
                rf"GRANT\s+OWNERSHIP\s+ON\s+(?P<target>.+?)\s+TO\s+(?:ROLE\s+)?(?P<grantee>{_IDENT})"
                r"(?:\s+(?P<current>REVOKE|COPY)\s+CURRENT\s+GRANTS)?\s*$",
                s,
                re.IGNORECASE | re.DOTALL,
            )
        ):
            target = m.group("target").strip()
            single = _SINGLE_TARGET_RX.match(target)
            kind = re.sub(r"\s+", " ", single.group("type").upper()) if single else ""
            if kind in TRANSFERABLE:
                return self._grant_ownership(kind, single, norm(m.group("grantee")), m.group("current"))  # type: ignore[arg-type]
            if re.match(r"(ALL|FUTURE)\s", target, re.IGNORECASE):
                raise sql_error(
                    "SQL compilation error:\nGRANT OWNERSHIP ON ALL/FUTURE ... is not supported by the local emulator: "
                    "transfer each object",
                    1003,
                )
            # other kinds (DATABASE, WAREHOUSE, ...): an OWNERSHIP grant, as before (administrators only)
            s = s[: m.start("current") - 1].rstrip() if m.group("current") else s
        m = re.match(
            rf"{verb}\s+(?:GRANT\s+OPTION\s+FOR\s+)?(?P<privs>.+?)\s+ON\s+(?P<target>.+?)\s+{prep}\s+"
            rf"(?:ROLE\s+)?(?P<grantee>{_IDENT})(?P<opt>\s+WITH\s+GRANT\s+OPTION)?(?:\s+(?:CASCADE|RESTRICT))?\s*$",
            s,
            re.IGNORECASE | re.DOTALL,
        )
        if not m:
            raise sql_error(f"SQL compilation error:\nsyntax error in {verb}", 1003)
        grantee = norm(m.group("grantee"))
        self._require_role(grantee)
        privileges = [re.sub(r"\s+", " ", p.strip().upper()) for p in m.group("privs").split(",")]
        target = m.group("target").strip()
        bulk = re.match(
            rf"(ALL|FUTURE)\s+(?P<type>[A-Z ]+?)S\s+IN\s+(?P<scope>SCHEMA|DATABASE)\s+(?P<name>{_NAME})$",
            target,
            re.IGNORECASE,
        )
        if bulk:
            self._require_admin()
            kind = bulk.group("type").upper().strip()
            scope_name = self._qualify(norm(bulk.group("name")), 2 if bulk.group("scope").upper() == "SCHEMA" else 1)
            future = bulk.group(1).upper() == "FUTURE"
            names = [scope_name + ".<" + kind + ">"] if future else self._objects_in(kind, scope_name)
            for name in names:
                for p in privileges:
                    self._store(revoke, p, kind, name, "ROLE", grantee, bool(m.group("opt")), future)
            return _status("Statement executed successfully.")
        single = _SINGLE_TARGET_RX.match(target)
        if not single:
            raise sql_error(f"SQL compilation error:\nunsupported object in {verb}: {target}", 1003)
        kind = re.sub(r"\s+", " ", single.group("type").upper())
        name = self._target_name(kind, single)
        if not self._admin():
            self._require_owner(kind, name)
        if privileges == ["OWNERSHIP"] and not revoke:  # one owner: the grant replaces the previous one
            self.duck.execute(
                f"DELETE FROM {GRANTS} WHERE privilege = 'OWNERSHIP' AND granted_on = ? AND name = ?", [kind, name]
            )
        for p in privileges:
            self._store(revoke, p, kind, name, "ROLE", grantee, bool(m.group("opt")), False)
        return _status("Statement executed successfully.")

    def _target_name(self, kind: str, single: re.Match[str]) -> str:
        depth = {"DATABASE": 1, "WAREHOUSE": 1, "INTEGRATION": 1, "ACCOUNT": 0, "SCHEMA": 2}.get(kind, 3)
        name = self._qualify(norm(single.group("name") or ""), depth) if depth else ""
        if single.group("sig"):
            name += "(" + signature_of(single.group("sig").strip()[1:-1]) + ")"
        return name

    def _grant_ownership(self, kind: str, single: re.Match[str], grantee: str, current: str | None) -> Any:
        """``GRANT OWNERSHIP ON <kind> <name> TO ROLE <role> [ { REVOKE | COPY } CURRENT GRANTS ]``.

        Who: the role that owns the object (or a role that inherits it) or one with MANAGE GRANTS (ACCOUNTADMIN,
        SECURITYADMIN); without MANAGE GRANTS, only to a role active in the session (the role or one it inherits).
        The object's other grants ("outbound privileges") are revoked (REVOKE), kept (COPY), or, if there are any
        and neither is given, the transfer fails. The new owner then has every privilege on it (a procedure it owns
        runs with its rights); CREATE OR REPLACE makes a new object, owned by the role that creates it."""
        from .procedures import ProcedureCatalog

        self._require_role(grantee)
        name = self._target_name(kind, single)
        parts = name.split("(")[0].split(".")
        short = parts[-1] if parts else name
        label = kind.title() if kind in ("TABLE", "VIEW", "STAGE", "SCHEMA", "PROCEDURE") else "Object"
        with Privileges(self.duck, self.principal.role) as privileges:
            if kind == "PROCEDURE":
                owner = ProcedureCatalog(self.duck).owner_of(name)
                info = ObjectInfo(owner is not None, kind, owner)
            elif kind in ("TABLE", "VIEW"):
                info = privileges.relation(*parts) if len(parts) == 3 else ObjectInfo(False)
            elif kind == "SCHEMA":
                info = privileges.schema(*parts) if len(parts) == 2 else ObjectInfo(False)
            else:
                info = privileges.other(*parts) if len(parts) == 3 else ObjectInfo(False)
                if not info.exists and len(parts) == 3:
                    info = ObjectInfo(self._catalogued(kind, *parts), kind)
            if not info.exists:
                raise not_authorized(label, name.split("(")[0], "02000")
            manage = bool(privileges.roles & MANAGE_GRANTS_ROLES)
            owned = info.owner is not None and info.owner in privileges.roles
            owned = owned or any(
                p == "OWNERSHIP" and on == kind and g == name and not f for p, on, g, f, _ in privileges.grants
            )
            if not manage and not owned:
                if privileges.admin or privileges.any_privilege(kind, name, info):
                    raise insufficient(kind.lower(), short)
                raise not_authorized(label, name.split("(")[0], "02000")
            if not manage and grantee not in privileges.roles:
                raise sql_error(
                    f"SQL compilation error:\n{kind.title()} ownership can only be transferred to a role that is "
                    "activated in the current session or by a role with account-level MANAGE GRANTS.",
                    3001,
                    "42501",
                )
        outbound = self.duck.execute(
            f"SELECT privilege, grantee_name FROM {GRANTS} WHERE granted_on = ? AND name = ? AND NOT future "
            "AND privilege <> 'OWNERSHIP' ORDER BY created_on",
            [kind, name],
        ).fetchall()
        if outbound and current is None:
            privilege, role = outbound[0]
            raise sql_error(
                f"SQL execution error: Dependent grant of privilege '{privilege}' on securable '{display_name(name)}' "
                f"to role "
                f"'{role}' exists. It must be revoked first. More than one dependent grant may exist: use 'SHOW "
                "GRANTS' command to view them. To revoke all dependent grants while transferring object ownership, "
                "use convenience command 'GRANT OWNERSHIP ON <target_objects> TO <target_role> REVOKE CURRENT "
                "GRANTS'.",
                3111,
                "42501",
            )
        if current and current.upper() == "REVOKE":
            self.duck.execute(
                f"DELETE FROM {GRANTS} WHERE granted_on = ? AND name = ? AND NOT future AND privilege <> 'OWNERSHIP'",
                [kind, name],
            )
        self.duck.execute(
            f"DELETE FROM {GRANTS} WHERE privilege = 'OWNERSHIP' AND granted_on = ? AND name = ?", [kind, name]
        )
        self._store(False, "OWNERSHIP", kind, name, "ROLE", grantee, False, False)
        if kind == "PROCEDURE":
            ProcedureCatalog(self.duck).set_owner(name, grantee)
        elif kind == "SCHEMA":
            transfer_owner(self.duck, parts[0], parts[1], "", kind, grantee)
        else:
            transfer_owner(self.duck, parts[0], parts[1], parts[2], kind, grantee)
        return _status("Statement executed successfully.")

    def _catalogued(self, kind: str, database: str, schema: str, name: str) -> bool:
        """Whether fakesnow's catalogue has the stage or file format (objects the emulator has no owner for)."""
        table = {"STAGE": "_fs_stages", "FILE FORMAT": "_fs_file_formats"}.get(kind)
        if table is None:
            return False
        return bool(
            first(
                self.duck.execute(
                    f"SELECT 1 FROM _fs_global._fs_information_schema.{table} "
                    "WHERE database_name = ? AND schema_name = ? AND name = ?",
                    [database, schema, name],
                )
            )
        )

    def _require_owner(self, kind: str, name: str) -> None:
        """A role that is not an administrator grants privileges only on objects it owns."""
        from .procedures import ProcedureCatalog

        parts = name.split("(")[0].split(".")
        with Privileges(self.duck, self.principal.role) as privileges:
            if kind == "PROCEDURE" and len(parts) == 3:
                owner = ProcedureCatalog(self.duck).owner_of(name)
                if owner is not None and owner in privileges.roles:
                    return
            elif kind in ("TABLE", "VIEW") and len(parts) == 3:
                if privileges.owns(privileges.relation(*parts)):
                    return
            elif kind == "SCHEMA" and len(parts) == 2:
                if privileges.owns(privileges.schema(*parts)):
                    return
            elif len(parts) == 3 and privileges.owns(privileges.other(*parts)):
                return
        raise insufficient(kind.lower(), parts[-1] if parts else ACCOUNT)

    def _store(
        self, revoke: bool, privilege: str, on: str, name: str, to: str, grantee: str, option: bool, future: bool
    ) -> None:
        self.duck.execute(
            f"DELETE FROM {GRANTS} WHERE privilege = ? AND granted_on = ? AND name = ? AND granted_to = ? "
            "AND grantee_name = ?",
            [privilege, on, name, to, grantee],
        )
        if not revoke:
            self.duck.execute(
                f"INSERT INTO {GRANTS} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [privilege, on, name, to, grantee, option, future, _now()],
            )

    def _require_role(self, name: str) -> None:
        if not role_exists(self.duck, name):
            raise sql_error(f"SQL compilation error:\nRole '{name}' does not exist or not authorized.", 2003, "02000")

    def _qualify(self, name: str, depth: int) -> str:
        parts = name.split(".") if name else []
        missing = depth - len(parts)
        if missing > 0:  # what is left out is the session's database (and schema)
            parts = [self.database or "", self.schema or ""][:missing] + parts
        return ".".join(parts)

    def _objects_in(self, kind: str, scope: str) -> list[str]:
        parts = scope.split(".")
        if kind in {"TABLE", "VIEW"}:
            table_type = "BASE TABLE" if kind == "TABLE" else "VIEW"
            where = "table_catalog = ?" + (" AND table_schema = ?" if len(parts) > 1 else "")
            rows = self.duck.execute(
                f"SELECT table_catalog, table_schema, table_name FROM information_schema.tables "
                f"WHERE table_type = '{table_type}' AND {where}",
                parts,
            ).fetchall()
            return [".".join(r) for r in rows]
        if kind == "SCHEMA":
            rows = self.duck.execute(
                "SELECT catalog_name, schema_name FROM information_schema.schemata WHERE catalog_name = ? "
                "AND schema_name NOT IN ('main', '_fs_information_schema', 'information_schema')",
                [parts[0]],
            ).fetchall()
            return [".".join(r) for r in rows]
        return []

    # -- SHOW -------------------------------------------------------------------------------------------------------
    def _show(self, s: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        columns, rows = self._show_rows(s)
        if "granted_on" in columns:  # Snowflake writes object kinds of two words with an underscore (FILE_FORMAT)
            at, named = columns.index("granted_on"), columns.index("name")
            rows = [
                tuple(
                    str(v).replace(" ", "_") if i == at else display_name(str(v)) if i == named and v else v
                    for i, v in enumerate(r)
                )
                for r in rows
            ]
        return columns, rows

    def _show_rows(self, s: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        u = re.sub(r"\s+", " ", s.upper())
        if u.startswith("SHOW ROLES"):
            rows = self.duck.execute(f"SELECT created_on, name, comment FROM {ROLES} ORDER BY name").fetchall()
            return ["created_on", "name", "comment"], list(rows)
        if u.startswith("SHOW WAREHOUSES"):
            rows = self.duck.execute(f"SELECT name, 'STARTED', size FROM {WAREHOUSES} ORDER BY name").fetchall()
            return ["name", "state", "size"], list(rows)
        if u.startswith("SHOW USERS"):
            where = "" if self._admin() else " WHERE name = ?"
            rows = self.duck.execute(
                "SELECT name, created_on, login_name, default_role, disabled, password_hash IS NOT NULL, "
                f"rsa_public_key IS NOT NULL OR rsa_public_key_2 IS NOT NULL, comment FROM {USERS}{where} ORDER BY name",
                [] if not where else [self.principal.user],
            ).fetchall()
            cols = ["name", "created_on", "login_name", "default_role", "disabled", "has_password"]
            return [*cols, "has_rsa_public_key", "comment"], list(rows)
        cols = ["created_on", "privilege", "granted_on", "name", "granted_to", "grantee_name", "grant_option"]
        select = f"SELECT created_on, privilege, granted_on, name, granted_to, grantee_name, grant_option FROM {GRANTS}"
        if m := re.match(rf"SHOW GRANTS TO ROLE ({_IDENT})", s, re.IGNORECASE):
            rows = self.duck.execute(
                f"{select} WHERE grantee_name = ? AND granted_to = 'ROLE' AND NOT future ORDER BY granted_on, name, privilege",
                [norm(m.group(1))],
            ).fetchall()
            return cols, list(rows)
        if m := re.match(rf"SHOW GRANTS TO USER ({_IDENT})", s, re.IGNORECASE):
            rows = self.duck.execute(
                f"SELECT created_on, name, granted_to, grantee_name FROM {GRANTS} WHERE granted_on = 'ROLE' "
                "AND granted_to = 'USER' AND grantee_name = ? ORDER BY name",
                [auth.normalise_name(m.group(1))],
            ).fetchall()
            return ["created_on", "role", "granted_to", "grantee_name"], list(rows)
        if m := re.match(rf"SHOW GRANTS OF ROLE ({_IDENT})", s, re.IGNORECASE):
            rows = self.duck.execute(
                "SELECT created_on, name, granted_to, grantee_name FROM " + GRANTS + " WHERE granted_on = 'ROLE' "
                "AND name = ? ORDER BY grantee_name",
                [norm(m.group(1))],
            ).fetchall()
            return ["created_on", "role", "granted_to", "grantee_name"], list(rows)
        if m := re.match(rf"SHOW FUTURE GRANTS IN SCHEMA ({_NAME})", s, re.IGNORECASE):
            scope = self._qualify(norm(m.group(1)), 2)
            rows = self.duck.execute(
                f"{select} WHERE future AND starts_with(name, ?) ORDER BY name, privilege", [scope + ".<"]
            ).fetchall()
            return cols, list(rows)
        raise NotImplementedError(s)


# -- what only administrators reach ---------------------------------------------------------------------------------
# The emulator's catalogue (users, password hashes, grants, procedures, owners, COPY bookkeeping) lives in DuckDB next
# to the data: in the global database _FS_GLOBAL, in every database's _FS_INFORMATION_SCHEMA and in tables named
# _EMU_*/_FS_*. DuckDB's own catalogues (SYSTEM, TEMP, PG_CATALOG) and Snowflake's SNOWFLAKE database are not a
# role's either. To a non-administrative role they do not exist.
INTERNAL_DATABASES = frozenset({"_FS_GLOBAL", "SYSTEM", "TEMP", "SNOWFLAKE"})
INTERNAL_SCHEMAS = frozenset({"_FS_INFORMATION_SCHEMA", "_EMULATOR", "PG_CATALOG"})
INTERNAL_PREFIXES = ("_FS_", "_EMU_")
READ_ONLY_SCHEMAS = frozenset({"INFORMATION_SCHEMA"})
# the INFORMATION_SCHEMA views Snowflake gives every role (read only)
INFORMATION_SCHEMA_VIEWS = frozenset(
    {
        "APPLICABLE_ROLES",
        "COLUMNS",
        "DATABASES",
        "ENABLED_ROLES",
        "EXTERNAL_TABLES",
        "FILE_FORMATS",
        "FUNCTIONS",
        "INFORMATION_SCHEMA_CATALOG_NAME",
        "LOAD_HISTORY",
        "OBJECT_PRIVILEGES",
        "PACKAGES",
        "PIPES",
        "PROCEDURES",
        "REFERENTIAL_CONSTRAINTS",
        "SCHEMATA",
        "SEQUENCES",
        "STAGES",
        "TABLE_CONSTRAINTS",
        "TABLE_PRIVILEGES",
        "TABLE_STORAGE_METRICS",
        "TABLES",
        "USAGE_PRIVILEGES",
        "VIEWS",
    }
)
# DuckDB functions that reach the host (files, settings, the environment, SQL text run unchecked) beyond its table
# and pragma functions; and the table functions that only compute values
HOST_SCALARS = frozenset(
    {"CURRENT_SETTING", "GETVARIABLE", "GETENV", "WRITE_LOG", "JSON_EXECUTE_SERIALIZED_SQL", "QUERY", "QUERY_TABLE"}
)
HOST_PREFIXES = ("READ_", "DUCKDB_", "PRAGMA_", "PARQUET_", "SNIFF_", "ICEBERG_", "DELTA_", "SQLITE_", "POSTGRES_")
VALUE_TABLE_FUNCTIONS = frozenset(
    {"RANGE", "GENERATE_SERIES", "UNNEST", "REPEAT", "REPEAT_ROW", "JSON_EACH", "JSON_TREE", "VERSION"}
)
# the statements a non-administrative role may send (the emulator's own statements are matched before this)
STATEMENTS = (
    exp.Query,
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.TruncateTable,
    exp.Copy,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.Comment,
    exp.Describe,
    exp.Show,
    exp.Use,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Set,
    exp.Put,
)
# SHOW statements sqlglot leaves unparsed that fakesnow answers
SHOW_COMMAND_RX = re.compile(
    r"SHOW\s+(TERSE\s+)?(OBJECTS|TABLES|VIEWS|SCHEMAS|DATABASES|COLUMNS|STAGES|FILE\s+FORMATS|(USER\s+)?PROCEDURES"
    r"|(USER\s+)?FUNCTIONS|SEQUENCES|PARAMETERS|WAREHOUSES|(PRIMARY|IMPORTED|UNIQUE)\s+KEYS)\b"
)
_HOST_FUNCTIONS: frozenset[str] | None = None


def internal(database: str, schema: str, name: str) -> bool:
    """Whether an object name points into the emulator's catalogue or DuckDB's (see above)."""
    parts = [p.upper() for p in (database, schema, name) if p]
    return (
        database.upper() in INTERNAL_DATABASES
        or schema.upper() in INTERNAL_SCHEMAS
        or any(p.startswith(INTERNAL_PREFIXES) for p in parts)
    )


def host_function(name: str, conn: Any) -> bool:
    """Whether ``name`` (upper case) is a DuckDB function that reads or changes something outside the tables: its
    table functions (read_csv, read_text, glob, query, duckdb_settings ...) and pragmas, and a few scalars."""
    global _HOST_FUNCTIONS
    if _HOST_FUNCTIONS is None:
        rows = conn.execute(
            "SELECT DISTINCT upper(function_name) FROM duckdb_functions() "
            "WHERE function_type IN ('table', 'table_macro', 'pragma')"
        ).fetchall()
        _HOST_FUNCTIONS = frozenset(r[0] for r in rows) - VALUE_TABLE_FUNCTIONS | HOST_SCALARS
    return name in _HOST_FUNCTIONS or name.startswith(HOST_PREFIXES)


def unknown_statement(sql: str) -> snowflake.connector.errors.ProgrammingError:
    """Snowflake's answer to a statement it does not know (DuckDB's ATTACH, PRAGMA, INSTALL, COPY ... TO, ...)."""
    word = (sql.strip().split(None, 1) or [""])[0][:32]
    return sql_error(f"SQL compilation error:\nsyntax error line 1 at position 0 unexpected '{word}'.", 1003, "42000")


def invalid_url(url: str) -> snowflake.connector.errors.ProgrammingError:
    return sql_error(f"SQL compilation error:\ninvalid URL prefix found in: '{url}'", 1011, "42601")


def screen_tokens(sql: str, conn: Any) -> None:
    """What a statement's words alone say about it (so statements the emulator does not parse are covered too): one
    statement only, no name of the internal catalogue, no DuckDB host function. String literals are not looked at."""
    import sqlglot
    from sqlglot.tokens import TokenType

    try:
        tokens = sqlglot.tokenize(sql, read="snowflake")
    except Exception:
        raise unknown_statement(sql) from None
    count = 1 if tokens else 0
    for i, token in enumerate(tokens):
        if token.token_type == TokenType.SEMICOLON:
            if i + 1 < len(tokens) and tokens[i + 1].token_type != TokenType.SEMICOLON:
                count += 1
            continue
        if "STRING" in token.token_type.name:
            continue
        word = token.text.upper()
        if word.startswith(INTERNAL_PREFIXES) or word in INTERNAL_SCHEMAS:
            raise not_authorized("Object", token.text)
        if i + 1 < len(tokens) and tokens[i + 1].token_type == TokenType.L_PAREN and host_function(word, conn):
            raise sql_error(f"SQL compilation error:\nUnknown function {word}", 2140, "42601")
    if count > 1:
        raise sql_error(f"Actual statement count {count} did not match the desired statement count 1.", 8, "0A000")


def _resolve_identifiers(expression: Any) -> Any:
    """``IDENTIFIER('<name>')`` as the object it names (what fakesnow runs); an IDENTIFIER of a variable or a bind
    parameter is refused (the emulator could not check what it names)."""
    for node in list(expression.find_all(exp.DynamicIdentifier)):
        literal = node.this
        if not (isinstance(literal, exp.Literal) and literal.is_string):
            raise sql_error(
                "SQL compilation error:\nIDENTIFIER() of a variable or bind parameter is not supported by the local "
                "emulator for a role that is not an administrator's: name the object, or IDENTIFIER('<name>')",
                2003,
                "42601",
            )
        try:
            named = exp.to_table(literal.name, dialect="snowflake")
        except Exception:
            raise not_authorized("Object", literal.name) from None
        parent = node.parent
        if isinstance(parent, exp.Table) and parent.this is node:
            for key in ("this", "db", "catalog"):
                if named.args.get(key) is not None:
                    parent.set(key, named.args[key])
        elif any(
            p.name.upper().startswith(INTERNAL_PREFIXES) or p.name.upper() in INTERNAL_SCHEMAS for p in named.parts
        ):
            raise not_authorized("Object", literal.name)
    return expression


def copy_source(expression: exp.Copy) -> str | None:
    """What a ``COPY INTO <table>`` reads: ``@stage/path``, or the URL or path it names."""
    files = expression.args.get("files") or []
    if not files:
        return None
    source = files[0]
    if isinstance(source, exp.Subquery):
        select = source.this
        from_ = select.args.get("from_") if isinstance(select, exp.Select) else None
        if from_ is None:
            return None
        source = from_.this
    if isinstance(source, exp.Table) and isinstance(source.this, exp.Var | exp.Literal):
        source = source.this
    if isinstance(source, exp.Var | exp.Literal):
        return str(source.name)
    return str(source.sql(dialect="snowflake"))


# -- enforcement -----------------------------------------------------------------------------------------------------
@dataclass
class Change:
    """An object a statement creates, drops or renames: the emulator records its owner once the statement ran."""

    action: str  # "create", "drop" or "rename"
    kind: str
    database: str
    schema: str
    name: str
    new: tuple[str, str] | None = None


def _ident(node: Any) -> str | None:
    if not isinstance(node, exp.Identifier):
        return None
    return node.name if node.args.get("quoted") else node.name.upper()


class Enforcer:
    """Checks one statement of a session against its role's privileges (see the module docstring)."""

    def __init__(self, privileges: Privileges, database: str | None, schema: str | None):
        self.p = privileges
        self.database = database or ""
        self.schema = schema or ""
        # administrators are not checked; their statements are still read for the objects they create
        self.enforce = not privileges.admin

    def deny_account(self) -> None:
        if self.enforce:
            raise insufficient("account", ACCOUNT)

    # -- names -----------------------------------------------------------------------------------------------------
    def qualify(self, table: exp.Table) -> tuple[str, str, str]:
        name = _ident(table.this) or ""
        schema = _ident(table.args.get("db")) or self.schema
        database = _ident(table.args.get("catalog")) or self.database
        return database, schema, name

    def qualify_schema(self, table: exp.Table) -> tuple[str, str]:
        parts = [p for p in (_ident(table.args.get("catalog")), _ident(table.args.get("db")), _ident(table.this)) if p]
        return (parts[-2] if len(parts) > 1 else self.database), parts[-1] if parts else ""

    def qualify_text(self, name: str) -> tuple[str, str, str]:
        parts = norm(name).split(".")
        if len(parts) == 1:
            parts.insert(0, self.schema)
        if len(parts) == 2:
            parts.insert(0, self.database)
        return parts[-3], parts[-2], parts[-1]

    # -- what a non-administrative role never touches --------------------------------------------------------------
    def guard_internal(self, database: str, schema: str, name: str) -> None:
        """The emulator's own catalogue and DuckDB's catalogues do not exist for a non-administrative role."""
        if self.enforce and internal(database, schema, name):
            raise not_authorized("Object", ".".join(p for p in (database, schema, name) if p))

    def guard_writable(self, database: str, schema: str, name: str) -> None:
        self.guard_internal(database, schema, name)
        if self.enforce and schema.upper() in READ_ONLY_SCHEMAS:
            raise insufficient("schema", schema.upper())

    def screen(self, sql: str, expression: Any) -> Any:
        """Refuse, for a non-administrative role, what Snowflake would not run or what reaches past the emulator's
        objects: more than one statement, a statement the emulator does not know, the internal catalogue, DuckDB's
        host functions. Returns the statement with ``IDENTIFIER('<name>')`` resolved to the object it names."""
        screen_tokens(sql, self.p._conn)
        head = sql.lstrip()[:64].upper()
        ddl = re.match(r"(CREATE|DROP|ALTER|UNDROP|COMMENT)\s", head) and not re.match(r"ALTER\s+SESSION\b", head)
        if expression is None:
            if ddl:
                raise insufficient("account", ACCOUNT)
            raise unknown_statement(sql)
        if isinstance(expression, exp.Command):
            if ddl:
                raise insufficient("account", ACCOUNT)
            if not SHOW_COMMAND_RX.match(head):
                raise unknown_statement(sql)
        elif isinstance(expression, exp.Alias):
            if not (isinstance(expression.this, exp.Column) and expression.this.name.upper() == "UNSET"):
                raise unknown_statement(sql)  # DuckDB's DETACH, INSTALL, RESET, SUMMARIZE ... parse as an alias
        elif not isinstance(expression, STATEMENTS):
            raise unknown_statement(sql)
        expression = _resolve_identifiers(expression)
        for table in list(expression.find_all(exp.Table)):
            this = table.this
            if isinstance(this, exp.Identifier):
                database, schema, name = self.qualify(table)
                self.guard_internal(database, schema, name)
                if isinstance(expression, exp.Show | exp.Use) and any(
                    _ident(part) and str(_ident(part)).upper() in INTERNAL_DATABASES | INTERNAL_SCHEMAS
                    for part in table.parts
                ):  # a database or schema named on its own (SHOW ... IN DATABASE SYSTEM, USE SYSTEM)
                    raise not_authorized("Object", table.sql(dialect="snowflake"))
                if schema.upper() in READ_ONLY_SCHEMAS and name.upper() not in INFORMATION_SCHEMA_VIEWS:
                    raise not_authorized("Object", f"{database}.{schema}.{name}")
            elif isinstance(this, exp.Var) and this.name.startswith("@"):
                continue  # a stage: checked where it is used
            elif isinstance(this, exp.Literal) and isinstance(expression, exp.Copy):
                continue  # COPY's source: checked by _copy
            elif this is None or isinstance(this, exp.Literal | exp.Dot | exp.DynamicIdentifier | exp.Parameter):
                # a file name in FROM ('/etc/passwd', read by DuckDB), a 4-part name, a session variable
                raise not_authorized("Object", table.sql(dialect="snowflake"))
        return expression

    # -- single checks ---------------------------------------------------------------------------------------------
    def read(self, database: str, schema: str, name: str) -> None:
        if not self.enforce:
            return
        self.guard_internal(database, schema, name)
        if schema.upper() in READ_ONLY_SCHEMAS:
            return  # the INFORMATION_SCHEMA views Snowflake shows every role (rows are not filtered: see above)
        fq = f"{database}.{schema}.{name}"
        if not name or not self.p.usage(database, schema):
            raise not_authorized("Object", fq)
        info = self.p.relation(database, schema, name)
        if not info.exists or not self.p.has("SELECT", info.kind or "TABLE", fq, info):
            raise not_authorized("Object", fq)

    def write(self, privilege: str, database: str, schema: str, name: str) -> None:
        if not self.enforce:
            return
        self.guard_writable(database, schema, name)
        fq = f"{database}.{schema}.{name}"
        if not name or not self.p.usage(database, schema):
            raise not_authorized("Table", fq)
        info = self.p.relation(database, schema, name)
        if not info.exists:
            raise not_authorized("Table", fq)
        if not self.p.has(privilege, info.kind or "TABLE", fq, info):
            if self.p.any_privilege(info.kind or "TABLE", fq, info):
                raise insufficient((info.kind or "table").lower(), name)
            raise not_authorized("Table", fq)

    def own(self, kind: str, database: str, schema: str, name: str, info: ObjectInfo) -> None:
        if not self.enforce:
            return
        self.guard_writable(database, schema, name)
        fq = f"{database}.{schema}.{name}"
        if self.p.owns(info):
            return
        label = kind.title() if kind in ("TABLE", "VIEW", "STAGE", "SCHEMA") else "Object"
        if kind == "SCHEMA":
            fq = f"{database}.{schema}"
        if not self.p.usage(database, schema if kind != "SCHEMA" else None):
            raise not_authorized(label, fq, "02000")
        if info.exists and (kind == "SCHEMA" or self.p.any_privilege(info.kind or kind, fq, info)):
            raise insufficient(kind.lower(), name if kind != "SCHEMA" else schema)
        raise not_authorized(label, fq, "02000")

    def create_in(self, kind: str, database: str, schema: str) -> None:
        if not self.enforce:
            return
        self.guard_writable(database, schema, "")
        if not self.p.usage(database, schema):
            raise not_authorized("Schema", f"{database}.{schema}", "02000")
        if not self.p.has(f"CREATE {kind}", "SCHEMA", f"{database}.{schema}", self.p.schema(database, schema)):
            raise insufficient("schema", schema)

    def stage(self, ref: str, write: bool = False) -> None:
        """USAGE (READ) on a named stage, WRITE (or ownership) to put files on it; a non-administrative role reads
        only stages on cloud storage or the emulator's internal stages, never the host's file system."""
        if not self.enforce:
            return
        database, schema, name = self.qualify_text(ref)
        self.guard_internal(database, schema, name)
        fq = f"{database}.{schema}.{name}"
        info = self.p.other(database, schema, name)
        wanted = ("WRITE",) if write else ("USAGE", "READ")
        if not self.p.usage(database, schema) or not any(self.p.has(p, "STAGE", fq, info) for p in wanted):
            raise not_authorized("Stage", fq, "02000")
        from . import stages

        _fq, location, _path = stages.resolve_stage(self.p.session, "@" + ref, self.database, self.schema)
        if not (stages.is_cloud_url(location) or stages.is_internal(location)):
            raise invalid_url(location)

    def special_stages(self, sql: str) -> None:
        """The user stage (``@~``) and table stages (``@%<table>``): the emulator has no user stages; a table's
        stage is its owner's."""
        if not self.enforce:
            return
        for m in re.finditer(r"@(?P<ns>(?:(?:\"[^\"]+\"|[\w$]+)\.){0,2})(?P<kind>~|%)(?P<name>\"[^\"]+\"|[\w$]*)", sql):
            if m.group("kind") == "~":
                raise not_authorized("Stage", "~", "02000")
            database, schema, name = self.qualify_text(m.group("ns") + m.group("name"))
            info = self.p.relation(database, schema, name)
            if not self.p.owns(info):
                raise not_authorized("Stage", f"{database}.{schema}.%{name}", "02000")

    def procedure(self, database: str, schema: str, name: str, signature: str, owner: str | None) -> None:
        if not self.enforce:
            return
        fq = f"{database}.{schema}.{name}"
        if owner is not None and owner in self.p.roles:
            return
        if not self.p.usage(database, schema) or not self.p.has("USAGE", "PROCEDURE", f"{fq}({signature})"):
            raise not_authorized("Procedure", fq)

    # -- statements ------------------------------------------------------------------------------------------------
    def check(self, sql: str, expression: Any) -> Change | None:
        """Raise if the role may not run ``sql``; return the object change to record once it ran."""
        head = sql[:80].upper()
        if re.match(r"(LIST|LS)\s", head):
            if self.enforce:
                screen_tokens(sql, self.p._conn)
                self.special_stages(sql)
            for ref in _stage_refs(sql):
                self.stage(ref)
            return None
        if self.enforce:
            expression = self.screen(sql, expression)
        if expression is None:
            return None
        if isinstance(expression, exp.Copy):
            self._copy(sql, expression)
            return None
        if isinstance(expression, exp.Put):
            self.special_stages(sql)
            for ref in _stage_refs(sql):
                self.stage(ref, write=True)
            return None
        if isinstance(expression, exp.Insert):
            target = _target(expression.this)
            self.write("INSERT", *self.qualify(target))
            if expression.args.get("overwrite"):
                self.write("DELETE", *self.qualify(target))
            self._reads(expression, skip=target)
            return None
        if isinstance(expression, exp.Update | exp.Delete):
            target = _target(expression.this)
            self.write("UPDATE" if isinstance(expression, exp.Update) else "DELETE", *self.qualify(target))
            self._reads(expression, skip=target)
            return None
        if isinstance(expression, exp.Merge):
            target = _target(expression.this)
            for privilege in _merge_actions(expression):
                self.write(privilege, *self.qualify(target))
            self._reads(expression, skip=target)
            return None
        if isinstance(expression, exp.TruncateTable):
            for table in expression.find_all(exp.Table):
                self.write("TRUNCATE", *self.qualify(table))
            return None
        if isinstance(expression, exp.Create):
            return self._create(expression)
        if isinstance(expression, exp.Drop):
            return self._drop(expression)
        if isinstance(expression, exp.Alter):
            return self._alter(expression)
        if isinstance(expression, exp.Comment):
            commented = expression.find(exp.Table)
            kind = str(expression.args.get("kind") or "TABLE").upper()
            if commented is not None and kind in ("TABLE", "VIEW"):
                database, schema, name = self.qualify(commented)
                self.own(kind, database, schema, name, self.p.relation(database, schema, name))
            elif commented is not None and self.enforce:
                raise insufficient(kind.lower(), commented.name)
            return None
        if isinstance(expression, exp.Command):
            if re.match(r"(CREATE|DROP|ALTER|UNDROP|COMMENT)\s", head) and not re.match(r"ALTER\s+SESSION\b", head):
                self.deny_account()
            return None
        if isinstance(expression, exp.Describe) and self.enforce:
            described = expression.this
            if isinstance(described, exp.Query):
                self._reads(described)
            elif isinstance(described, exp.Table) and str(expression.args.get("kind") or "TABLE").upper() in (
                "TABLE",
                "VIEW",
            ):
                database, schema, name = self.qualify(described)
                if schema.upper() not in READ_ONLY_SCHEMAS and not self.p.relation(database, schema, name).exists:
                    raise not_authorized("Object", f"{database}.{schema}.{name}")
            return None
        if isinstance(expression, exp.Query):
            self._reads(expression)
        return None

    def _copy(self, sql: str, expression: exp.Copy) -> None:
        """``COPY INTO <table> FROM @stage``: INSERT on the table, USAGE on the stage. A non-administrative role
        loads only from named stages (and its own tables' stages): never from a URL or path given in the statement,
        and never unloads (``COPY INTO <location>``, DuckDB's ``COPY ... TO``)."""
        target = expression.this
        table = target.this if isinstance(target, exp.Schema) else target
        if self.enforce:
            if not expression.args.get("kind") or not isinstance(table, exp.Table) or table.name.startswith("@"):
                raise unknown_statement(sql)  # unloading: not emulated for non-administrative roles
            source = copy_source(expression)
            if source is None:
                raise unknown_statement(sql)
            if not source.startswith("@"):
                from . import stages

                if stages.is_cloud_url(source):
                    raise insufficient("account", ACCOUNT)  # an external location needs credentials or an integration
                raise invalid_url(source)
            self.special_stages(sql)
        if isinstance(table, exp.Table) and not table.name.startswith("@"):
            self.write("INSERT", *self.qualify(table))
        for ref in _stage_refs(sql):
            self.stage(ref)

    def _reads(self, expression: Any, skip: exp.Table | None = None) -> None:
        ctes = {_ident(c.args["alias"].this) for c in expression.find_all(exp.CTE) if c.args.get("alias")}
        for table in expression.find_all(exp.Table):
            if table is skip or not isinstance(table.this, exp.Identifier) or table.name.startswith("@"):
                continue
            if not table.args.get("db") and _ident(table.this) in ctes:
                continue
            self.read(*self.qualify(table))

    def _create(self, expression: exp.Create) -> Change | None:
        kind = str(expression.args.get("kind") or "").upper()
        target = _target(expression.this) if expression.this is not None else None
        if kind in ACCOUNT_KINDS or target is None:
            self.deny_account()
            return None
        replace = bool(expression.args.get("replace"))
        if kind == "SCHEMA":
            database, schema = self.qualify_schema(target)
            if self.enforce and not self.p.usage(database):
                raise not_authorized("Database", database, "02000")
            info = self.p.schema(database, schema)
            if info.exists and replace:
                self.own("SCHEMA", database, schema, "", info)
            if self.enforce and not self.p.has("CREATE SCHEMA", "DATABASE", database):
                raise insufficient("database", database)
            return Change("create", "SCHEMA", database, schema, "") if not info.exists or replace else None
        database, schema, name = self.qualify(target)
        self.create_in(kind, database, schema)
        if self.enforce and kind == "FUNCTION":
            raise insufficient("schema", schema)  # a function's body is SQL text the emulator cannot check
        if self.enforce and kind == "STAGE":
            from . import stages

            for prop in expression.find_all(exp.Property):
                value = prop.args.get("value")
                if prop.name.upper() == "URL" and value is not None:
                    url = value.name if isinstance(value, exp.Literal) else value.sql(dialect="snowflake")
                    if not stages.is_cloud_url(url):
                        raise invalid_url(url)
        info = (
            self.p.relation(database, schema, name)
            if kind in ("TABLE", "VIEW")
            else self.p.other(database, schema, name)
        )
        if info.exists and replace:
            self.own(info.kind or kind, database, schema, name, info)
        self._reads(expression, skip=target)
        if kind in OWNED_KINDS and (not info.exists or replace):
            return Change("create", kind, database, schema, name)
        return None

    def _drop(self, expression: exp.Drop) -> Change | None:
        kind = str(expression.args.get("kind") or "").upper()
        table = expression.find(exp.Table)
        if kind in ACCOUNT_KINDS or table is None:
            self.deny_account()
            return None
        if kind == "SCHEMA":
            database, schema = self.qualify_schema(table)
            info = self.p.schema(database, schema)
            if info.exists:
                self.own("SCHEMA", database, schema, "", info)
            return Change("drop", "SCHEMA", database, schema, "")
        database, schema, name = self.qualify(table)
        info = (
            self.p.relation(database, schema, name)
            if kind in ("TABLE", "VIEW")
            else self.p.other(database, schema, name)
        )
        if info.exists or not expression.args.get("exists"):
            self.own(kind, database, schema, name, info)
        return Change("drop", kind, database, schema, name)

    def _alter(self, expression: exp.Alter) -> Change | None:
        kind = str(expression.args.get("kind") or "").upper()
        if kind == "SESSION":
            return None
        table: exp.Table | None = (
            expression.this if isinstance(expression.this, exp.Table) else expression.find(exp.Table)
        )
        if kind in ACCOUNT_KINDS or table is None:
            self.deny_account()
            return None
        database, schema, name = self.qualify(table)
        info = (
            self.p.relation(database, schema, name)
            if kind in ("TABLE", "VIEW")
            else self.p.other(database, schema, name)
        )
        self.own(kind, database, schema, name, info)
        for action in expression.args.get("actions") or []:
            if isinstance(action, exp.AlterRename) and isinstance(action.this, exp.Table):
                new_db, new_schema, new_name = self.qualify(action.this)
                self.create_in(kind, new_db, new_schema)
                return Change("rename", kind, database, schema, name, (new_schema, new_name))
        return None


def _target(node: Any) -> exp.Table:
    if isinstance(node, exp.Schema):
        node = node.this
    if not isinstance(node, exp.Table):
        raise sql_error("SQL compilation error:\nthe statement's target is not a table", 1003)
    return node


def _merge_actions(expression: exp.Merge) -> set[str]:
    out: set[str] = set()
    whens = expression.args.get("whens")
    for when in whens.expressions if isinstance(whens, exp.Whens) else (whens or []):
        then = when.args.get("then")
        if isinstance(then, exp.Insert):
            out.add("INSERT")
        elif isinstance(then, exp.Update):
            out.add("UPDATE")
        elif then is not None and "DELETE" in then.sql().upper():
            out.add("DELETE")
    return out


def _stage_refs(sql: str) -> list[str]:
    """Named stages a statement reads (``@db.schema.stage/path``; not table or user stages)."""
    return [m.group(1) for m in re.finditer(r"@((?:\"[^\"]+\"|[\w$]+)(?:\.(?:\"[^\"]+\"|[\w$]+)){0,2})", sql)]


def apply_change(duck: Any, change: Change, role: str) -> None:
    """Record what a statement that ran created, dropped or renamed (best effort: never fails the statement)."""
    kinds = ("TABLE", "VIEW", "MATERIALIZED VIEW") if change.kind in ("TABLE", "VIEW") else (change.kind,)
    fq = ".".join(p for p in (change.database, change.schema, change.name) if p)
    try:
        if change.action == "create":
            record_owner(duck, change.database, change.schema, change.name, change.kind, role)
            forget_ownership(duck, kinds, fq)
        elif change.action == "drop":
            forget_owner(duck, change.database, change.schema, change.name)
            forget_ownership(duck, kinds, fq)
        elif change.action == "rename" and change.new:
            rename_owner(duck, change.database, (change.schema, change.name), change.new)
            forget_ownership(duck, kinds, fq, ".".join((change.database, *change.new)))
    except Exception:
        log.debug("could not record the owner of %s.%s.%s", change.database, change.schema, change.name, exc_info=True)
