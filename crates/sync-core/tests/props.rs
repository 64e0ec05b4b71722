//! Model-based property tests: random sequences of local writes, pushes, pulls,
//! purges, restarts and server-side changes under scripted and seeded mock
//! faults, checked after every step against the `BTreeMap` model in
//! `model/mod.rs`; plus properties for the `(updatedAt, id)` cursor, the
//! collapse matrix, restarts and push statuses.
//!
//! Every property runs `PROPTEST_CASES` cases (256 by default) on a
//! current-thread runtime with paused time, so injected latency costs nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod model;

/// The store the properties run on: a `MemoryStore` here. store-sqlite's
/// `tests/props_sqlite.rs` includes this file with `#[path]` beside its own
/// `store_under_test` (a SQLite file), so the same properties run there too.
#[allow(dead_code)]
mod store_under_test {
    use std::path::Path;
    use std::sync::Arc;

    use tidesync_core::{LocalStore, MemoryStore};

    /// A directory for one case's store files, removed when dropped.
    pub fn scratch() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    /// A fresh, empty store (keeping its files, if any, under `dir`).
    pub fn open(_dir: &Path) -> Arc<dyn LocalStore> {
        Arc::new(MemoryStore::new())
    }

    /// The same store again, as a restarted app opens it.
    pub fn reopen(store: &Arc<dyn LocalStore>, _dir: &Path) -> Arc<dyn LocalStore> {
        Arc::clone(store)
    }
}

use crate::store_under_test as under_test;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use model::{
    Cell, ErrKind, Key, Model, PullOutcome, PushOutcome, RELATION, Row, ServerRow, TABLES,
};
use proptest::prelude::*;
use serde_json::{Value, json};
use tidesync_core::protocol::decode_version;
use tidesync_core::{
    BatchOperation, BatchOutcome, ColumnType, Error, Item, LocalStore, OpKind, OpState, Page,
    PullOptions, PushResult, PushStatus, Query, ReadRequest, SyncContext, TableDef, Transport,
    TransportError,
};
use tidesync_transport_mock::{CallKind, Clock, Fault, MockServer, MockTransport};

// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum T {
    List,
    Item,
    Tag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Id {
    A,
    B,
    C,
}

/// A fault kind, as the mock injects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum F {
    Network,
    LoseResponse,
    S500,
    S503,
    C409,
    C412,
    Auth,
}

#[derive(Debug, Clone)]
enum Step {
    Insert(T, Id),
    Update(T, Id),
    Delete(T, Id),
    /// A list, its item and the item's tag, in one transaction.
    InsertFamily(Id),
    Push,
    Pull(T),
    Purge(T, bool),
    Restart,
    ServerUpdate(T, Id),
    ServerDelete(T, Id),
    FailNext(u8, F),
    Offline(bool),
    LatencyMs(u8),
}

impl T {
    fn index(self) -> usize {
        self as usize
    }
}

impl Id {
    fn name(self) -> &'static str {
        ["a", "b", "c"][self as usize]
    }
}

impl F {
    fn fault(self) -> Fault {
        match self {
            F::Network => Fault::Network,
            F::LoseResponse => Fault::CommitThenLoseResponse,
            F::S500 => Fault::Status(500),
            F::S503 => Fault::Status(503),
            F::C409 => Fault::Status(409),
            F::C412 => Fault::Status(412),
            F::Auth => Fault::Auth,
        }
    }
}

const ALL_FAULTS: [F; 7] = [
    F::Network,
    F::LoseResponse,
    F::S500,
    F::S503,
    F::C409,
    F::C412,
    F::Auth,
];

fn table() -> impl Strategy<Value = T> {
    prop_oneof![Just(T::List), Just(T::Item), Just(T::Tag)]
}

fn id() -> impl Strategy<Value = Id> {
    prop_oneof![Just(Id::A), Just(Id::B), Just(Id::C)]
}

fn fault() -> impl Strategy<Value = F> {
    proptest::sample::select(ALL_FAULTS.to_vec())
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (table(), id()).prop_map(|(t, i)| Step::Insert(t, i)),
        4 => (table(), id()).prop_map(|(t, i)| Step::Update(t, i)),
        3 => (table(), id()).prop_map(|(t, i)| Step::Delete(t, i)),
        1 => id().prop_map(Step::InsertFamily),
        3 => Just(Step::Push),
        2 => table().prop_map(Step::Pull),
        1 => (table(), any::<bool>()).prop_map(|(t, f)| Step::Purge(t, f)),
        1 => Just(Step::Restart),
        2 => (table(), id()).prop_map(|(t, i)| Step::ServerUpdate(t, i)),
        1 => (table(), id()).prop_map(|(t, i)| Step::ServerDelete(t, i)),
        2 => (1u8..3, fault()).prop_map(|(n, f)| Step::FailNext(n, f)),
        1 => any::<bool>().prop_map(Step::Offline),
        1 => (0u8..30).prop_map(Step::LatencyMs),
    ]
}

