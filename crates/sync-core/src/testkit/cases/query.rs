//! Query and delete cases, run on the fixture table and compared with
//! [`eval::run_query`](tidesync_protocol::odata::eval::run_query).

use serde_json::json;
use tidesync_protocol::odata::{Query, parse_order_by};

use crate::error::StoreError;
use crate::store::Write;
use crate::testkit::StoreFactory;
use crate::testkit::fixture::*;

/// `eq ne gt ge lt le` on every column type, literals on either side.
pub fn filter_comparisons(factory: &dyn StoreFactory) {
    let (_place, store) = fx_store(factory);
    check_filters(
        &*store,
        &[
            "text eq 'apple'",
            "text ne 'apple'",
            "text gt 'apple'",
            "text ge 'apple'",
            "text lt 'banana'",
            "text le 'Banana'",
            "'apple' eq text",
            "'b' lt text",
            "n eq 2",
            "n ne 2",
            "n gt 1",
            "n ge 2",
            "n lt 0",
            "n le -7",
            "2 lt n",
            "n eq 2.0",
            "n gt 1.5",
            "n lt 2.5",
            "x eq 1.5",
            "x gt 0.1",
            "x ge 3",
            "x lt 0",
            "x le -0.5",
            "x eq 3",
            "x gt 1e299",
            "flag eq true",
            "flag ne true",
            "flag eq false",
            "flag gt false",
            "flag le false",
            "at eq '2024-01-15T10:20:30.123Z'",
            "at gt '2024-01-15T10:20:30.123Z'",
            "at lt '2024'",
            "updatedAt ge '2024-01-15T10:20:30.123Z'",
            "id gt 'c'",
            "id le 'b'",
            "version eq 'v1'",
            "text eq 'O''Brien \"quoted\" ; DROP TABLE fx; --'",
            "tag eq 'a%b_c'",
            "tag eq 'a_b%c'",
            "n eq m",
            "n lt m",
            "x gt n",
            "text eq tag",
            "text eq 5",
            "n eq 'apple'",
            "flag eq 1",
            "n gt true",
            "doc eq 42",
            "doc eq 'plain'",
            "doc eq true",
            "doc gt 3",
        ],
    );
}

/// Comparisons with null and with missing values.
pub fn filter_nulls(factory: &dyn StoreFactory) {
    let (_place, store) = fx_store(factory);
    check_filters(
        &*store,
        &[
            "text eq null",
            "text ne null",
            "null eq text",
            "tag eq null",
            "n eq null",
            "n ne null",
            "x eq null",
            "flag eq null",
            "flag ne null",
            "at eq null",
            "doc eq null",
            "doc ne null",
            "n gt null",
            "n lt null",
            "n ge null",
            "null le n",
            "null eq null",
            "null ne null",
            "version eq null",
            "createdAt eq null",
            "not (n gt 1)",
            "not (tag eq null)",
            "n add 1 eq null",
        ],
    );
}

/// `and or not` with three-valued logic over null and non-boolean operands.
pub fn filter_logic(factory: &dyn StoreFactory) {
    let (_place, store) = fx_store(factory);
    check_filters(
        &*store,
        &[
            "n gt 0 and flag eq true",
            "n gt 0 or flag eq true",
            "not (n gt 0)",
            "not (n gt 0 and x gt 0)",
            "n eq 2 or n eq 9 or text eq ''",
            "(n gt 0 or x lt 0) and not (tag eq 'fruit')",
            "flag",
            "not flag",
            "flag and n gt 0",
            "flag or n gt 50",
            "not flag or n eq 2",
            "flag eq true and not flag",
            "true",
            "false",
            "not true",
            "null",
            "not null",
            "flag and null",
            "flag or null",
            "n",
            "text and true",
            "not (not (n ge 2))",
            "true and text eq 'apple'",
        ],
    );
}

/// `add sub mul div mod` and negation, integers and reals.
pub fn filter_arithmetic(factory: &dyn StoreFactory) {
    let (_place, store) = fx_store(factory);
    check_filters(
        &*store,
        &[
            "n add 1 eq 3",
            "n sub 1 lt 0",
            "n mul 2 eq 4",
            "n div 2 eq 1",
            "n mod 2 eq 1",
            "x add 1 gt 2",
            "x sub n gt 0",
            "x mul 2 eq 3",
            "x div 2 eq 0.75",
            "x mod 1 eq 0.5",
            "n add x gt 3",
            "m div n eq 1",
            "-n eq 7",
            "n add m eq 9",
            "n mod -2 eq 0",
            "n mul 1.5 eq 3.0",
            "n add m mul 2 eq 8",
            "(n add m) mul 2 eq 8",
        ],
    );
}

