//! Reads on PostgreSQL: each in a read slot, on a pooled connection held by a guard that
//! cancels its statement if the read is dropped, in one read-only repeatable-read snapshot
//! under `statement_timeout`, returning only the rows below the read's horizon (see
//! `store::horizon`).

use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, NoTls};

use super::super::horizon::{Horizon, with_horizon};
use super::super::limits::StoreLimits;
use super::super::schema::TableSpec;
use super::super::sql;
use super::super::{ReadRequest, ReadResult, Row, StoreError};
use super::rows::{Params, column_list, decode_row};
use super::{CLOCK_LOCK_SEED, NOW_MS, PostgresStore, param_value, pg_error};

impl PostgresStore {
    /// One read in one snapshot, and the horizon it was read under.
    pub(super) async fn read_once(
        &self,
        spec: &TableSpec,
        translated: &sql::Translated,
        request: &ReadRequest,
    ) -> Result<(ReadResult, Horizon), StoreError> {
        let _slot = self.gate.enter().await?;
        let mut conn = ReadConnection::new(self.client().await?);
        let result = self
            .read_in(conn.client()?, spec, translated, request)
            .await;
        conn.done();
        result
    }

    /// [`Self::read_once`] on `client`.
    async fn read_in(
        &self,
        client: &mut deadpool_postgres::Object,
        spec: &TableSpec,
        translated: &sql::Translated,
        request: &ReadRequest,
    ) -> Result<(ReadResult, Horizon), StoreError> {
        let table = spec.name.as_str();
        let params: Params = translated.params.iter().map(param_value).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
        let skip = i64::try_from(request.skip).unwrap_or(i64::MAX);
        // `now`, then whether a write is in flight, then the snapshot (see `store::horizon`):
        // the subquery fences the clock reading before the lock test.
        let probe = client
            .prepare_cached(&format!(
                "SELECT n, pg_try_advisory_xact_lock_shared(hashtextextended($1, {CLOCK_LOCK_SEED}))
                 FROM (SELECT {NOW_MS} AS n OFFSET 0) AS s"
            ))
            .await
            .map_err(pg_error)?;
        let probe = client
            .query_one(&probe, &[&self.clock_key(table)])
            .await
            .map_err(pg_error)?;
        let (now, idle): (i64, bool) = (probe.get(0), probe.get(1));
        let tx = read_snapshot(client, &self.limits).await?;
        // The columns as this snapshot has them (another server may have added some); the
        // filter was checked against the cached ones, a subset.
        let clock_sql = format!(
            "SELECT clock_ms FROM {} WHERE name = $1",
            self.bookkeeping()
        );
        let (schema, clock) = tokio::try_join!(self.load_schema_in(&tx, spec.clone()), async {
            tx.query_one(&clock_sql, &[&table]).await.map_err(pg_error)
        })?;
        let horizon = Horizon::of(now, idle, clock.get(0));
        let where_sql = with_horizon(&translated.where_sql, horizon);
        let query = format!(
            "SELECT {} FROM {} WHERE {where_sql} ORDER BY {} LIMIT {limit} OFFSET {skip}",
            column_list(&schema),
            self.table(table),
            translated.order_sql
        );
        let rows = tx
            .query(&query, &refs)
            .await
            .map_err(pg_error)?
            .iter()
            .map(|r| decode_row(r, &schema))
            .collect::<Result<Vec<_>, _>>()?;
        let count = if request.count {
            let n: i64 = tx
                .query_one(
                    &format!(
                        "SELECT COUNT(*) FROM {} WHERE {where_sql}",
                        self.table(table)
                    ),
                    &refs,
                )
                .await
                .map_err(pg_error)?
                .get(0);
            Some(u64::try_from(n).unwrap_or(0))
        } else {
            None
        };
        tx.commit().await.map_err(pg_error)?;
        Ok((ReadResult { rows, count }, horizon))
    }

    /// [`Store::get`] on `client`.
    pub(super) async fn get_in(
        &self,
        client: &mut deadpool_postgres::Object,
        spec: TableSpec,
        id: &str,
    ) -> Result<Option<Row>, StoreError> {
        let table = spec.name.clone();
        let tx = read_snapshot(client, &self.limits).await?;
        let schema = self.load_schema_in(&tx, spec).await?;
        let row = tx
            .query_opt(
                &format!(
                    "SELECT {} FROM {} WHERE \"id\" = $1",
                    column_list(&schema),
                    self.table(&table)
                ),
                &[&id],
            )
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        row.map(|r| decode_row(&r, &schema)).transpose()
    }
}

/// The pooled connection of a read. A read that finishes (well or not) says [`Self::done`]
/// and the connection goes back to the pool; a read dropped before that (its client went
/// away) takes the connection out of the pool, cancels its running statement and closes it,
/// so that the cancel cannot reach another read that reuses the connection.
pub(super) struct ReadConnection {
    client: Option<deadpool_postgres::Object>,
}

impl ReadConnection {
    pub(super) fn new(client: deadpool_postgres::Object) -> ReadConnection {
        ReadConnection {
            client: Some(client),
        }
    }

    /// The connection (present from `new` until `done` or the drop).
    pub(super) fn client(&mut self) -> Result<&mut deadpool_postgres::Object, StoreError> {
        self.client.as_mut().ok_or_else(|| {
            StoreError::Internal("a read connection was used after it ended".to_owned())
        })
    }

    /// The read finished: the connection returns to the pool.
    pub(super) fn done(mut self) {
        self.client.take();
    }
}

impl Drop for ReadConnection {
    fn drop(&mut self) {
        let Some(object) = self.client.take() else {
            return;
        };
        let client = deadpool_postgres::Object::take(object);
        let token = client.cancel_token();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = token.cancel_query(NoTls).await {
                    tracing::debug!(%error, "cancelling a dropped read failed");
                }
                drop(client);
            });
        }
    }
}

/// A read-only repeatable-read transaction: every statement in it sees one snapshot, and
/// none runs longer than `limits.query_timeout` (`statement_timeout`).
pub(super) async fn read_snapshot<'a>(
    client: &'a mut deadpool_postgres::Object,
    limits: &StoreLimits,
) -> Result<deadpool_postgres::Transaction<'a>, StoreError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg_error)?;
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}",
        limits.query_timeout_ms()
    ))
    .await
    .map_err(pg_error)?;
    Ok(tx)
}