/// `PROPTEST_CASES` (256 by default); regressions become named tests instead
/// of files outside `tests/`.
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------
// The world: engine + mock server + model, stepped together
// ---------------------------------------------------------------------------

fn table_def(t: usize) -> TableDef {
    let def = TableDef::new(TABLES[t]).column("v", ColumnType::String);
    match RELATION[t] {
        Some(rel) => def.column(rel, ColumnType::String),
        None => def,
    }
}

fn err_kind(e: &Error) -> ErrKind {
    match e {
        Error::QueueRefused { reason, .. } => ErrKind::Refused(*reason),
        Error::AlreadyExists { .. } => ErrKind::AlreadyExists,
        Error::PendingOperations { .. } => ErrKind::PendingOperations,
        Error::PushFailed(_) => ErrKind::PushFailed,
        Error::Transport(TransportError::Network(_)) => ErrKind::Network,
        Error::Transport(TransportError::Auth { .. }) => ErrKind::Auth,
        Error::Transport(TransportError::Conflict { status, .. }) => ErrKind::Conflict(*status),
        Error::Transport(TransportError::NotFound { .. }) => ErrKind::NotFound,
        Error::Transport(TransportError::Http { status, .. }) => ErrKind::Http(*status),
        _ => ErrKind::Other,
    }
}

fn table_index(name: &str) -> usize {
    TABLES.iter().position(|t| *t == name).unwrap()
}

fn rev_of(item: &Item) -> Option<u64> {
    item.get("version")
        .and_then(Value::as_str)
        .map(|v| decode_version(v).expect("mock versions decode"))
}

fn row_of(t: usize, item: &Item) -> Row {
    Row {
        v: item["v"].as_str().unwrap().to_owned(),
        rel: RELATION[t].map(|rel| item[rel].as_str().unwrap().to_owned()),
        ver: rev_of(item),
    }
}

fn server_row_of(t: usize, item: &Item) -> ServerRow {
    ServerRow {
        v: item["v"].as_str().unwrap().to_owned(),
        rel: RELATION[t].map(|rel| item[rel].as_str().unwrap().to_owned()),
        rev: rev_of(item).unwrap(),
        deleted: item.get("deleted").and_then(Value::as_bool) == Some(true),
    }
}

fn push_outcome(result: &PushResult) -> PushOutcome {
    PushOutcome {
        status: result.status,
        pushed: result.pushed,
        errors: result
            .errors
            .iter()
            .map(|e| (table_index(&e.table), e.item_id.clone(), e.status))
            .collect(),
    }
}

struct World {
    server: MockServer,
    dir: tempfile::TempDir,
    store: Arc<dyn LocalStore>,
    client: SyncContext,
    model: Model,
    next_value: u32,
    log: Vec<String>,
}

impl World {
    fn new(seed: u64, random_faults: Option<f64>) -> World {
        let server = MockServer::with_seed(seed);
        let dir = under_test::scratch();
        let store = under_test::open(dir.path());
        for (t, name) in TABLES.iter().enumerate() {
            server.add_table(name);
            store.define_table(&table_def(t)).unwrap();
        }
        let mut model = Model::new(seed);
        if let Some(p) = random_faults {
            let kinds: Vec<Fault> = ALL_FAULTS.iter().map(|f| f.fault()).collect();
            server.set_random_faults(p, kinds.clone());
            model.set_random_faults(p, kinds);
        }
        let client = World::connect(&server, &store);
        World {
            server,
            dir,
            store,
            client,
            model,
            next_value: 0,
            log: Vec::new(),
        }
    }

    fn connect(server: &MockServer, store: &Arc<dyn LocalStore>) -> SyncContext {
        SyncContext::builder()
            .store_arc(Arc::clone(store))
            .transport(server.transport())
            .build()
            .unwrap()
    }

    fn value(&mut self, prefix: &str) -> String {
        self.next_value += 1;
        format!("{prefix}{}", self.next_value)
    }

    fn body(t: usize, id: &str, v: &str) -> Value {
        let mut body = json!({"id": id, "v": v});
        if let Some(rel) = RELATION[t] {
            body[rel] = json!(id);
        }
        body
    }

    async fn local_write(&mut self, kind: OpKind, t: T, id: Id) {
        let key: Key = (t.index(), id.name().to_owned());
        let v = self.value("L");
        let expected = self.model.write(kind, &key, &v);
        let table = self.client.table::<Value>(TABLES[key.0]);
        let body = World::body(key.0, &key.1, &v);
        let actual = match kind {
            OpKind::Insert => table.insert(&body).await.map(|_| ()),
            OpKind::Update => table.update(&body).await.map(|_| ()),
            OpKind::Delete => table.delete_id(&key.1).await,
        };
        assert_eq!(
            actual.as_ref().map(|_| ()).map_err(err_kind),
            expected,
            "{kind:?} {key:?}"
        );
    }

