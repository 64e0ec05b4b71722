"""The Python side of the bench figure ffi_pull_10k (crates/bench/src/ffi.rs).

`bench_pull.py URL DB ROWS`: opens a fresh client over DB, pulls the server's Item table
and reads every row back as dicts (one JSON array across the boundary); prints the
seconds that took (interpreter start and import excluded). Fails unless ROWS rows came.
"""

import asyncio
import json
import sys
import time

import tidesync_ffi as ts


async def main(url, db, rows):
    columns = [
        ts.ColumnSpec(name="text", column_type=ts.ColumnType.STRING),
        ts.ColumnSpec(name="n", column_type=ts.ColumnType.INTEGER),
        ts.ColumnSpec(name="done", column_type=ts.ColumnType.BOOL),
    ]
    client = ts.Client.open(
        ts.ClientConfig(database_path=db, server_url=url,
                        tables=[ts.TableSpec(name="Item", columns=columns)]),
        None,
    )
    table = client.table("Item")
    started = time.perf_counter()
    await table.pull("all", ts.QuerySpec())
    items = json.loads(await table.query(ts.QuerySpec()))
    elapsed = time.perf_counter() - started
    if len(items) != rows:
        sys.exit(f"pulled {len(items)} rows, not {rows}")
    print(elapsed)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
