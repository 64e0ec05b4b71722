// The tidesync tutorial in Kotlin, as a test, against a real tidesync-server: the
// same steps as tutorial/python/tutorial.py. Prints `N passed, N failed` last and
// exits non-zero when anything failed. Needs TIDESYNC_SERVER_BIN and the generated
// bindings (uniffi/tidesync_ffi/tidesync_ffi.kt) compiled alongside; JNA finds
// libtidesync_ffi.so through -Djna.library.path. `cargo xtask ci` sets it all up.

import java.io.File
import java.net.InetSocketAddress
import java.nio.channels.SocketChannel
import java.nio.file.Files
import kotlin.system.exitProcess
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeoutOrNull
import uniffi.tidesync_ffi.*

const val WAIT_MS = 30_000L // how long a guard waits for a listener before the check fails

var passed = 0
var failed = 0

fun check(name: String, condition: Boolean, detail: Any? = "") {
    if (condition) {
        passed++
        println("ok   $name")
    } else {
        failed++
        println("FAIL $name $detail")
    }
}

// Just enough JSON for the test: string and boolean properties of flat objects.
fun jsonString(json: String, key: String): String? =
    Regex("\"$key\"\\s*:\\s*\"((?:[^\"\\\\]|\\\\.)*)\"").find(json)?.groupValues?.get(1)

fun jsonBool(json: String, key: String): Boolean? =
    Regex("\"$key\"\\s*:\\s*(true|false)").find(json)?.groupValues?.get(1)?.toBoolean()

fun texts(rowsJson: String): List<String> =
    Regex("\"text\"\\s*:\\s*\"((?:[^\"\\\\]|\\\\.)*)\"").findAll(rowsJson).map { it.groupValues[1] }.sorted().toList()

fun todoJson(text: String, complete: Boolean, id: String? = null): String =
    (if (id != null) "{\"id\":\"$id\"," else "{") + "\"text\":\"$text\",\"complete\":$complete}"

fun config(db: String, url: String) = ClientConfig(
    databasePath = db,
    serverUrl = url,
    tables = listOf(
        TableSpec("TodoItem", listOf(ColumnSpec("text", ColumnType.STRING), ColumnSpec("complete", ColumnType.BOOL))),
    ),
    maxRetries = 0u,
)

/** Keeps the server's text and the client's `complete`: a field merge in Kotlin. */
class MergeResolver : ConflictResolver {
    val conflicts = java.util.Collections.synchronizedList(mutableListOf<ConflictInfo>())

    override fun resolve(conflict: ConflictInfo): ConflictResolution {
        conflicts.add(conflict)
        val text = jsonString(conflict.serverItem ?: "", "text") ?: return ConflictResolution.Fail
        val complete = jsonBool(conflict.localItem ?: "", "complete") ?: return ConflictResolution.Fail
        return ConflictResolution.Merge(todoJson(text, complete, conflict.itemId))
    }
}

/** Hands values from a binding thread to the test's coroutine. */
open class Inbox<T> {
    private val channel = Channel<T>(Channel.UNLIMITED)

    fun put(value: T) {
        channel.trySend(value)
    }

    /** The first value that satisfies `predicate`, or null after WAIT_MS. */
    suspend fun until(predicate: (T) -> Boolean): T? = withTimeoutOrNull(WAIT_MS) {
        var value = channel.receive()
        while (!predicate(value)) value = channel.receive()
        value
    }
}

class StatusInbox : Inbox<SyncStatus>(), StatusListener {
    override fun onStatus(status: SyncStatus) = put(status)
}

class RowsInbox : Inbox<String>(), LiveQueryListener {
    override fun onRows(rowsJson: String) = put(rowsJson)
    override fun onError(error: String) = put("error: $error")
}

fun startServer(port: Int, db: String): Process {
    val server = ProcessBuilder(
        System.getenv("TIDESYNC_SERVER_BIN"), "--listen", "127.0.0.1:$port",
        "--database", "sqlite://$db", "--table", "TodoItem",
    ).redirectError(ProcessBuilder.Redirect.DISCARD).also { it.environment()["RUST_LOG"] = "warn" }.start()
    val line = server.inputStream.bufferedReader().readLine() ?: ""
    if (!line.startsWith("listening on")) {
        server.destroyForcibly()
        error("tidesync-server did not start: $line")
    }
    return server
}

