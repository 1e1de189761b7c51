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
  administrators only.

Privileges come from the role, every role granted to it (``GRANT ROLE a TO ROLE b``, transitively), PUBLIC and
ownership. OWNERSHIP and ALL imply every privilege. A grant on an object stops applying when the object is
re-created after it (``CREATE OR REPLACE`` makes a new object; ``COPY GRANTS`` is not emulated); a FUTURE grant
applies to objects created after it; objects the emulator has no creation record for (created before it kept
them) count as created before any explicit grant and after any future grant. Denials answer as Snowflake does:
``Object '<DB>.<SCHEMA>.<NAME>' does not exist or not authorized.`` (002003) when the role cannot see the object,
``Insufficient privileges to operate on <kind> '<NAME>'`` (003001) when it can but lacks the privilege.

Not checked (documented differences): SHOW/DESCRIBE and INFORMATION_SCHEMA show every object; secondary roles are
never active (as with ``USE SECONDARY ROLES NONE``); USE DATABASE/SCHEMA/WAREHOUSE need no privilege; statements
the emulator cannot parse pass through unchecked, except DDL, which is refused to non-administrators.
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


# -- privileges ------------------------------------------------------------------------------------------------------
_IMPLIED = ("ALL", "ALL PRIVILEGES", "OWNERSHIP")


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
        kind = table_kind(self.session, database, schema, name)
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
        single = re.match(
            rf"(?P<type>DATABASE|SCHEMA|TABLE|VIEW|STAGE|FILE\s+FORMAT|PROCEDURE|FUNCTION|WAREHOUSE|SEQUENCE|"
            rf"INTEGRATION|ACCOUNT)\s*(?P<name>{_NAME})?\s*(?P<sig>\(.*\))?$",
            target,
            re.IGNORECASE,
        )
        if not single:
            raise sql_error(f"SQL compilation error:\nunsupported object in {verb}: {target}", 1003)
        kind = re.sub(r"\s+", " ", single.group("type").upper())
        depth = {"DATABASE": 1, "WAREHOUSE": 1, "INTEGRATION": 1, "ACCOUNT": 0, "SCHEMA": 2}.get(kind, 3)
        name = self._qualify(norm(single.group("name") or ""), depth) if depth else ""
        if single.group("sig"):
            name += "(" + signature_of(single.group("sig").strip()[1:-1]) + ")"
        if not self._admin():
            self._require_owner(kind, name)
        for p in privileges:
            self._store(revoke, p, kind, name, "ROLE", grantee, bool(m.group("opt")), False)
        return _status("Statement executed successfully.")

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

    @staticmethod
    def _skipped(database: str, schema: str, name: str) -> bool:
        return (
            schema.upper() in ("INFORMATION_SCHEMA", "_FS_INFORMATION_SCHEMA")
            or database.upper() in ("SNOWFLAKE", "_FS_GLOBAL", "SYSTEM", "TEMP")
            or name.upper().startswith(("_EMU_", "_FS_"))
            or not name
        )

    # -- single checks ---------------------------------------------------------------------------------------------
    def read(self, database: str, schema: str, name: str) -> None:
        checked = self._relation(database, schema, name, "Object")
        if checked is not None and not self.p.has("SELECT", checked[1].kind or "TABLE", *checked):
            raise not_authorized("Object", checked[0])

    def write(self, privilege: str, database: str, schema: str, name: str) -> None:
        checked = self._relation(database, schema, name, "Table")
        if checked is None:
            return
        fq, info = checked
        if not self.p.has(privilege, info.kind or "TABLE", fq, info):
            if info.exists and self.p.any_privilege(info.kind or "TABLE", fq, info):
                raise insufficient((info.kind or "table").lower(), name)
            raise not_authorized("Table", fq)

    def _relation(self, database: str, schema: str, name: str, what: str) -> tuple[str, ObjectInfo] | None:
        """The table or view a statement reads or writes, if its privileges are checked (``what`` names it in the
        error when the role may not even use its schema)."""
        if not self.enforce or self._skipped(database, schema, name):
            return None
        fq = f"{database}.{schema}.{name}"
        if not self.p.usage(database, schema):
            raise not_authorized(what, fq)
        return fq, self.p.relation(database, schema, name)

    def own(self, kind: str, database: str, schema: str, name: str, info: ObjectInfo) -> None:
        if not self.enforce:
            return
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
        if not self.p.usage(database, schema):
            raise not_authorized("Schema", f"{database}.{schema}", "02000")
        if not self.p.has(f"CREATE {kind}", "SCHEMA", f"{database}.{schema}", self.p.schema(database, schema)):
            raise insufficient("schema", schema)

    def stage(self, ref: str) -> None:
        if not self.enforce:
            return
        database, schema, name = self.qualify_text(ref)
        fq = f"{database}.{schema}.{name}"
        info = self.p.other(database, schema, name)
        if not self.p.usage(database, schema) or not (
            self.p.has("USAGE", "STAGE", fq, info) or self.p.has("READ", "STAGE", fq, info)
        ):
            raise not_authorized("Stage", fq, "02000")

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
            for ref in _stage_refs(sql):
                self.stage(ref)
            return None
        if expression is None:
            if re.match(r"(CREATE|DROP|ALTER|UNDROP|COMMENT)\s", head) and not re.match(r"ALTER\s+SESSION\b", head):
                self.deny_account()
            return None
        if isinstance(expression, exp.Copy):
            target = expression.this
            if isinstance(target, exp.Table) and not target.name.startswith("@"):
                self.write("INSERT", *self.qualify(target))
            for ref in _stage_refs(sql):
                self.stage(ref)
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
        if isinstance(expression, exp.Query):
            self._reads(expression)
        return None

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
    try:
        if change.action == "create":
            record_owner(duck, change.database, change.schema, change.name, change.kind, role)
        elif change.action == "drop":
            forget_owner(duck, change.database, change.schema, change.name)
        elif change.action == "rename" and change.new:
            rename_owner(duck, change.database, (change.schema, change.name), change.new)
    except Exception:
        log.debug("could not record the owner of %s.%s.%s", change.database, change.schema, change.name, exc_info=True)
