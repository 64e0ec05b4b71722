// Write cases through the official client's online table API: inserts (ids the client lets
// through: none, a string, null, "", 0; duplicates; every value kind; nested values),
// lookups, updates and deletes with and without versions, conflicts (412 with the server's
// item), refresh and includeDeleted. Every case works on its own items of `TodoItem`;
// nested values go to `NestedItem`, so that a server that wrongly stores them (and learns a
// column from them) does not change the answers of the other cases.
'use strict';

const { norm, attempt, differs, brief, first, expectStatus } = require('./normalize');

const TABLE = 'TodoItem';
const NESTED_TABLE = 'NestedItem';
const SYSTEM = ['createdAt', 'deleted', 'id', 'updatedAt', 'version'];

function table(context) {
    return context.client.getTable(TABLE);
}

/** A case whose answer is `run`'s and whose check is `check`. */
function write(name, run, check) {
    return { name: 'write/' + name, run, check };
}

/** `null` when `item` is a server copy (system properties of the right kinds) with `values`. */
function serverCopy(item, values) {
    if (!item || typeof item !== 'object') {
        return 'not an item: ' + brief(item);
    }
    // Timestamps are Dates where the client parses them (table reads and writes) and ISO
    // strings where it does not (a push conflict's server record).
    const kinds = { createdAt: ['<date>', '<string>'], updatedAt: ['<date>', '<string>'], version: ['<string>'], deleted: [false] };
    for (const [key, allowed] of Object.entries(kinds)) {
        if (!allowed.includes(item[key])) {
            return 'system property ' + key + ' is ' + brief(item[key]) + ', expected one of ' + brief(allowed);
        }
    }
    for (const [key, value] of Object.entries(values)) {
        const problem = differs(item[key], norm(value), key);
        if (problem) {
            return problem;
        }
    }
    return null;
}

/** The item with a generated id: checks the id is a non-empty string, then hides its value. */
function generatedId(item) {
    if (item && typeof item.id === 'string' && item.id.trim() !== '') {
        return Object.assign({}, item, { id: '<generated id>' });
    }
    return item;
}

function insertGenerated(name, id) {
    return write(name,
        (context) => attempt(async () => {
            const body = { text: name, complete: false };
            if (id !== undefined) {
                body.id = id;
            }
            return generatedId(await table(context).insert(body));
        }),
        (answer) => answer.error
            ? 'the insert failed: ' + brief(answer.error) + ' ' + answer._message
            : first(differs(answer.result.id, '<generated id>', 'id'), serverCopy(answer.result, { text: name, complete: false })));
}

function insertRefused(name, value) {
    return write(name,
        (context) => attempt(async () => {
            const nested = context.client.getTable(NESTED_TABLE);
            const outcome = await attempt(() => nested.insert({ id: 'w-' + name, text: name, nested: value }));
            const stored = await attempt(() => nested.lookup('w-' + name));
            return { insert: outcome, stored: stored.error ? stored.error.status : 'stored' };
        }, (x) => x),
        (answer) => first(
            expectStatus(answer.result.insert, 400),
            /nested/.test(answer.result.insert._message || '') ? null : 'the error does not name the property: ' + answer.result.insert._message,
            answer.result.stored === 404 ? null : 'the refused item was stored: ' + brief(answer.result.stored),
        ));
}

