//! Credentials on the wire, and 401 handling with and without a refresh.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use common::{builder, header, item, only_request, requests};
use serde_json::json;
use tidesync_core::{Transport, TransportError};
use tidesync_transport_http::{ApiKey, BearerToken, FnAuth, Protocol};
use wiremock::matchers::{header as has_header, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn row() -> tidesync_protocol::Item {
    item(json!({"id": "item-1", "text": "x"}))
}

fn created() -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({"id": "item-1", "version": "MQ=="}))
}

#[tokio::test]
async fn an_api_key_goes_in_its_header() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created())
        .mount(&server)
        .await;
    let transport = builder(&server, Protocol::V2)
        .auth(ApiKey::new("k1"))
        .build()
        .unwrap();
    transport.insert("TodoItem", &row()).await.unwrap();
    assert_eq!(
        header(&only_request(&server).await, "x-api-key"),
        Some("k1")
    );

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created())
        .mount(&server)
        .await;
    let transport = builder(&server, Protocol::V2)
        .auth(ApiKey::new("k2").header_name("X-Custom-Key"))
        .build()
        .unwrap();
    transport.insert("TodoItem", &row()).await.unwrap();
    let request = only_request(&server).await;
    assert_eq!(header(&request, "x-custom-key"), Some("k2"));
    assert_eq!(header(&request, "x-api-key"), None);
}

#[tokio::test]
async fn a_bearer_token_is_sent_both_ways() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created())
        .mount(&server)
        .await;
    let transport = builder(&server, Protocol::V2)
        .auth(BearerToken::new("jwt-1"))
        .build()
        .unwrap();
    transport.insert("TodoItem", &row()).await.unwrap();
    let request = only_request(&server).await;
    assert_eq!(header(&request, "authorization"), Some("Bearer jwt-1"));
    assert_eq!(header(&request, "x-zumo-auth"), Some("jwt-1"));
}

#[tokio::test]
async fn a_401_is_refreshed_once_and_sent_again() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(has_header("x-zumo-auth", "new"))
        .respond_with(created())
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"name": "TokenExpiredError", "message": "jwt expired"})),
        )
        .mount(&server)
        .await;
    let refreshes = Arc::new(AtomicU32::new(0));
    let counter = refreshes.clone();
    let token = BearerToken::new("old").with_refresh(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok("new".to_owned()) }
    });
    let transport = builder(&server, Protocol::V2).auth(token).build().unwrap();
    let back = transport.insert("TodoItem", &row()).await.unwrap();
    assert_eq!(back["version"], "MQ==");
    assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(header(&sent[0], "authorization"), Some("Bearer old"));
    assert_eq!(header(&sent[1], "authorization"), Some("Bearer new"));
}

#[tokio::test]
async fn a_401_after_the_refresh_is_an_auth_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_string("You must be logged in to use this application"),
        )
        .mount(&server)
        .await;
    let token = BearerToken::new("old").with_refresh(|| async { Ok("still-bad".to_owned()) });
    let transport = builder(&server, Protocol::V2).auth(token).build().unwrap();
    let err = transport.insert("TodoItem", &row()).await.unwrap_err();
    assert!(
        matches!(&err, TransportError::Auth { message } if message == "You must be logged in to use this application"),
        "{err:?}"
    );
    assert_eq!(
        requests(&server).await.len(),
        2,
        "one refresh, then give up"
    );
}

#[tokio::test]
async fn a_401_without_a_refresh_hook_is_an_auth_error_at_once() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    for transport in [
        builder(&server, Protocol::V2).build().unwrap(),
        builder(&server, Protocol::V2)
            .auth(ApiKey::new("wrong"))
            .build()
            .unwrap(),
    ] {
        let err = transport
            .delete("TodoItem", "item-1", None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, TransportError::Auth { message } if message == "Unauthorized"),
            "{err:?}"
        );
    }
    assert_eq!(
        requests(&server).await.len(),
        2,
        "one request per transport, no retry"
    );
}

#[tokio::test]
async fn a_failing_refresh_is_an_auth_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let auth = FnAuth::new(|| async { Ok(vec![("X-ZUMO-AUTH".to_owned(), "t".to_owned())]) })
        .on_refresh(|| async { Err("identity provider unreachable".into()) });
    let transport = builder(&server, Protocol::V2).auth(auth).build().unwrap();
    let err = transport.insert("TodoItem", &row()).await.unwrap_err();
    assert!(
        matches!(&err, TransportError::Auth { message } if message.contains("identity provider unreachable")),
        "{err:?}"
    );
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn a_closure_provider_is_asked_before_every_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created())
        .mount(&server)
        .await;
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let auth = FnAuth::new(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok(vec![("X-ZUMO-AUTH".to_owned(), format!("token-{n}"))]) }
    });
    let transport = builder(&server, Protocol::V2).auth(auth).build().unwrap();
    transport.insert("TodoItem", &row()).await.unwrap();
    transport.insert("TodoItem", &row()).await.unwrap();
    let sent = requests(&server).await;
    assert_eq!(header(&sent[0], "x-zumo-auth"), Some("token-0"));
    assert_eq!(header(&sent[1], "x-zumo-auth"), Some("token-1"));
}

#[tokio::test]
async fn a_provider_that_cannot_give_credentials_is_an_auth_error() {
    let server = MockServer::start().await;
    let auth = FnAuth::new(|| async { Err("no session".into()) });
    let transport = builder(&server, Protocol::V2).auth(auth).build().unwrap();
    let err = transport.insert("TodoItem", &row()).await.unwrap_err();
    assert!(matches!(err, TransportError::Auth { .. }), "{err:?}");
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn set_token_changes_what_clones_send() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created())
        .mount(&server)
        .await;
    let token = BearerToken::new("a");
    let transport = builder(&server, Protocol::V2)
        .auth(token.clone())
        .build()
        .unwrap();
    token.set_token("b");
    transport.insert("TodoItem", &row()).await.unwrap();
    assert_eq!(
        header(&only_request(&server).await, "x-zumo-auth"),
        Some("b")
    );
}
