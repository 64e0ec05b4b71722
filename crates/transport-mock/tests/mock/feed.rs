//! The scriptable change feed: off by default, events for every applied write of the
//! subscribed tables (from any transport and from `server_*`), cuts and offline.

use serde_json::json;
use tidesync_core::{Transport, TransportError};

use crate::support::{TABLE, insert, item, setup};

#[tokio::test]
async fn the_feed_is_unsupported_until_enabled() {
    let (server, client) = setup();
    let err = client.change_feed(&[TABLE.to_owned()]).await.unwrap_err();
    assert!(matches!(err, TransportError::Unsupported(_)), "{err:?}");
    server.set_feed_enabled(true);
    assert!(client.change_feed(&[TABLE.to_owned()]).await.is_ok());
}

#[tokio::test]
async fn every_applied_write_of_a_watched_table_is_announced_with_its_position() {
    let (server, client) = setup();
    server.add_table("Other");
    server.set_feed_enabled(true);
    let mut feed = client.change_feed(&[TABLE.to_owned()]).await.unwrap();
    let stored = insert(&client, "a", "x").await;
    server.server_insert("Other", item(json!({"id": "o"})));
    server.server_update(TABLE, item(json!({"id": "a", "text": "y"})));
    server.server_delete(TABLE, "a");
    // A refused write (409) announces nothing.
    let refused = client.insert(TABLE, &item(json!({"id": "a"}))).await;
    assert!(
        matches!(refused, Err(TransportError::Conflict { status: 409, .. })),
        "{refused:?}"
    );

    let first = feed.try_recv().unwrap();
    assert_eq!(first.table, TABLE);
    assert_eq!(first.id.as_deref(), Some("a"));
    assert_eq!(first.updated_at.as_deref(), stored["updatedAt"].as_str());
    let second = feed.try_recv().unwrap();
    let third = feed.try_recv().unwrap();
    assert!(second.updated_at < third.updated_at);
    assert!(
        feed.try_recv().is_err(),
        "nothing else: not Other, not the 409"
    );
}

#[tokio::test]
async fn drop_feeds_closes_them_and_offline_refuses_new_ones() {
    let (server, client) = setup();
    server.set_feed_enabled(true);
    let mut feed = client.change_feed(&[TABLE.to_owned()]).await.unwrap();
    assert_eq!(server.open_feeds(), 1);
    assert_eq!(server.drop_feeds(), 1);
    assert!(feed.recv().await.is_none());
    assert_eq!(server.open_feeds(), 0);

    client.set_offline(true);
    let err = client.change_feed(&[TABLE.to_owned()]).await.unwrap_err();
    assert!(matches!(err, TransportError::Network(_)), "{err:?}");
    client.set_offline(false);
    let err = client.change_feed(&["Nope".to_owned()]).await.unwrap_err();
    assert!(
        matches!(err, TransportError::Http { status: 404, .. }),
        "{err:?}"
    );

    let feed = client.change_feed(&[TABLE.to_owned()]).await.unwrap();
    drop(feed);
    assert_eq!(server.open_feeds(), 0, "a dropped receiver is not counted");
}
