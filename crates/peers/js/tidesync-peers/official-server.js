// The official Azure Mobile Apps Node server (npm `azure-mobile-apps`), started by
// crates/peers (`OfficialNodeServer`) for tidesync's tests.
//
// Usage: node official-server.js '<config JSON>'
//   config = { "options": { ...azureMobileApps options... },
//              "tables": [ { "name": "TodoItem", ...table definition... } ] }
//
// The server uses the SQLite data provider on an in-memory database, listens on a free
// loopback port and prints one line `TIDESYNC_PEER_READY {"url": "http://127.0.0.1:PORT"}`
// on stdout once its tables are initialised. It exits when its standard input closes, so it
// never outlives the test process that started it, even one that was killed.
'use strict';

const express = require('express');
const azureMobileApps = require('azure-mobile-apps');

const READY = 'TIDESYNC_PEER_READY ';

function main() {
    const config = JSON.parse(process.argv[2] || '{}');
    const options = Object.assign(
        {
            data: { provider: 'sqlite', filename: ':memory:' },
            homePage: false,
            swagger: false,
            logging: { level: 'warn' },
        },
        config.options || {},
    );
    const app = express();
    const mobile = azureMobileApps(options);
    for (const table of config.tables || []) {
        const definition = Object.assign({}, table);
        delete definition.name;
        mobile.tables.add(table.name, definition);
    }
    app.use(mobile);

    mobile.tables.initialize().then(() => {
        const server = app.listen(0, '127.0.0.1', () => {
            const url = 'http://127.0.0.1:' + server.address().port;
            process.stdout.write(READY + JSON.stringify({ url }) + '\n');
        });
        server.on('error', fail);
    }, fail);

    process.stdin.on('end', () => process.exit(0));
    process.stdin.on('error', () => process.exit(0));
    process.stdin.resume();
}

function fail(error) {
    process.stderr.write('official server failed: ' + (error && error.stack || error) + '\n');
    process.exit(1);
}

try {
    main();
} catch (error) {
    fail(error);
}
