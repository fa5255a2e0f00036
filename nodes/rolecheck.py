"""What a database connection's role may do beyond reading: the checks of
``manage.py checkconnections`` and of the connection's admin page.

``sql_query`` runs each query in a read-only transaction that is rolled back, with a time limit
a query cannot lift. That stops writes to tables and anything transactional (large objects,
sequences, settings). It cannot stop what takes effect outside the transaction, which only the
database role can: reading or writing files on the database server, running programs there,
opening connections from it (``dblink``). A platform admin acts on these warnings by giving
the connection a role without those rights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.utils import timezone

from nodes import dbguard
from nodes.builtin import pg_pool
from nodes.builtin.sql_backends import _Redactor
from nodes.models import Connection
from nodes.sdk.errors import NodeError

#: Roles that read or write any server file, or run programs on the server (PostgreSQL 11+).
SERVER_FILE_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program")

#: Functions that touch server files or reach out from the server.
SERVER_FUNCTIONS = (
    "pg_read_file(text)",
    "pg_read_file(text,bigint,bigint)",
    "pg_read_binary_file(text)",
    "pg_ls_dir(text)",
    "pg_stat_file(text)",
    "lo_import(text)",
    "lo_export(oid,text)",
    "dblink_connect(text)",
    "dblink_connect_u(text)",
)

SYSTEM_SCHEMAS = "n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_'"

ROLE_SQL = """
select r.rolname, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls,
       r.rolreplication, current_setting('lo_compat_privileges') = 'on'
from pg_roles r where r.rolname = current_user
"""
MEMBERSHIPS_SQL = """
select r.rolname from pg_roles r
where r.rolname = any(%(roles)s) and pg_has_role(current_user, r.oid, 'MEMBER')
order by r.rolname
"""
WRITABLE_SQL = f"""
select n.nspname, c.relname
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p', 'v', 'm', 'f') and {SYSTEM_SCHEMAS}
  and (has_table_privilege(c.oid, 'INSERT') or has_table_privilege(c.oid, 'UPDATE')
       or has_table_privilege(c.oid, 'DELETE') or has_table_privilege(c.oid, 'TRUNCATE'))
order by 1, 2
"""  # noqa: S608 - constant text only
CREATE_SQL = f"""
select n.nspname from pg_namespace n
where {SYSTEM_SCHEMAS} and has_schema_privilege(n.oid, 'CREATE')
union all
select '(database ' || current_database() || ')'
where has_database_privilege(current_database(), 'CREATE')
order by 1
"""  # noqa: S608 - constant text only
FUNCTIONS_SQL = """
select f from unnest(%(functions)s::text[]) as f
where to_regprocedure(f) is not null and has_function_privilege(to_regprocedure(f), 'EXECUTE')
"""


@dataclass
class RoleCheck:
    """The outcome for one connection: warnings an admin can act on, or why it was not checked."""

    connection: str
    scheme: str
    checked: bool = False
    summary: str = ""
    warnings: list[str] = field(default_factory=list)

    def as_stored(self) -> dict[str, Any]:
        return {
            "checked_at": timezone.now().isoformat(),
            "checked": self.checked,
            "summary": self.summary,
            "warnings": self.warnings,
        }


def _names(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def postgres_warnings(conn: psycopg.Connection) -> tuple[str, list[str]]:
    """The role of ``conn`` and what it may do beyond reading."""
    role = conn.execute(ROLE_SQL).fetchone()
    assert role is not None
    name, superuser, createrole, createdb, bypassrls, replication, lo_compat = role
    if superuser:
        return name, [
            f"role '{name}' is a superuser: it can read and write server files, run programs "
            "on the server and change any data; give this connection a read-only role"
        ]
    warnings = []
    memberships = [r for (r,) in conn.execute(MEMBERSHIPS_SQL, {"roles": list(SERVER_FILE_ROLES)})]
    if memberships:
        warnings.append(
            f"role '{name}' is a member of {_names(memberships)}: it can reach server files "
            "or programs; revoke the membership"
        )
    functions = [f for (f,) in conn.execute(FUNCTIONS_SQL, {"functions": list(SERVER_FUNCTIONS)})]
    if functions:
        warnings.append(
            f"role '{name}' may execute {_names(functions)}: server files or connections "
            "from the server; revoke EXECUTE on them"
        )
    if lo_compat:
        warnings.append(
            "lo_compat_privileges is on: any role may read and write every large object"
        )
    writable = [f"{s}.{t}" for s, t in conn.execute(WRITABLE_SQL)]
    if writable:
        warnings.append(
            f"role '{name}' can write (INSERT, UPDATE, DELETE or TRUNCATE) {len(writable)} "
            f"table(s): {_names(writable)}; grant it SELECT only"
        )
    creatable = [s for (s,) in conn.execute(CREATE_SQL)]
    if creatable:
        warnings.append(f"role '{name}' can CREATE in {_names(creatable)}; revoke CREATE")
    powers = [
        label
        for label, held in (
            ("CREATEROLE", createrole),
            ("CREATEDB", createdb),
            ("BYPASSRLS", bypassrls),
            ("REPLICATION", replication),
        )
        if held
    ]
    if powers:
        warnings.append(f"role '{name}' has {', '.join(powers)}; a reader needs none of them")
    return name, warnings


def check(connection: Connection) -> RoleCheck:
    """Check one connection (PostgreSQL: its role; SQLite: its file's place)."""
    info = connection.info()
    result = RoleCheck(connection.name, connection.scheme)
    if connection.scheme == "sqlite":
        try:
            path = dbguard.sqlite_path(info.url)
        except dbguard.DatabaseURLError as exc:
            result.warnings.append(f"refused by the database guard: {exc}")
            return result
        result.checked = True
        result.summary = f"SQLite file {path.name}, opened read-only"
        return result
    if connection.scheme not in dbguard.POSTGRES_SCHEMES:
        result.summary = "not a database connection"
        return result
    redact = _Redactor(info.url)
    try:
        with pg_pool.connect(info.url, connect_timeout=5) as conn:
            conn.read_only = True
            try:
                name, result.warnings = postgres_warnings(conn)
            finally:
                conn.rollback()
    except NodeError as exc:
        result.warnings.append(f"refused by the database guard: {exc}")
        return result
    except psycopg.Error as exc:
        result.warnings.append(f"could not be checked: {redact(exc)}")
        return result
    result.checked = True
    result.summary = f"role '{name}'" + (
        ": read-only (no superuser, no server-file rights, no write privileges)"
        if not result.warnings
        else ""
    )
    return result


def check_and_store(connection: Connection) -> RoleCheck:
    """:func:`check`, its outcome kept on the connection for its admin page."""
    result = check(connection)
    # update(): the check is not a change of the connection (updated_at stays).
    Connection.objects.filter(pk=connection.pk).update(role_check=result.as_stored())
    connection.role_check = result.as_stored()
    return result
