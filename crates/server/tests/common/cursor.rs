//! The concurrent writer/reader case of the cursor invariant, shared by every store's tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use serde_json::json;

use super::Client;

/// Runs writers and one incremental reader against `c`; checks the reader ends with exactly
/// the final state of every row. The reader pages with the `(updatedAt, id)` keyset cursor
/// tidesync clients use. Writes of one millisecond share their `updatedAt`, and each writer
/// writes its ids in descending order, so a row committed after a row with a larger id in
/// the same millisecond is the common case: a server that let a reader pass `(t, id)` before
/// every row stamped `t` had committed would lose rows here.
pub async fn writers_and_reader(c: Client) {
    let n_writers = 4;
    let n_rows = 40;
    let mut writers = Vec::new();
    for w in 0..n_writers {
        let c = c.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..n_rows {
                let id = format!("w{w}-{:03}", n_rows - n);
                let r = c
                    .v2(
                        "POST",
                        "/tables/TodoItem",
                        &[],
                        Some(json!({"id": id, "text": "new", "complete": false})),
                    )
                    .await;
                assert_eq!(r.status, 201, "{}", r.text);
                if n % 3 == 0 {
                    let r = c
                        .v2(
                            "PATCH",
                            &format!("/tables/TodoItem/{id}"),
                            &[],
                            Some(json!({"text": "changed"})),
                        )
                        .await;
                    assert_eq!(r.status, 200, "{}", r.text);
                }
                if n % 7 == 0 {
                    let r = c
                        .v2("DELETE", &format!("/tables/TodoItem/{id}"), &[], None)
                        .await;
                    assert_eq!(r.status, 200, "{}", r.text);
                }
            }
        }));
    }
    let reader = {
        let c = c.clone();
        let writers_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = writers_done.clone();
        let task = tokio::spawn(async move {
            let mut cursor = ("1970-01-01T00:00:00.000Z".to_owned(), String::new());
            let mut seen: HashMap<String, serde_json::Value> = HashMap::new();
            loop {
                let done_before = flag.load(std::sync::atomic::Ordering::SeqCst);
                let (t, last_id) = &cursor;
                let filter = format!(
                    "(updatedAt ge datetimeoffset'{t}') and ((updatedAt gt datetimeoffset'{t}') or (id gt '{last_id}'))"
                )
                .replace(' ', "%20");
                let path = format!(
                    "/tables/TodoItem?$filter={filter}&$orderby=updatedAt,id&$top=7&__includeDeleted=true"
                );
                let r = c.v2("GET", &path, &[], None).await;
                assert_eq!(r.status, 200, "{}", r.text);
                let page = r.body.as_array().unwrap().clone();
                for item in &page {
                    let position = (
                        item["updatedAt"].as_str().unwrap().to_owned(),
                        item["id"].as_str().unwrap().to_owned(),
                    );
                    assert!(position > cursor, "rows arrive in (updatedAt, id) order");
                    cursor = position;
                    seen.insert(item["id"].as_str().unwrap().to_owned(), item.clone());
                }
                if page.is_empty() {
                    if done_before {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            }
            seen
        });
        (task, writers_done)
    };
    for writer in writers {
        writer.await.unwrap();
    }
    reader.1.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.0.await.unwrap();
    let all = c
        .v2(
            "GET",
            "/tables/TodoItem?__includeDeleted=true&$top=1000",
            &[],
            None,
        )
        .await;
    let all = all.body.as_array().unwrap();
    assert_eq!(all.len(), n_writers * n_rows);
    assert_eq!(seen.len(), all.len(), "the reader missed rows");
    for item in all {
        let id = item["id"].as_str().unwrap();
        assert_eq!(&seen[id], item, "the reader missed the last change of {id}");
    }
}