suspend fun tutorial(work: File) {
    // A loopback port that refuses connections (bound, not listening) until the server
    // takes it: the app starts offline.
    val blocker = SocketChannel.open().bind(InetSocketAddress("127.0.0.1", 0))
    val port = (blocker.localAddress as InetSocketAddress).port
    val url = "http://127.0.0.1:$port"

    val resolver = MergeResolver()
    val alice = Client.open(config(File(work, "alice.db").path, url), resolver)
    val statuses = StatusInbox()
    val statusSubscription = alice.watchStatus(statuses)
    val todo = alice.table("TodoItem")

    // 1. Offline inserts, then a push that cannot reach the server.
    val milk = todo.insert(todoJson("buy milk", false))
    val milkId = jsonString(milk, "id")!!
    todo.insert(todoJson("buy bread", false))
    check("offline inserts are stored locally", todo.count(QuerySpec()) == 2UL)
    check("the status listener sees 2 pending", statuses.until { it.pending == 2UL } != null)
    var pushed = alice.push()
    check("push offline is CancelledByNetworkError", pushed.status == PushStatus.CANCELLED_BY_NETWORK_ERROR, pushed)
    check("nothing is lost", alice.pendingOperations() == 2UL)
    try {
        todo.pull("all", QuerySpec())
        check("pull offline raises", false)
    } catch (e: TidesyncException.PushFailed) {
        check("pull offline raises PushFailed with the push status", e.status == PushStatus.CANCELLED_BY_NETWORK_ERROR, e)
    }
    try {
        todo.insert("[1, 2]")
        check("a non-object item is refused", false)
    } catch (e: TidesyncException.InvalidItem) {
        check("a non-object item is refused with InvalidItem", true)
    }

    // 2. The server comes up: push and pull.
    blocker.close()
    val server = startServer(port, File(work, "server.db").path)
    try {
        pushed = alice.push()
        check("push online completes", pushed.succeeded && pushed.pushed == 2UL, pushed)
        check("the queue is empty", alice.pendingOperations() == 0UL)
        check("the status listener sees the queue drain",
            statuses.until { it.pending == 0UL && it.lastPushedAt != null } != null)
        val pulled = todo.pull("all", QuerySpec())
        check("pull online succeeds", pulled.requests >= 1UL, pulled)

        // 3. A second client's change arrives.
        val bob = Client.open(config(File(work, "bob.db").path, url), null)
        val bobTodo = bob.table("TodoItem")
        bobTodo.pull("all", QuerySpec())
        check("bob pulls alice's items", texts(bobTodo.query(QuerySpec())) == listOf("buy bread", "buy milk"))
        bobTodo.insert(todoJson("call mum", false))
        check("bob pushes", bob.push().succeeded)
        todo.pull("all", QuerySpec())
        val rows = todo.query(QuerySpec(orderBy = "text"))
        check("bob's change arrives at alice", texts(rows) == listOf("buy bread", "buy milk", "call mum"), rows)

        // 4. A conflict, resolved by the Kotlin handler.
        val bobMilk = bobTodo.get(milkId)!!
        bobTodo.update(bobMilk.replace("\"buy milk\"", "\"buy oat milk\""))
        check("bob's edit is pushed", bob.push().succeeded)
        val aliceMilk = todo.get(milkId)!!
        todo.update(aliceMilk.replace(Regex("\"complete\"\\s*:\\s*false"), "\"complete\":true"))
        pushed = alice.push()
        check("the Kotlin resolver is asked once", resolver.conflicts.size == 1, resolver.conflicts)
        resolver.conflicts.firstOrNull()?.let { conflict ->
            check("the conflict carries both copies",
                conflict.status.toInt() in listOf(409, 412) && conflict.kind == OpKind.UPDATE &&
                    jsonString(conflict.serverItem ?: "", "text") == "buy oat milk", conflict)
        }
        check("the merged push completes", pushed.succeeded, pushed)
        bobTodo.pull("all", QuerySpec())
        val merged = bobTodo.get(milkId) ?: ""
        check("both edits survive the merge",
            jsonString(merged, "text") == "buy oat milk" && jsonBool(merged, "complete") == true, merged)

        // 5. A live query follows a pull.
        val live = RowsInbox()
        val liveSubscription = todo.liveQuery(QuerySpec(filter = "complete eq false"), live)
        val first = live.until { !it.startsWith("error") }
        check("the live query's first result comes at once",
            first != null && texts(first) == listOf("buy bread", "call mum"), first)
        bobTodo.insert(todoJson("water plants", false))
        bob.push()
        todo.pull("all", QuerySpec())
        check("the live-query listener fires after the pull", live.until { "water plants" in texts(it) } != null)

        // 6. Sign out.
        alice.clearAll()
        check("clear_all empties the tables", todo.count(QuerySpec()) == 0UL)
        check("the live query sees the empty table", live.until { it == "[]" } != null)
        liveSubscription.cancel()
        statusSubscription.cancel()
    } finally {
        server.destroy()
        server.waitFor()
    }
}

fun main() {
    val work = Files.createTempDirectory("tidesync-kotlin").toFile()
    try {
        runBlocking { tutorial(work) }
    } catch (e: Throwable) {
        e.printStackTrace()
        check("the tutorial ran to the end", false)
    } finally {
        work.deleteRecursively()
    }
    println("$passed passed, $failed failed")
    exitProcess(if (failed == 0) 0 else 1)
}
