//! Insert, replace and delete as the server protocol specifies them, and server-side writes.

use serde_json::json;
use tidesync_core::{Transport, TransportError};
use tidesync_protocol::{Query, decode_version, encode_version};
use tidesync_transport_mock::{Faults, MockServer, MockTransport, TableOptions};

use crate::support::{TABLE, ids, insert, item, read_request, setup, text};

#[tokio::test]
async fn insert_sets_system_properties_and_ignores_reserved_ones() {
    let (server, client) = setup();
    let body = item(json!({
        "id": "a", "text": "milk",
        "createdAt": "1999-01-01T00:00:00.000Z", "updatedAt": "1999-01-01T00:00:00.000Z",
        "deleted": true, "version": "bogus",
    }));
    let stored = client.insert(TABLE, &body).await.unwrap();
    assert_eq!(text(&stored, "text"), "milk");
    assert_eq!(text(&stored, "createdAt"), "2026-01-01T00:00:00.000Z");
    assert_eq!(text(&stored, "updatedAt"), "2026-01-01T00:00:00.000Z");
    assert_eq!(text(&stored, "version"), encode_version(1));
    assert_eq!(stored["deleted"], json!(false));
    assert_eq!(server.get(TABLE, "a"), Some(stored));
}

#[tokio::test]
async fn insert_without_id_gets_a_server_id() {
    let (server, client) = setup();
    for body in [json!({"text": "x"}), json!({"id": null, "text": "y"})] {
        let stored = client.insert(TABLE, &item(body)).await.unwrap();
        let id = text(&stored, "id");
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(id.matches('-').count(), 4, "{id}");
        assert!(server.get(TABLE, id).is_some());
    }
}

#[tokio::test]
async fn insert_with_a_bad_id_is_400() {
    let (server, client) = setup();
    let long = "x".repeat(256);
    for id in [
        json!(""),
        json!("a/b"),
        json!(".."),
        json!("a\u{1}"),
        json!(long),
        json!(7),
    ] {
        let result = client.insert(TABLE, &item(json!({"id": id}))).await;
        assert!(
            matches!(result, Err(TransportError::Http { status: 400, .. })),
            "{id}: {result:?}"
        );
    }
    assert!(server.items(TABLE).is_empty());
}

#[tokio::test]
async fn insert_of_an_existing_id_is_409_with_the_stored_item() {
    let (server, client) = setup();
    let live = insert(&client, "live", "first").await;
    insert(&client, "gone", "first").await;
    client.delete(TABLE, "gone", None).await.unwrap();
    let tombstone = server.get(TABLE, "gone").unwrap();
    for (id, stored) in [("live", live), ("gone", tombstone)] {
        let result = client
            .insert(TABLE, &item(json!({"id": id, "text": "second"})))
            .await;
        match result {
            Err(TransportError::Conflict {
                status: 409,
                server_item: Some(server_item),
                raw: Some(_),
            }) => assert_eq!(server_item, stored),
            other => panic!("{id}: {other:?}"),
        }
        assert_eq!(server.get(TABLE, id), Some(stored));
    }
}

#[tokio::test]
async fn an_unknown_table_is_404() {
    let (_server, client) = setup();
    let mut request = read_request(Query::all(), false);
    request.table = "Nope".to_owned();
    let read = client.read(&request).await;
    assert!(
        matches!(read, Err(TransportError::Http { status: 404, .. })),
        "{read:?}"
    );
    let insert = client.insert("Nope", &item(json!({"id": "a"}))).await;
    assert!(
        matches!(insert, Err(TransportError::Http { status: 404, .. })),
        "{insert:?}"
    );
}

#[tokio::test]
async fn replace_swaps_user_properties_and_keeps_created_at() {
    let (_server, client) = setup();
    let first = client
        .insert(TABLE, &item(json!({"id": "a", "text": "old", "extra": 1})))
        .await
        .unwrap();
    let body = item(json!({"id": "a", "text": "new", "createdAt": "1999-01-01T00:00:00Z"}));
    let second = client.replace(TABLE, &body, None).await.unwrap();
    assert_eq!(text(&second, "text"), "new");
    assert!(!second.contains_key("extra"), "a replace is not a merge");
    assert_eq!(second["createdAt"], first["createdAt"]);
    assert_ne!(second["version"], first["version"]);
    assert!(text(&second, "updatedAt") > text(&first, "updatedAt"));
    assert_eq!(second["deleted"], json!(false));
}

#[tokio::test]
async fn replace_checks_if_match() {
    let (_server, client) = setup();
    let stored = insert(&client, "a", "v1").await;
    let version = text(&stored, "version").to_owned();
    let body = item(json!({"id": "a", "text": "v2"}));

    // A stale version (and a weak tag, which never matches) is 412 with the stored item.
    for stale in ["AAAAAAAAAAA=", "W/\"whatever\""] {
        match client.replace(TABLE, &body, Some(stale)).await {
            Err(TransportError::Conflict {
                status: 412,
                server_item: Some(server_item),
                ..
            }) => assert_eq!(server_item, stored),
            other => panic!("{stale}: {other:?}"),
        }
    }
    // The current version, bare or quoted, and `*` match.
    let quoted = format!("\"{version}\"");
    let second = client.replace(TABLE, &body, Some(&version)).await.unwrap();
    let third = client
        .replace(TABLE, &body, Some(text(&second, "version")))
        .await
        .unwrap();
    let fourth = client.replace(TABLE, &body, Some("*")).await.unwrap();
    let fifth = client
        .replace(
            TABLE,
            &body,
            Some(&format!("\"{}\"", text(&fourth, "version"))),
        )
        .await
        .unwrap();
    let stale = client.replace(TABLE, &body, Some(&quoted)).await;
    assert!(matches!(
        stale,
        Err(TransportError::Conflict { status: 412, .. })
    ));
    assert_ne!(third["version"], fifth["version"]);
}

