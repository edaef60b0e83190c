"""Where a source's tables come from, named the way OpenLineage names datasets.

Why here, in plain dlt-source code: only the source knows its endpoint or database; the
lineage events (flows/lineage/) turn an :class:`Origin` into input datasets. Namespaces
never carry a credential: a database is ``postgres://host:port/db``, an API its base URL
without user, password or query.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

_SCHEMES = {"postgresql": "postgres", "mariadb": "mysql"}


@dataclass(frozen=True)
class Origin:
    """The namespace (the system) and, per loaded table, the dataset name in it."""

    namespace: str
    names: Mapping[str, str]

    def name_of(self, table: str) -> str:
        return self.names.get(table, table)


def database_namespace(url: str) -> str:
    """``postgresql+psycopg2://user:secret@host:5432/shop?sslmode=require`` → ``postgres://host:5432/shop``."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    port = f":{parts.port}" if parts.port else ""
    return f"{_SCHEMES.get(scheme, scheme)}://{parts.hostname or 'localhost'}{port}{parts.path}"


def api_namespace(base_url: str) -> str:
    """An API's base URL, without credentials, query or trailing slash."""
    parts = urlsplit(base_url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path.rstrip('/')}"
