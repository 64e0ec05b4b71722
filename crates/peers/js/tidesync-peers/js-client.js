// The official Azure Mobile Apps JavaScript client (npm `azure-mobile-apps-client` 2.0.1)
// made to run under Node.js, for tidesync's tests.
//
//   const peers = require('tidesync-peers/js-client');
//   const client = peers.connect(url);                 // MobileServiceClient
//   const store = peers.openStore('offline.db');       // MobileServiceSqliteStore
//
// The client targets browsers and Cordova. Under Node it needs three small shims, installed
// when this module is loaded (and nothing else of it is changed):
//
// 1. `XMLHttpRequest`: npm `xhr2`, plus the `withCredentials` property xhr2 lacks. The
//    client's only usable transport (DirectAjaxTransport) feature-detects CORS support by
//    `'withCredentials' in new XMLHttpRequest()`; without it the client refuses to run
//    ("Unsupported browser"). The property is `false`: no cookies are ever sent.
// 2. `window`: the global object (the Cordova store reads `window.sqlitePlugin`).
// 3. `window.sqlitePlugin`: the Cordova SQLite plugin API (`openDatabase`, `transaction`,
//    `executeSql`, `close`) that the client's offline store, MobileServiceSqliteStore, is
//    written against, implemented over npm `websql` (WebSQL on node-sqlite3). The store's
//    own code (its SQL, its serialisation) runs unchanged. The store is exported by the
//    client's Cordova build only, so it is required here by its path in the package.
//
// `localStorage` is absent under Node; the client then keeps its installation id in memory
// (its own fallback).
'use strict';

const Xhr2 = require('xhr2');
const openDatabase = require('websql');

class XMLHttpRequest extends Xhr2 {
    constructor() {
        super();
        this.withCredentials = false;
    }
}
global.XMLHttpRequest = XMLHttpRequest;

if (typeof global.window === 'undefined') {
    global.window = global;
}

global.window.sqlitePlugin = {
    // Cordova: openDatabase({ name, location }, success, error) -> database handle.
    openDatabase(options, success, error) {
        let database;
        try {
            database = openDatabase(options.name, '1.0', options.name, 1);
        } catch (e) {
            setImmediate(() => error && error(e));
            return undefined;
        }
        const handle = {
            transaction(body, onError, onSuccess) {
                database.transaction(body, onError, onSuccess);
            },
            readTransaction(body, onError, onSuccess) {
                database.readTransaction(body, onError, onSuccess);
            },
            // Cordova: one statement in its own transaction; success gets the result set.
            executeSql(sql, params, onSuccess, onError) {
                let result;
                database.transaction(
                    (tx) => tx.executeSql(sql, params, (_tx, rows) => { result = rows; }),
                    (e) => onError && onError(e),
                    () => onSuccess && onSuccess(result),
                );
            },
            close(onSuccess) {
                if (onSuccess) {
                    setImmediate(onSuccess);
                }
            },
        };
        setImmediate(() => success && success(handle));
        return handle;
    },
};

const AzureMobileApps = require('azure-mobile-apps-client');
const MobileServiceSqliteStore = require(
    'azure-mobile-apps-client/sdk/src/Platform/cordova/MobileServiceSqliteStore');

module.exports = {
    MobileServiceClient: AzureMobileApps.MobileServiceClient,
    Query: AzureMobileApps.Query,
    MobileServiceSqliteStore,
    /** A client of the Mobile Apps backend at `url`. */
    connect(url) {
        return new AzureMobileApps.MobileServiceClient(url);
    },
    /** The client's SQLite offline store in the file `name` (relative to the working directory). */
    openStore(name) {
        return new MobileServiceSqliteStore(name);
    },
};
