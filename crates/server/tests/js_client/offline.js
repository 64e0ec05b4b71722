// Offline sync through the official client's sync context and its SQLite offline store
// (MobileServiceSqliteStore, the Cordova store, running over tidesync-peers' sqlitePlugin
// shim): local writes pushed, incremental pulls by query id (paged), conflicts on push
// resolved either way, pulls that keep pending local edits, purge. Each case has its own
// client, its own store file and its own items of `OfflineItem`.
'use strict';

const { norm, attempt, differs, brief, first } = require('./normalize');
const { serverCopy } = require('./writes');

const TABLE = 'OfflineItem';
const COLUMNS = { id: 'string', text: 'string', complete: 'boolean', rank: 'integer', due: 'date', version: 'string' };

/** A fresh client with an initialised sync context over its own store file. */
async function offlineClient(context, name) {
    const client = context.peers.connect(context.url);
    const store = context.peers.openStore('offline-' + name + '.db');
    await store.defineTable({ name: TABLE, columnDefinitions: COLUMNS });
    const sync = client.getSyncContext();
    await sync.initialize(store);
    return { client, sync, local: client.getSyncTable(TABLE), online: client.getTable(TABLE) };
}

/** A query for the items with these ids (an `in` list: an or-chain of `id eq`). */
function withIds(table, ids) {
    return table.where(function (list) { return this.id in list; }, ids);
}

/** The local items whose id starts with `prefix`, sorted by id, normalised. */
async function localItems(local, prefix) {
    const items = await local.read();
    return sortById(norm(Array.from(items).filter((item) => item.id.startsWith(prefix))));
}

async function serverItems(online, ids) {
    return norm(Array.from(await withIds(online, ids).orderBy('id').read()));
}

