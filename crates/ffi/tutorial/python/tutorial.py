"""The tidesync tutorial in Python, as a test, against a real tidesync-server.

Offline inserts -> push is CancelledByNetworkError -> the server comes up -> push
and pull -> a second client's change arrives -> a conflict is resolved by a Python
handler -> a live-query listener fires -> clear_all. Prints `N passed, N failed`
last and exits non-zero when anything failed.

Needs the generated bindings (tidesync_ffi.py beside libtidesync_ffi.so) on
PYTHONPATH and TIDESYNC_SERVER_BIN naming the tidesync-server binary; `cargo xtask
ci` (xtask/src/bindings.rs) sets both up.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import traceback

import tidesync_ffi as ts

WAIT = 30.0  # seconds a guard waits for a listener before the check fails

passed = 0
failed = 0


def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def config(db, url):
    todo = ts.TableSpec(
        name="TodoItem",
        columns=[
            ts.ColumnSpec(name="text", column_type=ts.ColumnType.STRING),
            ts.ColumnSpec(name="complete", column_type=ts.ColumnType.BOOL),
        ],
    )
    return ts.ClientConfig(database_path=db, server_url=url, tables=[todo], max_retries=0)


class MergeResolver(ts.ConflictResolver):
    """Keeps the server's text and the client's `complete`: a field merge in Python."""

    def __init__(self):
        self.conflicts = []

    def resolve(self, conflict):
        self.conflicts.append(conflict)
        server = json.loads(conflict.server_item)
        local = json.loads(conflict.local_item)
        merged = {"id": conflict.item_id, "text": server["text"], "complete": local["complete"]}
        return ts.ConflictResolution.MERGE(item=json.dumps(merged))


class Inbox:
    """Hands values from a binding thread to the asyncio loop."""

    def __init__(self, loop):
        self.loop = loop
        self.queue = asyncio.Queue()

    def put(self, value):
        self.loop.call_soon_threadsafe(self.queue.put_nowait, value)

    async def until(self, predicate):
        """The first value that satisfies `predicate`, or None after WAIT seconds."""
        try:
            return await asyncio.wait_for(self._first(predicate), WAIT)
        except asyncio.TimeoutError:
            return None

    async def _first(self, predicate):
        while True:
            value = await self.queue.get()
            if predicate(value):
                return value


class StatusInbox(Inbox, ts.StatusListener):
    def on_status(self, status):
        self.put(status)


class RowsInbox(Inbox, ts.LiveQueryListener):
    def on_rows(self, rows_json):
        self.put(json.loads(rows_json))

    def on_error(self, error):
        self.put(("error", error))


def start_server(port, db):
    server = subprocess.Popen(
        [os.environ["TIDESYNC_SERVER_BIN"], "--listen", f"127.0.0.1:{port}",
         "--database", f"sqlite://{db}", "--table", "TodoItem"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    line = server.stdout.readline()  # "listening on http://ADDR", once the database is ready
    if not line.startswith("listening on"):
        server.kill()
        raise RuntimeError(f"tidesync-server did not start: {line!r}")
    return server


def texts(rows):
    return sorted(row["text"] for row in rows)


async def tutorial(work):
    loop = asyncio.get_running_loop()
    # A loopback port that refuses connections (bound, not listening) until the
    # server takes it: the app starts offline.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    port = blocker.getsockname()[1]
    url = f"http://127.0.0.1:{port}"

    resolver = MergeResolver()
    alice = ts.Client.open(config(os.path.join(work, "alice.db"), url), resolver)
    statuses = StatusInbox(loop)
    status_subscription = alice.watch_status(statuses)
    todo = alice.table("TodoItem")

    # 1. Offline inserts, then a push that cannot reach the server.
    milk = json.loads(await todo.insert(json.dumps({"text": "buy milk", "complete": False})))
    await todo.insert(json.dumps({"text": "buy bread", "complete": False}))
    check("offline inserts are stored locally", await todo.count(ts.QuerySpec()) == 2)
    check("the status listener sees 2 pending",
          await statuses.until(lambda s: s.pending == 2) is not None)
    pushed = await alice.push()
    check("push offline is CancelledByNetworkError",
          pushed.status == ts.PushStatus.CANCELLED_BY_NETWORK_ERROR, pushed)
    check("nothing is lost", alice.pending_operations() == 2)
    try:
        await todo.pull("all", ts.QuerySpec())
        check("pull offline raises", False)
    except ts.TidesyncError.PushFailed as e:
        check("pull offline raises PushFailed with the push status",
              e.status == ts.PushStatus.CANCELLED_BY_NETWORK_ERROR, e)
    try:
        await todo.insert("[1, 2]")
        check("a non-object item is refused", False)
    except ts.TidesyncError.InvalidItem:
        check("a non-object item is refused with InvalidItem", True)

    # 2. The server comes up: push and pull.
    blocker.close()
    server = start_server(port, os.path.join(work, "server.db"))
    try:
        pushed = await alice.push()
        check("push online completes", pushed.succeeded and pushed.pushed == 2, pushed)
        check("the queue is empty", alice.pending_operations() == 0)
        check("the status listener sees the queue drain",
              await statuses.until(lambda s: s.pending == 0 and s.last_pushed_at) is not None)
        pulled = await todo.pull("all", ts.QuerySpec())
        check("pull online succeeds", pulled.requests >= 1, pulled)

        # 3. A second client's change arrives.
        bob = ts.Client.open(config(os.path.join(work, "bob.db"), url), None)
        bob_todo = bob.table("TodoItem")
        await bob_todo.pull("all", ts.QuerySpec())
        check("bob pulls alice's items",
              texts(json.loads(await bob_todo.query(ts.QuerySpec()))) == ["buy bread", "buy milk"])
        await bob_todo.insert(json.dumps({"text": "call mum", "complete": False}))
        check("bob pushes", (await bob.push()).succeeded)
        await todo.pull("all", ts.QuerySpec())
        rows = json.loads(await todo.query(ts.QuerySpec(order_by="text")))
        check("bob's change arrives at alice",
              [r["text"] for r in rows] == ["buy bread", "buy milk", "call mum"], rows)

        # 4. A conflict, resolved by the Python handler.
        bob_milk = json.loads(await bob_todo.get(milk["id"]))
        bob_milk["text"] = "buy oat milk"
        await bob_todo.update(json.dumps(bob_milk))
        check("bob's edit is pushed", (await bob.push()).succeeded)
        alice_milk = json.loads(await todo.get(milk["id"]))
        alice_milk["complete"] = True
        await todo.update(json.dumps(alice_milk))
        pushed = await alice.push()
        check("the Python resolver is asked once", len(resolver.conflicts) == 1, resolver.conflicts)
        if resolver.conflicts:
            conflict = resolver.conflicts[0]
            check("the conflict carries both copies",
                  conflict.status in (409, 412) and conflict.kind == ts.OpKind.UPDATE
                  and json.loads(conflict.server_item)["text"] == "buy oat milk", conflict)
        check("the merged push completes", pushed.succeeded, pushed)
        await bob_todo.pull("all", ts.QuerySpec())
        merged = json.loads(await bob_todo.get(milk["id"]))
        check("both edits survive the merge",
              merged["text"] == "buy oat milk" and merged["complete"] is True, merged)

        # 5. A live query follows a pull.
        rows = RowsInbox(loop)
        live = todo.live_query(ts.QuerySpec(filter="complete eq false"), rows)
        first = await rows.until(lambda r: isinstance(r, list))
        check("the live query's first result comes at once",
              first is not None and texts(first) == ["buy bread", "call mum"], first)
        await bob_todo.insert(json.dumps({"text": "water plants", "complete": False}))
        await bob.push()
        await todo.pull("all", ts.QuerySpec())
        fresh = await rows.until(lambda r: isinstance(r, list) and "water plants" in texts(r))
        check("the live-query listener fires after the pull", fresh is not None)

        # 6. Sign out.
        await alice.clear_all()
        check("clear_all empties the tables", await todo.count(ts.QuerySpec()) == 0)
        emptied = await rows.until(lambda r: r == [])
        check("the live query sees the empty table", emptied is not None)
        live.cancel()
        status_subscription.cancel()
    finally:
        server.terminate()
        server.wait()


def main():
    with tempfile.TemporaryDirectory() as work:
        try:
            asyncio.run(tutorial(work))
        except Exception:
            traceback.print_exc()
            check("the tutorial ran to the end", False)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
