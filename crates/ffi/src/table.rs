//! [`Table`]: one table's local reads and writes, its pull and its live queries,
//! with items as JSON text.

use std::sync::Arc;

use serde_json::Value;
use tidesync::SyncTable;

use crate::error::TidesyncError;
use crate::listen::{self, LiveQueryListener, Subscription};
use crate::records::{PullOutcome, QuerySpec, parse_item};
use crate::runtime::run;

/// One table of a [`Client`](crate::Client). Items are JSON objects as text;
/// writes return the stored item (with its id, and the server's properties
/// once it was pushed or pulled).
#[derive(Debug, uniffi::Object)]
pub struct Table {
    table: SyncTable<Value>,
}

impl Table {
    pub(crate) fn new(table: SyncTable<Value>) -> Self {
        Self { table }
    }
}

#[uniffi::export]
impl Table {
    /// The table's name.
    pub fn name(&self) -> String {
        self.table.name().to_owned()
    }

    /// Inserts an item locally and queues it (an id is made when it has none).
    ///
    /// # Errors
    /// [`TidesyncError::InvalidItem`], [`TidesyncError::AlreadyExists`],
    /// [`TidesyncError::QueueRefused`], store failures.
    pub async fn insert(&self, item_json: String) -> Result<String, TidesyncError> {
        let item = Value::Object(parse_item(&item_json)?);
        let table = self.table.clone();
        run(async move { Ok(table.insert(&item).await?.to_string()) }).await
    }

    /// Replaces an item (by its `id`) locally and queues the update.
    ///
    /// # Errors
    /// As [`insert`](Self::insert); [`TidesyncError::NotFound`].
    pub async fn update(&self, item_json: String) -> Result<String, TidesyncError> {
        let item = Value::Object(parse_item(&item_json)?);
        let table = self.table.clone();
        run(async move { Ok(table.update(&item).await?.to_string()) }).await
    }

    /// Deletes an item locally and queues the delete.
    ///
    /// # Errors
    /// [`TidesyncError::NotFound`], [`TidesyncError::QueueRefused`], store failures.
    pub async fn delete(&self, id: String) -> Result<(), TidesyncError> {
        let table = self.table.clone();
        run(async move { Ok(table.delete_id(&id).await?) }).await
    }

    /// One local item, JSON text, or none.
    ///
    /// # Errors
    /// Store failures.
    pub async fn get(&self, id: String) -> Result<Option<String>, TidesyncError> {
        let table = self.table.clone();
        run(async move { Ok(table.get(&id).await?.map(|item| item.to_string())) }).await
    }

    /// A local query's rows as one JSON array: the whole result crosses in one call.
    ///
    /// # Errors
    /// [`TidesyncError::InvalidArgument`] for a query that does not parse; store failures.
    pub async fn query(&self, query: QuerySpec) -> Result<String, TidesyncError> {
        let query = query.to_query()?;
        let context = self.table.context().clone();
        let name = self.table.name().to_owned();
        run(async move {
            // A store read and the JSON text of every row: blocking work, off the workers.
            tokio::task::spawn_blocking(move || {
                let rows = context.query(&name, &query)?.items;
                serde_json::to_string(&rows).map_err(|e| TidesyncError::internal(e.to_string()))
            })
            .await
            .map_err(|e| TidesyncError::internal(format!("the query failed: {e}")))?
        })
        .await
    }

    /// How many local rows the query's filter selects.
    ///
    /// # Errors
    /// As [`query`](Self::query).
    pub async fn count(&self, query: QuerySpec) -> Result<u64, TidesyncError> {
        let query = query.to_query()?;
        let table = self.table.clone();
        run(async move { Ok(table.count(&query).await?) }).await
    }

    /// Pulls the server's rows of this table that `query` selects, incrementally
    /// under `query_id`; pending operations are pushed first.
    ///
    /// # Errors
    /// As [`Client::pull`](crate::Client::pull).
    pub async fn pull(
        &self,
        query_id: String,
        query: QuerySpec,
    ) -> Result<PullOutcome, TidesyncError> {
        let query = query.to_query()?;
        let table = self.table.clone();
        run(async move { Ok(PullOutcome::from(&table.pull(&query_id, query).await?)) }).await
    }

    /// Pushes this table's queued operations only.
    ///
    /// # Errors
    /// As [`Client::push`](crate::Client::push).
    pub async fn push(&self) -> Result<crate::records::PushOutcome, TidesyncError> {
        let table = self.table.clone();
        run(async move { Ok(crate::records::PushOutcome::from(&table.push().await?)) }).await
    }

    /// Tells `listener` the query's rows now and whenever they change, until the
    /// subscription is cancelled or dropped.
    ///
    /// # Errors
    /// [`TidesyncError::InvalidArgument`] for a query that does not parse.
    pub fn live_query(
        &self,
        query: QuerySpec,
        listener: Arc<dyn LiveQueryListener>,
    ) -> Result<Arc<Subscription>, TidesyncError> {
        listen::live_query(&self.table, &query, listener)
    }
}
