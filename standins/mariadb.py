"""A real MariaDB server for the SQL database source's tests, from Debian's ``mariadb-server``.

Why not a wheel: no PyPI package ships a MariaDB/MySQL server, so the tests use the
system's ``mariadbd`` (``.ci/run`` installs it) and skip, saying why, where it is
missing. The server gets a fresh data folder, listens on 127.0.0.1 on a free port and
its socket inside that folder; as root it runs as the ``mysql`` account.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from standins.postgres import free_port
from standins.tls import ServerCertificate

SERVER_BINARIES = ("mariadbd", "mysqld")
INSTALL_DB = "mariadb-install-db"
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"])
USER = "elt"
PASSWORD = "elt-test-password"


@dataclass(frozen=True)
class MariaDbServer:
    host: str
    port: int
    socket: Path

    def url(self, database: str) -> str:
        """A SQLAlchemy URL for the test account."""
        return f"mysql+pymysql://{USER}:{PASSWORD}@{self.host}:{self.port}/{database}"


def server_binary() -> str | None:
    """Path of the installed server, or None (then the tests skip)."""
    for name in SERVER_BINARIES:
        found = shutil.which(name, path=SEARCH_PATH)
        if found:
            return found
    return None


def _service_user() -> str | None:
    """As root the server must run as another account (Debian's package creates ``mysql``)."""
    if os.geteuid() != 0:
        return None
    pwd.getpwnam("mysql")
    return "mysql"


def _wait_ready(socket: Path, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    import pymysql

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"mariadbd exited: {log.read_text()[-2000:]}")
        try:
            pymysql.connect(unix_socket=str(socket), user="root").close()
            return
        except pymysql.err.OperationalError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"mariadbd did not start in {timeout:.0f}s: {log.read_text()[-2000:]}"
                ) from exc
            time.sleep(0.2)


def _tls_options(datadir: Path, tls: ServerCertificate, user: str | None) -> list[str]:
    """The certificate files in ``datadir`` and the options that make TCP clients use them:
    ``require_secure_transport`` refuses unencrypted TCP (the Unix socket stays open)."""
    authority, certificate, key = tls.write_files(datadir, user)
    return [
        "--require-secure-transport=ON",
        f"--ssl-ca={authority}",
        f"--ssl-cert={certificate}",
        f"--ssl-key={key}",
    ]


@contextmanager
def running_mariadb(datadir: Path, tls: ServerCertificate | None = None) -> Iterator[MariaDbServer]:
    """Initialise ``datadir``, start the server with a password account ``elt``, stop it on exit.

    With ``tls`` the server presents that certificate and refuses unencrypted TCP connections.
    """
    binary = server_binary()
    if binary is None:
        raise RuntimeError("mariadbd is not installed (apt-get install mariadb-server)")
    user = _service_user()
    datadir.mkdir(parents=True, exist_ok=True)
    if user:
        shutil.chown(datadir, user, user)
        for parent in datadir.parents:  # the service account must reach its folder
            parent.chmod(parent.stat().st_mode | 0o001)
    owner = [f"--user={user}"] if user else []
    subprocess.run(
        [
            shutil.which(INSTALL_DB, path=SEARCH_PATH) or INSTALL_DB,
            f"--datadir={datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *owner,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    port, socket, log = free_port(), datadir / "mysqld.sock", datadir / "server.log"
    secure = _tls_options(datadir, tls, user) if tls else []
    process = subprocess.Popen(
        [
            binary,
            "--no-defaults",
            f"--datadir={datadir}",
            "--bind-address=127.0.0.1",
            f"--port={port}",
            f"--socket={socket}",
            f"--pid-file={datadir / 'mysqld.pid'}",
            f"--log-error={log}",
            "--skip-name-resolve",
            "--innodb-flush-log-at-trx-commit=0",
            "--character-set-server=utf8mb4",
            *secure,
            *owner,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(socket, process, log)
        import pymysql

        admin = pymysql.connect(unix_socket=str(socket), user="root", autocommit=True)
        with admin.cursor() as cur:
            cur.execute(f"create user '{USER}'@'%' identified by '{PASSWORD}'")
            cur.execute(f"grant all on *.* to '{USER}'@'%'")
        admin.close()
        yield MariaDbServer(host="127.0.0.1", port=port, socket=socket)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
