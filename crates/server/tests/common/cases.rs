//! The bad-input cases, as data: the in-process tests (`bad_input.rs`) and the hostile suite
//! (`hostile.rs`, over HTTP on both stores) send the same ones. The table is `TodoItem` with
//! the columns `text` (string), `complete` (bool) and `n` (number), as [`seed_row`] makes it.

use serde_json::{Value, json};

/// A row that gives the table its columns; the bodies below are judged against them.
pub fn seed_row() -> Value {
    json!({"id": "ok", "text": "t", "complete": false, "n": 1})
}

/// v2 `POST` bodies that answer 400 and write nothing: `(body, what is wrong)`.
pub const BAD_BODIES: &[(&str, &str)] = &[
    ("{\"id\":", "malformed"),
    ("[1,2]", "array"),
    ("\"text\"", "string"),
    ("", "empty"),
    ("{\"id\":\"a/b\"}", "slash in id"),
    ("{\"id\":\"..\"}", "dot id"),
    ("{\"id\":42}", "numeric id"),
    (
        "{\"id\":\"x\",\"complete\":\"yes\"}",
        "wrong type for a learned column",
    ),
    ("{\"id\":\"x\",\"a-b\":1}", "bad property name"),
    (
        "{\"id\":\"x\",\"updatedAt\":\"2020-01-01T00:00:00Z\"}",
        "reserved",
    ),
    (
        "{\"id\":\"x\",\"Text\":\"case clash\"}",
        "case clash with a column",
    ),
];

/// Query strings (spaces not yet escaped) that answer 400 in both protocol versions.
pub fn bad_queries() -> Vec<String> {
    let deep = format!("{}true{}", "(".repeat(200), ")".repeat(200));
    let long = format!("text eq '{}'", "x".repeat(20_000));
    let mut queries: Vec<String> = [
        "$top=-1",
        "$top=abc",
        "$skip=-5",
        "$skip=1.5",
        "$filter=text eq 1",
        "$filter=n eq 'x'",
        "$filter=text",
        "$filter=startswith(n,'a')",
        "$filter=createdAt gt 'not a date'",
        "$filter=text eq 'unclosed",
        "$orderby=nosuchcolumn",
        "$orderby=text sideways",
        "$select=id,nosuchcolumn",
        "$count=maybe",
    ]
    .iter()
    .map(|q| (*q).to_owned())
    .collect();
    queries.push(format!("$filter={deep}"));
    queries.push(format!("$filter={long}"));
    queries
}

/// Filters that look dangerous but are no server error (division by zero, huge numbers, and
/// what the filter fuzzer found answering 500 once: an empty `in` list, a string meeting a
/// date in `in`, arithmetic on a bare `null`).
pub const ODD_FILTERS: &[&str] = &[
    "(1 div 0) eq 1",
    "(n mod 0) eq 1",
    "n gt 99999999999999999999",
    "0 in ()",
    "'' in (datetimeoffset'2026-01-01T00:00:00Z')",
    "-null eq -0",
    "(null add null) eq 1",
];

/// `s` with spaces escaped for a URL.
pub fn escaped(s: &str) -> String {
    s.replace(' ', "%20")
}
