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


# What the TLS libraries (OpenSSL through libpq, Python's ssl, the MySQL drivers) say when
# they refuse a server's certificate: it does not hold the host name connected to, or no
# trusted CA signed it (or the CA file is missing).
_WRONG_HOST = re.compile(r"does not match host name|hostname mismatch|ip address mismatch", re.IGNORECASE)
_UNTRUSTED = re.compile(r"certificate verify failed|root certificate file|unknown ca\b", re.IGNORECASE)
WRONG_HOST = "wrong host"
UNTRUSTED = "untrusted"


def refused_certificate(reason: str) -> str | None:
    """Why a driver refused the server's certificate (``WRONG_HOST`` or ``UNTRUSTED``), if it did.

    Why it matters: a refused certificate is a setting to fix (the CA file, the host name),
    never a server that is briefly away, so it is not retried.
    """
    if _WRONG_HOST.search(reason):
        return WRONG_HOST
    if _UNTRUSTED.search(reason):
        return UNTRUSTED
    return None


def connection_error(message: str, reason: str, ca_parameter: str = "sslrootcert") -> SourceError:
    """A failed connection: transient (``SourceUnreachable``) unless the server refused the login
    or the client refused the server's certificate; then it says which part of the URL to fix
    (``ca_parameter`` is the driver's name for the CA file: libpq's ``sslrootcert``, ``ssl_ca``)."""
    refusal = refused_certificate(reason)
    if refusal == WRONG_HOST:
        return SourceError(
            f"{message}: {reason}; the URL's host must be a name the server's certificate holds"
        )
    if refusal == UNTRUSTED:
        return SourceError(
            f"{message}: {reason}; set `{ca_parameter}` in the URL to the file of the CA that "
            "signed the server's certificate"
        )
    error_class = SourceError if _REFUSED_LOGIN.search(reason) else SourceUnreachable
    return error_class(f"{message}: {reason}")
