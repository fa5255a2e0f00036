"""What a database connection's role (PostgreSQL) or account (MariaDB/MySQL) may do beyond
reading: the checks of ``manage.py checkconnections`` and of the connection's admin page.

``sql_query`` runs each query in a read-only transaction that is rolled back, with a time limit
a query cannot lift. That stops writes to tables and anything transactional (large objects,
sequences, settings). It cannot stop what takes effect outside the transaction, which only the
database role can: reading or writing files on the database server, running programs there,
opening connections from it (``dblink``). A platform admin acts on these warnings by giving
the connection a role without those rights.

On MariaDB/MySQL the account's privileges are read from ``information_schema`` (its own and
those of its current role): ``SUPER`` and ``FILE`` (server files: ``LOAD_FILE``, ``INTO
OUTFILE``), write privileges on any database or table (``EXECUTE`` included: a procedure may
write), and administrative ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.utils import timezone

from nodes import dbguard
from nodes.builtin import mysql_backend, pg_pool
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


#: MariaDB/MySQL privileges that change data or schema (at any level).
MYSQL_WRITE_PRIVILEGES = (
    "INSERT", "UPDATE", "DELETE", "DELETE HISTORY", "CREATE", "DROP", "ALTER", "INDEX",
    "CREATE VIEW", "TRIGGER", "CREATE ROUTINE", "ALTER ROUTINE", "EXECUTE", "EVENT",
    "LOCK TABLES",
)  # fmt: skip
#: Global MariaDB/MySQL privileges a reader needs none of (SUPER and FILE are told apart).
MYSQL_ADMIN_PRIVILEGES = (
    "PROCESS", "SHUTDOWN", "RELOAD", "CREATE USER", "GRANT OPTION", "CONNECTION ADMIN",
    "SET USER", "READ_ONLY ADMIN", "FEDERATED ADMIN", "BINLOG ADMIN", "BINLOG REPLAY",
    "REPLICATION SLAVE", "REPLICATION SLAVE ADMIN", "REPLICATION MASTER ADMIN",
    "SYSTEM_VARIABLES_ADMIN", "CREATE TABLESPACE",
)  # fmt: skip

MYSQL_GLOBAL_SQL = (
    "SELECT PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.USER_PRIVILEGES"
    " WHERE GRANTEE IN (%s, %s)"
)
MYSQL_SCHEMA_SQL = (
    "SELECT TABLE_SCHEMA, PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES"
    " WHERE GRANTEE IN (%s, %s) ORDER BY 1"
)
MYSQL_TABLE_SQL = (
    "SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME), PRIVILEGE_TYPE"
    " FROM information_schema.TABLE_PRIVILEGES WHERE GRANTEE IN (%s, %s) ORDER BY 1"
)


def _mysql_grantee(account: str) -> str:
    """``user@host`` as information_schema spells a grantee: ``'user'@'host'``."""
    user, _, host = account.rpartition("@")
    return f"'{user}'@'{host}'" if host else f"'{account}'"


def mysql_warnings(conn: Any) -> tuple[str, list[str]]:
    """The account of a MariaDB/MySQL connection (and its current role) and what it may do
    beyond reading."""
    cursor = conn.cursor()
    cursor.execute("SELECT CURRENT_USER(), CURRENT_ROLE()")
    account, role = cursor.fetchone()
    grantees = [_mysql_grantee(account), f"'{role}'" if role else _mysql_grantee(account)]
    cursor.execute(MYSQL_GLOBAL_SQL, grantees)
    rows = cursor.fetchall()
    granted = {privilege for privilege, _grantable in rows}
    if any(grantable == "YES" for _privilege, grantable in rows):
        granted.add("GRANT OPTION")
    name = account
    if "SUPER" in granted:
        return name, [
            f"account '{name}' has SUPER: it can change server settings, end other sessions "
            "and bypass read-only servers; give this connection a read-only account"
        ]
    warnings = []
    if "FILE" in granted:
        warnings.append(
            f"account '{name}' has FILE: it can read and write server files (LOAD_FILE, "
            "SELECT ... INTO OUTFILE); revoke FILE"
        )
    writes = [p for p in MYSQL_WRITE_PRIVILEGES if p in granted]
    if writes:
        warnings.append(
            f"account '{name}' may {_names(writes)} on every database; grant it SELECT only"
        )
    where: dict[str, set[str]] = {}
    for sql in (MYSQL_SCHEMA_SQL, MYSQL_TABLE_SQL):
        cursor.execute(sql, grantees)
        for target, privilege in cursor.fetchall():
            if privilege in MYSQL_WRITE_PRIVILEGES:
                where.setdefault(target if "." in target else f"{target}.*", set()).add(privilege)
    if where:
        targets = sorted(where)
        warnings.append(
            f"account '{name}' can write (INSERT, UPDATE, DELETE, CREATE, ALTER...) in "
            f"{len(targets)} database(s) or table(s): {_names(targets)}; grant it SELECT only"
        )
    admin = [p for p in MYSQL_ADMIN_PRIVILEGES if p in granted]
    if admin:
        warnings.append(f"account '{name}' has {_names(admin)}; a reader needs none of them")
    cursor.close()
    return name, warnings


def _check_mysql(info_url: str, result: RoleCheck) -> RoleCheck:
    redact = _Redactor(info_url)
    try:
        conn = mysql_backend.connect(info_url, connect_timeout=5)
    except NodeError as exc:
        result.warnings.append(f"refused by the database guard: {exc}")
        return result
    except mysql_backend.MySQLdb.Error as exc:
        result.warnings.append(f"could not be checked: {redact(exc)}")
        return result
    try:
        name, result.warnings = mysql_warnings(conn)
    except mysql_backend.MySQLdb.Error as exc:
        result.warnings.append(f"could not be checked: {redact(exc)}")
        return result
    finally:
        conn.close()
    result.checked = True
    result.summary = f"account '{name}'" + (
        ": read-only (no SUPER, no FILE, no write or admin privileges)"
        if not result.warnings
        else ""
    )
    return result


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
    if connection.scheme in dbguard.MYSQL_SCHEMES:
        return _check_mysql(info.url, result)
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
