"""A real PostgreSQL server for the demo and the tests, started by the project itself.

Why: a fresh machine has only the PostgreSQL client library. The ``pgserver``
wheel bundles PostgreSQL 16 binaries; we drive ``initdb`` / ``pg_ctl`` ourselves
(instead of ``pgserver.get_server``, which listens on a Unix socket only) so the
server listens on 127.0.0.1 on a free port with ``wal_level=logical`` for CDC.
PostgreSQL refuses to run as root, so as root the server runs as a dedicated
system user.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SERVICE_USER = "elt-postgres"
SUPERUSER = "postgres"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    pgdata: Path

    def dsn(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@{self.host}:{self.port}/{database}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bin(name: str) -> str:
    """Path of a binary shipped in the ``pgserver`` wheel (located without importing it:
    its import has side effects we don't need)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the pgserver package is not installed; run `make install`")
    return str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / name)


def _service_user() -> pwd.struct_passwd | None:
    """The non-root account PostgreSQL runs as when we are root (created on first use)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SERVICE_USER)


def _make_traversable(path: Path) -> None:
    """Let the service user reach ``path``: every parent needs the execute bit for others."""
    for parent in reversed(path.parents):
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o011)
    binaries = Path(_bin("postgres")).parents[1]
    for parent in reversed(binaries.parents):
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o011)


def _run(args: list[str], user: pwd.struct_passwd | None, timeout: float = 60, check: bool = True) -> None:
    result = subprocess.run(
        args,
        check=False,
        # The service user may not be able to enter the caller's working directory.
        cwd="/",
        user=user.pw_uid if user else None,
        group=user.pw_gid if user else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} failed: {result.stderr.strip() or result.stdout.strip()}")


@contextmanager
def running_postgres(
    pgdata: Path, *, durable: bool = True, max_replication_slots: int = 10
) -> Iterator[PostgresServer]:
    """Start (initialising if needed) a server on 127.0.0.1 and stop it on exit.

    ``durable=False`` turns off fsync for throwaway test databases; a server shared by many
    CDC tests raises ``max_replication_slots`` (and as many WAL senders).
    """
    user = _service_user()
    pgdata.mkdir(parents=True, exist_ok=True)
    if user:
        _make_traversable(pgdata)
        shutil.chown(pgdata, user.pw_uid, user.pw_gid)
    pgdata.chmod(0o700)
    if not (pgdata / "PG_VERSION").exists():
        _run(
            [
                _bin("initdb"),
                "-D",
                str(pgdata),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            user,
        )
    if (pgdata / "postmaster.pid").exists():
        # A server left behind by a killed run holds the data folder; stop it first.
        _run(_pg_ctl(pgdata, "-m", "immediate", "stop"), user, check=False)
    port = free_port()
    options = [
        "-h 127.0.0.1",
        f"-p {port}",
        f"-k {pgdata}",
        "-c wal_level=logical",
        f"-c max_replication_slots={max_replication_slots}",
        f"-c max_wal_senders={max_replication_slots}",
    ]
    if not durable:
        options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
    log = pgdata / "server.log"
    _run(_pg_ctl(pgdata, "-t", "60", "-l", str(log), "-o", " ".join(options), "start"), user, timeout=90)
    try:
        yield PostgresServer(host="127.0.0.1", port=port, pgdata=pgdata)
    finally:
        _run(_pg_ctl(pgdata, "-m", "fast", "stop"), user, timeout=60)


def _pg_ctl(pgdata: Path, *arguments: str) -> list[str]:
    """``pg_ctl`` on ``pgdata``, waiting (-w) for the action to finish."""
    return [_bin("pg_ctl"), "-D", str(pgdata), "-w", *arguments]


def restart(server: PostgresServer) -> None:
    """Restart a running server in place (same port and options): every connection drops.

    For the reliability campaign's "PostgreSQL restarted mid-snapshot / mid-stream" faults.
    """
    # -l: the log file is pg_ctl's own option, not kept from the first start
    log = str(server.pgdata / "server.log")
    _run(_pg_ctl(server.pgdata, "-m", "fast", "-l", log, "restart"), _service_user(), timeout=90)
