"""Start bqemulator with this project's shims on 127.0.0.1 and print where it listens.

Run with the emulator's own interpreter (tests/emulators/bigquery/.venv/bin/python):
bqemulator pins a sqlglot the project's environment cannot have. The REST and gRPC
ports are picked free by the OS; once both listen, one line goes to stdout:
``BQEMULATOR_READY rest=<port> grpc=<port>``, which tests/emulators/bigquery_server.py
waits for. Ephemeral (in-memory) storage: every start is a fresh warehouse.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import shims


async def serve(project: str, staging_dir: Path | None) -> None:
    """Run until SIGTERM/SIGINT, then stop the servers cleanly."""
    from bqemulator.config import Settings
    from bqemulator.server import EmulatorServer

    settings = Settings(
        rest_host="127.0.0.1",
        rest_port=0,
        grpc_host="127.0.0.1",
        grpc_port=0,
        default_project_id=project,
        # AVRO loads would need a download from extensions.duckdb.org; nothing here uses them
        enable_format_extensions=False,
        upload_staging_dir=staging_dir,
        log_level="warning",
    )
    server = EmulatorServer(settings)
    await server.start()
    print(f"BQEMULATOR_READY rest={server.rest_port} grpc={server.grpc_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        # uvicorn waits for idle keep-alive connections of clients that never close them
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.stop(), timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default="elt-emulator")
    parser.add_argument("--staging-dir", type=Path, default=None, help="upload staging folder")
    parser.add_argument("--token", default=None, help="the one access token accepted (default: any)")
    args = parser.parse_args()
    shims.apply_all(args.project, args.token)
    asyncio.run(serve(args.project, args.staging_dir))


if __name__ == "__main__":
    main()
