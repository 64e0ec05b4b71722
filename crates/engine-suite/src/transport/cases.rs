//! The cases of the transport conformance suite. Each starts a fresh server through its
//! [`Target`], drives the transport through the public [`Transport`](tidesync_core::Transport) API and asserts what
//! every server must answer; see the module docs of [`crate::transport`].

use serde_json::{Value, json};
use tidesync_core::{BatchOperation, BatchOutcome, OpKind, TransportError};
use tidesync_protocol::Item;
use tidesync_protocol::odata::{Query, after_keyset, col};
use tidesync_protocol::parse_timestamp;

use super::{Connection, Needs, Setup, TABLE, Target, ids, item, read_request, start};

/// Starts a target with the default setup, or returns from the case.
macro_rules! connect {
    ($target:expr, $case:literal) => {
        connect!($target, $case, &[], &Setup::default())
    };
    ($target:expr, $case:literal, $needs:expr, $setup:expr) => {
        match start($target, $case, $needs, $setup).await {
            Some(connection) => connection,
            None => return,
        }
    };
}

/// Inserts `{id, text, n, done}` and returns the server's copy.
async fn put(c: &Connection, id: &str, text: &str, n: i64, done: bool) -> Item {
    c.transport
        .insert(
            TABLE,
            &item(json!({"id": id, "text": text, "n": n, "done": done})),
        )
        .await
        .unwrap_or_else(|e| panic!("insert {id}: {e:?}"))
}

fn version(item: &Item) -> String {
    item.get("version")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no version in {item:?}"))
        .to_owned()
}

fn stamp(item: &Item, name: &str) -> time::OffsetDateTime {
    let text = item
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no {name} in {item:?}"));
    parse_timestamp(text).unwrap_or_else(|e| panic!("{name} {text:?}: {e}"))
}

fn is_deleted(item: &Item) -> bool {
    item.get("deleted").and_then(Value::as_bool) == Some(true)
}

/// The server's copy carried by a conflict, checked to be a conflict of `status`.
fn conflict_item(result: Result<impl std::fmt::Debug, TransportError>, status: u16) -> Item {
    match result {
        Err(TransportError::Conflict {
            status: got,
            server_item: Some(server_item),
            ..
        }) if got == status => server_item,
        other => panic!("expected a {status} conflict with the server's item, got {other:?}"),
    }
}

async fn all(c: &Connection, include_deleted: bool) -> Vec<Item> {
    c.transport
        .read(&read_request(Query::all().order_by("id"), include_deleted))
        .await
        .unwrap()
        .items
}

/// A created item comes back with the server's system properties: the id asked for, an
/// opaque version, `createdAt` = `updatedAt`, not deleted, and the user's values.
pub async fn insert_returns_the_server_copy(target: &dyn Target) {
    let c = connect!(target, "insert_returns_the_server_copy");
    let back = put(&c, "a", "first", 1, false).await;
    assert_eq!(back["id"], "a");
    assert_eq!(back["text"], "first");
    assert_eq!(back["n"].as_f64(), Some(1.0));
    assert_eq!(back["done"], false);
    assert!(!version(&back).is_empty());
    assert_eq!(stamp(&back, "createdAt"), stamp(&back, "updatedAt"));
    assert!(!is_deleted(&back));
    let stored = all(&c, false).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(version(&stored[0]), version(&back));
}

/// A second insert of an id is a 409 conflict carrying an item with that id (tidesync
/// and the mock send the stored item; the official server echoes the request's).
pub async fn insert_of_an_existing_id_is_a_409_conflict_with_an_item(target: &dyn Target) {
    let c = connect!(
        target,
        "insert_of_an_existing_id_is_a_409_conflict_with_an_item"
    );
    put(&c, "a", "first", 1, false).await;
    let again = c
        .transport
        .insert(TABLE, &item(json!({"id": "a", "text": "second"})))
        .await;
    let server_item = conflict_item(again, 409);
    assert_eq!(server_item["id"], "a");
    let stored = all(&c, false).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0]["text"], "first",
        "a refused insert changed the row"
    );
}

/// An insert without an id is given one by the server.
pub async fn insert_without_an_id_gets_one_from_the_server(target: &dyn Target) {
    let c = connect!(target, "insert_without_an_id_gets_one_from_the_server");
    let back = c
        .transport
        .insert(TABLE, &item(json!({"text": "anonymous"})))
        .await
        .unwrap();
    let id = back["id"].as_str().expect("a string id");
    assert!(!id.is_empty());
    assert_eq!(
        ids(&c
            .transport
            .read(&read_request(Query::all(), false))
            .await
            .unwrap()),
        [id]
    );
}

