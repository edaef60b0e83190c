"""Errors sources raise for problems a person must look at.

Why a shared base: the CLI and the flows turn any ``SourceError`` into a one-line
message and decide retries by class (``SourceUnreachable`` is transient, the rest
are not). Messages name the source and the setting, never a secret value.
"""

import re


class SourceError(Exception):
    """A source cannot be read: bad settings, rejected credentials, bad answers."""


class SourceUnreachable(SourceError):
    """The source's server did not answer; worth retrying later."""


# What a database answers when it refuses the login itself (PostgreSQL, MySQL/MariaDB):
# the server is up, so retrying only delays the message a person has to act on.
_REFUSED_LOGIN = re.compile(
    r"password authentication failed|no pg_hba\.conf entry|role \S+ does not exist"
    r"|database \S+ does not exist|must be superuser or replication role|access denied for user"
    r"|unknown database",
    re.IGNORECASE,
)


def connection_error(message: str, reason: str) -> SourceError:
    """A failed connection: transient (``SourceUnreachable``) unless the server refused the login."""
    error_class = SourceError if _REFUSED_LOGIN.search(reason) else SourceUnreachable
    return error_class(f"{message}: {reason}")
