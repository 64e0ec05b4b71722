//! [`SyncTable`]: the typed handle on one table that apps use.
//!
//! **Where blocking work runs (the one rule):** a single local write (insert,
//! update, delete of one item) runs inline on the caller's thread: it is one
//! short store transaction, like taking a mutex, and moving it to another
//! thread would cost more than it does. Reads (a row, a query, a count) may
//! scan a table, so they run on tokio's blocking pool (`spawn_blocking`), as
//! does applying a large pulled page. `SyncContext`'s synchronous methods
//! (`get`, `query`, `transaction`) run inline for callers that are already on
//! a thread of their own.

use std::any::Any;
use std::borrow::Cow;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tidesync_protocol::Item;
use tidesync_protocol::odata::Query;
use tidesync_protocol::system::ID;

use crate::context::SyncContext;
use crate::error::{Error, Result};
use crate::model::OpKind;
use crate::outcome::{PullOptions, PullResult, PushOptions, PushResult};
use crate::store::QueryResult;

/// A handle on one table, typed by the app's item type `T` (any serde type that
/// serialises to a JSON object with a string `id`), or untyped with the default
/// `T = serde_json::Value`.
#[derive(Debug)]
pub struct SyncTable<T = Value> {
    ctx: SyncContext,
    name: String,
    _item: PhantomData<fn() -> T>,
}

impl<T> SyncTable<T> {
    pub(crate) fn new(ctx: SyncContext, name: String) -> Self {
        Self {
            ctx,
            name,
            _item: PhantomData,
        }
    }

    /// Runs a read on the blocking pool (see the module's rule).
    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&SyncContext, &str) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let ctx = self.ctx.clone();
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || f(&ctx, &name))
            .await
            .map_err(|e| Error::Internal(format!("local read failed: {e}")))?
    }
}

impl<T> Clone for SyncTable<T> {
    fn clone(&self) -> Self {
        Self {
            ctx: self.ctx.clone(),
            name: self.name.clone(),
            _item: PhantomData,
        }
    }
}

/// The app's value as an item. An untyped table's `serde_json::Value` is
/// copied as it is (no pass through serde's data model); any other `T` is
/// serialised.
fn to_item<T: Serialize + 'static>(value: &T) -> Result<Item> {
    let value = match (value as &dyn Any).downcast_ref::<Value>() {
        Some(Value::Object(map)) => return Ok(map.clone()),
        Some(other) => Cow::Borrowed(other),
        None => Cow::Owned(serde_json::to_value(value)?),
    };
    match value {
        Cow::Owned(Value::Object(map)) => Ok(map),
        other => Err(Error::InvalidArgument(format!(
            "an item must serialise to a JSON object, not {other}"
        ))),
    }
}

/// A stored row as `T`; a row that does not fit names its table and id. An
/// untyped table's `serde_json::Value` takes the row as it is (it always fits).
fn from_row<T: DeserializeOwned + 'static>(table: &str, item: Item) -> Result<T> {
    let mut row = Some(Value::Object(item));
    if let Some(value) = (&mut row as &mut dyn Any)
        .downcast_mut::<Option<T>>()
        .and_then(Option::take)
    {
        return Ok(value);
    }
    let Some(Value::Object(item)) = row else {
        return Err(Error::Internal("a stored row vanished".to_owned()));
    };
    let id = item
        .get(ID)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    serde_json::from_value(Value::Object(item)).map_err(|source| Error::RowDoesNotFit {
        table: table.to_owned(),
        id,
        source,
    })
}