/// A replace conditional on the current version applies, and stamps a new version and a
/// later (or equal) `updatedAt`; `createdAt` stays.
pub async fn replace_with_the_current_version_makes_a_new_version(target: &dyn Target) {
    let c = connect!(
        target,
        "replace_with_the_current_version_makes_a_new_version"
    );
    let first = put(&c, "a", "first", 1, false).await;
    let v1 = version(&first);
    let back = c
        .transport
        .replace(
            TABLE,
            &item(json!({"id": "a", "text": "second", "n": 2, "done": true})),
            Some(&v1),
        )
        .await
        .unwrap();
    assert_eq!(back["text"], "second");
    assert_eq!(back["done"], true);
    assert_ne!(version(&back), v1);
    assert!(stamp(&back, "updatedAt") >= stamp(&first, "updatedAt"));
    assert_eq!(stamp(&back, "createdAt"), stamp(&first, "createdAt"));
    let stored = all(&c, false).await;
    assert_eq!(stored[0]["text"], "second");
    assert_eq!(version(&stored[0]), version(&back));
}

/// A replace conditional on an old version is a 412 carrying the server's current copy
/// (its version the current one), and changes nothing.
pub async fn replace_with_a_stale_version_is_a_412_with_the_server_copy(target: &dyn Target) {
    let c = connect!(
        target,
        "replace_with_a_stale_version_is_a_412_with_the_server_copy"
    );
    let first = put(&c, "a", "first", 1, false).await;
    let second = c
        .transport
        .replace(TABLE, &item(json!({"id": "a", "text": "second"})), None)
        .await
        .unwrap();
    let stale = c
        .transport
        .replace(
            TABLE,
            &item(json!({"id": "a", "text": "third"})),
            Some(&version(&first)),
        )
        .await;
    let server_item = conflict_item(stale, 412);
    assert_eq!(server_item["text"], "second");
    assert_eq!(version(&server_item), version(&second));
    assert_eq!(all(&c, false).await[0]["text"], "second");
}

/// A replace without `If-Match` applies whatever the server's version.
pub async fn replace_without_a_version_is_unconditional(target: &dyn Target) {
    let c = connect!(target, "replace_without_a_version_is_unconditional");
    put(&c, "a", "first", 1, false).await;
    let back = c
        .transport
        .replace(TABLE, &item(json!({"id": "a", "text": "blind"})), None)
        .await
        .unwrap();
    assert_eq!(back["text"], "blind");
    assert_eq!(all(&c, false).await[0]["text"], "blind");
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, TransportError>, what: &str) {
    assert!(
        matches!(
            result,
            Err(TransportError::NotFound {
                status: 404 | 410,
                ..
            })
        ),
        "{what}: expected NotFound (404/410), got {result:?}"
    );
}

/// A replace of an id the server does not have is `NotFound`.
pub async fn replace_of_a_missing_item_is_not_found(target: &dyn Target) {
    let c = connect!(target, "replace_of_a_missing_item_is_not_found");
    let result = c
        .transport
        .replace(TABLE, &item(json!({"id": "nobody", "text": "x"})), None)
        .await;
    assert_not_found(result, "replace of a missing item");
    assert!(all(&c, true).await.is_empty(), "a replace created a row");
}

/// A replace of a soft-deleted item is `NotFound` (404, or 410 Gone) and leaves the
/// tombstone deleted.
pub async fn replace_of_a_deleted_item_is_not_found(target: &dyn Target) {
    let c = connect!(target, "replace_of_a_deleted_item_is_not_found");
    put(&c, "a", "first", 1, false).await;
    c.transport.delete(TABLE, "a", None).await.unwrap();
    let result = c
        .transport
        .replace(TABLE, &item(json!({"id": "a", "text": "revived"})), None)
        .await;
    assert_not_found(result, "replace of a deleted item");
    let rows = all(&c, true).await;
    assert!(is_deleted(&rows[0]), "the tombstone was revived: {rows:?}");
}

