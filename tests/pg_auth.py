"""Password logins on the test PostgreSQL servers, which otherwise trust every local login.

Why: a least-privilege role's password is a secret the tests must be able to search for,
and a wrong one must really be refused, as on a production server.
"""

from __future__ import annotations

import psycopg2
from psycopg2 import sql

from standins.postgres import PostgresServer


def require_password(postgres: PostgresServer, role: str, password: str) -> None:
    """Give ``role`` its ``password`` and make the server ask for it on TCP logins."""
    admin = psycopg2.connect(postgres.dsn())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("alter role {} password %s").format(sql.Identifier(role)), (password,))
        hba = postgres.pgdata / "pg_hba.conf"
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        cur.execute("select pg_reload_conf()")
    admin.close()


def password_dsn(postgres: PostgresServer, database: str, role: str, password: str) -> str:
    return f"postgresql://{role}:{password}@{postgres.host}:{postgres.port}/{database}"
