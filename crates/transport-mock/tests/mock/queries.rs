//! Reads: filter, order with the id tiebreak, paging under a page limit, counts, and the clock.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use tidesync_core::{Transport, TransportError};
use tidesync_protocol::{OrderBy, Query, parse_filter, parse_timestamp};
use tidesync_transport_mock::{Clock, MockServer};
use time::macros::datetime;

use crate::support::{TABLE, ids, insert, item, read_request, setup, text};

/// One paging case: rows `r00..`, the server's page limit, the request's `$skip` and `$top`,
/// then the expected ids and `has_more`.
type PageCase = (
    usize,
    Option<usize>,
    Option<u64>,
    Option<u64>,
    &'static [&'static str],
    bool,
);

async fn check_page(case: PageCase) {
    let (n_rows, limit, skip, top, expect_ids, expect_has_more) = case;
    let (server, client) = setup();
    for n in 0..n_rows {
        server.server_insert(TABLE, item(json!({"id": format!("r{n:02}")})));
    }
    server.set_page_limit(limit);
    let mut query = Query::all();
    query.skip = skip;
    query.top = top;
    query.count = true;
    let page = client.read(&read_request(query, false)).await.unwrap();
    let label = format!("{n_rows} rows, limit {limit:?}, skip {skip:?}, top {top:?}");
    assert_eq!(ids(&page.items), expect_ids, "{label}");
    assert_eq!(page.has_more, Some(expect_has_more), "{label}");
    assert_eq!(page.count, Some(n_rows as u64), "{label}");
}

#[tokio::test]
async fn pages_are_capped_and_has_more_is_exact() {
    let cases: [PageCase; 10] = [
        // The limit cuts the page; more rows follow.
        (7, Some(3), None, None, &["r00", "r01", "r02"], true),
        (7, Some(3), Some(3), None, &["r03", "r04", "r05"], true),
        (7, Some(3), Some(6), None, &["r06"], false),
        // A page that is exactly full at the end has nothing after it.
        (6, Some(3), Some(3), None, &["r03", "r04", "r05"], false),
        (7, Some(3), Some(9), None, &[], false),
        // `$top` bounds "more": rows beyond it do not count.
        (7, Some(3), None, Some(4), &["r00", "r01", "r02"], true),
        (7, Some(3), Some(3), Some(1), &["r03"], false),
        (7, Some(3), None, Some(3), &["r00", "r01", "r02"], false),
        (7, Some(3), None, Some(0), &[], false),
        // No limit: the whole rest in one page.
        (7, None, Some(5), None, &["r05", "r06"], false),
    ];
    for case in cases {
        check_page(case).await;
    }
}

#[tokio::test]
async fn the_default_page_limit_is_50() {
    let (server, client) = setup();
    for n in 0..60 {
        server.server_insert(TABLE, item(json!({"id": format!("r{n:02}")})));
    }
    let page = client
        .read(&read_request(Query::all(), false))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 50);
    assert_eq!(page.has_more, Some(true));
    assert_eq!(page.count, None, "no count unless asked for");
}

#[tokio::test]
async fn filter_and_order_use_an_id_tiebreak() {
    let (server, client) = setup();
    for (id, rank, done) in [
        ("d", 1, false),
        ("b", 2, false),
        ("a", 1, false),
        ("c", 2, true),
    ] {
        server.server_insert(TABLE, item(json!({"id": id, "rank": rank, "done": done})));
    }
    let mut query = Query::all();
    query.filter = Some(parse_filter("not done").unwrap());
    query.order_by = vec![OrderBy {
        member: "rank".to_owned(),
        descending: true,
    }];
    query.count = true;
    let page = client.read(&read_request(query, false)).await.unwrap();
    assert_eq!(ids(&page.items), ["b", "a", "d"]);
    assert_eq!(page.count, Some(3));
}