/// A delete with the current version succeeds; the row is gone from plain reads and comes
/// back as a tombstone (`deleted: true`, a new version) from reads that include deleted rows.
pub async fn delete_leaves_a_tombstone_only_deleted_reads_see(target: &dyn Target) {
    let c = connect!(target, "delete_leaves_a_tombstone_only_deleted_reads_see");
    let a = put(&c, "a", "first", 1, false).await;
    put(&c, "b", "kept", 2, false).await;
    c.transport
        .delete(TABLE, "a", Some(&version(&a)))
        .await
        .unwrap();
    let live = all(&c, false).await;
    assert_eq!(
        live.iter().map(|r| r["id"].clone()).collect::<Vec<_>>(),
        ["b"]
    );
    let with_deleted = all(&c, true).await;
    assert_eq!(with_deleted.len(), 2);
    let tombstone = &with_deleted[0];
    assert_eq!(tombstone["id"], "a");
    assert!(is_deleted(tombstone), "{tombstone:?}");
    assert_ne!(version(tombstone), version(&a));
    assert!(stamp(tombstone, "updatedAt") >= stamp(&a, "updatedAt"));
    assert!(!is_deleted(&with_deleted[1]));
}

/// A delete conditional on an old version is a 412 with the server's copy and deletes
/// nothing.
pub async fn delete_with_a_stale_version_is_a_412_with_the_server_copy(target: &dyn Target) {
    let c = connect!(
        target,
        "delete_with_a_stale_version_is_a_412_with_the_server_copy"
    );
    let first = put(&c, "a", "first", 1, false).await;
    let second = c
        .transport
        .replace(TABLE, &item(json!({"id": "a", "text": "second"})), None)
        .await
        .unwrap();
    let stale = c.transport.delete(TABLE, "a", Some(&version(&first))).await;
    let server_item = conflict_item(stale, 412);
    assert_eq!(version(&server_item), version(&second));
    assert_eq!(all(&c, false).await.len(), 1, "a refused delete deleted");
}

/// A delete of an id the server does not have counts as success (the contract of
/// `Transport::delete`).
pub async fn delete_of_a_missing_item_succeeds(target: &dyn Target) {
    let c = connect!(target, "delete_of_a_missing_item_succeeds");
    c.transport.delete(TABLE, "nobody", None).await.unwrap();
    c.transport
        .delete(TABLE, "nobody", Some("AAAAAAAAAAE="))
        .await
        .unwrap();
}

/// `$filter`, `$orderby` (descending), `$skip`, `$top` and the total count together.
pub async fn reads_filter_order_skip_top_and_count(target: &dyn Target) {
    let c = connect!(target, "reads_filter_order_skip_top_and_count");
    for n in 0..6 {
        put(&c, &format!("r{n}"), "row", n, n % 2 == 0).await;
    }
    let query = Query::all()
        .filter(col("n").ge(2))
        .order_by_desc("n")
        .skip(1)
        .top(2)
        .with_count();
    let page = c.transport.read(&read_request(query, false)).await.unwrap();
    assert_eq!(ids(&page), ["r4", "r3"]);
    assert_eq!(page.count, Some(4), "the count is of all matching rows");
    let uncounted = c
        .transport
        .read(&read_request(Query::all().top(1), false))
        .await
        .unwrap();
    assert_eq!(uncounted.count, None, "a count nobody asked for");
}

/// Equality and comparison filters on strings, numbers and booleans, combined with `and`,
/// `or` and `not`.
pub async fn filters_compare_strings_numbers_and_booleans(target: &dyn Target) {
    let c = connect!(target, "filters_compare_strings_numbers_and_booleans");
    put(&c, "a", "apple", 1, true).await;
    put(&c, "b", "banana", 2, false).await;
    put(&c, "c", "cherry", 3, true).await;
    let cases = [
        (col("text").eq("banana"), vec!["b"]),
        (col("done").eq(true), vec!["a", "c"]),
        (col("n").lt(3).and(col("done").eq(true)), vec!["a"]),
        (col("n").gt(2).or(col("text").eq("apple")), vec!["a", "c"]),
        (col("done").eq(true).not(), vec!["b"]),
        (col("text").ne("apple"), vec!["b", "c"]),
    ];
    for (filter, expected) in cases {
        let page = c
            .transport
            .read(&read_request(
                Query::all().filter(filter.clone()).order_by("id"),
                false,
            ))
            .await
            .unwrap();
        assert_eq!(ids(&page), expected, "filter {filter:?}");
    }
}

