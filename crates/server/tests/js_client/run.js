// The [compat] suite: drives the official Azure Mobile Apps JavaScript client
// (azure-mobile-apps-client 2.0.1, under Node through tidesync-peers' shims) against the
// server at argv[2], case by case, and prints one JSON line per case:
//
//   {"case": "query/…", "ok": true|false, "why": "…", "answer": <normalised answer>}
//
// then `{"done": <case count>}`. `ok` says whether the answer is the correct one (each
// case states it: for queries, the seed data filtered with the same predicate in
// JavaScript, as the official client's own e2e query tests do); `answer` is what the client
// saw, with volatile values (timestamps, versions, generated ids) reduced to their type,
// so that the answers of two servers can be compared (tests/official_js_client.rs).
//
// TIDESYNC_CASES=<regex> runs only the matching cases (the seed data is loaded anyway).
'use strict';

const peers = require('tidesync-peers/js-client');
const { describeError } = require('./normalize');

const SUITES = [require('./queries'), require('./writes'), require('./offline')];

async function main() {
    const url = process.argv[2];
    if (!url) {
        throw new Error('usage: node run.js <server url>');
    }
    const only = process.env.TIDESYNC_CASES ? new RegExp(process.env.TIDESYNC_CASES) : null;
    const context = { client: peers.connect(url), peers, url };
    let count = 0;
    for (const suite of SUITES) {
        let setupError = null;
        try {
            if (suite.setup) {
                await suite.setup(context);
            }
        } catch (error) {
            setupError = error;
        }
        for (const testCase of suite.cases) {
            if (only && !only.test(testCase.name)) {
                continue;
            }
            count += 1;
            if (setupError) {
                print({ case: testCase.name, ok: false, why: 'setup failed: ' + message(setupError), answer: { setupFailed: describeError(setupError) } });
                continue;
            }
            print(await runCase(testCase, context));
        }
    }
    print({ done: count });
}

async function runCase(testCase, context) {
    let answer;
    try {
        answer = await testCase.run(context);
    } catch (error) {
        return { case: testCase.name, ok: false, why: 'threw: ' + message(error), answer: { threw: describeError(error) } };
    }
    let why = null;
    try {
        why = testCase.check(answer, context);
    } catch (error) {
        why = 'check threw: ' + message(error);
    }
    return { case: testCase.name, ok: !why, why: why || undefined, answer };
}

function message(error) {
    if (error && error.request) {
        return 'HTTP ' + error.request.status + ' ' + (error.request.responseText || '').slice(0, 300);
    }
    return String(error && error.stack || error).slice(0, 800);
}

function print(value) {
    process.stdout.write(JSON.stringify(value) + '\n');
}

main().then(() => process.exit(0), (error) => {
    process.stderr.write('the suite could not run: ' + message(error) + '\n');
    process.exit(1);
});
