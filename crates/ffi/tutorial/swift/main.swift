// The tidesync tutorial in Swift, as a test, against a real tidesync-server: the
// same steps as tutorial/python/tutorial.py. Prints `N passed, N failed` last and
// exits non-zero when anything failed. Compiled in one module with the generated
// tidesync_ffi.swift (module map tidesync_ffiFFI); needs TIDESYNC_SERVER_BIN.
// `cargo xtask ci` builds and runs it in a Debian trixie chroot with swiftlang.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

let waitSeconds: UInt64 = 30  // how long a guard waits for a listener before the check fails

nonisolated(unsafe) var passed = 0
nonisolated(unsafe) var failed = 0

func check(_ name: String, _ condition: Bool, _ detail: Any = "") {
    if condition {
        passed += 1
        print("ok   \(name)")
    } else {
        failed += 1
        print("FAIL \(name) \(detail)")
    }
}

func object(_ json: String?) -> [String: Any] {
    guard let data = json?.data(using: .utf8),
          let value = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [:] }
    return value
}

func texts(_ rowsJson: String) -> [String] {
    guard let data = rowsJson.data(using: .utf8),
          let rows = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]] else { return ["<not rows>"] }
    return rows.compactMap { $0["text"] as? String }.sorted()
}

func json(_ value: [String: Any]) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: value)) ?? Data()
    return String(decoding: data, as: UTF8.self)
}

func config(_ db: String, _ url: String) -> ClientConfig {
    ClientConfig(
        databasePath: db, serverUrl: url,
        tables: [TableSpec(name: "TodoItem", columns: [
            ColumnSpec(name: "text", columnType: .string),
            ColumnSpec(name: "complete", columnType: .bool),
        ])],
        maxRetries: 0)
}

/// Keeps the server's text and the client's `complete`: a field merge in Swift.
final class MergeResolver: ConflictResolver, @unchecked Sendable {
    private let lock = NSLock()
    private var seen: [ConflictInfo] = []
    var conflicts: [ConflictInfo] { lock.lock(); defer { lock.unlock() }; return seen }

    func resolve(conflict: ConflictInfo) -> ConflictResolution {
        lock.lock(); seen.append(conflict); lock.unlock()
        guard let text = object(conflict.serverItem)["text"] as? String,
              let complete = object(conflict.localItem)["complete"] as? Bool else { return .fail }
        return .merge(item: json(["id": conflict.itemId, "text": text, "complete": complete]))
    }
}

/// Hands values from a binding thread to the test's task.
class Inbox<T: Sendable>: @unchecked Sendable {
    private let stream: AsyncStream<T>
    private let continuation: AsyncStream<T>.Continuation
    private var iterator: AsyncStream<T>.Iterator

    init() {
        var continuation: AsyncStream<T>.Continuation!
        stream = AsyncStream { continuation = $0 }
        self.continuation = continuation
        iterator = stream.makeAsyncIterator()
    }

    func put(_ value: T) { continuation.yield(value) }

    /// The first value that satisfies `predicate`, or nil after `waitSeconds`.
    func until(_ predicate: @escaping @Sendable (T) -> Bool) async -> T? {
        let timeout = Task { [continuation] in
            // A guard, not a wait: it only ends a wait that failed (cancelled when the value came).
            guard (try? await Task.sleep(nanoseconds: waitSeconds * 1_000_000_000)) != nil else { return }
            continuation.finish()
        }
        defer { timeout.cancel() }
        while let value = await iterator.next() {
            if predicate(value) { return value }
        }
        return nil
    }
}

final class StatusInbox: Inbox<SyncStatus>, StatusListener, @unchecked Sendable {
    func onStatus(status: SyncStatus) { put(status) }
}

final class RowsInbox: Inbox<String>, LiveQueryListener, @unchecked Sendable {
    func onRows(rowsJson: String) { put(rowsJson) }
    func onError(error: String) { put("error: \(error)") }
}

/// A loopback port bound but not listening: connecting is refused until it is closed.
func blockPort() -> (Int32, Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            _ = bind(fd, pointer, len)
            _ = getsockname(fd, pointer, &len)
        }
    }
    return (fd, Int(UInt16(bigEndian: addr.sin_port)))
}

func startServer(_ port: Int, _ db: String) throws -> Process {
    let server = Process()
    server.executableURL = URL(fileURLWithPath: ProcessInfo.processInfo.environment["TIDESYNC_SERVER_BIN"] ?? "")
    server.arguments = ["--listen", "127.0.0.1:\(port)", "--database", "sqlite://\(db)", "--table", "TodoItem"]
    var environment = ProcessInfo.processInfo.environment
    environment["RUST_LOG"] = "warn"
    server.environment = environment
    let out = Pipe()
    server.standardOutput = out
    server.standardError = FileHandle.nullDevice
    try server.run()
    // "listening on http://ADDR", once the database is ready.
    var line = Data()
    while let byte = try out.fileHandleForReading.read(upToCount: 1), !byte.isEmpty, byte != Data([10]) {
        line.append(byte)
    }
    let text = String(decoding: line, as: UTF8.self)
    guard text.hasPrefix("listening on") else {
        server.terminate()
        throw NSError(domain: "tutorial", code: 1, userInfo: [NSLocalizedDescriptionKey: "server did not start: \(text)"])
    }
    return server
}