/// `$select` narrows each row to the named members.
pub async fn select_returns_the_named_members(target: &dyn Target) {
    let c = connect!(target, "select_returns_the_named_members");
    put(&c, "a", "apple", 1, true).await;
    let page = c
        .transport
        .read(&read_request(Query::all().select(["id", "text"]), false))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0]["text"], "apple");
    assert!(
        !page.items[0].contains_key("n") && !page.items[0].contains_key("done"),
        "unselected members: {:?}",
        page.items[0]
    );
}

/// A page the server cut at its page size says more rows follow; the last, short page
/// never does. Paging on with `$skip` reads every row once.
pub async fn a_page_cut_by_the_server_says_more_follow(target: &dyn Target) {
    let setup = Setup {
        page_size: 3,
        ..Setup::default()
    };
    let c = connect!(
        target,
        "a_page_cut_by_the_server_says_more_follow",
        &[],
        &setup
    );
    for n in 0..7 {
        put(&c, &format!("r{n}"), "row", n, false).await;
    }
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    loop {
        let query = Query::all().order_by("id").skip(seen.len() as u64);
        let page = c.transport.read(&read_request(query, false)).await.unwrap();
        assert!(page.items.len() <= 3, "the server's page size was ignored");
        pages.push((page.items.len(), page.has_more));
        if page.items.is_empty() {
            break;
        }
        seen.extend(ids(&page));
        assert!(pages.len() <= 4, "paging does not end: {pages:?}");
    }
    assert_eq!(seen, ["r0", "r1", "r2", "r3", "r4", "r5", "r6"]);
    assert_eq!(pages[0], (3, Some(true)), "a full page: {pages:?}");
    assert_eq!(pages[1], (3, Some(true)), "a full page: {pages:?}");
    assert_eq!(pages[2].0, 1, "{pages:?}");
    assert_ne!(
        pages[2].1,
        Some(true),
        "the last page said more follow: {pages:?}"
    );
}

/// An incremental read (include deleted, `(updatedAt, id)` order, the keyset filter an
/// engine's cursor builds) after a position returns exactly the rows changed after it,
/// the update and the tombstone included, in order.
pub async fn incremental_read_after_a_keyset_cursor_sees_changes_and_tombstones(
    target: &dyn Target,
) {
    let c = connect!(
        target,
        "incremental_read_after_a_keyset_cursor_sees_changes_and_tombstones"
    );
    for n in 0..4 {
        put(&c, &format!("r{n}"), "row", n, false).await;
    }
    let keyset = |q: Query| q.order_by("updatedAt").order_by("id");
    let first = c
        .transport
        .read(&read_request(keyset(Query::all()), true))
        .await
        .unwrap();
    assert_eq!(ids(&first), ["r0", "r1", "r2", "r3"]);
    let cursor = &first.items[3];
    let (at, id) = (stamp(cursor, "updatedAt"), cursor["id"].as_str().unwrap());
    c.transport
        .replace(TABLE, &item(json!({"id": "r1", "text": "changed"})), None)
        .await
        .unwrap();
    c.transport.delete(TABLE, "r2", None).await.unwrap();
    put(&c, "r4", "new", 4, false).await;
    let query = keyset(Query::all().filter(after_keyset(at, id)));
    let changes = c
        .transport
        .read(&read_request(query.clone(), true))
        .await
        .unwrap();
    assert_eq!(ids(&changes), ["r1", "r2", "r4"]);
    assert_eq!(changes.items[0]["text"], "changed");
    assert!(is_deleted(&changes.items[1]));
    let live = c.transport.read(&read_request(query, false)).await.unwrap();
    assert_eq!(
        ids(&live),
        ["r1", "r4"],
        "a plain read returned a tombstone"
    );
}

/// Rows sharing one `updatedAt` are ordered and resumed by id, so a cursor inside a run of
/// ties neither repeats nor skips a row.
pub async fn tied_stamps_are_paged_by_id(target: &dyn Target) {
    let setup = Setup {
        fixed_clock: true,
        ..Setup::default()
    };
    let c = connect!(
        target,
        "tied_stamps_are_paged_by_id",
        &[Needs::FixedClock],
        &setup
    );
    for id in ["d", "b", "a", "c"] {
        put(&c, id, "tie", 0, false).await;
    }
    let query = Query::all().order_by("updatedAt").order_by("id").top(2);
    let first = c
        .transport
        .read(&read_request(query.clone(), true))
        .await
        .unwrap();
    assert_eq!(ids(&first), ["a", "b"]);
    let last = &first.items[1];
    assert_eq!(
        stamp(last, "updatedAt"),
        stamp(&first.items[0], "updatedAt")
    );
    let next = query.filter(after_keyset(stamp(last, "updatedAt"), "b"));
    let second = c.transport.read(&read_request(next, true)).await.unwrap();
    assert_eq!(ids(&second), ["c", "d"]);
}

