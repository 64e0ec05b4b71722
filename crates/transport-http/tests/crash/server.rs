//! The server side: tidesync-server on SQLite, in-process, its store wrapped in a
//! [`Recorder`] that keeps every write applied to `Note` (so the check can account for each
//! one exactly) and can hold the next write or read of the child (so a kill lands while the
//! child waits for a push's or a pull's answer).

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tidesync_server::store::{
    BatchWrite, Decide, Mutation, Outcome, ReadRequest, ReadResult, Row, StoreError, TableSchema,
    TableSpec,
};
use tidesync_server::{App, RunningServer, Server, SqliteStore, Store};
use tokio::sync::oneshot;

/// Which request a [`Hold`] stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldOn {
    /// The next write to `Note` (single or batch), after it is applied: its answer is
    /// held back, as if lost.
    Write,
    /// The next table read, before it is answered.
    Read,
}

/// An armed hold: the request that meets it says so on `reached`, then waits for `release`.
#[derive(Debug)]
struct Hold {
    on: HoldOn,
    reached: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

/// The writes applied to `Note`, in commit order: the item id and what was written.
type Applied = Arc<Mutex<Vec<(String, Mutation)>>>;

/// A [`Store`] that passes everything to `inner`, records the writes applied to `Note` in
/// commit order, and holds one request when armed.
///
/// A write is recorded by its protocol decision, which the store runs inside its write
/// transaction: a kill closes the client's connection, the server then drops the request's
/// future, but the store's blocking transaction still commits, so a record taken after the
/// `await` would miss exactly the writes of interrupted pushes.
#[derive(Debug)]
pub struct Recorder {
    inner: Arc<dyn Store>,
    applied: Applied,
    hold: Mutex<Option<Hold>>,
}

/// `decide`, recording the mutation it chooses for `id`. The server runs a decision once per
/// write on SQLite (only PostgreSQL may decide again under a table lock), so each decision
/// recorded is one write applied, if its transaction commits.
fn recording(applied: &Applied, id: &str, decide: Decide) -> Decide {
    let applied = applied.clone();
    let id = id.to_owned();
    Box::new(move |row, schema| {
        let decided = decide(row, schema);
        if let Ok(mutation) = &decided {
            applied.lock().unwrap().push((id.clone(), mutation.clone()));
        }
        decided
    })
}

impl Recorder {
    /// Every write applied to `Note` so far: the item id and what was written.
    pub fn applied(&self) -> Vec<(String, Mutation)> {
        self.applied.lock().unwrap().clone()
    }

    /// Holds the next request of the kind `on`: resolves the first receiver when a request
    /// is held; the request goes on when the sender is used or dropped.
    pub fn arm(&self, on: HoldOn) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        *self.hold.lock().unwrap() = Some(Hold {
            on,
            reached: reached_tx,
            release: release_rx,
        });
        (reached_rx, release_tx)
    }

    fn take_hold(&self, on: HoldOn) -> Option<Hold> {
        let mut hold = self.hold.lock().unwrap();
        if hold.as_ref().is_some_and(|h| h.on == on) {
            hold.take()
        } else {
            None
        }
    }

    async fn wait_at(&self, on: HoldOn) {
        if let Some(hold) = self.take_hold(on) {
            let _ = hold.reached.send(());
            let _ = hold.release.await;
        }
    }
}

#[async_trait]
impl Store for Recorder {
    async fn prepare_table(&self, spec: &TableSpec) -> Result<(), StoreError> {
        self.inner.prepare_table(spec).await
    }

    async fn schema(&self, table: &str) -> Result<TableSchema, StoreError> {
        self.inner.schema(table).await
    }

    async fn get(&self, table: &str, id: &str) -> Result<Option<Row>, StoreError> {
        self.inner.get(table, id).await
    }

    async fn write(&self, table: &str, id: &str, decide: Decide) -> Result<Outcome, StoreError> {
        if table != "Note" {
            return self.inner.write(table, id, decide).await;
        }
        let written = self
            .inner
            .write(table, id, recording(&self.applied, id, decide))
            .await;
        self.wait_at(HoldOn::Write).await;
        written
    }

    async fn read(&self, table: &str, request: &ReadRequest) -> Result<ReadResult, StoreError> {
        self.wait_at(HoldOn::Read).await;
        self.inner.read(table, request).await
    }

    async fn purge_deleted(&self, table: &str, before_ms: i64) -> Result<u64, StoreError> {
        self.inner.purge_deleted(table, before_ms).await
    }

    async fn purge_horizon(&self, table: &str) -> Result<Option<i64>, StoreError> {
        self.inner.purge_horizon(table).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn write_batch(
        &self,
        writes: Vec<BatchWrite>,
        retention_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let notes = writes.iter().any(|w| w.table == "Note");
        let writes = writes
            .into_iter()
            .map(|mut write| {
                if write.table == "Note" {
                    write.decide = recording(&self.applied, &write.id, write.decide);
                }
                write
            })
            .collect();
        let results = self.inner.write_batch(writes, retention_ms).await;
        if notes {
            self.wait_at(HoldOn::Write).await;
        }
        results
    }
}

/// Starts the server on the SQLite file `db`, with tables `Note` and `Memo`.
pub async fn start_server(db: &Path) -> (App, Arc<Recorder>, RunningServer) {
    let recorder = Arc::new(Recorder {
        inner: Arc::new(SqliteStore::open(db).await.unwrap()),
        applied: Applied::default(),
        hold: Mutex::default(),
    });
    let app = Server::builder()
        .store(recorder.clone())
        .table("Note")
        .table("Memo")
        .bind("127.0.0.1:0")
        .build()
        .await
        .unwrap();
    let running = app.clone().serve().await.unwrap();
    (app, recorder, running)
}
