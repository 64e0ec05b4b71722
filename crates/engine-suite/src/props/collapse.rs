//! The collapse matrix (spec §2.3 as amended by ARCHITECTURE.md): sequences of writes on
//! one item against the model's [`matrix`](super::model::matrix).

use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};
use tidesync_core::{OpKind, OpState, Query, SyncContext};
use tidesync_transport_mock::{Fault, MockServer};

use super::StoreUnderTest;
use super::inputs::*;
use super::model::{self, Cell, ErrKind};
use super::world::World;

// ---- collapse matrix ----

/// One local write of a collapse sequence, and what happens to the item's op
/// just before it.
#[derive(Debug, Clone, Copy)]
pub enum Before {
    /// Nothing.
    Nothing,
    /// A push of the op fails with a 500 (state Failed, error recorded).
    FailedPush,
    /// A push of the op is held on the wire while the write happens.
    InFlight,
}

pub fn op_kind() -> impl Strategy<Value = OpKind> {
    prop_oneof![
        Just(OpKind::Insert),
        Just(OpKind::Update),
        Just(OpKind::Delete)
    ]
}

pub fn before() -> impl Strategy<Value = Before> {
    prop_oneof![3 => Just(Before::Nothing), 1 => Just(Before::FailedPush), 1 => Just(Before::InFlight)]
}

pub async fn collapse_case(
    under: &'static dyn StoreUnderTest,
    seeded: bool,
    writes: &[(Before, OpKind)],
) {
    let server = MockServer::new();
    server.add_table("List");
    let dir = under.scratch();
    let store = under.open(dir.path());
    store.define_table(&table_def(0)).unwrap();
    let client = World::connect(&server, &store);
    let list = client.table::<Value>("List");
    if seeded {
        server.server_insert(
            "List",
            json!({"id": "x", "v": "s"}).as_object().unwrap().clone(),
        );
        list.pull("q", Query::all()).await.unwrap();
    }
    // The expected queue: (kind, state, sequence, version); at most one op
    // waits, plus one on the wire.
    let mut queue: Vec<(OpKind, OpState, u64, u32)> = Vec::new();
    let mut next_seq = 1;
    let mut row = seeded;
    for (n, &(before, kind)) in writes.iter().enumerate() {
        let mut held = None;
        if matches!(before, Before::FailedPush | Before::InFlight) && queue.len() == 2 {
            // A push first folds a follow-up into the op it waited behind.
            match (queue[0].0, queue[1].0) {
                (OpKind::Insert | OpKind::Update, OpKind::Update) => {
                    queue[0].3 += 1;
                    queue.pop();
                }
                (OpKind::Insert | OpKind::Update, OpKind::Delete) => {
                    queue.remove(0);
                }
                _ => {}
            }
        }
        match before {
            Before::FailedPush if !queue.is_empty() => {
                server.fail_next(1, Fault::Status(500));
                let result = client.push().await.unwrap();
                assert_eq!(result.errors.len(), 1);
                queue[0].1 = OpState::Failed;
            }
            Before::InFlight if !queue.is_empty() => {
                let gate = server.block_next_write();
                let pushing = client.clone();
                let task = tokio::spawn(async move { pushing.push().await.unwrap() });
                gate.reached().await;
                queue[0].1 = OpState::Attempted;
                held = Some((gate, task));
            }
            _ => {}
        }
        let existing = queue.last().map(|op| (op.0, op.1));
        // Only the op on the wire counts as in flight; a follow-up queued behind
        // it from an earlier step is an ordinary pending op.
        let newest_in_flight = held.is_some() && queue.len() == 1;
        let cell = model::matrix(existing, newest_in_flight, kind);
        let v = format!("w{n}");
        let body = json!({"id": "x", "v": v});
        let actual = match kind {
            OpKind::Insert => list.insert(&body).await.map(|_| ()),
            OpKind::Update => list.update(&body).await.map(|_| ()),
            OpKind::Delete => list.delete_id("x").await,
        };
        let expected = match cell {
            Cell::Refuse(reason) => Err(ErrKind::Refused(reason)),
            _ if kind == OpKind::Insert && row => Err(ErrKind::AlreadyExists),
            _ => Ok(()),
        };
        assert_eq!(
            actual.as_ref().map(|_| ()).map_err(err_kind),
            expected,
            "{writes:?} at {n}: {cell:?}"
        );
        if expected.is_ok() {
            row = kind != OpKind::Delete;
            match cell {
                Cell::Enqueue => {
                    queue.push((kind, OpState::Pending, next_seq, 1));
                    next_seq += 1;
                }
                Cell::Merge => {
                    let last = queue.last_mut().unwrap();
                    last.3 += 1;
                }
                Cell::Annihilate => {
                    queue.pop();
                }
                Cell::DeleteToEnd => {
                    queue.pop();
                    queue.push((kind, OpState::Pending, next_seq, 2));
                    next_seq += 1;
                }
                Cell::Refuse(_) => unreachable!(),
            }
        }
        let actual_queue: Vec<_> = client
            .operations()
            .unwrap()
            .into_iter()
            .map(|op| (op.kind, op.state, op.sequence, op.version))
            .collect();
        assert_eq!(actual_queue, queue, "{writes:?} after write {n}");
        assert_eq!(store_has(&client, "x"), row, "local row after write {n}");
        if let Some((gate, task)) = held {
            // The held op and any follow-up finish in this push; the rest of
            // the sequence starts from an empty queue.
            gate.release();
            task.await.unwrap();
            let left = client.operations().unwrap();
            queue = left
                .iter()
                .map(|op| (op.kind, op.state, op.sequence, op.version))
                .collect();
            row = store_has(&client, "x");
        }
    }
}

pub fn store_has(client: &SyncContext, id: &str) -> bool {
    client.get("List", id).unwrap().is_some()
}

/// Every sequence of two or three writes (on a fresh item and on one already on
/// the server, after nothing, a failed push or a push held on the wire) checked
/// against the matrix: the random property above samples these, this walks
/// them all. Paused time makes a stall (a push that never reaches the held
/// gate, a queue stuck behind an op that can never be sent) fail at once.
pub fn collapse_matches_the_matrix_for_every_short_sequence(under: &'static dyn StoreUnderTest) {
    let befores = [Before::Nothing, Before::FailedPush, Before::InFlight];
    let kinds = [OpKind::Insert, OpKind::Update, OpKind::Delete];
    let steps: Vec<(Before, OpKind)> = befores
        .iter()
        .flat_map(|b| kinds.iter().map(move |k| (*b, *k)))
        .collect();
    let mut all = Vec::new();
    for a in &steps {
        for b in &steps {
            all.push(vec![*a, *b]);
            for c in &steps {
                all.push(vec![*a, *b, *c]);
            }
        }
    }
    for seeded in [false, true] {
        for writes in &all {
            let finished = runtime().block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(3600),
                    collapse_case(under, seeded, writes),
                )
                .await
                .is_ok()
            });
            assert!(finished, "stalled: seeded={seeded} {writes:?}");
        }
    }
}
