"""Snowflake's emulator as the tests log in to it: a password, an encrypted key pair, and
reads through the real connector."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from tests.emulators.snowflake import FakeSnowflake

PASSWORD = "s3cret-emulator-password"
PASSPHRASE = "key-passphrase-2718"


def write_key_pair(folder: Path) -> tuple[Path, Path]:
    """An RSA key pair as Snowflake users have one: private key PEM encrypted with a passphrase."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / "rsa_key.p8", folder / "rsa_key.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSPHRASE.encode()),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def query(server: FakeSnowflake, sql: str) -> list[tuple[Any, ...]]:
    """Read the warehouse as any Snowflake client would (short timeouts: the emulator is local)."""
    import snowflake.connector

    with (
        snowflake.connector.connect(
            account=server.account,
            user=server.user,
            password=server.password,
            database=server.database,
            host=server.host,
            port=server.port,
            protocol="http",
            login_timeout=10,
            network_timeout=30,
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)
        return list(cursor.fetchall())


def table_texts(server: FakeSnowflake) -> list[tuple[str, str]]:
    """Every value of every table of the database as text, per table (tests/support/privacy.py)."""
    from tests.support import privacy

    tables = query(
        server,
        "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE'",
    )
    return privacy.table_texts(
        partial(query, server), [(f"{schema}.{table}", f'"{schema}"."{table}"') for schema, table in tables]
    )
