"""Errors sources raise for problems a person must look at.

Why a shared base: the CLI and the flows turn any ``SourceError`` into a one-line
message and decide retries by class (``SourceUnreachable`` is transient, the rest
are not). Messages name the source and the setting, never a secret value.
"""


class SourceError(Exception):
    """A source cannot be read: bad settings, rejected credentials, bad answers."""


class SourceUnreachable(SourceError):
    """The source's server did not answer; worth retrying later."""
