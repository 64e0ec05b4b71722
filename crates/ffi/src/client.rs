//! [`Client`]: opens a SQLite store, talks to a server over HTTP, and runs the
//! facade's push, pull, purge and `clear_all` for the host.

use std::sync::Arc;
use std::time::Duration;

use tidesync::{ApiKey, BearerToken, RetryPolicy, SqliteStore};

use crate::error::TidesyncError;
use crate::listen::{self, ConflictResolver, StatusListener, Subscription};
use crate::records::{
    ClientConfig, OperationFailure, PullOutcome, PushOutcome, QuerySpec, SyncStatus, parse_item,
};
use crate::runtime::{run, runtime};
use crate::table::Table;

/// A sync client: one local SQLite file, one server. Cheap to share; every
/// method may be called from any thread.
#[derive(Debug, uniffi::Object)]
pub struct Client {
    inner: tidesync::Client,
}

#[uniffi::export]
impl Client {
    /// Opens (or creates) the local store, defines the tables and connects to
    /// nothing yet: the server is first contacted by a push or pull. `resolver`
    /// decides conflicts; without one a conflict is recorded as an operation
    /// failure.
    ///
    /// # Errors
    /// [`TidesyncError::InvalidArgument`] for a bad URL, table or setting;
    /// [`TidesyncError::Store`] when the file cannot be opened.
    #[uniffi::constructor]
    pub fn open(
        config: ClientConfig,
        resolver: Option<Arc<dyn ConflictResolver>>,
    ) -> Result<Arc<Self>, TidesyncError> {
        let store = SqliteStore::open(&config.database_path).map_err(tidesync::Error::from)?;
        let mut builder = tidesync::Client::builder()
            .store(store)
            .url(&config.server_url)?;
        match (config.api_key, config.bearer_token) {
            (Some(_), Some(_)) => {
                return Err(TidesyncError::invalid_argument(
                    "give either api_key or bearer_token, not both",
                ));
            }
            (Some(key), None) => builder = builder.auth(ApiKey::new(key)),
            (None, Some(token)) => builder = builder.auth(BearerToken::new(token)),
            (None, None) => {}
        }
        for (name, value) in config.headers {
            builder = builder.header(name, value);
        }
        if let Some(ms) = config.timeout_ms {
            builder = builder.timeout(Duration::from_millis(ms));
        }
        if let Some(ms) = config.connect_timeout_ms {
            builder = builder.connect_timeout(Duration::from_millis(ms));
        }
        if let Some(max_retries) = config.max_retries {
            builder = builder.retry(RetryPolicy {
                max_retries,
                ..RetryPolicy::default()
            });
        }
        for table in &config.tables {
            builder = builder.table(table.into());
        }
        if let Some(rows) = config.page_size {
            builder = builder.page_size(rows);
        }
        if let Some(ops) = config.batch_size {
            let ops = usize::try_from(ops)
                .map_err(|_| TidesyncError::invalid_argument("batch_size is too large"))?;
            builder = builder.batch_size(ops);
        }
        if let Some(rounds) = config.max_conflict_rounds {
            builder = builder.max_conflict_rounds(rounds);
        }
        if let Some(resolver) = resolver {
            builder = builder.conflict_handler(listen::conflict_handler(resolver));
        }
        // The engine may start tasks as it is built: build it inside the runtime.
        let _inside = runtime()?.enter();
        Ok(Arc::new(Self {
            inner: builder.build()?,
        }))
    }

    /// The handle of a table defined at open.
    pub fn table(&self, name: String) -> Arc<Table> {
        Arc::new(Table::new(self.inner.table(name)))
    }

    /// Pushes every table's queued operations in order. A push that cannot reach
    /// the server is not an error: its status says `CancelledByNetworkError`.
    ///
    /// # Errors
    /// Only failures outside the push itself.
    pub async fn push(&self) -> Result<PushOutcome, TidesyncError> {
        let client = self.inner.clone();
        run(async move { Ok(PushOutcome::from(&client.push().await?)) }).await
    }