/// The string functions.
pub fn filter_string_functions(factory: &dyn StoreFactory) {
    let (_place, store) = fx_store(factory);
    check_filters(
        &*store,
        &[
            "substringof('an', text)",
            "substringof('AN', text)",
            "contains(text, 'pp')",
            "contains(text, '')",
            "contains(tag, '%')",
            "contains(tag, '_')",
            "startswith(text, 'ap')",
            "startswith(text, 'A')",
            "startswith(text, '')",
            "endswith(text, 'ok')",
            "endswith(text, ' ')",
            "tolower(text) eq 'banana'",
            "toupper(text) eq 'APPLE'",
            "tolower(text) eq 'ümlaut äö straße'",
            "toupper(text) eq 'ÜMLAUT ÄÖ STRASSE'",
            "trim(text) eq 'cherry pie'",
            "length(text) eq 5",
            "length(text) eq 0",
            "length(text) eq 11",
            "length(text) gt 12",
            "indexof(text, 'p') eq 1",
            "indexof(text, 'x') eq -1",
            "indexof(text, '🍌') eq 7",
            "substring(text, 1) eq 'pple'",
            "substring(text, 1, 2) eq 'pp'",
            "substring(text, 6, 2) eq '🍎🍌'",
            "substring(text, 50) eq ''",
            "concat(text, tag) eq 'applefruit'",
            "concat(concat(text, ' '), tag) eq 'apple fruit'",
            "replace(text, 'p', 'b') eq 'abble'",
            "replace(text, '', 'x') eq 'apple'",
            "length(tag) eq 3",
            "tolower(tag) eq 'fruit'",
            "startswith(tag, text)",
        ],
    );
}

/// `year month day hour minute second` on date-time columns and text.
pub fn filter_date_functions(factory: &dyn StoreFactory) {
    let (_place, store) = fx_store(factory);
    check_filters(
        &*store,
        &[
            "year(at) eq 2024",
            "year(at) lt 2024",
            "month(at) eq 2",
            "day(at) eq 31",
            "day(at) eq 29",
            "hour(at) eq 13",
            "hour(at) eq 10",
            "minute(at) eq 20",
            "second(at) eq 59",
            "second(at) eq 30",
            "year(updatedAt) eq 2024",
            "year(text) eq 2024",
            "year(at) eq null",
            "month(at) ne 1",
        ],
    );
}

/// `round floor ceiling` and `in`.
pub fn filter_math_functions_and_in(factory: &dyn StoreFactory) {
    let (_place, store) = fx_store(factory);
    check_filters(
        &*store,
        &[
            "round(x) eq 2",
            "round(x) eq 3",
            "round(x) eq -2",
            "floor(x) eq -3",
            "floor(x) eq 1",
            "ceiling(x) eq 1",
            "ceiling(x) eq 0",
            "round(n) eq 2",
            "floor(n) eq -7",
            "round(x) eq -0",
            "ceiling(x) eq -0.0",
            "n in (1, 2, 9)",
            "n in (2.0, 100)",
            "text in ('apple', 'Banana', '')",
            "tag in ('fruit', null)",
            "x in (1.5, 3)",
            "flag in (true)",
            "id in ('a', 'z')",
            "not (n in (1, 2))",
            "text in ('x')",
            "doc in (42, 'plain')",
        ],
    );
}

/// Date-time literals against date-time columns, text and each other, with
/// different fraction widths and offsets.
pub fn filter_date_time_literals(factory: &dyn StoreFactory) {
    let (_place, store) = fx_store(factory);
    check_filters(
        &*store,
        &[
            "at eq datetimeoffset'2024-01-15T10:20:30.123Z'",
            "at gt datetimeoffset'2024-01-15T10:20:30.123Z'",
            "at ge datetimeoffset'2024-01-15T10:20:30.123Z'",
            "at lt datetimeoffset'2024-01-15T10:20:30.1235Z'",
            "at le datetimeoffset'2024-01-15T15:50:30.123+05:30'",
            "at eq datetimeoffset'2023-12-31T13:00:00.5Z'",
            "at lt datetimeoffset'2000-01-01T00:00:00Z'",
            "at ne datetimeoffset'2024-01-15T10:20:30.123Z'",
            "updatedAt ge datetimeoffset'2024-01-15T10:20:30.123Z'",
            "updatedAt gt datetimeoffset'2024-01-15T10:20:30Z'",
            "text gt datetimeoffset'2024-01-01T00:00:00Z'",
            "at in (datetimeoffset'2024-01-15T10:20:30.123Z')",
            "createdAt lt datetimeoffset'2024-01-01T00:00:00Z'",
        ],
    );
}