    async fn insert_family(&mut self, id: Id) {
        let v = self.value("L");
        let mut model = self.model.clone();
        let expected =
            (0..3).try_for_each(|t| model.write(OpKind::Insert, &(t, id.name().to_owned()), &v));
        if expected.is_ok() {
            self.model = model;
        }
        let actual = self.client.transaction(|tx| {
            for (t, name) in TABLES.iter().enumerate() {
                let Value::Object(item) = World::body(t, id.name(), &v) else {
                    unreachable!()
                };
                tx.insert(name, item)?;
            }
            Ok(())
        });
        assert_eq!(
            actual.as_ref().map(|_| ()).map_err(err_kind),
            expected,
            "family {id:?}"
        );
    }

    async fn push(&mut self) -> PushOutcome {
        let sequences: BTreeMap<(String, String), u64> = self
            .client
            .operations()
            .unwrap()
            .into_iter()
            .map(|op| ((op.table, op.item_id), op.sequence))
            .collect();
        let expected = self.model.push();
        let actual = push_outcome(&self.client.push().await.unwrap());
        assert_eq!(actual, expected, "push");
        // Ops reach the server in ascending sequence, across tables (an op
        // resent within the push, after a lost answer, repeats its sequence).
        let sent: Vec<u64> = self
            .server
            .calls()
            .iter()
            .filter(|c| c.kind.is_write())
            .map(|c| sequences[&(c.table.clone(), c.item_id.clone().unwrap())])
            .collect();
        assert!(sent.windows(2).all(|w| w[0] <= w[1]), "push order {sent:?}");
        actual
    }

    async fn pull(&mut self, t: usize) {
        let (push, expected) = self.model.pull(t);
        let actual = self
            .client
            .table::<Value>(TABLES[t])
            .pull("q", Query::all())
            .await;
        match (&actual, &expected) {
            (Ok(result), Ok(out)) => {
                let got = PullOutcome {
                    upserted: result.upserted,
                    deleted: result.deleted,
                    skipped: result.skipped,
                };
                assert_eq!(&got, out, "pull {t}");
                assert_eq!(
                    result.push.as_ref().map(push_outcome),
                    push,
                    "implicit push"
                );
            }
            (Err(Error::PushFailed(result)), Err(ErrKind::PushFailed)) => {
                assert_eq!(Some(push_outcome(result)), push, "failed implicit push");
            }
            (Err(e), Err(kind)) => assert_eq!(err_kind(e), *kind, "pull error {e}"),
            _ => panic!("pull {t}: got {actual:?}, model says {expected:?}"),
        }
    }

    fn restart(&mut self) {
        let ops = self.client.operations().unwrap();
        let errors = self.client.operation_errors().unwrap();
        self.store = under_test::reopen(&self.store, self.dir.path());
        self.client = World::connect(&self.server, &self.store);
        self.model.restart();
        assert_eq!(
            self.client.operations().unwrap(),
            ops,
            "queue after restart"
        );
        assert_eq!(
            self.client.operation_errors().unwrap(),
            errors,
            "errors after restart"
        );
    }

    async fn run(&mut self, step: &Step) {
        self.log.push(format!("{step:?}"));
        match *step {
            Step::Insert(t, id) => self.local_write(OpKind::Insert, t, id).await,
            Step::Update(t, id) => self.local_write(OpKind::Update, t, id).await,
            Step::Delete(t, id) => self.local_write(OpKind::Delete, t, id).await,
            Step::InsertFamily(id) => self.insert_family(id).await,
            Step::Push => {
                self.push().await;
            }
            Step::Pull(t) => self.pull(t.index()).await,
            Step::Purge(t, force) => {
                let expected = self.model.purge(t.index(), force);
                let actual = self
                    .client
                    .purge(TABLES[t.index()], Some("q"), None, force)
                    .await;
                assert_eq!(
                    actual.as_ref().map(|_| ()).map_err(err_kind),
                    expected,
                    "purge"
                );
            }
            Step::Restart => self.restart(),
            Step::ServerUpdate(t, id) => {
                let v = self.value("S");
                let key = (t.index(), id.name().to_owned());
                self.model.server_update(&key, &v);
                let Value::Object(item) = World::body(key.0, &key.1, &v) else {
                    unreachable!()
                };
                self.server.server_update(TABLES[key.0], item);
            }
            Step::ServerDelete(t, id) => {
                self.model.server_delete(&(t.index(), id.name().to_owned()));
                self.server.server_delete(TABLES[t.index()], id.name());
            }
            Step::FailNext(n, f) => {
                self.model.fail_next(usize::from(n), f.fault());
                self.server.fail_next(usize::from(n), f.fault());
            }
            Step::Offline(offline) => {
                self.model.offline = offline;
                self.server.set_offline(offline);
            }
            Step::LatencyMs(ms) => self
                .server
                .set_latency(Duration::from_millis(u64::from(ms))),
        }
        self.check();
    }