impl<T: Serialize + DeserializeOwned + 'static> SyncTable<T> {
    /// The table name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The context this table belongs to.
    pub fn context(&self) -> &SyncContext {
        &self.ctx
    }

    /// Inserts an item locally and queues its insert, in one atomic write. An item
    /// without an id gets one; the stored item is returned. Runs inline (one
    /// small write; see the module's rule).
    ///
    /// # Errors
    /// See [`crate::Transaction::insert`].
    pub async fn insert(&self, item: &T) -> Result<T> {
        let item = to_item(item)?;
        from_row(
            &self.name,
            self.ctx.write_one(OpKind::Insert, &self.name, item)?,
        )
    }

    /// Updates an item locally and queues its update.
    ///
    /// # Errors
    /// See [`crate::Transaction::update`].
    pub async fn update(&self, item: &T) -> Result<T> {
        let item = to_item(item)?;
        from_row(
            &self.name,
            self.ctx.write_one(OpKind::Update, &self.name, item)?,
        )
    }

    /// Edits the stored row: reads it, lets `edit` change it, and writes it back
    /// with its update queued, in one transaction. The edit starts from the row
    /// as stored now (its current version), so it never conflicts with this
    /// client's own earlier writes; a change pulled meanwhile is in the row it
    /// edits. Returns the stored item.
    ///
    /// # Errors
    /// [`Error::NotFound`] without such a row; [`Error::InvalidArgument`] when
    /// `edit` changes the id; otherwise as [`update`](Self::update).
    pub async fn update_with(&self, id: &str, edit: impl FnOnce(&mut T)) -> Result<T> {
        let stored = self.ctx.transaction(|tx| {
            let row = tx.get(&self.name, id)?.ok_or_else(|| Error::NotFound {
                table: self.name.clone(),
                id: id.to_owned(),
            })?;
            let mut value: T = from_row(&self.name, row)?;
            edit(&mut value);
            let item = to_item(&value)?;
            if item.get(ID).and_then(Value::as_str) != Some(id) {
                return Err(Error::InvalidArgument(format!(
                    "update_with must not change the id of {id} in {}",
                    self.name
                )));
            }
            tx.update(&self.name, item)
        })?;
        from_row(&self.name, stored)
    }

    /// Deletes an item locally and queues its delete (its `version`, if given,
    /// becomes the delete's `If-Match`).
    ///
    /// # Errors
    /// See [`crate::Transaction::delete`].
    pub async fn delete(&self, item: &T) -> Result<()> {
        let item = to_item(item)?;
        self.ctx.transaction(|tx| tx.delete(&self.name, item))
    }

    /// Deletes an item by id, with the stored row as the delete's snapshot.
    ///
    /// # Errors
    /// See [`crate::Transaction::delete`].
    pub async fn delete_id(&self, id: &str) -> Result<()> {
        self.ctx.transaction(|tx| tx.delete_id(&self.name, id))
    }

    /// One local item.
    ///
    /// # Errors
    /// Store failures, or a row that does not fit `T`.
    pub async fn get(&self, id: &str) -> Result<Option<T>> {
        let id = id.to_owned();
        self.read(move |ctx, table| ctx.get(table, &id))
            .await?
            .map(|row| from_row(&self.name, row))
            .transpose()
    }

    /// A local query.
    ///
    /// # Errors
    /// Store failures, or rows that do not fit `T`.
    pub async fn query(&self, query: &Query) -> Result<Vec<T>> {
        self.typed(self.query_items(query).await?)
    }

    /// A local query's rows as stored (live queries compare them).
    pub(crate) async fn query_items(&self, query: &Query) -> Result<Vec<Item>> {
        let query = query.clone();
        Ok(self
            .read(move |ctx, table| ctx.query(table, &query))
            .await?
            .items)
    }

    /// Rows as `T`.
    pub(crate) fn typed(&self, rows: Vec<Item>) -> Result<Vec<T>> {
        rows.into_iter()
            .map(|row| from_row(&self.name, row))
            .collect()
    }

    /// Counts the local rows a query's filter selects.
    ///
    /// # Errors
    /// Store failures.
    pub async fn count(&self, query: &Query) -> Result<u64> {
        let query = Query {
            filter: query.filter.clone(),
            top: Some(0),
            count: true,
            ..Query::default()
        };
        let found: QueryResult = self
            .read(move |ctx, table| ctx.query(table, &query))
            .await?;
        Ok(found.count.unwrap_or(0))
    }

    /// Pulls this table. A non-empty `query_id` makes the pull incremental; an
    /// empty one reads the whole query. Pending ops on the table are pushed first.
    ///
    /// # Errors
    /// See [`SyncContext::pull`].
    pub async fn pull(&self, query_id: &str, query: Query) -> Result<PullResult> {
        let id = (!query_id.is_empty()).then_some(query_id);
        self.ctx.pull(&self.name, id, query).await
    }

    /// Pulls this table incrementally under the query id derived from `query`
    /// ([`derived_query_id`](crate::derived_query_id)): each distinct query keeps
    /// its own cursor without the app naming one.
    ///
    /// # Errors
    /// See [`SyncContext::pull`].
    pub async fn pull_query(&self, query: Query) -> Result<PullResult> {
        let id = crate::outcome::derived_query_id(&query);
        self.ctx.pull(&self.name, Some(&id), query).await
    }

    /// [`pull`](Self::pull) with options.
    ///
    /// # Errors
    /// See [`SyncContext::pull`].
    pub async fn pull_with(
        &self,
        query_id: &str,
        query: Query,
        options: PullOptions,
    ) -> Result<PullResult> {
        let id = (!query_id.is_empty()).then_some(query_id);
        self.ctx.pull_with(&self.name, id, query, options).await
    }

    /// Purges local rows of this table; see [`SyncContext::purge`].
    ///
    /// # Errors
    /// See [`SyncContext::purge`].
    pub async fn purge(
        &self,
        query_id: Option<&str>,
        query: Option<Query>,
        force: bool,
    ) -> Result<()> {
        self.ctx.purge(&self.name, query_id, query, force).await
    }

    /// Pushes only this table's ops.
    ///
    /// # Errors
    /// See [`SyncContext::push`].
    pub async fn push(&self) -> Result<PushResult> {
        self.ctx
            .push_with(PushOptions::new().tables([self.name.clone()]))
            .await
    }

    /// How many ops of this table are queued.
    ///
    /// # Errors
    /// Store failures.
    pub fn pending_operations(&self) -> Result<u64> {
        Ok(self.ctx.pending_in(&self.name))
    }
}
