"""The initial snapshot: every table as of the moment the slot was created, as Arrow.

Why an exported snapshot: ``CREATE_REPLICATION_SLOT … EXPORT_SNAPSHOT`` returns the
slot's starting point and a snapshot of the database at exactly that point. Reading
the tables inside that snapshot (REPEATABLE READ + ``SET TRANSACTION SNAPSHOT``) and
then streaming from the slot sees every change exactly once, with nothing copied
inside the source database.

Why COPY … CSV into Arrow's CSV reader: COPY is PostgreSQL's fastest way out, and
Arrow parses CSV in C; values stay text and are converted per column by
``arrow_types.to_arrow``, exactly like the change stream's values.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import BinaryIO

import psycopg2
import psycopg2.extras
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg2 import sql
from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ
from psycopg2.extensions import connection as Connection

from dlt_sources.common.rejects import CastFlags
from dlt_sources.errors import SourceError
from dlt_sources.postgres_cdc.arrow_types import to_arrow
from dlt_sources.postgres_cdc.catalog import TableInfo
from dlt_sources.postgres_cdc.pgoutput import parse_lsn

READ_BLOCK_BYTES = 16 << 20  # one Arrow batch per 16 MB of CSV


def create_slot(replication: Connection, source: str, slot: str) -> tuple[int, str]:
    """Create the logical slot with an exported snapshot: (consistent point LSN, snapshot name).

    The snapshot stays importable only while ``replication`` stays open and idle.
    """
    with replication.cursor() as cur:
        try:
            # Slot names are checked against PostgreSQL's own rule ([a-z0-9_]) in settings.py.
            cur.execute(f"CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput EXPORT_SNAPSHOT")
        except psycopg2.Error as exc:
            raise SourceError(
                f"source {source}: cannot create replication slot {slot}: {_first_line(exc)}"
            ) from None
        _, consistent_point, snapshot_name, _ = cur.fetchone()
    return parse_lsn(consistent_point), snapshot_name


def open_snapshot(conn: Connection, snapshot_name: str) -> None:
    """Start a read-only REPEATABLE READ transaction that sees exactly the exported snapshot."""
    conn.autocommit = False
    conn.set_session(isolation_level=ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
    with conn.cursor() as cur:
        cur.execute("set transaction snapshot %s", (snapshot_name,))


def read_table(conn: Connection, table: TableInfo, block_bytes: int = READ_BLOCK_BYTES) -> Iterator[pa.Table]:
    """The table's rows in Arrow batches, typed like the change stream's.

    ``block_bytes`` must hold the largest row (Arrow's CSV reader cannot split one); values
    that do not convert are flagged for the quarantine (common/rejects.py).
    """
    names = [column.name for column in table.columns]
    query = sql.SQL("copy (select {} from {}) to stdout (format csv)").format(
        sql.SQL(", ").join(map(sql.Identifier, names)), table.identifier()
    )
    with _copy_out(conn, query) as stream:
        try:
            reader = pa_csv.open_csv(
                stream,
                read_options=pa_csv.ReadOptions(column_names=names, block_size=block_bytes),
                parse_options=pa_csv.ParseOptions(newlines_in_values=True),
                convert_options=pa_csv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()),
                    strings_can_be_null=True,  # COPY writes NULL as an empty unquoted field …
                    quoted_strings_can_be_null=False,  # … and '' as "".
                    # … and nothing else: Arrow's default also reads NaN, NULL, N/A, null as NULL
                    # (a numeric NaN or the text 'N/A' silently became NULL)
                    null_values=[""],
                ),
            )
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):  # an empty table (or COPY failed: raised on exit)
                return
            raise
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as exc:
                if "straddl" not in str(exc):
                    raise
                raise SourceError(
                    f"table {table.schema}.{table.name} has a row larger than the snapshot's read block "
                    f"({block_bytes >> 20} MB); lower its largest values or raise max_string_bytes"
                ) from None
            flags = CastFlags()
            arrays = [
                to_arrow(batch.column(i), column.type_oid, column.type_modifier, flags, column.name)
                for i, column in enumerate(table.columns)
            ]
            yield flags.attach(pa.Table.from_arrays(arrays, names=names))


class _copy_out:  # a context manager that reads like a function
    """COPY … TO STDOUT written by a thread into a pipe that the caller reads.

    Why a thread and a pipe: psycopg2's ``copy_expert`` pushes into a file object
    until the end, while Arrow's CSV reader pulls; the pipe lets both run at once
    with bounded memory. An error in COPY is re-raised in the reader's thread.
    """

    def __init__(self, conn: Connection, query: sql.Composable) -> None:
        self.conn = conn
        self.query = query
        self.error: BaseException | None = None

    def __enter__(self) -> BinaryIO:
        read_fd, write_fd = os.pipe()
        # buffered: read(n) then waits for n bytes, so a block holds a whole large row (a raw
        # pipe read returns at most what the pipe holds, and a row over several blocks fails)
        self.reader = os.fdopen(read_fd, "rb", buffering=1 << 20)
        writer = os.fdopen(write_fd, "wb", buffering=1 << 20)

        def produce() -> None:
            try:
                with writer, self.conn.cursor() as cur:
                    cur.copy_expert(self.query, writer)
            except BaseException as exc:  # handed to the reading thread
                self.error = exc

        self.thread = threading.Thread(target=produce, name="pg-copy-out", daemon=True)
        self.thread.start()
        return self.reader

    def __exit__(self, *exc_info: object) -> None:
        self.reader.close()  # an early exit makes the writer fail with a broken pipe and stop
        self.thread.join()
        if self.error is not None and exc_info[0] is None:
            raise self.error


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
