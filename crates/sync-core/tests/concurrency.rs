//! Several clients (tasks, each with its own store) editing the same tables of
//! one mock server at the same time, under latency and random faults, for a
//! bounded number of rounds; then faults stop, everyone pushes, everyone pulls,
//! and every client holds exactly the server's live rows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tidesync_core::{ClientWins, LocalStore, MemoryStore, Query, SyncContext};
use tidesync_transport_mock::{Fault, MockServer};

const CLIENTS: usize = 4;
const ROUNDS: usize = 8;
const SHARED: usize = 4;

fn client(server: &MockServer) -> SyncContext {
    let store = MemoryStore::new();
    store.define_table(&todo_def()).unwrap();
    store.define_table(&tag_def()).unwrap();
    Fixture::client_on(server, &store, Some(Arc::new(ClientWins)))
}

/// One client's rounds: random inserts, updates and deletes of its own rows,
/// updates of shared rows everyone edits, tags; a push and a pull per round.
/// Failures under faults are expected and ignored here; only the end counts.
async fn edit(client: SyncContext, me: usize) -> usize {
    let mut rng = StdRng::seed_from_u64(me as u64);
    let todo = client.table::<Value>(TODO);
    let tags = client.table::<Value>(TAGS);
    let mut own = 0;
    let mut refused = 0;
    for round in 0..ROUNDS {
        for _ in 0..rng.random_range(1..5) {
            let outcome = match rng.random_range(0..5) {
                0 | 1 => {
                    own += 1;
                    let id = format!("c{me}-{own}");
                    todo.insert(&json!({"id": id, "text": format!("{me}/{round}"), "complete": false}))
                        .await
                        .map(|_| ())
                }
                2 => {
                    let id = format!("s{}", rng.random_range(0..SHARED));
                    todo.update(&json!({"id": id, "text": format!("{me}/{round}")}))
                        .await
                        .map(|_| ())
                }
                3 if own > 0 => {
                    let id = format!("c{me}-{}", rng.random_range(1..=own));
                    todo.delete_id(&id).await
                }
                _ => tags
                    .insert(&json!({"id": format!("t{me}-{round}-{}", rng.random::<u32>()), "name": "x"}))
                    .await
                    .map(|_| ()),
            };
            refused += usize::from(outcome.is_err());
        }
        let _ = client.push().await.unwrap();
        let _ = todo.pull("all", Query::all()).await;
        let _ = tags.pull("all", Query::all()).await;
    }
    refused
}

fn live_rows(server: &MockServer, table: &str) -> BTreeMap<String, Value> {
    server
        .items(table)
        .into_iter()
        .filter(|r| r["deleted"] != json!(true))
        .map(|r| (r["id"].as_str().unwrap().to_owned(), Value::Object(r)))
        .collect()
}

fn local_rows(client: &SyncContext, table: &str) -> BTreeMap<String, Value> {
    client
        .query(table, &Query::all())
        .unwrap()
        .items
        .into_iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), Value::Object(r)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_editing_the_same_tables_concurrently_converge() {
    let server = MockServer::with_seed(7);
    server.add_table(TODO);
    server.add_table(TAGS);
    for n in 0..SHARED {
        server.server_insert(
            TODO,
            obj(json!({"id": format!("s{n}"), "text": "shared", "complete": false})),
        );
    }
    let clients: Vec<SyncContext> = (0..CLIENTS).map(|_| client(&server)).collect();
    for c in &clients {
        c.table::<Value>(TODO)
            .pull("all", Query::all())
            .await
            .unwrap();
    }
    server.set_latency(Duration::from_millis(1));
    server.set_random_faults(
        0.1,
        vec![
            Fault::Network,
            Fault::CommitThenLoseResponse,
            Fault::Status(503),
        ],
    );

    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(me, c)| tokio::spawn(edit(c.clone(), me)))
        .collect();
    for task in tasks {
        task.await.unwrap();
    }

    // Faults stop. Everyone pushes (concurrently) until clean, then pulls.
    server.clear_faults();
    let pushes: Vec<_> = clients
        .iter()
        .cloned()
        .map(|c| {
            tokio::spawn(async move {
                for _ in 0..5 {
                    if c.push().await.unwrap().is_success() {
                        return true;
                    }
                }
                false
            })
        })
        .collect();
    for push in pushes {
        assert!(push.await.unwrap(), "a client could not push its queue");
    }
    for c in &clients {
        assert_eq!(c.pending_operations().unwrap(), 0);
        assert!(c.operation_errors().unwrap().is_empty());
    }
    let pulls: Vec<_> = clients
        .iter()
        .cloned()
        .map(|c| {
            tokio::spawn(async move {
                c.table::<Value>(TODO)
                    .pull("all", Query::all())
                    .await
                    .unwrap();
                c.table::<Value>(TAGS)
                    .pull("all", Query::all())
                    .await
                    .unwrap();
            })
        })
        .collect();
    for pull in pulls {
        pull.await.unwrap();
    }
    for table in [TODO, TAGS] {
        let server_rows = live_rows(&server, table);
        assert!(server_rows.len() > SHARED, "too little happened in {table}");
        for (n, c) in clients.iter().enumerate() {
            let local = local_rows(c, table);
            assert_eq!(
                local.keys().collect::<Vec<_>>(),
                server_rows.keys().collect::<Vec<_>>(),
                "client {n}, {table}"
            );
            for (id, row) in &local {
                for field in ["version", "text", "name"] {
                    assert_eq!(
                        row.get(field),
                        server_rows[id].get(field),
                        "client {n} {table}/{id}.{field}"
                    );
                }
            }
        }
    }
}
