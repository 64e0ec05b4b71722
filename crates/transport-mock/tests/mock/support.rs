//! Helpers shared by the mock server tests.

use serde_json::Value;
use tidesync_core::{ReadRequest, Transport};
use tidesync_protocol::{Item, Query};
use tidesync_transport_mock::{MockServer, MockTransport};

/// The table every test uses.
pub const TABLE: &str = "TodoItem";

/// An item from a JSON literal.
pub fn item(value: Value) -> Item {
    serde_json::from_value(value).unwrap()
}

/// A server with [`TABLE`] (soft delete on) and one client.
pub fn setup() -> (MockServer, MockTransport) {
    let server = MockServer::new();
    server.add_table(TABLE);
    let client = server.transport();
    (server, client)
}

/// A read of [`TABLE`].
pub fn read_request(query: Query, include_deleted: bool) -> ReadRequest {
    ReadRequest {
        table: TABLE.to_owned(),
        query,
        include_deleted,
    }
}

/// Inserts `{"id": id, "text": text}` through the client and returns the stored item.
pub async fn insert(client: &MockTransport, id: &str, text: &str) -> Item {
    client
        .insert(TABLE, &item(serde_json::json!({"id": id, "text": text})))
        .await
        .unwrap()
}

/// The ids of `items`, in order.
pub fn ids(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A string property of `item`.
pub fn text<'a>(item: &'a Item, name: &str) -> &'a str {
    item[name].as_str().unwrap()
}
