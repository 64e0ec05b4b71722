//! The push status per injected fault, through a fault-arming, recording decorator
//! ([`Flaky`]) around the mock transport.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Value, json};
use tidesync_core::{
    BatchOperation, BatchOutcome, Item, LocalStore, OpState, Page, PushStatus, ReadRequest,
    SyncContext, Transport, TransportError,
};
use tidesync_transport_mock::{Fault, MockServer, MockTransport};

use super::StoreUnderTest;
use super::inputs::*;
use super::model::TABLES;
use super::world::World;

// ---- a fault-injecting, recording transport decorator ----

/// Wraps a [`MockTransport`]: arms a mock fault for the n-th call of a kind
/// (a countdown, like redb's fuzzer's failing backend) and records every row a
/// read returns.
#[derive(Debug)]
pub struct Flaky {
    inner: MockTransport,
    server: MockServer,
    /// `(reads or writes?, calls left before the fault, fault)`.
    pub(crate) armed: Mutex<Option<(bool, usize, Fault)>>,
    seen: Mutex<Vec<Item>>,
}

impl Flaky {
    pub(crate) fn new(server: &MockServer) -> Arc<Flaky> {
        Arc::new(Flaky {
            inner: server.transport(),
            server: server.clone(),
            armed: Mutex::new(None),
            seen: Mutex::new(Vec::new()),
        })
    }

    /// The `after`-th next read (`reads`) or write (0 = the very next) fails with `fault`.
    pub(crate) fn arm(&self, reads: bool, after: usize, fault: Fault) {
        *self.armed.lock().unwrap() = Some((reads, after, fault));
    }

    pub(crate) fn tick(&self, read: bool) {
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

    pub(crate) fn take_seen(&self) -> Vec<Item> {
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

pub fn flaky_client(store: &Arc<dyn LocalStore>, flaky: &Arc<Flaky>) -> SyncContext {
    SyncContext::builder()
        .store_arc(Arc::clone(store))
        .transport_arc(flaky.clone())
        .build()
        .unwrap()
}

// ---- push status per fault kind ----

pub async fn status_case(under: &'static dyn StoreUnderTest, tables: &[T], at: usize, fault: F) {
    let server = MockServer::new();
    let dir = under.scratch();
    let store = under.open(dir.path());
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
