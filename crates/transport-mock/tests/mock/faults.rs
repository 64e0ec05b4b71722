//! The fault script: offline switches, counted and random faults, latency, and the call log.

use std::time::Duration;

use serde_json::json;
use tidesync_core::{Transport, TransportError};
use tidesync_protocol::{Query, parse_filter};
use tidesync_transport_mock::{Call, CallKind, CallOutcome, Fault, MockServer, MockTransport};

use crate::support::{TABLE, insert, item, read_request, setup};

/// Makes one call of each kind; returns the outcome of each as the call log would name it.
async fn one_of_each(client: &MockTransport) -> Vec<CallOutcome> {
    let read = client.read(&read_request(Query::all(), false)).await;
    let insert = client.insert(TABLE, &item(json!({"id": "new"}))).await;
    let replace = client.replace(TABLE, &item(json!({"id": "a"})), None).await;
    let delete = client.delete(TABLE, "a", None).await;
    let batch = client.batch(&[]).await;
    vec![
        outcome(&read),
        outcome(&insert),
        outcome(&replace),
        outcome(&delete),
        outcome(&batch),
    ]
}

fn outcome<T>(result: &Result<T, TransportError>) -> CallOutcome {
    match result {
        Ok(_) => CallOutcome::Ok,
        Err(TransportError::Network(_)) => CallOutcome::Network,
        Err(TransportError::Unsupported(_)) => CallOutcome::Status(501),
        Err(e) => CallOutcome::Status(e.status().unwrap()),
    }
}

#[tokio::test]
async fn an_offline_server_fails_every_call_and_applies_nothing() {
    let (server, client) = setup();
    server.set_batch_support(true);
    let before = insert(&client, "a", "x").await;
    server.set_offline(true);
    assert_eq!(one_of_each(&client).await, [CallOutcome::Network; 5]);
    assert_eq!(server.items(TABLE), [before]);
    let logged: Vec<CallOutcome> = server.calls().iter().map(|c| c.outcome).collect();
    assert_eq!(logged[1..], [CallOutcome::Network; 5]);

    server.set_offline(false);
    assert_eq!(one_of_each(&client).await, [CallOutcome::Ok; 5]);
}

#[tokio::test]
async fn one_transport_can_be_offline_while_another_is_online() {
    let (server, first) = setup();
    let second = server.transport();
    first.set_offline(true);
    let offline = first.insert(TABLE, &item(json!({"id": "a"}))).await;
    assert!(matches!(offline, Err(TransportError::Network(_))));
    insert(&second, "b", "x").await;
    assert_eq!(server.items(TABLE).len(), 1);
    // Clones share the switch; a fresh transport does not.
    assert!(first.clone().is_offline());
    assert!(!server.transport().is_offline());
    first.set_offline(false);
    insert(&first, "a", "x").await;
}

#[tokio::test]
async fn fail_next_counts_calls_then_stops() {
    let (server, client) = setup();
    server.fail_next(2, Fault::Status(503));
    server.fail_next(1, Fault::Network);
    let mut outcomes = Vec::new();
    for n in 0..5 {
        let result = client
            .insert(TABLE, &item(json!({"id": format!("r{n}")})))
            .await;
        if let Err(TransportError::Http { status, .. }) = &result {
            assert!(result.as_ref().unwrap_err().is_retryable(), "{status}");
        }
        outcomes.push(outcome(&result));
    }
    assert_eq!(
        outcomes,
        [
            CallOutcome::Status(503),
            CallOutcome::Status(503),
            CallOutcome::Network,
            CallOutcome::Ok,
            CallOutcome::Ok
        ]
    );
    assert_eq!(server.items(TABLE).len(), 2, "faulted writes apply nothing");
}

#[tokio::test]
async fn status_faults_are_classified_like_a_real_transport() {
    let (server, client) = setup();
    insert(&client, "a", "x").await;
    let body = item(json!({"id": "a", "text": "y"}));
    type Check = fn(&TransportError) -> bool;
    let cases: [(Fault, Check); 7] = [
        (Fault::Auth, |e| matches!(e, TransportError::Auth { .. })),
        (Fault::Status(401), |e| {
            matches!(e, TransportError::Auth { .. })
        }),
        (Fault::Status(404), |e| {
            matches!(e, TransportError::NotFound { status: 404, .. })
        }),
        (Fault::Status(409), |e| {
            matches!(
                e,
                TransportError::Conflict {
                    status: 409,
                    server_item: None,
                    ..
                }
            )
        }),
        (Fault::Status(412), |e| {
            matches!(
                e,
                TransportError::Conflict {
                    status: 412,
                    server_item: None,
                    ..
                }
            )
        }),
        (Fault::Status(500), |e| {
            matches!(e, TransportError::Http { status: 500, .. })
        }),
        (Fault::Network, |e| matches!(e, TransportError::Network(_))),
    ];
    for (fault, expected) in cases {
        server.fail_next(1, fault);
        let error = client.replace(TABLE, &body, None).await.unwrap_err();
        assert!(expected(&error), "{fault:?}: {error:?}");
    }
    assert_eq!(
        server.get(TABLE, "a").unwrap()["text"],
        "x",
        "nothing applied"
    );

    // A delete answered 404 or 410 is a success, as for the HTTP transport.
    for status in [404, 410] {
        server.fail_next(1, Fault::Status(status));
        client.delete(TABLE, "a", None).await.unwrap();
        assert_eq!(
            server.calls().last().unwrap().outcome,
            CallOutcome::Status(status)
        );
    }
    assert_eq!(server.get(TABLE, "a").unwrap()["deleted"], false);
}

