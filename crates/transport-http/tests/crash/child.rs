//! The child: a client that writes, pushes and pulls in a loop until it is killed, logging
//! every write before and after (see `log`).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tidesync_core::{
    ColumnType, LocalStore, OpState, Query, SyncContext, SyncContextBuilder, TableDef,
};
use tidesync_store_redb::{Durability, RedbOptions, RedbStore};
use tidesync_store_sqlite::SqliteStore;
use tidesync_transport_http::{HttpTransport, Protocol, RetryPolicy};

use crate::log::{Log, LogState};
use crate::next_random;

/// The store the client keeps its data in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientStore {
    Sqlite,
    Redb,
    /// redb with `Durability::Eventual`: the child closes and reopens the store before each
    /// push and pull, and logs `D n` after (every write before `n` is then on disk).
    RedbEventual,
}

impl ClientStore {
    pub fn name(self) -> &'static str {
        match self {
            ClientStore::Sqlite => "sqlite",
            ClientStore::Redb => "redb",
            ClientStore::RedbEventual => "redb-eventual",
        }
    }

    pub fn from_name(name: &str) -> Option<ClientStore> {
        [
            ClientStore::Sqlite,
            ClientStore::Redb,
            ClientStore::RedbEventual,
        ]
        .into_iter()
        .find(|store| store.name() == name)
    }
}

pub fn defs() -> [TableDef; 2] {
    [
        TableDef::new("Note").column("text", ColumnType::String),
        TableDef::new("Memo").column("text", ColumnType::String),
    ]
}

pub fn transport(url: &str, protocol: Protocol) -> HttpTransport {
    HttpTransport::builder(url)
        .protocol(protocol)
        .timeout(Duration::from_secs(10))
        .retry(RetryPolicy {
            max_retries: 1,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        })
        .build()
        .unwrap()
}

/// A client on the store file at `path`.
pub fn client(url: &str, store: ClientStore, path: &Path, protocol: Protocol) -> SyncContext {
    let builder = SyncContext::builder();
    let builder: SyncContextBuilder = match store {
        ClientStore::Sqlite => builder.store(defined(SqliteStore::open(path).unwrap())),
        ClientStore::Redb | ClientStore::RedbEventual => {
            let options = RedbOptions {
                durability: if store == ClientStore::Redb {
                    Durability::Immediate
                } else {
                    Durability::Eventual
                },
                ..RedbOptions::default()
            };
            builder.store(defined(RedbStore::open_with(path, options).unwrap()))
        }
    };
    builder
        .transport(transport(url, protocol))
        .page_size(50)
        .build()
        .unwrap()
}

fn defined<S: LocalStore>(store: S) -> S {
    for def in defs() {
        store.define_table(&def).unwrap();
    }
    store
}

/// The loop of one life.
pub async fn client_loop(
    url: &str,
    store: ClientStore,
    path: &Path,
    log_path: &Path,
    mut random: u64,
    life: u64,
    strict: bool,
) {
    let state = LogState::read(log_path, store == ClientStore::RedbEventual);
    let mut window = state.window();
    let mut next = state.next;
    let mut log = Log::open(log_path);
    let protocol = if life % 2 == 0 {
        Protocol::Auto
    } else {
        Protocol::V3
    };
    let mut ctx = client(url, store, path, protocol);
    log.line(&format!("life {life}"));
    loop {
        let notes = ctx.table::<Value>("Note");
        for _ in 0..=next_random(&mut random) % 3 {
            let n = next;
            next += 1;
            let roll = next_random(&mut random) % 100;
            let pick = (next_random(&mut random) as usize) % window.len().max(1);
            // Unless strict, leave rows alone whose op was sent but not acknowledged, so
            // the two variants cover both shapes of history (the strict one folds edits
            // into such ops; see `regressions.rs`, `edit_after_lost_ack_*`).
            let target = window.get(pick).cloned();
            let sent = match &target {
                Some(id) if !strict => ctx
                    .operations()
                    .unwrap()
                    .iter()
                    .any(|op| op.item_id == *id && op.state != OpState::Pending),
                _ => false,
            };
            if roll < 45 || window.is_empty() || sent {
                let id = format!("c{n}");
                log.line(&format!("B {n} insert {id} {n}"));
                let done = notes
                    .insert(&json!({"id": id, "text": n.to_string()}))
                    .await;
                log.line(&format!("{} {n}", if done.is_ok() { "A" } else { "E" }));
                if done.is_ok() {
                    window.push(id);
                    if window.len() > 12 {
                        window.remove(0);
                    }
                }
            } else if roll < 85 {
                let id = target.unwrap();
                let Some(row) = notes.get(&id).await.unwrap() else {
                    // A cut-off insert that never happened (or one a kill undid).
                    window.retain(|w| *w != id);
                    continue;
                };
                let text = format!("{},{n}", row["text"].as_str().unwrap());
                log.line(&format!("B {n} update {id} {text}"));
                let done = notes.update(&json!({"id": id, "text": text})).await;
                log.line(&format!("{} {n}", if done.is_ok() { "A" } else { "E" }));
            } else {
                let id = target.unwrap();
                log.line(&format!("B {n} delete {id} -"));
                let done = notes.delete_id(&id).await;
                log.line(&format!("{} {n}", if done.is_ok() { "A" } else { "E" }));
                if done.is_ok() {
                    window.retain(|w| *w != id);
                }
            }
        }
        drop(notes);
        let push = next_random(&mut random) % 2 == 0;
        let pull = next_random(&mut random) % 3 == 0;
        if store == ClientStore::RedbEventual && (push || pull) {
            // Everything written so far reaches the disk before anything is sent, so the
            // server never holds a write the client could still lose.
            drop(ctx);
            ctx = client(url, store, path, protocol);
            log.line(&format!("D {next}"));
        }
        if push {
            log.line("push");
            let _ = ctx.push().await;
            log.line("synced");
        }
        if pull {
            log.line("pull");
            let _ = ctx.table::<Value>("Note").pull("all", Query::all()).await;
            let _ = ctx.table::<Value>("Memo").pull("all", Query::all()).await;
            log.line("synced");
        }
    }
}