#[tokio::test]
async fn replace_of_a_missing_or_deleted_item_is_404() {
    let (_server, client) = setup();
    insert(&client, "gone", "x").await;
    client.delete(TABLE, "gone", None).await.unwrap();
    for id in ["missing", "gone"] {
        let result = client.replace(TABLE, &item(json!({"id": id})), None).await;
        assert!(
            matches!(result, Err(TransportError::NotFound { status: 404, .. })),
            "{id}: {result:?}"
        );
    }
    let no_id = client
        .replace(TABLE, &item(json!({"text": "x"})), None)
        .await;
    assert!(matches!(
        no_id,
        Err(TransportError::Http { status: 400, .. })
    ));
}

#[tokio::test]
async fn delete_soft_deletes_and_checks_if_match() {
    let (server, client) = setup();
    let stored = insert(&client, "a", "x").await;
    insert(&client, "b", "y").await;

    match client.delete(TABLE, "a", Some("AAAAAAAAAAA=")).await {
        Err(TransportError::Conflict {
            status: 412,
            server_item: Some(server_item),
            ..
        }) => assert_eq!(server_item, stored),
        other => panic!("{other:?}"),
    }
    client
        .delete(TABLE, "a", Some(text(&stored, "version")))
        .await
        .unwrap();
    let tombstone = server.get(TABLE, "a").unwrap();
    assert_eq!(tombstone["deleted"], json!(true));
    assert_ne!(tombstone["version"], stored["version"]);
    assert!(text(&tombstone, "updatedAt") > text(&stored, "updatedAt"));

    // Deleting again, or deleting what never existed, is a success that changes nothing.
    client.delete(TABLE, "a", Some("stale")).await.unwrap();
    client.delete(TABLE, "missing", None).await.unwrap();
    assert_eq!(server.get(TABLE, "a"), Some(tombstone));

    let live = client
        .read(&read_request(Query::all(), false))
        .await
        .unwrap();
    assert_eq!(ids(&live.items), ["b"]);
    let all = client
        .read(&read_request(Query::all(), true))
        .await
        .unwrap();
    assert_eq!(ids(&all.items), ["a", "b"]);
}

#[tokio::test]
async fn a_table_without_soft_delete_removes_rows() {
    let server = MockServer::new();
    server.add_table_with(TABLE, TableOptions { soft_delete: false });
    let client = server.transport();
    let stored = insert(&client, "a", "x").await;
    assert!(!stored.contains_key("deleted"));
    client.delete(TABLE, "a", None).await.unwrap();
    assert_eq!(server.get(TABLE, "a"), None);
    let all = client
        .read(&read_request(Query::all(), true))
        .await
        .unwrap();
    assert!(all.items.is_empty());
    // The id is free again.
    insert(&client, "a", "again").await;
}

#[tokio::test]
async fn server_writes_act_like_another_client() {
    let (server, client) = setup();
    let first = server.server_insert(TABLE, item(json!({"id": "b", "text": "x", "n": 1})));
    server.server_insert(TABLE, item(json!({"id": "a", "text": "y"})));
    let merged = server.server_update(TABLE, item(json!({"id": "b", "text": "z"})));
    assert_eq!(text(&merged, "text"), "z");
    assert_eq!(merged["n"], json!(1), "server_update merges");
    assert_eq!(merged["createdAt"], first["createdAt"]);
    assert_ne!(merged["version"], first["version"]);
    server.server_delete(TABLE, "a");
    server.server_delete(TABLE, "missing");
    assert_eq!(server.get(TABLE, "a").unwrap()["deleted"], json!(true));
    assert_eq!(ids(&server.items(TABLE)), ["a", "b"]);

    let page = client
        .read(&read_request(Query::all(), false))
        .await
        .unwrap();
    assert_eq!(page.items, [merged]);
    assert_eq!(server.calls().len(), 1, "server writes are not calls");
}

#[tokio::test]
async fn every_write_gets_a_new_increasing_version() {
    let (server, client) = setup();
    let mut versions = Vec::new();
    let stored = insert(&client, "a", "x").await;
    versions.push(stored["version"].clone());
    for n in 0..3 {
        let body = item(json!({"id": "a", "text": n}));
        versions.push(client.replace(TABLE, &body, None).await.unwrap()["version"].clone());
    }
    versions.push(server.server_update(TABLE, item(json!({"id": "a"})))["version"].clone());
    client.delete(TABLE, "a", None).await.unwrap();
    versions.push(server.get(TABLE, "a").unwrap()["version"].clone());
    let counters: Vec<u64> = versions
        .iter()
        .map(|v| decode_version(v.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(counters, [1, 2, 3, 4, 5, 6]);
}

#[test]
fn handles_are_send_sync_clone_and_debug() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    check::<MockServer>();
    check::<MockTransport>();
    check::<Faults>();
}

#[tokio::test]
async fn adding_an_existing_table_keeps_its_rows() {
    let (server, client) = setup();
    insert(&client, "a", "x").await;
    server.add_table_with(TABLE, TableOptions { soft_delete: false });
    assert!(server.get(TABLE, "a").is_some());
    client.delete(TABLE, "a", None).await.unwrap();
    assert_eq!(server.get(TABLE, "a"), None, "the new options apply");
    server.add_table(TABLE);
    assert!(server.items(TABLE).is_empty());
}