const cases = [
    insertGenerated('insert-without-id'),
    insertGenerated('insert-id-null', null),
    insertGenerated('insert-id-empty-string', ''),
    insertGenerated('insert-id-zero', 0),
    write('insert-client-id',
        (context) => attempt(() => table(context).insert({ id: 'w-client-id', text: 'mine', complete: true })),
        (answer) => answer.error ? 'the insert failed: ' + brief(answer.error) : serverCopy(answer.result, { id: 'w-client-id', text: 'mine', complete: true })),
    write('insert-every-value-kind',
        (context) => attempt(async () => {
            const inserted = await table(context).insert({
                id: 'w-kinds', text: 'kinds', complete: true, count: 42, ratio: -0.25,
                due: new Date(Date.UTC(2024, 1, 29, 12, 0, 0, 5)), note: null, unicode: 'Grüße 🌊',
            });
            const looked = await table(context).lookup('w-kinds');
            return { inserted, looked };
        }),
        (answer) => {
            if (answer.error) {
                return 'failed: ' + brief(answer.error) + ' ' + answer._message;
            }
            const values = { text: 'kinds', complete: true, count: 42, ratio: -0.25, due: new Date(Date.UTC(2024, 1, 29, 12, 0, 0, 5)), unicode: 'Grüße 🌊' };
            // `note` is null the first time the column is seen: neither server learns a column
            // from a null, so it may be absent.
            return first(serverCopy(answer.result.inserted, values), serverCopy(answer.result.looked, values),
                [null, undefined].includes(answer.result.looked.note) ? null : 'note is ' + brief(answer.result.looked.note));
        }),
    write('insert-duplicate-id-is-409',
        (context) => attempt(async () => {
            await table(context).insert({ id: 'w-duplicate', text: 'first', complete: false });
            return table(context).insert({ id: 'w-duplicate', text: 'second', complete: false });
        }),
        (answer) => expectStatus(answer, 409)),
    insertRefused('insert-nested-object-is-400', { a: 1 }),
    insertRefused('insert-nested-array-is-400', ['a', 'b']),
    write('lookup',
        (context) => attempt(async () => {
            await table(context).insert({ id: 'w-lookup', text: 'look', complete: false });
            return table(context).lookup('w-lookup');
        }),
        (answer) => answer.error ? 'failed: ' + brief(answer.error) : serverCopy(answer.result, { id: 'w-lookup', text: 'look' })),
    write('update-without-version',
        (context) => attempt(async () => {
            const inserted = await table(context).insert({ id: 'w-update', text: 'before', complete: false });
            const updated = await table(context).update({ id: 'w-update', text: 'after' });
            return { updated: norm(updated), versionChanged: updated.version !== inserted.version };
        }, (x) => x),
        (answer) => answer.error ? 'failed: ' + brief(answer.error) + ' ' + answer._message
            : first(serverCopy(answer.result.updated, { id: 'w-update', text: 'after', complete: false }),
                answer.result.versionChanged ? null : 'the version did not change')),
    write('update-with-current-version',
        (context) => attempt(async () => {
            const inserted = await table(context).insert({ id: 'w-update-version', text: 'before', complete: false });
            return table(context).update({ id: 'w-update-version', version: inserted.version, text: 'after', complete: true });
        }),
        (answer) => answer.error ? 'failed: ' + brief(answer.error) + ' ' + answer._message
            : serverCopy(answer.result, { id: 'w-update-version', text: 'after', complete: true })),
    write('update-to-null',
        (context) => attempt(async () => {
            await table(context).insert({ id: 'w-null', text: 'something', complete: false });
            await table(context).update({ id: 'w-null', text: null });
            return table(context).lookup('w-null');
        }),
        (answer) => answer.error ? 'failed: ' + brief(answer.error) + ' ' + answer._message
            : answer.result.text === null ? null : 'text is ' + brief(answer.result.text)),
    write('update-stale-version-is-412-with-server-item',
        (context) => attempt(async () => {
            const inserted = await table(context).insert({ id: 'w-conflict', text: 'base', complete: false });
            await table(context).update({ id: 'w-conflict', text: 'theirs' });
            return table(context).update({ id: 'w-conflict', version: inserted.version, text: 'mine' });
        }),
        (answer) => first(expectStatus(answer, 412),
            serverCopy(answer.error && answer.error.serverInstance, { id: 'w-conflict', text: 'theirs', complete: false }))),
    write('update-missing-is-404',
        (context) => attempt(() => table(context).update({ id: 'w-never-inserted', text: 'x' })),
        (answer) => expectStatus(answer, 404)),
    write('update-numeric-id-is-404',
        (context) => attempt(() => table(context).update({ id: 123456, text: 'x' })),
        (answer) => expectStatus(answer, 404)),
    write('refresh',
        (context) => attempt(async () => {
            const inserted = await table(context).insert({ id: 'w-refresh', text: 'old', complete: false });
            await table(context).update({ id: 'w-refresh', text: 'new' });
            return table(context).refresh(inserted);
        }),
        (answer) => answer.error ? 'failed: ' + brief(answer.error) : serverCopy(answer.result, { id: 'w-refresh', text: 'new' })),
    write('delete-then-lookup-is-404-and-include-deleted-shows-it',
        (context) => attempt(async () => {
            const inserted = await table(context).insert({ id: 'w-delete', text: 'doomed', complete: false });
            await table(context).del({ id: 'w-delete', version: inserted.version });
            const after = await attempt(() => table(context).lookup('w-delete'));
            const live = await table(context).where({ text: 'doomed' }).read();
            const all = await table(context).where({ text: 'doomed' }).includeDeleted().read();
            return { after, live: norm(Array.from(live)), all: norm(Array.from(all)) };
        }, (x) => x),
        (answer) => answer.error ? 'failed: ' + brief(answer.error) + ' ' + answer._message : first(
            expectStatus(answer.result.after, 404),
            differs(answer.result.live, [], 'a live read'),
            differs(answer.result.all.map((item) => [item.id, item.deleted]), [['w-delete', true]], 'includeDeleted'))),
    write('delete-stale-version-is-412-with-server-item',
        (context) => attempt(async () => {
            const inserted = await table(context).insert({ id: 'w-delete-conflict', text: 'base', complete: false });
            await table(context).update({ id: 'w-delete-conflict', text: 'theirs' });
            return table(context).del({ id: 'w-delete-conflict', version: inserted.version });
        }),
        (answer) => first(expectStatus(answer, 412),
            serverCopy(answer.error && answer.error.serverInstance, { id: 'w-delete-conflict', text: 'theirs' }))),
    write('update-deleted-is-404',
        (context) => attempt(async () => {
            await table(context).insert({ id: 'w-update-deleted', text: 'gone', complete: false });
            await table(context).del({ id: 'w-update-deleted' });
            return table(context).update({ id: 'w-update-deleted', text: 'back?' });
        }),
        (answer) => expectStatus(answer, 404)),
    write('delete-missing-is-404',
        (context) => attempt(() => table(context).del({ id: 'w-never-there' })),
        (answer) => expectStatus(answer, 404)),
    write('new-property-adds-a-column',
        (context) => attempt(async () => {
            await table(context).insert({ id: 'w-grow', text: 'grow', complete: false, priority: 3 });
            return table(context).where(function () { return this.priority === 3; }).select('id', 'priority').read();
        }, (values) => norm(Array.from(values))),
        (answer) => answer.error ? 'failed: ' + brief(answer.error) + ' ' + answer._message
            : differs(answer.result.map((item) => [item.id, item.priority]), [['w-grow', 3]])),
];

module.exports = { cases, serverCopy, SYSTEM };
