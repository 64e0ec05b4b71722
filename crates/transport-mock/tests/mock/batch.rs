//! The batch extension: support switch, per-op outcomes, and idempotent retries by op id.

use serde_json::json;
use tidesync_core::{BatchOperation, BatchOutcome, OpKind, Transport, TransportError};
use tidesync_transport_mock::Fault;

use crate::support::{TABLE, insert, item, setup, text};

fn op(operation_id: &str, kind: OpKind, item_id: &str, if_match: Option<&str>) -> BatchOperation {
    BatchOperation {
        operation_id: operation_id.to_owned(),
        kind,
        table: TABLE.to_owned(),
        item_id: item_id.to_owned(),
        item: (kind != OpKind::Delete).then(|| item(json!({"text": operation_id}))),
        if_match: if_match.map(str::to_owned),
    }
}

/// A short name for each outcome: `ok`, `ok-none` or the status.
fn summary(outcomes: &[BatchOutcome]) -> Vec<String> {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            BatchOutcome::Ok(Some(_)) => "ok".to_owned(),
            BatchOutcome::Ok(None) => "ok-none".to_owned(),
            BatchOutcome::Err(e) => e.status().map_or_else(|| format!("{e}"), |s| s.to_string()),
        })
        .collect()
}

#[tokio::test]
async fn batch_is_off_until_enabled() {
    let (server, client) = setup();
    assert!(!client.supports_batch());
    let result = client.batch(&[op("1", OpKind::Insert, "a", None)]).await;
    assert!(
        matches!(result, Err(TransportError::Unsupported(_))),
        "{result:?}"
    );
    assert!(server.items(TABLE).is_empty());
    server.set_batch_support(true);
    assert!(client.supports_batch());
}

#[tokio::test]
async fn batch_applies_ops_in_order_with_an_outcome_each() {
    let (server, client) = setup();
    server.set_batch_support(true);
    insert(&client, "taken", "x").await;
    let ops = [
        op("1", OpKind::Insert, "a", None),
        op("2", OpKind::Update, "a", None),
        op("3", OpKind::Insert, "taken", None),
        op("4", OpKind::Update, "taken", Some("stale")),
        op("5", OpKind::Delete, "missing", None),
        op("6", OpKind::Update, "missing", None),
        op("7", OpKind::Delete, "taken", None),
    ];
    let outcomes = client.batch(&ops).await.unwrap();
    assert_eq!(
        summary(&outcomes),
        ["ok", "ok", "409", "412", "ok-none", "404", "ok-none"]
    );
    assert_eq!(text(&server.get(TABLE, "a").unwrap(), "text"), "2");
    assert_eq!(server.get(TABLE, "taken").unwrap()["deleted"], true);
    match &outcomes[2] {
        BatchOutcome::Err(TransportError::Conflict {
            server_item: Some(stored),
            ..
        }) => {
            assert_eq!(text(stored, "id"), "taken");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_retried_batch_is_applied_once() {
    let (server, client) = setup();
    server.set_batch_support(true);
    insert(&client, "b", "x").await;
    let ops = [
        op("1", OpKind::Insert, "a", None),
        op("2", OpKind::Update, "b", Some("stale")),
    ];
    server.fail_next(1, Fault::CommitThenLoseResponse);
    let lost = client.batch(&ops).await;
    assert!(matches!(lost, Err(TransportError::Network(_))), "{lost:?}");
    let after_first = server.get(TABLE, "a").unwrap();

    // Op 1 was applied: the retry answers as before without writing again (no 409).
    let retried = client.batch(&ops).await.unwrap();
    assert_eq!(summary(&retried), ["ok", "412"]);
    match &retried[0] {
        BatchOutcome::Ok(Some(answer)) => assert_eq!(answer, &after_first),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.get(TABLE, "a"), Some(after_first));

    // Op 2 was refused, so it is not remembered: resent with the right version, it applies.
    let version = text(&server.get(TABLE, "b").unwrap(), "version").to_owned();
    let fixed = op("2", OpKind::Update, "b", Some(&version));
    assert_eq!(summary(&client.batch(&[fixed]).await.unwrap()), ["ok"]);
    assert_eq!(text(&server.get(TABLE, "b").unwrap(), "text"), "2");
}
