//! Change events: local writes, pushes, pulls, purges and the sync lifecycle
//! reach subscribers, so a UI can refresh without polling the store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;
use tidesync_core::{ChangeEvent, OpKind, PushStatus, Query, SyncAction};
use tokio::sync::broadcast::Receiver;

fn drain(rx: &mut Receiver<ChangeEvent>) -> Vec<ChangeEvent> {
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    events
}

#[tokio::test]
async fn local_writes_and_transactions_are_announced_after_they_commit() {
    let f = Fixture::new();
    let mut rx = f.client.subscribe();
    f.todo().insert(&json!({"id": "a"})).await.unwrap();
    f.client
        .transaction(|tx| {
            tx.update(TODO, obj(json!({"id": "a", "text": "x"})))?;
            tx.insert(TAGS, obj(json!({"id": "g"})))?;
            Ok(())
        })
        .unwrap();
    // A refused write announces nothing, nor does a transaction that did not commit, not
    // even for the write it made before failing.
    f.todo().insert(&json!({"id": "a"})).await.unwrap_err();
    f.client
        .transaction(|tx| {
            tx.insert(TODO, obj(json!({"id": "b"})))?;
            tx.insert(TODO, obj(json!({"id": "a"})))?;
            Ok(())
        })
        .unwrap_err();
    assert_eq!(
        f.local(TODO, "b"),
        None,
        "the failed transaction wrote nothing"
    );
    let events = drain(&mut rx);
    let writes: Vec<(Option<&str>, OpKind)> = events
        .iter()
        .map(|e| match e {
            ChangeEvent::LocalWrite { kind, .. } => (e.table(), *kind),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        writes,
        vec![
            (Some(TODO), OpKind::Insert),
            (Some(TODO), OpKind::Update),
            (Some(TAGS), OpKind::Insert)
        ]
    );
}

#[tokio::test]
async fn push_and_pull_announce_their_lifecycle_and_changed_rows() {
    let f = Fixture::new();
    f.todo().insert(&json!({"id": "a"})).await.unwrap();
    f.server.server_insert(TODO, obj(json!({"id": "b"})));
    let mut rx = f.client.subscribe();
    f.client.push().await.unwrap();
    f.todo().pull("all", Query::all()).await.unwrap();
    f.todo().purge(None, None, false).await.unwrap();
    let events = drain(&mut rx);
    assert_eq!(
        events[0],
        ChangeEvent::SyncStarted {
            action: SyncAction::Push,
            table: None
        }
    );
    assert_eq!(
        events[1],
        ChangeEvent::Pushed {
            table: TODO.into(),
            id: "a".into(),
            kind: OpKind::Insert
        }
    );
    assert_eq!(
        events[2],
        ChangeEvent::SyncFinished {
            action: SyncAction::Push,
            table: None,
            push_status: Some(PushStatus::Complete),
            ok: true
        }
    );
    assert_eq!(
        events[3],
        ChangeEvent::SyncStarted {
            action: SyncAction::Pull,
            table: Some(TODO.into())
        }
    );
    assert_eq!(
        events[4],
        ChangeEvent::Pulled {
            table: TODO.into(),
            upserted: 2,
            deleted: 0
        }
    );
    // The pull's progress: its one report (the first, and the last) before it ends.
    assert_eq!(
        events[5],
        ChangeEvent::PullProgress {
            table: TODO.into(),
            applied: 2,
            total: None
        }
    );
    assert!(matches!(
        events[6],
        ChangeEvent::SyncFinished {
            action: SyncAction::Pull,
            ok: true,
            ..
        }
    ));
    assert_eq!(events[7], ChangeEvent::Purged { table: TODO.into() });
    assert!(events.iter().all(|e| e.table().is_none_or(|t| t == TODO)));
}

#[tokio::test]
async fn a_conflict_left_as_an_error_is_announced() {
    let f = Fixture::new();
    f.diverge("x", "theirs", "mine").await;
    let mut rx = f.client.subscribe();
    f.client.push().await.unwrap();
    let events = drain(&mut rx);
    assert!(events.contains(&ChangeEvent::PushFailed {
        table: TODO.into(),
        id: "x".into(),
        status: Some(412)
    }));
    assert!(events.iter().any(|e| matches!(
        e,
        ChangeEvent::SyncFinished {
            ok: false,
            push_status: Some(PushStatus::Complete),
            ..
        }
    )));
}
