//! `Faulty`, the fault decorator around any transport, here around a `MockTransport`
//! (transport-http's `tests/regressions.rs` wraps the real HTTP transport in it).

use std::time::Duration;

use serde_json::json;
use tidesync_core::{Transport, TransportError};
use tidesync_protocol::Query;
use tidesync_transport_mock::{Fault, Faulty};

use crate::support::{TABLE, item, read_request, setup};

#[tokio::test]
async fn offline_fails_every_call_before_it_leaves() {
    let (server, client) = setup();
    let faulty = Faulty::new(client);
    faulty.set_offline(true);
    let insert = faulty.insert(TABLE, &item(json!({"id": "a"}))).await;
    assert!(
        matches!(insert, Err(TransportError::Network(_))),
        "{insert:?}"
    );
    let read = faulty.read(&read_request(Query::all(), false)).await;
    assert!(matches!(read, Err(TransportError::Network(_))), "{read:?}");
    assert!(
        server.calls().is_empty(),
        "an offline call reached the server"
    );
    faulty.set_offline(false);
    faulty
        .insert(TABLE, &item(json!({"id": "a"})))
        .await
        .unwrap();
    assert!(server.get(TABLE, "a").is_some());
}

#[tokio::test]
async fn a_lost_answer_is_applied_but_reported_as_a_network_error() {
    let (server, client) = setup();
    let faulty = Faulty::new(client);
    faulty.fail_writes(1, Fault::CommitThenLoseResponse);
    let lost = faulty.insert(TABLE, &item(json!({"id": "a"}))).await;
    assert!(matches!(lost, Err(TransportError::Network(_))), "{lost:?}");
    assert!(
        server.get(TABLE, "a").is_some(),
        "the write was not applied"
    );
    faulty
        .insert(TABLE, &item(json!({"id": "b"})))
        .await
        .unwrap();
}

#[tokio::test]
async fn scripted_faults_are_classified_and_reads_are_separate() {
    let (server, client) = setup();
    let faulty = Faulty::new(client);
    faulty.fail_writes(1, Fault::Status(503));
    faulty.fail_writes(1, Fault::Auth);
    faulty.fail_reads(1, Fault::Status(500));
    let read = faulty.read(&read_request(Query::all(), false)).await;
    assert_eq!(read.unwrap_err().status(), Some(500));
    let first = faulty.insert(TABLE, &item(json!({"id": "a"}))).await;
    assert_eq!(first.unwrap_err().status(), Some(503));
    let second = faulty.insert(TABLE, &item(json!({"id": "a"}))).await;
    assert!(
        matches!(second, Err(TransportError::Auth { .. })),
        "{second:?}"
    );
    assert!(server.get(TABLE, "a").is_none());
    faulty
        .insert(TABLE, &item(json!({"id": "a"})))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_partition_fails_the_same_writes_for_the_same_seed() {
    let run = |seed| async move {
        let (_server, client) = setup();
        let faulty = Faulty::new(client);
        faulty.partition(seed, 50);
        let mut outcomes = Vec::new();
        for n in 0..40 {
            let id = format!("r{n}");
            outcomes.push(faulty.insert(TABLE, &item(json!({"id": id}))).await.is_ok());
        }
        faulty.heal();
        faulty
            .insert(TABLE, &item(json!({"id": "after"})))
            .await
            .unwrap();
        outcomes
    };
    let first = run(307).await;
    assert_eq!(first, run(307).await);
    assert!(first.contains(&true) && first.contains(&false), "{first:?}");
}

#[tokio::test(start_paused = true)]
async fn latency_delays_every_call() {
    let (_server, client) = setup();
    let faulty = Faulty::new(client);
    faulty.set_latency(Duration::from_secs(5));
    let started = tokio::time::Instant::now();
    faulty
        .read(&read_request(Query::all(), false))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(5));
}

#[tokio::test]
async fn a_gate_holds_the_next_write_until_released() {
    let (server, client) = setup();
    let faulty = std::sync::Arc::new(Faulty::new(client));
    let gate = faulty.hold_next_write();
    let writer = faulty.clone();
    let write = tokio::spawn(async move { writer.insert(TABLE, &item(json!({"id": "a"}))).await });
    gate.reached().await;
    assert!(server.get(TABLE, "a").is_none(), "a held write was applied");
    gate.release();
    write.await.unwrap().unwrap();
    assert!(server.get(TABLE, "a").is_some());
}
