//! The PostgreSQL side of the change feed: a trigger that notifies inside the writing
//! transaction, and one listener connection per server process.
//!
//! Every served table gets an `AFTER INSERT OR UPDATE … FOR EACH ROW` trigger calling
//! `pg_notify('tidesync_feed', {"s": schema, "t": table, "u": updatedAt, "i": id, "o": userId})`.
//! PostgreSQL delivers a notification when its transaction commits and drops it on rollback,
//! so a subscriber is never told of a write it cannot read yet. Because the trigger lives in
//! the database, writes made through any server (single writes and batches alike) notify
//! every server's listener. Hard deletes and tombstone purges do not notify (an incremental
//! pull cannot see them either).

use std::time::Duration;

use serde::Deserialize;
use tokio::sync::oneshot;
use tokio_postgres::{AsyncMessage, NoTls};
use tracing::Instrument as _;

use super::{Change, FeedHub, FeedMessage};
use crate::store::StoreError;
use crate::store::sql::quote;

/// The notification channel.
pub const CHANNEL: &str = "tidesync_feed";
/// The advisory lock key that serialises trigger creation ("tsfeed" in ASCII).
const TRIGGER_LOCK: i64 = 0x7473_6665_6564;
/// The trigger's name on each table.
const TRIGGER: &str = "tidesync_feed";

/// A notification's payload.
#[derive(Debug, Deserialize)]
struct Payload {
    s: String,
    t: String,
    u: i64,
    i: String,
    o: Option<String>,
}

async fn connect(
    url: &str,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), StoreError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let task = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "feed setup connection ended");
        }
    });
    Ok((client, task))
}

/// Creates the notify function in `schema` and the trigger on each of `tables` when missing,
/// under an advisory lock so that servers starting together do not race.
///
/// # Errors
///
/// [`StoreError::Unavailable`] when the database cannot be reached, a store error when it
/// refuses.
pub async fn install(url: &str, schema: &str, tables: &[String]) -> Result<(), StoreError> {
    let (mut client, task) = connect(url).await?;
    let store_error = |e: tokio_postgres::Error| StoreError::backend(e);
    let tx = client.transaction().await.map_err(store_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&TRIGGER_LOCK])
        .await
        .map_err(store_error)?;
    let function = format!("{}.{}", quote(schema), quote("tidesync_feed_notify"));
    tx.batch_execute(&format!(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           PERFORM pg_notify('{CHANNEL}', json_build_object(
             's', TG_TABLE_SCHEMA, 't', TG_TABLE_NAME, 'u', NEW.\"updatedAt\", 'i', NEW.\"id\",
             'o', to_jsonb(NEW) ->> 'userId')::text);
           RETURN NULL;
         END $$;"
    ))
    .await
    .map_err(store_error)?;
    for table in tables {
        let qualified = format!("{}.{}", quote(schema), quote(table));
        let exists = tx
            .query_opt(
                "SELECT 1 FROM pg_trigger WHERE tgrelid = $1::text::regclass AND tgname = $2",
                &[&qualified, &TRIGGER],
            )
            .await
            .map_err(store_error)?
            .is_some();
        if !exists {
            tx.batch_execute(&format!(
                "CREATE TRIGGER {} AFTER INSERT OR UPDATE ON {qualified}
                 FOR EACH ROW EXECUTE FUNCTION {function}()",
                quote(TRIGGER)
            ))
            .await
            .map_err(store_error)?;
        }
    }
    tx.commit().await.map_err(store_error)?;
    drop(client);
    let _ = task.await;
    Ok(())
}

/// Starts this process's listener: it publishes the notifications of `schema` into `hub`,
/// and reconnects (publishing [`FeedMessage::Resync`]) when its connection drops. Returns
/// once the first `LISTEN` is in place (or failed), so that feeds opened after the server
/// started miss nothing.
pub async fn start_listener(url: &str, schema: &str, hub: &FeedHub) {
    let (ready, is_ready) = oneshot::channel();
    let span = tracing::info_span!("feed_listener", schema);
    let task = tokio::spawn(
        listen_loop(url.to_owned(), schema.to_owned(), hub.clone(), ready).instrument(span),
    );
    hub.set_listener(task.abort_handle());
    let _ = tokio::time::timeout(Duration::from_secs(10), is_ready).await;
}

async fn listen_loop(url: String, schema: String, hub: FeedHub, ready: oneshot::Sender<()>) {
    let mut ready = Some(ready);
    let mut failures = 0u32;
    loop {
        match listen_once(&url, &schema, &hub, &mut ready).await {
            Ok(()) => failures = 0,
            Err(error) => {
                tracing::warn!(%error, "change feed listener connection failed");
                failures = failures.saturating_add(1);
            }
        }
        // Never listening yet: let the server start anyway (feeds resync once we are).
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
        let wait = Duration::from_millis(100u64.saturating_mul(1 << failures.min(6)));
        tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
    }
}

/// One listener connection: `LISTEN`, then publish until the connection ends.
async fn listen_once(
    url: &str,
    schema: &str,
    hub: &FeedHub,
    ready: &mut Option<oneshot::Sender<()>>,
) -> Result<(), StoreError> {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let statement = format!("LISTEN {}", quote(CHANNEL));
    let listen = client.batch_execute(&statement);
    tokio::pin!(listen);
    let mut listening = false;
    loop {
        tokio::select! {
            done = &mut listen, if !listening => {
                done.map_err(StoreError::backend)?;
                listening = true;
                tracing::debug!("listening for changes");
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                } else {
                    // A reconnect: what was notified in between is lost.
                    hub.publish(FeedMessage::Resync);
                }
            }
            message = std::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                Some(Ok(AsyncMessage::Notification(note))) => {
                    match serde_json::from_str::<Payload>(note.payload()) {
                        Ok(p) if p.s == schema => {
                            hub.publish(FeedMessage::Change(Change {
                                table: p.t,
                                updated_at_ms: p.u,
                                id: p.i,
                                owner: p.o,
                            }));
                        }
                        Ok(_) => {}
                        Err(error) => tracing::warn!(%error, "unreadable change notification"),
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(StoreError::Unavailable(error.to_string())),
                None => return Ok(()),
            },
        }
    }
}