    /// Everything observable equals the model.
    fn check(&mut self) {
        let ops = self.client.operations().unwrap();
        let mut keys = BTreeSet::new();
        for op in &ops {
            assert!(
                keys.insert((op.table.clone(), op.item_id.clone())),
                "two ops for one item: {ops:?}"
            );
        }
        let mut actual_ops: Vec<(Key, model::Op)> = ops
            .iter()
            .map(|op| {
                let key = (table_index(&op.table), op.item_id.clone());
                let snap_ver = (op.kind == OpKind::Delete)
                    .then(|| op.item.as_ref().and_then(rev_of))
                    .flatten();
                let values = |item: &Item| {
                    item.contains_key("v").then(|| Row {
                        ver: None,
                        ..row_of(key.0, item)
                    })
                };
                let item = op.item.as_ref().and_then(values);
                let delete = op.kind == OpKind::Delete;
                let op = model::Op {
                    kind: op.kind,
                    state: op.state,
                    seq: op.sequence,
                    version: op.version,
                    snap_ver,
                    snap: item.clone().filter(|_| delete),
                    sent: item.filter(|_| !delete),
                };
                (key, op)
            })
            .collect();
        actual_ops.sort_by_key(|(_, op)| op.seq);
        let mut expected_ops: Vec<(Key, model::Op)> = self
            .model
            .ops
            .iter()
            .map(|(k, op)| (k.clone(), op.clone()))
            .collect();
        expected_ops.sort_by_key(|(_, op)| op.seq);
        assert_eq!(actual_ops, expected_ops, "queue");

        let mut local = BTreeMap::new();
        let mut server = BTreeMap::new();
        for (t, name) in TABLES.iter().enumerate() {
            for item in self.client.query(name, &Query::all()).unwrap().items {
                local.insert(
                    (t, item["id"].as_str().unwrap().to_owned()),
                    row_of(t, &item),
                );
            }
            for item in self.server.items(name) {
                server.insert(
                    (t, item["id"].as_str().unwrap().to_owned()),
                    server_row_of(t, &item),
                );
            }
        }
        assert_eq!(local, self.model.local, "local rows");
        assert_eq!(server, self.model.server, "server rows");

        let errors: BTreeMap<Key, model::ErrRec> = self
            .client
            .operation_errors()
            .unwrap()
            .into_iter()
            .map(|e| {
                let t = table_index(&e.table);
                let rec = model::ErrRec {
                    status: e.status,
                    server: e.server_item.as_ref().map(|s| server_row_of(t, s)),
                };
                ((t, e.item_id), rec)
            })
            .collect();
        assert_eq!(errors, self.model.errors, "error records");

        let calls: Vec<(CallKind, usize, Option<String>)> = self
            .server
            .calls()
            .into_iter()
            .map(|c| (c.kind, table_index(&c.table), c.item_id))
            .collect();
        assert_eq!(calls, self.model.calls, "calls the server saw");
        self.server.clear_calls();
        self.model.calls.clear();
    }

    /// Faults stop; pushes run, resolving errors by a fixed policy, until one
    /// succeeds; then every table is pulled. Policy: a live conflict is won by
    /// the client (`update_and_retry` with the server's version); a conflict
    /// with a deleted server row, or a 404, is won by the server's delete
    /// (`cancel_and_discard`); anything else is simply retried.
    async fn settle(&mut self) {
        self.log.push("settle".to_owned());
        self.server.clear_faults();
        self.model.clear_faults();
        let mut done = false;
        for _ in 0..5 {
            let outcome = self.push().await;
            self.check();
            if outcome.is_success() {
                done = true;
                break;
            }
            for error in self.client.operation_errors().unwrap() {
                let key = (table_index(&error.table), error.item_id.clone());
                let server = error.server_item.as_ref().filter(|_| error.is_conflict());
                match (error.status, server) {
                    (_, Some(s)) if s.get("deleted") == Some(&json!(true)) => {
                        self.client.cancel_and_discard(&error).unwrap();
                        self.model.discard(&key);
                    }
                    (_, Some(s)) => {
                        let mut item = match error.kind {
                            OpKind::Delete => error.item.clone().unwrap(),
                            _ => self
                                .client
                                .get(&error.table, &error.item_id)
                                .unwrap()
                                .unwrap(),
                        };
                        item.insert("version".to_owned(), s["version"].clone());
                        self.client.update_and_retry(&error, item).unwrap();
                        self.model.retry_with_version(&key, rev_of(s).unwrap());
                    }
                    (Some(404), None) => {
                        self.client.cancel_and_discard(&error).unwrap();
                        self.model.discard(&key);
                    }
                    _ => {}
                }
            }
            self.check();
        }
        assert!(done, "the final push never succeeded");
        for t in 0..TABLES.len() {
            self.pull(t).await;
            self.check();
        }
        // Server, client and model agree: the live server rows are the local rows.
        let live: BTreeMap<Key, Row> = self
            .model
            .server
            .iter()
            .filter(|(_, r)| !r.deleted)
            .map(|(k, r)| {
                let row = Row {
                    v: r.v.clone(),
                    rel: r.rel.clone(),
                    ver: Some(r.rev),
                };
                (k.clone(), row)
            })
            .collect();
        assert_eq!(
            live, self.model.local,
            "server and client disagree after the final sync"
        );
        assert!(self.model.ops.is_empty() && self.model.errors.is_empty());
    }
}