func tutorial(_ work: String) async throws {
    let (blocker, port) = blockPort()
    let url = "http://127.0.0.1:\(port)"

    let resolver = MergeResolver()
    let alice = try Client.open(config: config(work + "/alice.db", url), resolver: resolver)
    let statuses = StatusInbox()
    let statusSubscription = try alice.watchStatus(listener: statuses)
    let todo = alice.table(name: "TodoItem")

    // 1. Offline inserts, then a push that cannot reach the server.
    let milk = object(try await todo.insert(itemJson: json(["text": "buy milk", "complete": false])))
    let milkId = milk["id"] as? String ?? ""
    _ = try await todo.insert(itemJson: json(["text": "buy bread", "complete": false]))
    check("offline inserts are stored locally", try await todo.count(query: QuerySpec()) == 2)
    check("the status listener sees 2 pending", await statuses.until { $0.pending == 2 } != nil)
    var pushed = try await alice.push()
    check("push offline is CancelledByNetworkError", pushed.status == .cancelledByNetworkError, pushed)
    check("nothing is lost", try alice.pendingOperations() == 2)
    do {
        _ = try await todo.pull(queryId: "all", query: QuerySpec())
        check("pull offline raises", false)
    } catch let TidesyncError.PushFailed(status, _, _) {
        check("pull offline raises PushFailed with the push status", status == .cancelledByNetworkError, status)
    }
    do {
        _ = try await todo.insert(itemJson: "[1, 2]")
        check("a non-object item is refused", false)
    } catch TidesyncError.InvalidItem {
        check("a non-object item is refused with InvalidItem", true)
    }

    // 2. The server comes up: push and pull.
    close(blocker)
    let server = try startServer(port, work + "/server.db")
    // SIGKILL, not terminate(): a child of Foundation's Process inherits a signal mask that
    // blocks SIGTERM on Linux, so the server would never see it.
    defer { kill(server.processIdentifier, SIGKILL); var status: Int32 = 0; _ = waitpid(server.processIdentifier, &status, 0) }

    pushed = try await alice.push()
    check("push online completes", pushed.succeeded && pushed.pushed == 2, pushed)
    check("the queue is empty", try alice.pendingOperations() == 0)
    check("the status listener sees the queue drain",
          await statuses.until { $0.pending == 0 && $0.lastPushedAt != nil } != nil)
    let pulled = try await todo.pull(queryId: "all", query: QuerySpec())
    check("pull online succeeds", pulled.requests >= 1, pulled)

    // 3. A second client's change arrives.
    let bob = try Client.open(config: config(work + "/bob.db", url), resolver: nil)
    let bobTodo = bob.table(name: "TodoItem")
    _ = try await bobTodo.pull(queryId: "all", query: QuerySpec())
    check("bob pulls alice's items", texts(try await bobTodo.query(query: QuerySpec())) == ["buy bread", "buy milk"])
    _ = try await bobTodo.insert(itemJson: json(["text": "call mum", "complete": false]))
    check("bob pushes", try await bob.push().succeeded)
    _ = try await todo.pull(queryId: "all", query: QuerySpec())
    let rows = try await todo.query(query: QuerySpec(orderBy: "text"))
    check("bob's change arrives at alice", texts(rows) == ["buy bread", "buy milk", "call mum"], rows)

    // 4. A conflict, resolved by the Swift handler.
    var bobMilk = object(try await bobTodo.get(id: milkId))
    bobMilk["text"] = "buy oat milk"
    _ = try await bobTodo.update(itemJson: json(bobMilk))
    check("bob's edit is pushed", try await bob.push().succeeded)
    var aliceMilk = object(try await todo.get(id: milkId))
    aliceMilk["complete"] = true
    _ = try await todo.update(itemJson: json(aliceMilk))
    pushed = try await alice.push()
    check("the Swift resolver is asked once", resolver.conflicts.count == 1, resolver.conflicts)
    if let conflict = resolver.conflicts.first {
        check("the conflict carries both copies",
              [409, 412].contains(conflict.status) && conflict.kind == .update
                  && object(conflict.serverItem)["text"] as? String == "buy oat milk", conflict)
    }
    check("the merged push completes", pushed.succeeded, pushed)
    _ = try await bobTodo.pull(queryId: "all", query: QuerySpec())
    let merged = object(try await bobTodo.get(id: milkId))
    check("both edits survive the merge",
          merged["text"] as? String == "buy oat milk" && merged["complete"] as? Bool == true, merged)

    // 5. A live query follows a pull.
    let live = RowsInbox()
    let liveSubscription = try todo.liveQuery(query: QuerySpec(filter: "complete eq false"), listener: live)
    let first = await live.until { !$0.hasPrefix("error") }
    check("the live query's first result comes at once",
          first.map(texts) == ["buy bread", "call mum"], first ?? "nothing")
    _ = try await bobTodo.insert(itemJson: json(["text": "water plants", "complete": false]))
    _ = try await bob.push()
    _ = try await todo.pull(queryId: "all", query: QuerySpec())
    check("the live-query listener fires after the pull",
          await live.until { texts($0).contains("water plants") } != nil)

    // 6. Sign out.
    try await alice.clearAll()
    check("clear_all empties the tables", try await todo.count(query: QuerySpec()) == 0)
    check("the live query sees the empty table", await live.until { $0 == "[]" } != nil)
    liveSubscription.cancel()
    statusSubscription.cancel()
}

setvbuf(stdout, nil, _IOLBF, 0)
let work = NSTemporaryDirectory() + "tidesync-swift-\(ProcessInfo.processInfo.processIdentifier)"
try? FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
do {
    try await tutorial(work)
} catch {
    print("error: \(error)")
    check("the tutorial ran to the end", false)
}
try? FileManager.default.removeItem(atPath: work)
print("\(passed) passed, \(failed) failed")
exit(failed == 0 ? 0 : 1)