/// A read of a table the server does not have is a classified error with status 404.
pub async fn reading_an_unknown_table_is_a_404(target: &dyn Target) {
    let c = connect!(target, "reading_an_unknown_table_is_a_404");
    let mut request = read_request(Query::all(), false);
    request.table = "NoSuchTable".to_owned();
    let result = c.transport.read(&request).await;
    match result {
        Err(e) => assert_eq!(e.status(), Some(404), "{e:?}"),
        Ok(page) => panic!("a page of an unknown table: {page:?}"),
    }
}

fn op(
    id: &str,
    kind: OpKind,
    item_id: &str,
    body: Option<Value>,
    if_match: Option<&str>,
) -> BatchOperation {
    BatchOperation {
        operation_id: id.to_owned(),
        kind,
        table: TABLE.to_owned(),
        item_id: item_id.to_owned(),
        item: body.map(item),
        if_match: if_match.map(str::to_owned),
    }
}

/// A batch applies its ops in order, each with its own outcome: an insert and a delete
/// apply, a stale replace is a 412 conflict with the server's copy, and one failed op does
/// not undo the others.
pub async fn batch_applies_each_op_with_its_own_outcome(target: &dyn Target) {
    let c = connect!(
        target,
        "batch_applies_each_op_with_its_own_outcome",
        &[Needs::Batch],
        &Setup::default()
    );
    assert!(c.transport.supports_batch());
    let a = put(&c, "a", "first", 1, false).await;
    c.transport
        .replace(TABLE, &item(json!({"id": "a", "text": "second"})), None)
        .await
        .unwrap();
    put(&c, "b", "doomed", 2, false).await;
    let ops = [
        op(
            "op-1",
            OpKind::Insert,
            "c",
            Some(json!({"id": "c", "text": "new"})),
            None,
        ),
        op(
            "op-2",
            OpKind::Update,
            "a",
            Some(json!({"id": "a", "text": "stale"})),
            Some(&version(&a)),
        ),
        op("op-3", OpKind::Delete, "b", None, None),
    ];
    let outcomes = c.transport.batch(&ops).await.unwrap();
    assert_eq!(outcomes.len(), 3);
    match &outcomes[0] {
        BatchOutcome::Ok(Some(created)) => assert_eq!(created["text"], "new"),
        other => panic!("insert: {other:?}"),
    }
    match &outcomes[1] {
        BatchOutcome::Err(TransportError::Conflict {
            status: 412,
            server_item: Some(server_item),
            ..
        }) => assert_eq!(server_item["text"], "second"),
        other => panic!("stale replace: {other:?}"),
    }
    assert!(
        matches!(outcomes[2], BatchOutcome::Ok(_)),
        "delete: {:?}",
        outcomes[2]
    );
    let live = c
        .transport
        .read(&read_request(Query::all().order_by("id"), false))
        .await
        .unwrap();
    assert_eq!(ids(&live), ["a", "c"]);
}

/// A batch sent again with the same op ids (its answer was lost) is applied once: the
/// retry answers like the first time and the server's versions do not move.
pub async fn a_retried_batch_is_applied_once(target: &dyn Target) {
    let c = connect!(
        target,
        "a_retried_batch_is_applied_once",
        &[Needs::Batch],
        &Setup::default()
    );
    put(&c, "a", "first", 1, false).await;
    let ops = [
        op(
            "op-1",
            OpKind::Insert,
            "b",
            Some(json!({"id": "b", "text": "once"})),
            None,
        ),
        op(
            "op-2",
            OpKind::Update,
            "a",
            Some(json!({"id": "a", "text": "once"})),
            None,
        ),
    ];
    let first = c.transport.batch(&ops).await.unwrap();
    assert!(
        first.iter().all(|o| matches!(o, BatchOutcome::Ok(_))),
        "{first:?}"
    );
    let before = all(&c, true).await;
    let again = c.transport.batch(&ops).await.unwrap();
    assert!(
        again.iter().all(|o| matches!(o, BatchOutcome::Ok(_))),
        "a retried batch failed: {again:?}"
    );
    let after = all(&c, true).await;
    assert_eq!(
        before.iter().map(version).collect::<Vec<_>>(),
        after.iter().map(version).collect::<Vec<_>>(),
        "a retried batch was applied again"
    );
}