    /// Pulls a table (incrementally under `query_id`); pending operations are
    /// pushed first.
    ///
    /// # Errors
    /// [`TidesyncError::PushFailed`] when the push before it did not complete;
    /// network, server and store failures.
    pub async fn pull(
        &self,
        table: String,
        query_id: Option<String>,
        query: QuerySpec,
    ) -> Result<PullOutcome, TidesyncError> {
        let client = self.inner.clone();
        let query = query.to_query()?;
        run(async move {
            let pulled = client.pull(&table, query_id.as_deref(), query).await?;
            Ok(PullOutcome::from(&pulled))
        })
        .await
    }

    /// Deletes local rows (all, or those `query` selects) without contacting the
    /// server, and forgets the cursor of `query_id`.
    ///
    /// # Errors
    /// [`TidesyncError::PendingOperations`] when the table has queued ops (unless
    /// `force` and no query); store failures.
    pub async fn purge(
        &self,
        table: String,
        query_id: Option<String>,
        query: Option<QuerySpec>,
        force: bool,
    ) -> Result<(), TidesyncError> {
        let client = self.inner.clone();
        let query = query.as_ref().map(QuerySpec::to_query).transpose()?;
        run(async move {
            Ok(client
                .purge(&table, query_id.as_deref(), query, force)
                .await?)
        })
        .await
    }

    /// Signs out: removes every local row, queued op, failure record and pull
    /// cursor; table definitions stay.
    ///
    /// # Errors
    /// Store failures (then nothing was removed).
    pub async fn clear_all(&self) -> Result<(), TidesyncError> {
        let client = self.inner.clone();
        run(async move { Ok(client.clear_all().await?) }).await
    }

    /// The sync status now.
    pub fn status(&self) -> SyncStatus {
        SyncStatus::from(&*self.inner.status().borrow())
    }

    /// Tells `listener` the status now and after every change, until the
    /// subscription is cancelled or dropped.
    ///
    /// # Errors
    /// [`TidesyncError::Internal`] when the runtime cannot start.
    pub fn watch_status(
        &self,
        listener: Arc<dyn StatusListener>,
    ) -> Result<Arc<Subscription>, TidesyncError> {
        listen::watch_status(&self.inner, listener)
    }

    /// How many operations are queued.
    ///
    /// # Errors
    /// Store failures.
    pub fn pending_operations(&self) -> Result<u64, TidesyncError> {
        Ok(self.inner.pending_operations()?)
    }

    /// The operations that failed and wait for a resolution.
    ///
    /// # Errors
    /// Store failures.
    pub fn operation_failures(&self) -> Result<Vec<OperationFailure>, TidesyncError> {
        Ok(self
            .inner
            .operation_errors()?
            .iter()
            .map(OperationFailure::from)
            .collect())
    }

    /// Resolves a failed operation by dropping it (and reverting nothing).
    ///
    /// # Errors
    /// [`TidesyncError::NotFound`]-like [`TidesyncError::InvalidArgument`] when no
    /// failure has this id; [`TidesyncError::OperationChanged`]; store failures.
    pub fn cancel_and_discard(&self, operation_id: String) -> Result<(), TidesyncError> {
        let error = self.failure(&operation_id)?;
        Ok(self.inner.cancel_and_discard(&error)?)
    }

    /// Resolves a failed operation by sending `item_json` (a JSON object) again.
    ///
    /// # Errors
    /// As [`cancel_and_discard`](Self::cancel_and_discard); [`TidesyncError::InvalidItem`].
    pub fn update_and_retry(
        &self,
        operation_id: String,
        item_json: String,
    ) -> Result<(), TidesyncError> {
        let error = self.failure(&operation_id)?;
        Ok(self
            .inner
            .update_and_retry(&error, parse_item(&item_json)?)?)
    }
}

impl Client {
    /// The engine behind the binding (the bench compares against it).
    pub fn facade(&self) -> &tidesync::Client {
        &self.inner
    }

    fn failure(&self, operation_id: &str) -> Result<tidesync::OperationError, TidesyncError> {
        self.inner
            .operation_errors()?
            .into_iter()
            .find(|e| e.operation_id == operation_id)
            .ok_or_else(|| {
                TidesyncError::invalid_argument(format!(
                    "no failed operation {operation_id} waits for a resolution"
                ))
            })
    }
}
