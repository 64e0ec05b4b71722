// The harness's own check: the official JS client (through the harness's shims) inserts an
// item into the server at argv[2] and reads it back, online and through its offline store.
// Prints one JSON line per step.
'use strict';

const peers = require('tidesync-peers/js-client');

async function main() {
    const client = peers.connect(process.argv[2]);
    const table = client.getTable('TodoItem');
    const inserted = await table.insert({ id: 'harness-1', text: 'from node', complete: false });
    report('insert', { id: inserted.id, text: inserted.text, hasVersion: typeof inserted.version === 'string' });
    const read = await table.where({ complete: false }).read();
    report('read', { texts: read.map((item) => item.text) });

    const store = peers.openStore('offline.db');
    await store.defineTable({
        name: 'TodoItem',
        columnDefinitions: { id: 'string', text: 'string', complete: 'boolean', version: 'string' },
    });
    const context = client.getSyncContext();
    await context.initialize(store);
    await client.getSyncTable('TodoItem').insert({ id: 'harness-2', text: 'offline', complete: true });
    const conflicts = await context.push();
    report('push', { conflicts: conflicts.length });
    const online = await table.lookup('harness-2');
    report('lookup', { text: online.text, complete: online.complete });
}

function report(step, value) {
    process.stdout.write(JSON.stringify({ step, value }) + '\n');
}

main().then(() => process.exit(0), (error) => {
    process.stderr.write('roundtrip failed: ' + (error && error.stack || error) + '\n');
    process.exit(1);
});