/// System properties a client sends (`updatedAt`, `createdAt`, `version`, `deleted`) are
/// the server's business: an insert's stamps and version are the server's own.
pub async fn system_properties_from_the_client_are_the_servers_business(target: &dyn Target) {
    let c = connect!(
        target,
        "system_properties_from_the_client_are_the_servers_business"
    );
    let reference = put(&c, "ref", "reference", 0, false).await;
    let back = c
        .transport
        .insert(
            TABLE,
            &item(json!({
                "id": "a", "text": "first",
                "updatedAt": "2000-01-01T00:00:00.000Z",
                "createdAt": "2000-01-01T00:00:00.000Z",
                "version": "Ym9ndXM=",
            })),
        )
        .await
        .unwrap();
    assert!(stamp(&back, "updatedAt") >= stamp(&reference, "updatedAt"));
    assert!(stamp(&back, "createdAt") >= stamp(&reference, "createdAt"));
    assert_ne!(version(&back), "Ym9ndXM=");
    assert!(!is_deleted(&back));
}

/// Ids with spaces and non-ASCII letters travel in paths and bodies intact.
pub async fn ids_with_spaces_and_unicode_round_trip(target: &dyn Target) {
    let c = connect!(target, "ids_with_spaces_and_unicode_round_trip");
    let id = "größe café 1";
    let first = put(&c, id, "first", 1, false).await;
    assert_eq!(first["id"], id);
    let back = c
        .transport
        .replace(
            TABLE,
            &item(json!({"id": id, "text": "second"})),
            Some(&version(&first)),
        )
        .await
        .unwrap();
    assert_eq!(back["id"], id);
    c.transport
        .delete(TABLE, id, Some(&version(&back)))
        .await
        .unwrap();
    let rows = all(&c, true).await;
    assert_eq!(rows[0]["id"], id);
    assert!(is_deleted(&rows[0]));
}

/// An insert of an id whose row was soft-deleted is a 409 conflict: the tombstone keeps
/// the id taken, and is not revived.
pub async fn insert_over_a_tombstone_is_a_409_conflict(target: &dyn Target) {
    let c = connect!(target, "insert_over_a_tombstone_is_a_409_conflict");
    put(&c, "a", "first", 1, false).await;
    c.transport.delete(TABLE, "a", None).await.unwrap();
    let again = c
        .transport
        .insert(TABLE, &item(json!({"id": "a", "text": "again"})))
        .await;
    let server_item = conflict_item(again, 409);
    assert_eq!(server_item["id"], "a");
    let rows = all(&c, true).await;
    assert_eq!(rows.len(), 1);
    assert!(is_deleted(&rows[0]), "the tombstone was revived: {rows:?}");
}

/// Deleting a row twice succeeds both times (the second finds a tombstone or nothing), and
/// the tombstone does not change.
pub async fn a_second_delete_succeeds_and_changes_nothing(target: &dyn Target) {
    let c = connect!(target, "a_second_delete_succeeds_and_changes_nothing");
    put(&c, "a", "first", 1, false).await;
    c.transport.delete(TABLE, "a", None).await.unwrap();
    let tombstone = all(&c, true).await.remove(0);
    c.transport.delete(TABLE, "a", None).await.unwrap();
    let after = all(&c, true).await.remove(0);
    assert_eq!(version(&after), version(&tombstone));
}

/// A conditional replace of an id the server does not have is `NotFound` (not a 412), and
/// creates nothing.
pub async fn a_conditional_replace_of_a_missing_item_creates_nothing(target: &dyn Target) {
    let c = connect!(
        target,
        "a_conditional_replace_of_a_missing_item_creates_nothing"
    );
    let result = c
        .transport
        .replace(
            TABLE,
            &item(json!({"id": "nobody", "text": "x"})),
            Some("AAAAAAAAAAE="),
        )
        .await;
    assert_not_found(result, "conditional replace of a missing item");
    assert!(all(&c, true).await.is_empty(), "a replace created a row");
}
