//! The mock's change feed: [`MockTransport::change_feed`](crate::MockTransport) subscribers,
//! told of every write the server applies (from any transport, and the `server_*` writes of
//! "other clients"), and the switches tests script it with
//! ([`MockServer::set_feed_enabled`](crate::MockServer::set_feed_enabled),
//! [`MockServer::drop_feeds`](crate::MockServer::drop_feeds)).
//!
//! Like the real server's, an event is a hint: the table and the newest `(updatedAt, id)`.
//! It is published while the write is applied under the server's lock, so a subscriber that
//! reads after receiving it sees the write. A subscriber that does not keep up loses events
//! (its channel holds [`FEED_BUFFER`]); that is safe because it pulls the table anyway.

use tidesync_core::FeedEvent;
use tokio::sync::mpsc;

/// Events a subscriber may have waiting before newer ones are dropped.
pub const FEED_BUFFER: usize = 256;

/// The feed state of one server.
#[derive(Default)]
pub(crate) struct FeedState {
    /// Whether transports offer a change feed at all.
    pub(crate) enabled: bool,
    /// Open feeds: the tables each one watches, and where its events go.
    subscribers: Vec<(Vec<String>, mpsc::Sender<FeedEvent>)>,
}

impl FeedState {
    /// Opens a feed for `tables`.
    pub(crate) fn subscribe(&mut self, tables: &[String]) -> mpsc::Receiver<FeedEvent> {
        let (sender, receiver) = mpsc::channel(FEED_BUFFER);
        self.subscribers.push((tables.to_vec(), sender));
        receiver
    }

    /// Tells the subscribers of `table` that a row changed.
    pub(crate) fn publish(&mut self, table: &str, updated_at: Option<&str>, id: &str) {
        self.subscribers.retain(|(tables, sender)| {
            if sender.is_closed() {
                return false;
            }
            if tables.iter().any(|t| t.eq_ignore_ascii_case(table)) {
                let _ = sender.try_send(FeedEvent {
                    table: table.to_owned(),
                    updated_at: updated_at.map(str::to_owned),
                    id: Some(id.to_owned()),
                });
            }
            true
        });
    }

    /// Closes every open feed (their receivers then answer `None`).
    pub(crate) fn drop_all(&mut self) -> usize {
        let n = self.subscribers.len();
        self.subscribers.clear();
        n
    }

    /// How many feeds are open.
    pub(crate) fn open(&mut self) -> usize {
        self.subscribers.retain(|(_, sender)| !sender.is_closed());
        self.subscribers.len()
    }
}
