"""DuckDB: the default warehouse, one file on this machine (``ELT_DUCKDB_PATH``).

No credentials, no roles, no masking; one process writes the file at a time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence, Set
from typing import TYPE_CHECKING, Any, ClassVar

from flows.warehouses.base import ColumnType, PublishStrategy, Warehouse, double_quoted

if TYPE_CHECKING:
    from flows.config import Settings


class DuckDB(Warehouse):
    name: ClassVar[str] = "duckdb"
    publish_strategy: ClassVar[PublishStrategy] = PublishStrategy.TRANSACTION
    # the file takes one writer process at a time: a second run waits on its lock
    takes_concurrent_writers: ClassVar[bool] = False
    in_the_cloud: ClassVar[bool] = False

    def dlt_destination(self, settings: Settings) -> Any:
        import dlt

        return dlt.destinations.duckdb(str(settings.duckdb_path))

    def tool_environment(self, settings: Settings) -> dict[str, str]:
        return {"ELT_DUCKDB_PATH": str(settings.duckdb_path)}

    def column_types(self, settings: Settings, schema: str, table: str) -> dict[str, ColumnType]:
        """Read from the file's information_schema; empty when the file or table does not exist."""
        import duckdb

        if not settings.duckdb_path.exists():
            return {}
        with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
            rows = con.execute(
                "select column_name, lower(data_type), numeric_precision, numeric_scale"
                " from information_schema.columns where table_schema = ? and table_name = ?"
                " order by ordinal_position",
                [schema, table],
            ).fetchall()
        types: dict[str, ColumnType] = {}
        for column, data_type, precision, scale in rows:
            if data_type.startswith("decimal"):
                types[column] = ("decimal", precision, scale)
            else:
                types[column] = (data_type, None, None)
        return types

    def append_rows(
        self,
        settings: Settings,
        schema: str,
        tables: Mapping[str, Sequence[Mapping[str, Any]]],
        replaced: Set[str],
    ) -> bool:
        """One connection and an INSERT per table. Why not dlt: its load of a handful of rows
        opens the file five times (about 0.4 s; a run writes its audit trail eight times or
        more). The rows carry dlt's own columns, so a later dlt load finds the table as it
        left it."""
        import duckdb
        from dlt.common.utils import uniq_id

        if not settings.duckdb_path.exists():
            return False
        load_id = f"{time.time():.6f}"  # dlt's own load-id form
        try:
            with duckdb.connect(str(settings.duckdb_path)) as con:
                con.begin()
                for table, rows in tables.items():
                    name = f"{double_quoted(schema)}.{double_quoted(table)}"
                    if table in replaced:
                        con.execute(f"delete from {name}")
                    columns = [*rows[0], "_dlt_load_id", "_dlt_id"]
                    con.executemany(
                        f"insert into {name} ({', '.join(map(double_quoted, columns))})"
                        f" values ({', '.join('?' * len(columns))})",
                        [[*row.values(), load_id, uniq_id()] for row in rows],
                    )
                con.commit()
        except duckdb.Error:  # no such table or column yet, or another process holds the file
            return False
        return True

    def sample_sql(self, table: str, rows: int, total: int) -> str:
        """A reservoir sample with a fixed seed: the same rows each time the table is the same."""
        return f"(select * from {table} using sample reservoir({rows} rows) repeatable (7))"

    def compact(self, settings: Settings) -> None:
        """Rewrite the file (``COPY FROM DATABASE`` into a new one, then swap it in).

        Why: DuckDB reuses freed blocks but never clears them; after ``DELETE``,
        ``CHECKPOINT`` and ``VACUUM`` a deleted email was still in the file's bytes (seen
        here with duckdb 2.0.1). The copy keeps the catalog's name (the file's stem), so views
        naming it still resolve. Call it with the build lock held: nothing else writes then.
        Killed midway, the original file is whole (the swap is one rename); the next
        compaction starts over.
        """
        import duckdb

        path = settings.duckdb_path
        with duckdb.connect(str(path)) as con:
            con.execute("checkpoint")  # no WAL left that could replay onto the new file
        scratch = path.parent / ".compacting" / path.name
        scratch.parent.mkdir(exist_ok=True)
        for stale in (scratch, scratch.with_name(scratch.name + ".wal")):
            stale.unlink(missing_ok=True)
        with duckdb.connect(str(scratch)) as con:
            con.execute("attach ? as erased_source (read_only)", [str(path)])
            con.execute(f"copy from database erased_source to {double_quoted(path.stem)}")
            con.execute("detach erased_source")
            con.execute("checkpoint")
        os.replace(scratch, path)
        scratch.parent.rmdir()

    def drop_schema_sql(self, settings: Settings, schema: str) -> str:
        return f"drop schema if exists {double_quoted(schema)} cascade"

    def lineage_namespace(self, settings: Settings) -> str:
        """``duckdb://<absolute path of the file>``: two files are two data sources."""
        return f"duckdb://{settings.duckdb_path}"

    # grant_select_sql and mask_column_sql stay None: DuckDB has no roles and no column
    # masking; whoever can open the file reads everything in it.