#[tokio::test]
async fn select_projects_the_page() {
    let (server, client) = setup();
    server.server_insert(TABLE, item(json!({"id": "a", "text": "x", "n": 1})));
    let mut query = Query::all();
    query.select = Some(vec!["id".to_owned(), "text".to_owned()]);
    let page = client.read(&read_request(query, false)).await.unwrap();
    assert_eq!(page.items, [item(json!({"id": "a", "text": "x"}))]);
}

#[tokio::test]
async fn a_query_that_fails_to_evaluate_is_400() {
    let (server, client) = setup();
    server.server_insert(TABLE, item(json!({"id": "a", "text": "x"})));
    let mut query = Query::all();
    query.filter = Some(parse_filter("text add 1 eq 2").unwrap());
    let result = client.read(&read_request(query, false)).await;
    assert!(
        matches!(result, Err(TransportError::Http { status: 400, .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn the_auto_clock_is_deterministic_and_strictly_increasing() {
    let (server, client) = setup();
    let mut stamps = vec![text(&insert(&client, "a", "x").await, "updatedAt").to_owned()];
    stamps.push(text(&insert(&client, "b", "x").await, "updatedAt").to_owned());
    let body = item(json!({"id": "a", "text": "y"}));
    stamps.push(
        text(
            &client.replace(TABLE, &body, None).await.unwrap(),
            "updatedAt",
        )
        .to_owned(),
    );
    client.delete(TABLE, "b", None).await.unwrap();
    stamps.push(text(&server.get(TABLE, "b").unwrap(), "updatedAt").to_owned());
    stamps.push(text(&server.server_insert(TABLE, item(json!({}))), "updatedAt").to_owned());
    assert_eq!(
        stamps,
        [
            "2026-01-01T00:00:00.000Z",
            "2026-01-01T00:00:00.001Z",
            "2026-01-01T00:00:00.002Z",
            "2026-01-01T00:00:00.003Z",
            "2026-01-01T00:00:00.004Z",
        ]
    );
    server.advance_clock(Duration::from_secs(60));
    let later = server.server_insert(TABLE, item(json!({})));
    assert_eq!(text(&later, "updatedAt"), "2026-01-01T00:01:00.005Z");
}

#[tokio::test]
async fn a_fixed_clock_gives_ties_that_paging_walks_through() {
    let server = MockServer::new();
    server.add_table(TABLE);
    let client = server.transport();
    let at = datetime!(2026-03-04 05:06:07.123456 UTC);
    server.set_clock(Clock::Fixed(at));
    for n in 0..1000 {
        server.server_insert(TABLE, item(json!({"id": format!("r{n:04}")})));
    }
    let rows = server.items(TABLE);
    assert!(
        rows.iter()
            .all(|row| text(row, "updatedAt") == "2026-03-04T05:06:07.123Z")
    );
    assert!(rows.iter().all(|row| row["createdAt"] == row["updatedAt"]));

    // An incremental pull's shape: `updatedAt ge token`, ordered by updatedAt, by skip.
    let mut seen = BTreeSet::new();
    let mut skip = 0;
    loop {
        let mut query = Query::all();
        query.filter =
            Some(parse_filter("updatedAt ge datetimeoffset'2026-03-04T05:06:07.123Z'").unwrap());
        query.order_by = vec![OrderBy {
            member: "updatedAt".to_owned(),
            descending: false,
        }];
        query.skip = Some(skip);
        let page = client.read(&read_request(query, true)).await.unwrap();
        skip += page.items.len() as u64;
        seen.extend(ids(&page.items));
        if page.has_more != Some(true) {
            break;
        }
    }
    assert_eq!(seen.len(), 1000);
    assert_eq!(skip, 1000);

    // Back on the automatic clock, stamps continue after the fixed instant.
    server.set_clock(Clock::Auto);
    let next = server.server_insert(TABLE, item(json!({})));
    let next_at = parse_timestamp(text(&next, "updatedAt")).unwrap();
    assert_eq!(next_at, datetime!(2026-03-04 05:06:07.124 UTC));
}
