"""Access control statements for the emulator: roles, warehouses, grants.

fakesnow has no notion of roles. The emulator keeps a catalogue of what was declared, so that migrations with
least-privilege roles run unchanged and their grants can be inspected (``SHOW ROLES``, ``SHOW GRANTS TO ROLE``,
``SHOW GRANTS OF ROLE``, ``SHOW FUTURE GRANTS IN SCHEMA``). Privileges are recorded, not enforced.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from .procedures import first, sql_error

ROLES = "_fs_global._emulator.roles"
GRANTS = "_fs_global._emulator.grants"
WAREHOUSES = "_fs_global._emulator.warehouses"

SETUP_SQL = f"""
CREATE SCHEMA IF NOT EXISTS _fs_global._emulator;
CREATE TABLE IF NOT EXISTS {ROLES} (name VARCHAR PRIMARY KEY, comment VARCHAR, created_on TIMESTAMP);
CREATE TABLE IF NOT EXISTS {WAREHOUSES} (name VARCHAR PRIMARY KEY, size VARCHAR, created_on TIMESTAMP);
CREATE TABLE IF NOT EXISTS {GRANTS} (
    privilege VARCHAR, granted_on VARCHAR, name VARCHAR, granted_to VARCHAR, grantee_name VARCHAR,
    grant_option BOOLEAN, future BOOLEAN, created_on TIMESTAMP
);
"""

SYSTEM_ROLES = ("ACCOUNTADMIN", "SECURITYADMIN", "USERADMIN", "SYSADMIN", "PUBLIC")

_IDENT = r"(?:\"[^\"]+\"|[\w$]+)"
_NAME = rf"{_IDENT}(?:\.{_IDENT}){{0,2}}"

STATEMENT_RX = re.compile(
    r"^\s*(CREATE\s+(OR\s+REPLACE\s+)?(ROLE|WAREHOUSE)|DROP\s+(ROLE|WAREHOUSE)|ALTER\s+WAREHOUSE|GRANT\s|REVOKE\s"
    r"|SHOW\s+(ROLES|GRANTS|FUTURE\s+GRANTS|WAREHOUSES)|USE\s+(SECONDARY\s+ROLES|WAREHOUSE))",
    re.IGNORECASE,
)


def norm(name: str) -> str:
    return ".".join(p.strip('"') if p.startswith('"') else p.upper() for p in re.findall(_IDENT, name))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class AccessCatalog:
    def __init__(self, duck_conn: Any, database: str | None, schema: str | None):
        self.duck = duck_conn
        self.database = database
        self.schema = schema

    def handles(self, sql: str) -> bool:
        return bool(STATEMENT_RX.match(sql))

    def execute(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        s = sql.strip().rstrip(";")
        u = s.upper()
        if m := re.match(
            rf"CREATE\s+(OR\s+REPLACE\s+)?ROLE\s+(IF\s+NOT\s+EXISTS\s+)?({_IDENT})(?:\s+COMMENT\s*=\s*'((?:[^']|'')*)')?",
            s,
            re.IGNORECASE,
        ):
            name = norm(m.group(3))
            exists = first(self.duck.execute(f"SELECT 1 FROM {ROLES} WHERE name = ?", [name]))
            if exists and not m.group(1):
                if m.group(2):
                    return _status(f"{name} already exists, statement succeeded.")
                raise sql_error(f"SQL compilation error:\nObject '{name}' already exists.", 2002, "42710")
            self.duck.execute(f"INSERT OR REPLACE INTO {ROLES} VALUES (?, ?, ?)", [name, m.group(4), _now()])
            return _status(f"Role {name} successfully created.")
        if m := re.match(rf"DROP\s+ROLE\s+(IF\s+EXISTS\s+)?({_IDENT})", s, re.IGNORECASE):
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
            name = norm(m.group(3))
            size = re.search(r"WAREHOUSE_SIZE\s*=\s*'?(\w+)'?", m.group(4), re.IGNORECASE)
            if not first(self.duck.execute(f"SELECT 1 FROM {WAREHOUSES} WHERE name = ?", [name])) or m.group(1):
                self.duck.execute(
                    f"INSERT OR REPLACE INTO {WAREHOUSES} VALUES (?, ?, ?)",
                    [name, size.group(1).upper() if size else "XSMALL", _now()],
                )
            return _status(f"Warehouse {name} successfully created.")
        if re.match(r"(DROP|ALTER)\s+WAREHOUSE|USE\s+(WAREHOUSE|SECONDARY\s+ROLES)", u):
            return _status("Statement executed successfully.")
        if u.startswith("GRANT"):
            return self._grant(s, revoke=False)
        if u.startswith("REVOKE"):
            return self._grant(s, revoke=True)
        if u.startswith("SHOW"):
            return self._show(s)
        raise NotImplementedError(sql)

    # -- GRANT / REVOKE ----------------------------------------------------------------------------------------------
    def _grant(self, s: str, revoke: bool) -> tuple[list[str], list[tuple[Any, ...]]]:
        verb, prep = ("REVOKE", "FROM") if revoke else ("GRANT", "TO")
        if m := re.match(rf"{verb}\s+ROLE\s+({_IDENT})\s+{prep}\s+(ROLE|USER)\s+({_IDENT})", s, re.IGNORECASE):
            role, kind, grantee = norm(m.group(1)), m.group(2).upper(), norm(m.group(3))
            self._require_role(role)
            if kind == "ROLE":
                self._require_role(grantee)
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
            name += re.sub(r"\s+", "", single.group("sig").upper())
        for p in privileges:
            self._store(revoke, p, kind, name, "ROLE", grantee, bool(m.group("opt")), False)
        return _status("Statement executed successfully.")

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
        if name in SYSTEM_ROLES:
            return
        if not first(self.duck.execute(f"SELECT 1 FROM {ROLES} WHERE name = ?", [name])):
            raise sql_error(f"SQL compilation error:\nRole '{name}' does not exist or not authorized.", 2003, "02000")

    def _qualify(self, name: str, depth: int) -> str:
        parts = name.split(".") if name else []
        defaults = [self.database or "", self.schema or ""]
        while len(parts) < depth:
            parts.insert(0, defaults[depth - len(parts) - 2] if depth - len(parts) - 2 >= 0 else "")
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
        cols = ["created_on", "privilege", "granted_on", "name", "granted_to", "grantee_name", "grant_option"]
        select = f"SELECT created_on, privilege, granted_on, name, granted_to, grantee_name, grant_option FROM {GRANTS}"
        if m := re.match(rf"SHOW GRANTS TO ROLE ({_IDENT})", s, re.IGNORECASE):
            rows = self.duck.execute(
                f"{select} WHERE grantee_name = ? AND granted_to = 'ROLE' AND NOT future ORDER BY granted_on, name, privilege",
                [norm(m.group(1))],
            ).fetchall()
            return cols, list(rows)
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


def _status(message: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    return ["status"], [(message,)]
