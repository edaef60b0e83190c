"""A refused login fails at once; a server that did not answer is worth another try."""

from __future__ import annotations

import pytest

from dlt_sources.errors import SourceError, SourceUnreachable, connection_error


@pytest.mark.parametrize(
    "reason",
    [
        'FATAL:  password authentication failed for user "elt_cdc"',
        'FATAL:  no pg_hba.conf entry for host "10.0.0.1", user "elt", database "shop"',
        'FATAL:  role "nobody" does not exist',
        'FATAL:  database "shopp" does not exist',
        "FATAL:  must be superuser or replication role to start walsender",
        "(1045, \"Access denied for user 'elt'@'localhost' (using password: YES)\")",
    ],
)
def test_a_refused_login_is_permanent(reason: str) -> None:
    error = connection_error("source shop: cannot connect (setting sources.shop.credentials)", reason)
    assert type(error) is SourceError
    assert str(error).endswith(reason)


@pytest.mark.parametrize(
    "reason",
    [
        'connection to server at "127.0.0.1", port 5432 failed: Connection refused',
        "timeout expired",
        "(2003, \"Can't connect to MySQL server on '127.0.0.1' ([Errno 111] Connection refused)\")",
        "FATAL:  the database system is starting up",
    ],
)
def test_an_unanswered_connection_is_transient(reason: str) -> None:
    assert isinstance(connection_error("source shop: cannot connect", reason), SourceUnreachable)