function sortById(items) {
    return items.slice().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function textsById(items) {
    return items.map((item) => [item.id, item.text]);
}

function offline(name, run, check) {
    return {
        name: 'offline/' + name,
        run: (context) => attempt(() => run(context, name), (x) => x),
        check: (answer) => (answer.error ? 'failed: ' + brief(answer.error) + ' ' + answer._message : check(answer.result)),
    };
}

const cases = [
    offline('push-local-inserts-updates-deletes', async (context, name) => {
        const { sync, local, online } = await offlineClient(context, name);
        await online.insert({ id: 'o-push-remote', text: 'on the server', complete: false, rank: 0 });
        await local.pull(withIds(local, ['o-push-remote']), null);
        await local.insert({ id: 'o-push-a', text: 'a', complete: false, rank: 1, due: new Date(Date.UTC(2025, 0, 2)) });
        await local.insert({ id: 'o-push-b', text: 'b', complete: false, rank: 2 });
        await local.update({ id: 'o-push-b', text: 'b edited', complete: true, rank: 2 });
        await local.insert({ id: 'o-push-c', text: 'never sent', complete: false, rank: 3 });
        await local.del({ id: 'o-push-c' });
        await local.del({ id: 'o-push-remote' });
        const conflicts = await sync.push();
        const ids = ['o-push-a', 'o-push-b', 'o-push-c', 'o-push-remote'];
        return { conflicts: conflicts.length, server: await serverItems(online, ids), local: await localItems(local, 'o-push-') };
    }, (result) => first(
        differs(result.conflicts, 0, 'conflicts'),
        differs(textsById(result.server), [['o-push-a', 'a'], ['o-push-b', 'b edited']], 'server'),
        serverCopy(result.server[0], { rank: 1, complete: false, due: new Date(Date.UTC(2025, 0, 2)) }),
        serverCopy(result.server[1], { rank: 2, complete: true }),
        differs(textsById(result.local), [['o-push-a', 'a'], ['o-push-b', 'b edited']], 'local'),
    )),

    offline('pull-incremental-paged', async (context, name) => {
        const { local, online } = await offlineClient(context, name);
        for (let i = 0; i < 12; i++) {
            await online.insert({ id: 'o-pull-' + String(i).padStart(2, '0'), text: 'item ' + i, complete: i % 2 === 0, rank: i });
        }
        const ids = Array.from({ length: 13 }, (_, i) => 'o-pull-' + String(i).padStart(2, '0'));
        const mine = () => withIds(local, ids);
        await local.pull(mine(), 'pull-incremental', { pageSize: 5 });
        const initial = await localItems(local, 'o-pull-');
        await online.update({ id: 'o-pull-03', text: 'item 3 changed' });
        await online.del({ id: 'o-pull-04' });
        await online.insert({ id: 'o-pull-12', text: 'item 12', complete: true, rank: 12 });
        await local.pull(mine(), 'pull-incremental', { pageSize: 5 });
        return { initial, second: await localItems(local, 'o-pull-') };
    }, (result) => {
        const ids = (n) => Array.from({ length: n }, (_, i) => 'o-pull-' + String(i).padStart(2, '0'));
        const second = ids(13).filter((id) => id !== 'o-pull-04');
        return first(
            differs(result.initial.map((item) => item.id), ids(12), 'first pull'),
            differs(result.initial[5], { id: 'o-pull-05', text: 'item 5', complete: false, rank: 5, due: null, version: '<string>' }, 'a pulled row'),
            differs(result.second.map((item) => item.id), second, 'second pull'),
            differs(result.second.find((item) => item.id === 'o-pull-03').text, 'item 3 changed', 'the changed row'),
        );
    }),

    offline('pull-with-filter', async (context, name) => {
        const { local, online } = await offlineClient(context, name);
        for (const [id, complete] of [['o-filter-1', false], ['o-filter-2', true], ['o-filter-3', false]]) {
            await online.insert({ id, text: id, complete, rank: 1 });
        }
        await local.pull(withIds(local, ['o-filter-1', 'o-filter-2', 'o-filter-3']).where({ complete: false }), 'pull-filter');
        return { local: await localItems(local, 'o-filter-') };
    }, (result) => differs(result.local.map((item) => item.id), ['o-filter-1', 'o-filter-3'])),

    offline('push-conflict-server-wins', async (context, name) => {
        const { sync, local, online } = await offlineClient(context, name);
        await online.insert({ id: 'o-server-wins', text: 'base', complete: false, rank: 1 });
        await local.pull(withIds(local, ['o-server-wins']), null);
        await online.update({ id: 'o-server-wins', text: 'theirs' });
        const before = await local.lookup('o-server-wins');
        await local.update(Object.assign(before, { text: 'mine' }));
        const conflicts = await sync.push();
        const conflict = conflicts[0];
        const seen = conflict && {
            status: conflict.getError().request.status,
            isConflict: conflict.isConflict(),
            action: conflict.getAction(),
            server: norm(conflict.getServerRecord()),
        };
        if (conflict) {
            await conflict.cancelAndUpdate(conflict.getServerRecord());
        }
        const again = await sync.push();
        return { conflicts: conflicts.length, seen, again: again.length, local: await localItems(local, 'o-server-wins'), server: await serverItems(online, ['o-server-wins']) };
    }, (result) => first(
        differs(result.conflicts, 1, 'conflicts'),
        differs([result.seen.status, result.seen.isConflict, result.seen.action], [412, true, 'update'], 'the conflict'),
        serverCopy(result.seen.server, { id: 'o-server-wins', text: 'theirs' }),
        differs(result.again, 0, 'conflicts after resolving'),
        differs(textsById(result.local), [['o-server-wins', 'theirs']], 'local'),
        differs(textsById(result.server), [['o-server-wins', 'theirs']], 'server'),
    )),

    offline('push-conflict-client-wins', async (context, name) => {
        const { sync, local, online } = await offlineClient(context, name);
        await online.insert({ id: 'o-client-wins', text: 'base', complete: false, rank: 1 });
        await local.pull(withIds(local, ['o-client-wins']), null);
        await online.update({ id: 'o-client-wins', text: 'theirs', rank: 7 });
        const before = await local.lookup('o-client-wins');
        await local.update(Object.assign(before, { text: 'mine' }));
        sync.pushHandler = {
            onConflict: (pushError) => {
                const client = pushError.getClientRecord();
                client.version = pushError.getServerRecord().version;
                return pushError.update(client);
            },
        };
        const conflicts = await sync.push();
        const again = await sync.push();
        return { conflicts: conflicts.length, again: again.length, server: await serverItems(online, ['o-client-wins']) };
    }, (result) => first(
        differs(result.conflicts, 0, 'unhandled conflicts'),
        differs(result.again, 0, 'conflicts of the second push'),
        differs(textsById(result.server), [['o-client-wins', 'mine']], 'server'),
        differs(result.server[0].rank, 1, 'the client copy is sent whole'),
    )),

    offline('pull-keeps-pending-local-edits', async (context, name) => {
        const { local, online } = await offlineClient(context, name);
        await online.insert({ id: 'o-pending', text: 'base', complete: false, rank: 1 });
        await local.pull(withIds(local, ['o-pending']), 'pending');
        await online.update({ id: 'o-pending', text: 'theirs' });
        await local.update({ id: 'o-pending', text: 'mine', complete: false, rank: 1 });
        await local.pull(withIds(local, ['o-pending']), 'pending');
        return { local: await localItems(local, 'o-pending') };
    }, (result) => differs(textsById(result.local), [['o-pending', 'mine']])),

    offline('purge', async (context, name) => {
        const { local, online } = await offlineClient(context, name);
        await online.insert({ id: 'o-purge-1', text: 'one', complete: false, rank: 1 });
        await online.insert({ id: 'o-purge-2', text: 'two', complete: false, rank: 2 });
        const mine = () => withIds(local, ['o-purge-1', 'o-purge-2']);
        await local.pull(mine(), 'purge');
        const pulled = await localItems(local, 'o-purge-');
        await local.purge(mine());
        const purged = await localItems(local, 'o-purge-');
        await local.pull(mine(), 'purge');
        return { pulled: pulled.length, purged: purged.length, again: (await localItems(local, 'o-purge-')).length };
    }, (result) => differs(result, { pulled: 2, purged: 0, again: 2 })),
];

module.exports = { cases, TABLE };
