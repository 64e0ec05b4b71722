//! [`FeedStore`]: a [`Store`] wrapper that publishes every committed row write to a
//! [`FeedHub`], for stores whose writes all pass through this process (SQLite).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use super::{Change, FeedHub, FeedMessage};
use crate::store::{
    BatchWrite, Decide, EncodedPage, OWNER_COLUMN, Outcome, PageRequest, ReadRequest, ReadResult,
    Row, Store, StoreError, TableSchema, TableSpec, Written,
};

/// Wraps a store; writes are published after they return, i.e. after their commit.
#[derive(Debug)]
pub struct FeedStore {
    inner: Arc<dyn Store>,
    hub: FeedHub,
}

impl FeedStore {
    /// Publishes the writes of `inner` to `hub`.
    pub fn new(inner: Arc<dyn Store>, hub: FeedHub) -> FeedStore {
        FeedStore { inner, hub }
    }
}

fn change(table: &str, row: &Row) -> Change {
    Change {
        table: table.to_owned(),
        updated_at_ms: row.updated_at_ms,
        id: row.id.clone(),
        owner: row
            .values
            .get(OWNER_COLUMN)
            .and_then(Value::as_str)
            .map(str::to_owned),
    }
}

#[async_trait]
impl Store for FeedStore {
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
        let outcome = self.inner.write(table, id, decide).await?;
        // A hard delete is not announced: an incremental pull cannot see it either.
        if let Ok(Written::Stored(row)) = &outcome {
            self.hub.publish(FeedMessage::Change(change(table, row)));
        }
        Ok(outcome)
    }

    async fn read(&self, table: &str, request: &ReadRequest) -> Result<ReadResult, StoreError> {
        self.inner.read(table, request).await
    }

    async fn read_page(
        &self,
        table: &str,
        page: &PageRequest,
    ) -> Result<Option<EncodedPage>, StoreError> {
        self.inner.read_page(table, page).await
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

    fn pool_stats(&self) -> crate::store::PoolStats {
        self.inner.pool_stats()
    }

    async fn write_batch(
        &self,
        writes: Vec<BatchWrite>,
        retention_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        // Each op's outcome passes through its render step inside the transaction; collect
        // the stored rows there and publish them once the batch has committed.
        let stored: Arc<Mutex<Vec<Change>>> = Arc::default();
        let writes = writes
            .into_iter()
            .map(|mut write| {
                let render = write.render;
                let table = write.table.clone();
                let stored = Arc::clone(&stored);
                write.render = Box::new(move |outcome| {
                    if let Ok(Written::Stored(row)) = &outcome {
                        stored
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(change(&table, row));
                    }
                    render(outcome)
                });
                write
            })
            .collect();
        let results = self.inner.write_batch(writes, retention_ms).await?;
        let stored = std::mem::take(&mut *stored.lock().unwrap_or_else(|e| e.into_inner()));
        for change in stored {
            self.hub.publish(FeedMessage::Change(change));
        }
        Ok(results)
    }
}
