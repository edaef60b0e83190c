"""The emulator's process: patch fakesnow (shims.py), then serve on a free port of 127.0.0.1.

Prints ``fakesnow listening on port N`` on stdout once it accepts connections; logs go
to stderr. The expected password comes from FAKESNOW_EXPECTED_PASSWORD (not argv).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
from pathlib import Path

from tests.emulators.snowflake.shims import apply


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--user", required=True)
    parser.add_argument("--public-key-file", type=Path)
    args = parser.parse_args()
    public_key = args.public_key_file.read_bytes() if args.public_key_file else None
    apply(args.user, os.environ.get("FAKESNOW_EXPECTED_PASSWORD", ""), public_key)

    import fakesnow.server
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(fakesnow.server.app, log_level="warning", access_log=False, lifespan="off")
    )

    def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            threading.Event().wait(0.05)
        print(f"fakesnow listening on port {port}", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    server.run(sockets=[sock])
    sys.exit(0)


if __name__ == "__main__":
    main()
