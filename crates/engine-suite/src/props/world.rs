//! The world the model-based properties step: the engine on the store under test, the
//! mock server and the model, stepped together and compared after every step.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tidesync_core::{
    Error, Item, LocalStore, MemoryStore, OpKind, OpState, Query, ReadRequest, SyncContext,
    Transport, TransportError,
};
use tidesync_transport_mock::{CallKind, Fault, MockServer};

use super::StoreUnderTest;
use super::inputs::*;
use super::model::{self, ErrKind, Key, Model, PullOutcome, PushOutcome, RELATION, Row, TABLES};

/// The engine, the mock server and the model of one property case.
pub struct World {
    under: &'static dyn StoreUnderTest,
    server: MockServer,
    dir: tempfile::TempDir,
    store: Arc<dyn LocalStore>,
    client: SyncContext,
    model: Model,
    next_value: u32,
    log: Vec<String>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl World {
    pub(crate) fn new(
        under: &'static dyn StoreUnderTest,
        seed: u64,
        random_faults: Option<f64>,
    ) -> World {
        let server = MockServer::with_seed(seed);
        let dir = under.scratch();
        let store = under.open(dir.path());
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
            under,
            server,
            dir,
            store,
            client,
            model,
            next_value: 0,
            log: Vec::new(),
        }
    }

    pub(crate) fn connect(server: &MockServer, store: &Arc<dyn LocalStore>) -> SyncContext {
        SyncContext::builder()
            .store_arc(Arc::clone(store))
            .transport(server.transport())
            .build()
            .unwrap()
    }

    pub(crate) fn value(&mut self, prefix: &str) -> String {
        self.next_value += 1;
        format!("{prefix}{}", self.next_value)
    }

    pub(crate) fn body(t: usize, id: &str, v: &str) -> Value {
        let mut body = json!({"id": id, "v": v});
        if let Some(rel) = RELATION[t] {
            body[rel] = json!(id);
        }
        body
    }

    pub(crate) async fn local_write(&mut self, kind: OpKind, t: T, id: Id) {
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

    pub(crate) async fn insert_family(&mut self, id: Id) {
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

    pub(crate) async fn push(&mut self) -> PushOutcome {
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

    pub(crate) async fn pull(&mut self, t: usize) {
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

    pub(crate) fn restart(&mut self) {
        let ops = self.client.operations().unwrap();
        let errors = self.client.operation_errors().unwrap();
        // The old app is gone before the new one opens the store: a store holding an
        // exclusive file lock (redb) refuses a second handle.
        let placeholder: Arc<dyn LocalStore> = Arc::new(MemoryStore::new());
        self.client = World::connect(&self.server, &placeholder);
        let old = std::mem::replace(&mut self.store, placeholder);
        self.store = self.under.reopen(old, self.dir.path());
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

    pub(crate) async fn run(&mut self, step: &Step) {
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
    pub(crate) fn check(&mut self) {
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
                let delete = op.kind == OpKind::Delete;
                // What an insert's or update's last attempt sent: the attempt
                // its `item` keeps, or else (an op marked without copying its
                // row, which no write has changed since) its local row.
                let item = match &op.item {
                    Some(item) => values(item),
                    None if !delete && op.state != OpState::Pending => self
                        .client
                        .get(&op.table, &op.item_id)
                        .unwrap()
                        .as_ref()
                        .and_then(values),
                    None => None,
                };
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
    pub(crate) async fn settle(&mut self) {
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

pub async fn run_steps(
    under: &'static dyn StoreUnderTest,
    seed: u64,
    random_faults: Option<f64>,
    steps: &[Step],
) -> World {
    let mut world = World::new(under, seed, random_faults);
    for step in steps {
        world.run(step).await;
    }
    world.settle().await;
    world
}

/// The model mirrors the mock's seeded fault generator (scripted faults first,
/// then one draw per call that reaches the server). If the mock ever changes
/// how it draws, this says so plainly instead of a confusing model mismatch.
pub fn the_model_mirrors_the_mocks_seeded_faults() {
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
