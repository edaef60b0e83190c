"""A real PostgreSQL server for the demo and the tests, started by the project itself.

Why: a fresh machine has only the PostgreSQL client library. The ``pgserver``
wheel bundles PostgreSQL 16 binaries; we drive ``initdb`` / ``pg_ctl`` ourselves
(instead of ``pgserver.get_server``, which listens on a Unix socket only) so the
server listens on 127.0.0.1 on a free port with ``wal_level=logical`` for CDC.
PostgreSQL refuses to run as root, so as root the server runs as a dedicated
system user. The wheel's server is built without OpenSSL: a server that speaks TLS
(``tls=``) runs Debian's ``postgresql`` binaries instead (``debian_binaries()``).
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

from standins.tls import ServerCertificate

SERVICE_USER = "elt-postgres"
SUPERUSER = "postgres"
DEBIAN_VERSIONS = Path("/usr/lib/postgresql")  # <major>/bin of each installed server
# A TLS server's clients: the superuser (the tests' admin) may connect in plain text, every
# other role only over TLS and with its password, replication connections included.
TLS_HBA = f"""local all all trust
host all {SUPERUSER} 127.0.0.1/32 trust
host replication {SUPERUSER} 127.0.0.1/32 trust
hostssl all all 127.0.0.1/32 scram-sha-256
hostssl replication all 127.0.0.1/32 scram-sha-256
"""


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    pgdata: Path
    binaries: Path

    def dsn(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@{self.host}:{self.port}/{database}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pgserver_binaries() -> Path:
    """The folder of the binaries shipped in the ``pgserver`` wheel (located without importing
    it: its import has side effects we don't need)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the pgserver package is not installed; run `make install`")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def debian_binaries() -> Path | None:
    """The binaries of the newest server from Debian's ``postgresql`` package, if installed."""
    found = [folder for folder in DEBIAN_VERSIONS.glob("*/bin") if (folder / "initdb").exists()]
    return max(found, key=lambda folder: int(folder.parent.name), default=None)


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


def _make_traversable(*paths: Path) -> None:
    """Let the service user reach each path: every parent needs the execute bit for others."""
    for path in paths:
        for parent in reversed(path.parents):
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
    pgdata: Path,
    *,
    durable: bool = True,
    max_replication_slots: int = 10,
    binaries: Path | None = None,
    tls: ServerCertificate | None = None,
) -> Iterator[PostgresServer]:
    """Start (initialising if needed) a server on 127.0.0.1 and stop it on exit.

    ``durable=False`` turns off fsync for throwaway test databases; a server shared by many
    CDC tests raises ``max_replication_slots`` (and as many WAL senders). ``binaries``
    (default: the pgserver wheel's) picks another build; with ``tls`` (which needs a build
    with OpenSSL) the server presents that certificate and every role but the superuser must
    connect over TLS with its password (``TLS_HBA``).
    """
    binaries = binaries or pgserver_binaries()
    user = _service_user()
    pgdata.mkdir(parents=True, exist_ok=True)
    if user:
        _make_traversable(pgdata, binaries)
        shutil.chown(pgdata, user.pw_uid, user.pw_gid)
    pgdata.chmod(0o700)
    if not (pgdata / "PG_VERSION").exists():
        _run(
            [
                str(binaries / "initdb"),
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
        _run(_pg_ctl(binaries, pgdata, "-m", "immediate", "stop"), user, check=False)
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
    if tls:
        # server.crt and server.key in the data folder are PostgreSQL's defaults
        tls.write_files(pgdata, user.pw_name if user else None)
        (pgdata / "pg_hba.conf").write_text(TLS_HBA)  # initdb's file, the server's account's
        options.append("-c ssl=on")
    log = pgdata / "server.log"
    start = _pg_ctl(binaries, pgdata, "-t", "60", "-l", str(log), "-o", " ".join(options), "start")
    _run(start, user, timeout=90)
    try:
        yield PostgresServer(host="127.0.0.1", port=port, pgdata=pgdata, binaries=binaries)
    finally:
        _run(_pg_ctl(binaries, pgdata, "-m", "fast", "stop"), user, timeout=60)


def _pg_ctl(binaries: Path, pgdata: Path, *arguments: str) -> list[str]:
    """``pg_ctl`` on ``pgdata``, waiting (-w) for the action to finish."""
    return [str(binaries / "pg_ctl"), "-D", str(pgdata), "-w", *arguments]


def restart(server: PostgresServer) -> None:
    """Restart a running server in place (same port and options): every connection drops.

    For the reliability campaign's "PostgreSQL restarted mid-snapshot / mid-stream" faults.
    """
    # -l: the log file is pg_ctl's own option, not kept from the first start
    log = str(server.pgdata / "server.log")
    _run(
        _pg_ctl(server.binaries, server.pgdata, "-m", "fast", "-l", log, "restart"),
        _service_user(),
        timeout=90,
    )
