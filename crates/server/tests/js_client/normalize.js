// Turning what the client returned into comparable answers, and small checks.
'use strict';

const assert = require('assert');

// Values that legitimately differ between two servers: their kind is compared, not the value.
const VOLATILE = new Set(['createdAt', 'updatedAt', 'version']);

/** What the client saw, with volatile values replaced by `<kind>` and dates as `date:ISO`. */
function norm(value, key) {
    if (value === undefined) {
        return null;
    }
    if (key !== undefined && VOLATILE.has(key) && value !== null) {
        return '<' + kind(value) + '>';
    }
    if (value instanceof Date) {
        return isNaN(value.getTime()) ? 'date:invalid' : 'date:' + value.toISOString();
    }
    if (Array.isArray(value)) {
        return value.map((item) => norm(item));
    }
    if (value !== null && typeof value === 'object') {
        const out = {};
        for (const name of Object.keys(value).sort()) {
            out[name] = norm(value[name], name);
        }
        return out;
    }
    return value;
}

/** The kind of a value: `string`, `number`, `boolean`, `date`, `null`, `array`, `object`. */
function kind(value) {
    if (value === null || value === undefined) {
        return 'null';
    }
    if (value instanceof Date) {
        return 'date';
    }
    if (Array.isArray(value)) {
        return 'array';
    }
    return typeof value;
}

/**
 * A thrown error as an answer: what the client acts on. That is the HTTP status, and for
 * 412 the server's item (`serverInstance`); the message the client builds from the body is
 * for people (servers word it differently; it is kept under `_message`, see `attempt`).
 */
function describeError(error) {
    if (error && error.request) {
        const described = { status: error.request.status };
        if (error.serverInstance !== undefined) {
            described.serverInstance = norm(error.serverInstance);
        }
        return described;
    }
    return { message: String(error && error.message || error) };
}

/**
 * Runs `action`; its result as `{ result: map(result) }`, or the error it threw as
 * `{ error, _message }` (keys starting with `_` are for people: answers are compared
 * without them, since servers word their messages differently).
 */
async function attempt(action, map = norm) {
    try {
        return { result: map(await action()) };
    } catch (error) {
        return { error: describeError(error), _message: errorMessage(error) };
    }
}

function errorMessage(error) {
    if (error && error.request) {
        return (error.request.responseText || '').slice(0, 300);
    }
    return String(error && error.message || error).slice(0, 300);
}

/** `null` when `actual` deep-equals `expected`, else a message showing both. */
function differs(actual, expected, what) {
    try {
        assert.deepStrictEqual(actual, expected);
        return null;
    } catch (_) {
        return (what ? what + ': ' : '') + 'got ' + brief(actual) + ', expected ' + brief(expected);
    }
}

function brief(value) {
    const text = JSON.stringify(value);
    return text && text.length > 400 ? text.slice(0, 400) + '…' : text;
}

/** `null` if `answer` is an error with `status`, else why not. */
function expectStatus(answer, status) {
    if (!answer.error) {
        return 'expected HTTP ' + status + ', the call succeeded with ' + brief(answer.result);
    }
    if (answer.error.status !== status) {
        return 'expected HTTP ' + status + ', got ' + brief(answer.error) + ' ' + answer._message;
    }
    return null;
}

/** The first non-null of `checks`. */
function first(...checks) {
    return checks.find((check) => check) || null;
}

module.exports = { norm, kind, describeError, attempt, differs, brief, expectStatus, first };