#[tokio::test]
async fn commit_then_lose_response_applies_the_write() {
    let (server, client) = setup();
    let stored = insert(&client, "a", "x").await;

    server.fail_next(4, Fault::CommitThenLoseResponse);
    let read = client.read(&read_request(Query::all(), false)).await;
    let inserted = client.insert(TABLE, &item(json!({"id": "b"}))).await;
    let replaced = client
        .replace(TABLE, &item(json!({"id": "a", "text": "y"})), None)
        .await;
    let deleted = client.delete(TABLE, "b", None).await;
    for result in [
        outcome(&read),
        outcome(&inserted),
        outcome(&replaced),
        outcome(&deleted),
    ] {
        assert_eq!(result, CallOutcome::Network);
    }
    assert_eq!(server.get(TABLE, "a").unwrap()["text"], "y");
    assert_ne!(
        server.get(TABLE, "a").unwrap()["version"],
        stored["version"]
    );
    assert_eq!(server.get(TABLE, "b").unwrap()["deleted"], true);

    // The retry of the lost insert meets its own earlier write.
    let retry = client.insert(TABLE, &item(json!({"id": "b"}))).await;
    assert!(matches!(
        retry,
        Err(TransportError::Conflict { status: 409, .. })
    ));
}

/// The outcomes of `n` inserts against a fresh server seeded with `seed`.
async fn random_run(seed: u64, n: usize) -> Vec<CallOutcome> {
    let server = MockServer::with_seed(seed);
    server.add_table(TABLE);
    server.set_random_faults(0.5, vec![Fault::Network, Fault::Status(500), Fault::Auth]);
    let client = server.transport();
    let mut outcomes = Vec::new();
    for i in 0..n {
        let result = client
            .insert(TABLE, &item(json!({"id": format!("r{i}")})))
            .await;
        outcomes.push(outcome(&result));
    }
    outcomes
}

#[tokio::test]
async fn random_faults_are_reproducible_from_the_seed() {
    let first = random_run(7, 60).await;
    assert_eq!(first, random_run(7, 60).await);
    assert_ne!(first, random_run(8, 60).await);
    let n_ok = first.iter().filter(|o| **o == CallOutcome::Ok).count();
    assert!((10..50).contains(&n_ok), "about half fail: {first:?}");
    for kind in [
        CallOutcome::Network,
        CallOutcome::Status(500),
        CallOutcome::Status(401),
    ] {
        assert!(first.contains(&kind), "{kind:?} never drawn: {first:?}");
    }
}

#[tokio::test]
async fn random_faults_with_probability_zero_or_one() {
    let (server, client) = setup();
    server.set_random_faults(1.0, vec![Fault::Status(502)]);
    let result = client.insert(TABLE, &item(json!({"id": "a"}))).await;
    assert!(matches!(
        result,
        Err(TransportError::Http { status: 502, .. })
    ));
    server.set_random_faults(0.0, vec![Fault::Status(502)]);
    insert(&client, "a", "x").await;
}

#[tokio::test(start_paused = true)]
async fn latency_delays_each_call() {
    let (server, client) = setup();
    server.set_latency(Duration::from_secs(5));
    let start = tokio::time::Instant::now();
    insert(&client, "a", "x").await;
    client
        .read(&read_request(Query::all(), false))
        .await
        .unwrap();
    assert!(start.elapsed() >= Duration::from_secs(10));
}

#[tokio::test]
async fn clear_faults_restores_normal_service() {
    let (server, client) = setup();
    let faults = server.faults();
    faults.set_offline(true);
    faults.fail_next(3, Fault::Network);
    faults.set_random_faults(1.0, vec![Fault::Auth]);
    faults.set_latency(Duration::from_millis(1));
    faults.clear_faults();
    assert_eq!(one_of_each(&client).await[1], CallOutcome::Ok);
}

#[tokio::test]
async fn the_call_log_records_every_call_in_order() {
    let (server, client) = setup();
    let mut query = Query::all();
    query.filter = Some(parse_filter("text eq 'x'").unwrap());
    client
        .read(&read_request(query.clone(), true))
        .await
        .unwrap();
    let body = item(json!({"id": "a", "text": "x"}));
    client.insert(TABLE, &body).await.unwrap();
    client.insert(TABLE, &body).await.unwrap_err();
    server.fail_next(1, Fault::Network);
    client.replace(TABLE, &body, Some("v1")).await.unwrap_err();
    client.delete(TABLE, "a", Some("*")).await.unwrap();
    client.batch(&[]).await.unwrap_err();

    let call =
        |kind, item_id: Option<&str>, if_match: Option<&str>, body: Option<&_>, outcome| Call {
            kind,
            table: TABLE.to_owned(),
            item_id: item_id.map(str::to_owned),
            if_match: if_match.map(str::to_owned),
            query: None,
            include_deleted: false,
            body: body.cloned(),
            outcome,
        };
    let read = Call {
        query: Some(query),
        include_deleted: true,
        ..call(CallKind::Read, None, None, None, CallOutcome::Ok)
    };
    let expected = vec![
        read,
        call(
            CallKind::Insert,
            Some("a"),
            None,
            Some(&body),
            CallOutcome::Ok,
        ),
        call(
            CallKind::Insert,
            Some("a"),
            None,
            Some(&body),
            CallOutcome::Status(409),
        ),
        call(
            CallKind::Replace,
            Some("a"),
            Some("v1"),
            Some(&body),
            CallOutcome::Network,
        ),
        call(
            CallKind::Delete,
            Some("a"),
            Some("*"),
            None,
            CallOutcome::Ok,
        ),
        Call {
            table: String::new(),
            ..call(CallKind::Batch, None, None, None, CallOutcome::Status(501))
        },
    ];
    assert_eq!(server.calls(), expected);
    server.clear_calls();
    assert!(server.calls().is_empty());
}