/// Filters the reference cannot evaluate (type errors, division by zero,
/// overflow) give `InvalidQuery`; a type error on rows the filter never
/// reaches is not an error.
pub fn filter_errors(factory: &dyn StoreFactory) {
    let (_place, store) = fx_store(factory);
    check_filters(
        &*store,
        &[
            "n div 0 eq 1",
            "n mod 0 eq 1",
            "text add 1 eq 2",
            "x div 0 eq 1",
            "n mul 9223372036854775807 gt 0",
            "length(n) eq 1",
            "year(n) eq 1",
            "startswith(n, 'a')",
            "round(text) eq 1",
            "n eq 2 and text add 1 eq 2",
            "text add 1 eq 2 and n eq 2",
            "id eq 'zzz' and n div 0 eq 1",
            "false and n div 0 eq 1",
            "true or n div 0 eq 1",
        ],
    );
}

/// Filters, orders and selections naming a column the table lacks give `InvalidQuery`.
pub fn query_unknown_column(factory: &dyn StoreFactory) {
    let (_place, store) = fx_store(factory);
    let queries = [
        filter("colour eq 'red'"),
        filter("n eq 1 or Text eq 'x'"),
        Query::all().order_by("deleted"),
        Query::all().select(["id", "nope"]),
    ];
    for query in queries {
        match store.query("fx", &query) {
            Err(StoreError::InvalidQuery { table, .. }) => assert_eq!(table, "fx"),
            // A parse of an odd member name may produce another unknown member; any other result is wrong.
            other => panic!("{query:?}: {other:?}"),
        }
    }
}

/// Order by several columns ascending and descending, nulls first ascending,
/// with `id` as the final tiebreaker.
pub fn order_by_columns(factory: &dyn StoreFactory) {
    let (_place, store) = fx_store(factory);
    let orders = [
        "text",
        "text desc",
        "tag,n",
        "tag desc,n desc",
        "n",
        "n desc",
        "x",
        "x desc",
        "flag",
        "flag desc,text",
        "at",
        "at desc",
        "updatedAt desc",
        "m,n",
        "id desc",
        "tag,x desc,id",
        "version",
    ];
    let queries: Vec<Query> = orders
        .iter()
        .map(|o| Query {
            order_by: parse_order_by(o).unwrap(),
            ..Query::all()
        })
        .chain([filter("n gt 0").order_by_desc("x").top(3)])
        .collect();
    check_queries(&*store, &queries);
}

/// Order by a JSON column (mixed kinds) and by booleans with nulls.
pub fn order_by_json_and_bools(factory: &dyn StoreFactory) {
    let (_place, store) = fx_store(factory);
    let queries = [
        Query::all().order_by("doc"),
        Query::all().order_by_desc("doc"),
        Query::all()
            .order_by("doc")
            .order_by_desc("flag")
            .skip(2)
            .top(4),
        Query::all().order_by_desc("flag").order_by("doc"),
    ];
    check_queries(&*store, &queries);
}

/// Skip and top page through the ordered rows; the count ignores them.
pub fn skip_top_count(factory: &dyn StoreFactory) {
    let (_place, store) = fx_store(factory);
    let mut queries = Vec::new();
    for (skip, top) in [
        (None, Some(0)),
        (Some(0), Some(3)),
        (Some(3), Some(3)),
        (Some(8), Some(5)),
        (Some(50), None),
        (Some(2), None),
        (None, Some(100)),
    ] {
        for count in [false, true] {
            queries.push(Query {
                skip,
                top,
                count,
                ..filter("n ge 0").order_by_desc("n")
            });
            queries.push(Query {
                skip,
                top,
                count,
                ..Query::all()
            });
            queries.push(Query {
                skip,
                top,
                count,
                ..filter("length(text) gt 3")
            });
        }
    }
    check_queries(&*store, &queries);
    let counted = store
        .query("fx", &Query::all().with_count().skip(1).top(1))
        .unwrap();
    assert_eq!(counted.count, Some(9));
    assert_eq!(counted.items.len(), 1);
    assert_eq!(store.query("fx", &Query::all()).unwrap().count, None);
}