async fn run_steps(seed: u64, random_faults: Option<f64>, steps: &[Step]) -> World {
    let mut world = World::new(seed, random_faults);
    for step in steps {
        world.run(step).await;
    }
    world.settle().await;
    world
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// Three related tables under scripted faults (offline, network, lost
    /// responses, 5xx, injected 409/412, 401) and concurrent server changes:
    /// after every step the queue (kind, state, sequence, op version, a
    /// delete's If-Match), every refusal, the local rows, the server rows with
    /// their version counters, the error records and the exact calls the
    /// server saw equal the model's; no item ever has two ops; writes reach the
    /// server in ascending sequence; after a final sync everything agrees.
    #[test]
    fn prop_three_tables_follow_the_model_under_scripted_faults(
        seed in any::<u64>(),
        steps in proptest::collection::vec(step(), 1..40),
    ) {
        runtime().block_on(run_steps(seed, None, &steps));
    }

    /// The same, with the mock's seeded random faults on every call on top
    /// (the seed and probability come from the input, so a failure shrinks to
    /// a fixed fault sequence).
    #[test]
    fn prop_three_tables_follow_the_model_under_seeded_random_faults(
        seed in any::<u64>(),
        percent in 5u8..40,
        steps in proptest::collection::vec(step(), 1..40),
    ) {
        runtime().block_on(run_steps(seed, Some(f64::from(percent) / 100.0), &steps));
    }

    /// Restarts between every kind of step keep the queue and the error
    /// records byte for byte (checked inside every `Restart`), and sequences
    /// continue after the largest one queued.
    #[test]
    fn prop_restarts_keep_the_queue_and_its_errors(
        seed in any::<u64>(),
        steps in proptest::collection::vec(
            prop_oneof![3 => step(), 2 => Just(Step::Restart)], 1..40),
    ) {
        runtime().block_on(run_steps(seed, None, &steps));
    }
}

// ---- collapse matrix ----

/// One local write of a collapse sequence, and what happens to the item's op
/// just before it.
#[derive(Debug, Clone, Copy)]
enum Before {
    /// Nothing.
    Nothing,
    /// A push of the op fails with a 500 (state Failed, error recorded).
    FailedPush,
    /// A push of the op is held on the wire while the write happens.
    InFlight,
}

fn op_kind() -> impl Strategy<Value = OpKind> {
    prop_oneof![
        Just(OpKind::Insert),
        Just(OpKind::Update),
        Just(OpKind::Delete)
    ]
}

fn before() -> impl Strategy<Value = Before> {
    prop_oneof![3 => Just(Before::Nothing), 1 => Just(Before::FailedPush), 1 => Just(Before::InFlight)]
}

