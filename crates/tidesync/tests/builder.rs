//! The facade's builder: what it requires and what it sets up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tidesync::backend::LocalStore;
use tidesync::{Client, ColumnType, Error, MemoryStore, TableDef};
use tidesync_transport_mock::MockServer;

#[test]
fn a_client_needs_a_store_and_a_transport() {
    let server = MockServer::new();
    let no_store = Client::builder()
        .transport(server.transport())
        .build()
        .unwrap_err();
    assert!(matches!(no_store, Error::InvalidArgument(_)), "{no_store}");
    let no_transport = Client::builder()
        .store(MemoryStore::new())
        .build()
        .unwrap_err();
    assert!(
        matches!(no_transport, Error::InvalidArgument(_)),
        "{no_transport}"
    );
}

#[test]
fn tables_given_to_the_builder_are_defined_and_bad_ones_refused() {
    let server = MockServer::new();
    let store = MemoryStore::new();
    Client::builder()
        .store(store.clone())
        .transport(server.transport())
        .table(TableDef::new("TodoItem").column("text", ColumnType::String))
        .build()
        .unwrap();
    assert!(store.table("TodoItem").unwrap().is_some());
    let bad = Client::builder()
        .store(MemoryStore::new())
        .transport(server.transport())
        .table(TableDef::new("9lives"))
        .build()
        .unwrap_err();
    assert!(matches!(bad, Error::Store(_)), "{bad}");
}

#[cfg(feature = "http")]
#[test]
fn a_bad_server_url_is_refused() {
    let err = Client::builder().url("not a url").unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(Client::builder().url("http://127.0.0.1:8080").is_ok());
}