/// `$select` keeps only the listed properties that exist.
pub fn select_projection(factory: &dyn StoreFactory) {
    let (_place, store) = fx_store(factory);
    let queries = [
        Query::all().select(["text"]),
        Query::all().select(["id", "n", "doc"]),
        Query::all().select(["at", "x"]).order_by("x"),
        filter("n gt 1").select(["flag"]).with_count(),
        Query::all().select(Vec::<String>::new()),
        filter("doc ne null").select(["doc", "id"]).order_by("doc"),
    ];
    check_queries(&*store, &queries);
}

/// `DeleteItem` removes one row; a missing row is not an error.
pub fn delete_item(factory: &dyn StoreFactory) {
    let (_place, store) = fx_store(factory);
    let delete = |id: &str| Write::DeleteItem {
        table: "fx".to_owned(),
        id: id.to_owned(),
    };
    write(&*store, vec![delete("a"), delete("missing"), delete("a")]);
    assert_eq!(store.get("fx", "a").unwrap(), None);
    assert_eq!(all_ids(&*store, "fx").len(), 8);
    // Deleted then put again in one batch: the row exists.
    write(
        &*store,
        vec![delete("b"), put("fx", json!({"id": "b", "n": 5}))],
    );
    assert_same_item(
        store.get("fx", "b").unwrap().as_ref(),
        Some(&item(json!({"id": "b", "n": 5}))),
        "re-put",
    );
}

/// `DeleteItems` with a filter removes exactly the matching rows.
pub fn delete_items_filter(factory: &dyn StoreFactory) {
    for text in [
        "tag eq 'fruit'",
        "n gt 1 and flag eq false",
        "tolower(text) eq 'banana'",
        "n eq 12345",
        "at lt datetimeoffset'2024-01-15T10:20:30.1234Z'",
    ] {
        let (_place, store) = fx_store(factory);
        let query = filter(text);
        let expected: Vec<String> = {
            let removed = tidesync_protocol::odata::eval::run_query(fx_stored(), &query).unwrap();
            let removed = ids(&removed.items);
            ids(&fx_stored())
                .into_iter()
                .filter(|id| !removed.contains(id))
                .collect()
        };
        write(
            &*store,
            vec![Write::DeleteItems {
                table: "fx".to_owned(),
                query,
            }],
        );
        assert_eq!(all_ids(&*store, "fx"), expected, "after deleting {text}");
    }
    let (_place, store) = fx_store(factory);
    assert_err(
        store.write(&batch(vec![Write::DeleteItems {
            table: "fx".to_owned(),
            query: filter("n div 0 eq 1"),
        }])),
        |e| matches!(e, StoreError::InvalidQuery { .. }),
        "a failing filter",
    );
    assert_eq!(all_ids(&*store, "fx").len(), 9);
}

/// `DeleteItems` with order, skip and top removes exactly that page.
pub fn delete_items_order_top(factory: &dyn StoreFactory) {
    let queries = [
        Query::all().order_by("n").top(3),
        Query::all().order_by_desc("x").skip(1).top(2),
        filter("flag eq true").order_by("text").top(1),
        Query::all().top(0),
        Query::all()
            .select(["n"])
            .with_count()
            .order_by("doc")
            .top(2),
    ];
    for query in queries {
        let (_place, store) = fx_store(factory);
        let page = Query {
            select: None,
            count: false,
            ..query.clone()
        };
        let removed = ids(
            &tidesync_protocol::odata::eval::run_query(fx_stored(), &page)
                .unwrap()
                .items,
        );
        let expected: Vec<String> = ids(&fx_stored())
            .into_iter()
            .filter(|id| !removed.contains(id))
            .collect();
        write(
            &*store,
            vec![Write::DeleteItems {
                table: "fx".to_owned(),
                query: query.clone(),
            }],
        );
        assert_eq!(all_ids(&*store, "fx"), expected, "after deleting {query:?}");
    }
}