async fn collapse_case(seeded: bool, writes: &[(Before, OpKind)]) {
    let server = MockServer::new();
    server.add_table("List");
    let dir = under_test::scratch();
    let store = under_test::open(dir.path());
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

fn store_has(client: &SyncContext, id: &str) -> bool {
    client.get("List", id).unwrap().is_some()
}

proptest! {
    #![proptest_config(config())]

    /// Pairs and triples of writes on one item (fresh or already on the
    /// server), each optionally after a failed push or while the op is on the
    /// wire, against the collapse matrix of spec §2.3 as amended by
    /// ARCHITECTURE.md: the result or refusal, the queue (kind, state,
    /// sequence, op version) and the local row all match.
    #[test]
    fn prop_collapse_matches_the_matrix(
        seeded in any::<bool>(),
        writes in proptest::collection::vec((before(), op_kind()), 2..=3),
    ) {
        runtime().block_on(collapse_case(seeded, &writes));
    }
}

// ---- a fault-injecting, recording transport decorator ----

/// Wraps a [`MockTransport`]: arms a mock fault for the n-th call of a kind
/// (a countdown, like redb's fuzzer's failing backend) and records every row a
/// read returns.
#[derive(Debug)]
struct Flaky {
    inner: MockTransport,
    server: MockServer,
    /// `(reads or writes?, calls left before the fault, fault)`.
    armed: Mutex<Option<(bool, usize, Fault)>>,
    seen: Mutex<Vec<Item>>,
}

impl Flaky {
    fn new(server: &MockServer) -> Arc<Flaky> {
        Arc::new(Flaky {
            inner: server.transport(),
            server: server.clone(),
            armed: Mutex::new(None),
            seen: Mutex::new(Vec::new()),
        })
    }

    /// The `after`-th next read (`reads`) or write (0 = the very next) fails with `fault`.
    fn arm(&self, reads: bool, after: usize, fault: Fault) {
        *self.armed.lock().unwrap() = Some((reads, after, fault));
    }

    fn tick(&self, read: bool) {
        let mut armed = self.armed.lock().unwrap();
        if let Some((reads, left, fault)) = armed.as_mut() {
            if *reads == read {
                if *left == 0 {
                    self.server.fail_next(1, *fault);
                    *armed = None;
                } else {
                    *left -= 1;
                }
            }
        }
    }

    fn take_seen(&self) -> Vec<Item> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

#[async_trait]
impl Transport for Flaky {
    async fn read(&self, request: &ReadRequest) -> Result<Page, TransportError> {
        self.tick(true);
        let page = self.inner.read(request).await?;
        self.seen.lock().unwrap().extend(page.items.iter().cloned());
        Ok(page)
    }

    async fn insert(&self, table: &str, item: &Item) -> Result<Item, TransportError> {
        self.tick(false);
        self.inner.insert(table, item).await
    }

    async fn replace(
        &self,
        table: &str,
        item: &Item,
        if_match: Option<&str>,
    ) -> Result<Item, TransportError> {
        self.tick(false);
        self.inner.replace(table, item, if_match).await
    }

    async fn delete(
        &self,
        table: &str,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), TransportError> {
        self.tick(false);
        self.inner.delete(table, id, if_match).await
    }

    async fn batch(
        &self,
        operations: &[BatchOperation],
    ) -> Result<Vec<BatchOutcome>, TransportError> {
        self.inner.batch(operations).await
    }
}

fn flaky_client(store: &Arc<dyn LocalStore>, flaky: &Arc<Flaky>) -> SyncContext {
    SyncContext::builder()
        .store_arc(Arc::clone(store))
        .transport_arc(flaky.clone())
        .build()
        .unwrap()
}

// ---- push status per fault kind ----

async fn status_case(tables: &[T], at: usize, fault: F) {
    let server = MockServer::new();
    let dir = under_test::scratch();
    let store = under_test::open(dir.path());
    for (t, name) in TABLES.iter().enumerate() {
        server.add_table(name);
        store.define_table(&table_def(t)).unwrap();
    }
    let flaky = Flaky::new(&server);
    let client = flaky_client(&store, &flaky);
    let n = tables.len();
    for (i, t) in tables.iter().enumerate() {
        let body = World::body(t.index(), &format!("i{i}"), &format!("v{i}"));
        client
            .table::<Value>(TABLES[t.index()])
            .insert(&body)
            .await
            .unwrap();
    }
    let at = at % n;
    flaky.arm(false, at, fault.fault());
    let result = client.push().await.unwrap();
    let stops = matches!(fault, F::Network | F::LoseResponse | F::Auth);
    let (status, error_status) = match fault {
        F::Network | F::LoseResponse => (PushStatus::CancelledByNetworkError, None),
        F::Auth => (PushStatus::CancelledByAuthenticationError, None),
        F::S500 => (PushStatus::Complete, Some(500)),
        F::S503 => (PushStatus::Complete, Some(503)),
        F::C409 => (PushStatus::Complete, Some(409)),
        F::C412 => (PushStatus::Complete, Some(412)),
    };
    assert_eq!(result.status, status, "{fault:?} at {at} of {n}");
    let statuses: Vec<_> = result.errors.iter().map(|e| e.status).collect();
    assert_eq!(
        statuses,
        error_status.map(Some).into_iter().collect::<Vec<_>>()
    );
    assert_eq!(
        result.pushed as usize,
        if stops { at } else { n - 1 },
        "pushed"
    );
    // The faulted op is Failed; ops after a stop were never touched.
    let states: Vec<(u64, OpState)> = client
        .operations()
        .unwrap()
        .into_iter()
        .map(|op| (op.sequence, op.state))
        .collect();
    let mut expected = vec![(at as u64 + 1, OpState::Failed)];
    if stops {
        expected.extend((at + 1..n).map(|i| (i as u64 + 1, OpState::Pending)));
    }
    assert_eq!(states, expected, "queue after the faulted push");
    // A lost response was applied; nothing else was.
    let applied = (0..n)
        .filter(|i| {
            server
                .get(TABLES[tables[*i].index()], &format!("i{i}"))
                .is_some()
        })
        .count();
    let lost_but_applied = usize::from(fault == F::LoseResponse);
    assert_eq!(applied, if stops { at + lost_but_applied } else { n - 1 });

    // Without faults the next push completes the rest: the lost response is
    // recognised (no duplicate, no conflict) except for an injected 409/412,
    // which stays an error until resolved -- here it is simply resent.
    let again = client.push().await.unwrap();
    assert!(again.is_success(), "{again:?}");
    assert_eq!(client.pending_operations().unwrap(), 0);
    assert!(client.operation_errors().unwrap().is_empty());
    for (i, t) in tables.iter().enumerate() {
        let row = server.get(TABLES[t.index()], &format!("i{i}")).unwrap();
        assert_eq!(row["v"], json!(format!("v{i}")));
    }
    // Every insert applied exactly once: one version per row, n in all.
    let max_rev = (0..TABLES.len())
        .flat_map(|t| server.items(TABLES[t]))
        .filter_map(|item| rev_of(&item))
        .max();
    assert_eq!(max_rev, Some(n as u64), "a write was applied twice");
}

proptest! {
    #![proptest_config(config())]

    /// One fault on the k-th call of a push of n inserts across the three
    /// tables: the push status is the one the spec gives that fault
    /// (network and lost response → CancelledByNetworkError, 401 →
    /// CancelledByAuthenticationError, 5xx/409/412 → Complete with one error of
    /// that status), exactly the earlier ops (and, for a collected error, the
    /// later ones) are pushed, and the next push delivers the rest exactly once.
    #[test]
    fn prop_push_status_matches_the_injected_fault(
        tables in proptest::collection::vec(table(), 1..6),
        at in 0usize..6,
        fault in fault(),
    ) {
        runtime().block_on(status_case(&tables, at, fault));
    }
}

// ---- the (updatedAt, id) cursor ----

#[derive(Debug, Clone)]
enum CStep {
    /// Another client writes row `r{n}` (insert, update or revive).
    Write(u8),
    /// Another client deletes row `r{n}` (soft delete).
    Delete(u8),
    /// The server clock moves to the next instant.
    Tick,
    /// An incremental pull whose page size is `extra` more than the server's
    /// page limit, its `k`-th read failing if given. (A page size at or below
    /// the limit once hit the bug pinned by `a_full_page_does_not_end_the_pull`.)
    Pull { extra: u8, fail_read: Option<u8> },
}

fn cstep() -> impl Strategy<Value = CStep> {
    prop_oneof![
        6 => (0u8..8).prop_map(CStep::Write),
        2 => (0u8..8).prop_map(CStep::Delete),
        1 => Just(CStep::Tick),
        3 => (1u8..4, proptest::option::weighted(0.3, 0u8..4))
            .prop_map(|(extra, fail_read)| CStep::Pull { extra, fail_read }),
    ]
}

async fn cursor_case(limit: usize, steps: &[CStep]) {
    let server = MockServer::new();
    server.add_table("List");
    server.set_page_limit(Some(limit));
    let dir = under_test::scratch();
    let store = under_test::open(dir.path());
    store.define_table(&table_def(0)).unwrap();
    let flaky = Flaky::new(&server);
    let client = flaky_client(&store, &flaky);
    let list = client.table::<Value>("List");
    let start = time::macros::datetime!(2026-03-01 12:00 UTC);
    let mut instant = 0i64;
    let mut reader_saw_instant = false;
    server.set_clock(Clock::Fixed(start));
    // Rows changed since they were last delivered to the client.
    let mut pending: BTreeSet<String> = BTreeSet::new();
    let mut value = 0;
    for step in steps {
        match *step {
            CStep::Write(n) | CStep::Delete(n) => {
                // The server contract the cursor relies on: a write is never
                // stamped at or before an instant a reader has already seen.
                if reader_saw_instant {
                    instant += 1;
                    server.set_clock(Clock::Fixed(start + time::Duration::milliseconds(instant)));
                    reader_saw_instant = false;
                }
                let id = format!("r{n}");
                if let CStep::Delete(_) = step {
                    if server
                        .get("List", &id)
                        .is_some_and(|r| r["deleted"] == json!(false))
                    {
                        server.server_delete("List", &id);
                        pending.insert(id);
                    }
                } else {
                    value += 1;
                    let item = json!({"id": id, "v": format!("s{value}")});
                    server.server_insert("List", item.as_object().unwrap().clone());
                    pending.insert(id);
                }
            }
            CStep::Tick => {
                instant += 1;
                server.set_clock(Clock::Fixed(start + time::Duration::milliseconds(instant)));
                reader_saw_instant = false;
            }
            CStep::Pull { extra, fail_read } => {
                let page = limit as u64 + u64::from(extra);
                if let Some(k) = fail_read {
                    flaky.arm(true, usize::from(k), Fault::Network);
                }
                let options = PullOptions {
                    page_size: Some(page),
                    ..PullOptions::default()
                };
                let result = list.pull_with("q", Query::all(), options).await;
                reader_saw_instant = true;
                *flaky.armed.lock().unwrap() = None;
                server.clear_faults();
                for item in flaky.take_seen() {
                    let id = item["id"].as_str().unwrap().to_owned();
                    assert!(
                        pending.remove(&id),
                        "row {id} delivered twice or unchanged ({steps:?})"
                    );
                    let now = server.get("List", &id).unwrap();
                    assert_eq!(item["version"], now["version"], "a stale copy of {id}");
                }
                match result {
                    Ok(_) => {
                        assert!(pending.is_empty(), "rows skipped: {pending:?}");
                        let live: BTreeMap<String, Value> = server
                            .items("List")
                            .into_iter()
                            .filter(|r| r["deleted"] == json!(false))
                            .map(|r| (r["id"].as_str().unwrap().to_owned(), r["version"].clone()))
                            .collect();
                        let local: BTreeMap<String, Value> = client
                            .query("List", &Query::all())
                            .unwrap()
                            .items
                            .into_iter()
                            .map(|r| (r["id"].as_str().unwrap().to_owned(), r["version"].clone()))
                            .collect();
                        assert_eq!(local, live, "local table after a pull");
                    }
                    Err(e) => assert!(fail_read.is_some(), "unexpected pull failure {e}"),
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Random server inserts, updates and deletes stamped from a fixed clock
    /// that moves between a few instants (so many rows share one `updatedAt`),
    /// random server page limits and client page sizes, and incremental pulls
    /// some of which are cut by a network fault on a random page: every changed
    /// row is delivered exactly once per change (never twice, never a stale
    /// copy), an interrupted pull loses nothing on resume, and after each
    /// successful pull the local table equals the server's live rows.
    #[test]
    fn prop_cursor_delivers_every_change_once_despite_ties(
        limit in 1usize..5,
        steps in proptest::collection::vec(cstep(), 1..40),
    ) {
        runtime().block_on(cursor_case(limit, &steps));
    }
}

/// Minimal case found by `prop_cursor_delivers_every_change_once_despite_ties`.
///
/// An incremental pull sends `$top` = its page size and stops as soon as a
/// page says `has_more == Some(false)`. A server that honours `$top` (the mock,
/// and any OData server: no next link once `$top` rows were returned) answers a
/// *full* page with `has_more = false` whenever its own page limit is at least
/// the client's page size -- so the pull ends after one page and leaves the
/// rest for the next pull. Here: 3 rows, page size 2, no server cap → the pull
/// returns after 2 rows and reports success.
/// (Found by `prop_cursor_delivers_every_change_once_despite_ties`; fixed in the
/// engine: "no more" from the server ends a pull only after a short page.)
#[test]
fn a_full_page_does_not_end_the_pull() {
    runtime().block_on(async {
        let server = MockServer::new();
        server.add_table("List");
        server.set_page_limit(None);
        let dir = under_test::scratch();
        let store = under_test::open(dir.path());
        store.define_table(&table_def(0)).unwrap();
        let client = World::connect(&server, &store);
        for id in ["r0", "r1", "r2"] {
            server.server_insert(
                "List",
                json!({"id": id, "v": id}).as_object().unwrap().clone(),
            );
        }
        let options = PullOptions {
            page_size: Some(2),
            ..PullOptions::default()
        };
        let result = client
            .table::<Value>("List")
            .pull_with("q", Query::all(), options)
            .await
            .unwrap();
        assert_eq!(
            result.upserted, 3,
            "the pull stopped after {} requests",
            result.requests
        );
    });
}

/// The model mirrors the mock's seeded fault generator (scripted faults first,
/// then one draw per call that reaches the server). If the mock ever changes
/// how it draws, this says so plainly instead of a confusing model mismatch.
#[test]
fn the_model_mirrors_the_mocks_seeded_faults() {
    runtime().block_on(async {
        for seed in [0, 1, 42, u64::MAX] {
            let server = MockServer::with_seed(seed);
            server.add_table("List");
            let kinds: Vec<Fault> = ALL_FAULTS.iter().map(|f| f.fault()).collect();
            server.set_random_faults(0.3, kinds.clone());
            server.fail_next(2, Fault::Status(500));
            let mut model = Model::new(seed);
            model.set_random_faults(0.3, kinds);
            model.fail_next(2, Fault::Status(500));
            let transport = server.transport();
            let request = ReadRequest {
                table: "List".to_owned(),
                query: Query::all(),
                include_deleted: false,
            };
            for call in 0..200 {
                let got = transport.read(&request).await;
                let expected = model.draw();
                let same = match (&got, expected) {
                    (Ok(_), None) => true,
                    (
                        Err(TransportError::Network(_)),
                        Some(Fault::Network | Fault::CommitThenLoseResponse),
                    ) => true,
                    (Err(TransportError::Auth { .. }), Some(Fault::Auth)) => true,
                    (Err(e), Some(Fault::Status(s))) => e.status() == Some(s),
                    _ => false,
                };
                assert!(
                    same,
                    "seed {seed}, call {call}: mock {got:?}, model {expected:?}"
                );
            }
        }
    });
}

/// Every sequence of two or three writes (on a fresh item and on one already on
/// the server, after nothing, a failed push or a push held on the wire) checked
/// against the matrix: the random property above samples these, this walks
/// them all. Paused time makes a stall (a push that never reaches the held
/// gate, a queue stuck behind an op that can never be sent) fail at once.
#[test]
fn collapse_matches_the_matrix_for_every_short_sequence() {
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
                tokio::time::timeout(Duration::from_secs(3600), collapse_case(seeded, writes))
                    .await
                    .is_ok()
            });
            assert!(finished, "stalled: seeded={seeded} {writes:?}");
        }
    }
}
