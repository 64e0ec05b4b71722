//! Queue, error record, config, bulk and concurrency cases.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde_json::{Value, json};
use tidesync_protocol::odata::Query;

use crate::model::{OpKind, OpState, Operation};
use crate::store::{LocalStore, Write};
use crate::testkit::QueueView;
use crate::testkit::StoreFactory;
use crate::testkit::fixture::*;

fn queue_store(factory: &dyn StoreFactory) -> (Place, Arc<dyn LocalStore>) {
    let (place, store) = fresh(factory);
    store.define_table(&fx_def()).unwrap();
    (place, store)
}

fn op_ids(ops: &[Operation]) -> Vec<&str> {
    ops.iter().map(|o| o.id.as_str()).collect()
}

/// `get_with_operations` answers what `get` and `operations_for` answer.
pub fn row_with_operations(factory: &dyn StoreFactory) {
    let (_place, store) = queue_store(factory);
    write(
        &*store,
        vec![
            Write::PutItem {
                table: "todo".into(),
                item: item(json!({"id": "a", "text": "row"})),
            },
            Write::PutOperation(op("op-1", 1, "todo", "a", OpKind::Update)),
            Write::PutOperation(op("op-2", 2, "todo", "a", OpKind::Delete)),
            Write::PutOperation(op("op-3", 3, "fx", "a", OpKind::Insert)),
        ],
    );
    for (table, id) in [("todo", "a"), ("todo", "none"), ("fx", "a")] {
        assert_eq!(
            store.get_with_operations(table, id).unwrap(),
            (
                store.get(table, id).unwrap(),
                store.operations_for(table, id).unwrap()
            ),
            "{table}/{id}"
        );
    }
    let (row, ops) = store.get_with_operations("todo", "a").unwrap();
    assert_eq!(row.unwrap()["text"], "row");
    assert_eq!(op_ids(&ops), vec!["op-1", "op-2"]);
    assert!(matches!(
        store.get_with_operations("nope", "a"),
        Err(crate::error::StoreError::UnknownTable(_))
    ));
}

/// `get_many` answers each key as `get` does, in the order asked, repeated and
/// missing keys included, with ops queued beside the rows.
pub fn many_rows_with_operations(factory: &dyn StoreFactory) {
    let (_place, store) = queue_store(factory);
    write(
        &*store,
        vec![
            Write::PutItem {
                table: "todo".into(),
                item: item(json!({"id": "a", "text": "row a"})),
            },
            Write::PutItem {
                table: "todo".into(),
                item: item(json!({"id": "b", "text": "row b"})),
            },
            Write::PutOperation(op("op-1", 1, "todo", "b", OpKind::Update)),
            Write::PutOperation(op("op-2", 2, "todo", "a", OpKind::Update)),
            Write::PutOperation(op("op-3", 3, "fx", "c", OpKind::Delete)),
            Write::PutOperation(op("op-4", 4, "todo", "a", OpKind::Delete)),
        ],
    );
    let keys = [
        ("todo", "b"),
        ("fx", "c"),
        ("todo", "none"),
        ("todo", "a"),
        ("todo", "b"),
    ];
    let many = store.get_many(&keys).unwrap();
    assert_eq!(many.len(), keys.len());
    for ((table, id), got) in keys.iter().zip(&many) {
        assert_eq!(got, &store.get(table, id).unwrap(), "{table}/{id}");
    }
    assert_eq!(
        op_ids(&store.get_with_operations("todo", "a").unwrap().1),
        vec!["op-2", "op-4"]
    );
    assert_eq!(many[0].as_ref().unwrap()["text"], "row b");
    assert!(many[2].is_none());
    assert!(store.get_many(&[]).unwrap().is_empty());
    assert!(matches!(
        store.get_many(&[("todo", "a"), ("nope", "a")]),
        Err(crate::error::StoreError::UnknownTable(_))
    ));
}

/// `PutOperation`, `DeleteOperation` and the lookups: by id, by (table, item),
/// counts and the largest sequence; ops keep their `item` and `base` JSON.
pub fn queue_put_and_lookup(factory: &dyn StoreFactory) {
    let (_place, store) = queue_store(factory);
    assert_eq!(store.max_sequence().unwrap(), 0);
    assert_eq!(store.count_operations(None).unwrap(), 0);
    assert!(store.operations(0, 10).unwrap().is_empty());
    let mut delete = op("op-del", 3, "todo", "a", OpKind::Delete);
    delete.item = Some(item(
        json!({"id": "a", "text": "🍎 \"q\"", "version": "v1", "deep": {"x": [1, {"y": null}]}}),
    ));
    delete.base = Some(item(
        json!({"id": "a", "text": "base", "n": 1.5, "b": false}),
    ));
    delete.state = OpState::Failed;
    delete.version = 4;
    let mut update = op("op-upd", 5, "fx", "a", OpKind::Update);
    update.state = OpState::Attempted;
    let insert = op("op-ins", 9, "todo", "b", OpKind::Insert);
    write(
        &*store,
        vec![
            Write::PutOperation(delete.clone()),
            Write::PutOperation(update.clone()),
            Write::PutOperation(insert.clone()),
        ],
    );
    assert_eq!(store.operation("op-del").unwrap(), Some(delete.clone()));
    assert_eq!(store.operation("op-upd").unwrap(), Some(update.clone()));
    assert_eq!(store.operation("nope").unwrap(), None);
    assert_eq!(
        store.operations_for("todo", "a").unwrap(),
        vec![delete.clone()]
    );
    assert_eq!(
        store.operations_for("fx", "a").unwrap(),
        vec![update.clone()]
    );
    assert!(store.operations_for("fx", "b").unwrap().is_empty());
    assert!(store.operations_for("TODO", "a").unwrap().is_empty());
    assert_eq!(store.count_operations(None).unwrap(), 3);
    assert_eq!(store.count_operations(Some("todo")).unwrap(), 2);
    assert_eq!(store.count_operations(Some("fx")).unwrap(), 1);
    assert_eq!(store.count_operations(Some("ghost")).unwrap(), 0);
    assert_eq!(store.max_sequence().unwrap(), 9);
    // A second op for the same item (behind one in flight), in sequence order.
    let second = op("op-upd2", 12, "todo", "a", OpKind::Update);
    write(&*store, vec![Write::PutOperation(second.clone())]);
    assert_eq!(
        store.operations_for("todo", "a").unwrap(),
        vec![delete, second]
    );
    write(
        &*store,
        vec![
            Write::DeleteOperation {
                id: "op-upd2".to_owned(),
            },
            Write::DeleteOperation {
                id: "op-ins".to_owned(),
            },
            Write::DeleteOperation {
                id: "never-there".to_owned(),
            },
        ],
    );
    assert_eq!(store.max_sequence().unwrap(), 5);
    assert_eq!(
        op_ids(&store.operations(0, 10).unwrap()),
        vec!["op-del", "op-upd"]
    );
    assert_eq!(store.count_operations(Some("todo")).unwrap(), 1);
}

/// `operations(after, limit)` is ascending across tables and pages by `after`.
pub fn queue_paging_across_tables(factory: &dyn StoreFactory) {
    let (_place, store) = queue_store(factory);
    let tables = ["todo", "fx"];
    // Written out of order; sequences with gaps.
    let ops: Vec<Operation> = (1..=20u64)
        .rev()
        .map(|i| {
            op(
                &format!("op-{i:02}"),
                i * 10,
                tables[(i % 2) as usize],
                &format!("item{i}"),
                OpKind::Insert,
            )
        })
        .collect();
    write(&*store, ops.into_iter().map(Write::PutOperation).collect());
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = store.operations(after, 6).unwrap();
        assert!(page.len() <= 6);
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap().sequence;
        seen.extend(page.into_iter().map(|o| o.sequence));
    }
    assert_eq!(seen, (1..=20u64).map(|i| i * 10).collect::<Vec<_>>());
    assert_eq!(
        op_ids(&store.operations(55, 2).unwrap()),
        vec!["op-06", "op-07"]
    );
    assert_eq!(op_ids(&store.operations(60, 1).unwrap()), vec!["op-07"]);
    assert!(store.operations(200, 5).unwrap().is_empty());
    assert!(store.operations(0, 0).unwrap().is_empty());
    assert_eq!(store.operations(0, usize::MAX).unwrap().len(), 20);
    assert_eq!(store.operations(u64::MAX, 5).unwrap().len(), 0);
}

/// A `PutOperation` with an existing id replaces that op, sequence included.
pub fn queue_replace_operation(factory: &dyn StoreFactory) {
    let (_place, store) = queue_store(factory);
    let first = op("op-1", 1, "todo", "a", OpKind::Insert);
    let other = op("op-2", 2, "todo", "b", OpKind::Insert);
    write(
        &*store,
        vec![
            Write::PutOperation(first.clone()),
            Write::PutOperation(other),
        ],
    );
    let mut moved = first.clone();
    moved.kind = OpKind::Update;
    moved.sequence = 3;
    moved.version = 2;
    moved.item = Some(item(json!({"id": "a"})));
    write(&*store, vec![Write::PutOperation(moved.clone())]);
    assert_eq!(store.operation("op-1").unwrap(), Some(moved.clone()));
    assert_eq!(
        op_ids(&store.operations(0, 10).unwrap()),
        vec!["op-2", "op-1"]
    );
    assert_eq!(store.count_operations(None).unwrap(), 2);
    assert_eq!(store.max_sequence().unwrap(), 3);
    let mut back = moved;
    back.sequence = 1;
    back.state = OpState::Attempted;
    write(&*store, vec![Write::PutOperation(back.clone())]);
    assert_eq!(store.operations(0, 10).unwrap()[0], back);
    assert_eq!(store.max_sequence().unwrap(), 2);
}

/// The queue, in order, survives drop and reopen (when durable).
pub fn queue_order_survives_reopen(factory: &dyn StoreFactory) {
    let place = place();
    let store = open(factory, &place);
    store.define_table(&todo_def()).unwrap();
    store.define_table(&fx_def()).unwrap();
    let mut expected = Vec::new();
    for i in 1..=30u64 {
        let table = if i % 3 == 0 { "fx" } else { "todo" };
        let mut operation = op(
            &format!("op-{i}"),
            i,
            table,
            &format!("id-{i}"),
            OpKind::Update,
        );
        operation.base = Some(item(json!({"id": format!("id-{i}"), "n": i})));
        write(
            &*store,
            vec![
                put(table, json!({"id": format!("id-{i}")})),
                Write::PutOperation(operation.clone()),
            ],
        );
        expected.push(operation);
    }
    drop(store);
    let store = open(factory, &place);
    if factory.capabilities().durable {
        assert_eq!(store.operations(0, 100).unwrap(), expected);
        assert_eq!(store.max_sequence().unwrap(), 30);
        assert_eq!(store.count_operations(Some("fx")).unwrap(), 10);
        for operation in &expected {
            assert!(
                store
                    .get(&operation.table, &operation.item_id)
                    .unwrap()
                    .is_some()
            );
        }
    } else {
        assert_eq!(store.count_operations(None).unwrap(), 0);
    }
}

/// `DeleteTableOperations` removes that table's ops and errors only.
pub fn delete_table_operations(factory: &dyn StoreFactory) {
    let (_place, store) = queue_store(factory);
    let ops = [
        op("t1", 1, "todo", "a", OpKind::Insert),
        op("f1", 2, "fx", "a", OpKind::Insert),
        op("t2", 3, "todo", "b", OpKind::Delete),
        op("f2", 4, "fx", "b", OpKind::Update),
    ];
    let mut writes: Vec<Write> = ops.iter().cloned().map(Write::PutOperation).collect();
    writes.extend(ops.iter().map(|o| Write::PutError(op_error(o, Some(500)))));
    writes.push(put("todo", json!({"id": "a"})));
    write(&*store, writes);
    write(
        &*store,
        vec![Write::DeleteTableOperations {
            table: "todo".to_owned(),
        }],
    );
    assert_eq!(op_ids(&store.operations(0, 10).unwrap()), vec!["f1", "f2"]);
    let errors: Vec<String> = store
        .errors()
        .unwrap()
        .into_iter()
        .map(|e| e.operation_id)
        .collect();
    assert_eq!(errors, vec!["f1".to_owned(), "f2".to_owned()]);
    assert!(store.get("todo", "a").unwrap().is_some(), "items stay");
    write(
        &*store,
        vec![Write::DeleteTableOperations {
            table: "ghost".to_owned(),
        }],
    );
    assert_eq!(store.count_operations(None).unwrap(), 2);
}

/// `PutError` inserts or replaces, `DeleteError` removes, `errors()` follows op sequence.
pub fn errors_ordered_by_sequence(factory: &dyn StoreFactory) {
    let (_place, store) = queue_store(factory);
    let late = op("zz-early-name", 30, "todo", "a", OpKind::Update);
    let early = op("aa-late-name", 10, "fx", "b", OpKind::Delete);
    let middle = op("mm", 20, "todo", "c", OpKind::Insert);
    let mut writes: Vec<Write> = [&late, &early, &middle]
        .iter()
        .map(|o| Write::PutOperation((*o).clone()))
        .collect();
    writes.push(Write::PutError(op_error(&late, Some(409))));
    writes.push(Write::PutError(op_error(&early, None)));
    writes.push(Write::PutError(op_error(&middle, Some(412))));
    write(&*store, writes);
    let order: Vec<String> = store
        .errors()
        .unwrap()
        .into_iter()
        .map(|e| e.operation_id)
        .collect();
    assert_eq!(order, vec!["aa-late-name", "mm", "zz-early-name"]);
    let mut replaced = op_error(&middle, Some(500));
    replaced.server_item = None;
    replaced.raw_result = None;
    replaced.item = Some(item(
        json!({"id": "c", "nested": {"list": [1, "two", null]}, "real": 0.1}),
    ));
    replaced.operation_version = 7;
    replaced.message = "second failure: ünïcode 🍎".to_owned();
    write(&*store, vec![Write::PutError(replaced.clone())]);
    let errors = store.errors().unwrap();
    assert_eq!(errors.len(), 3);
    assert_eq!(errors[1], replaced);
    assert_eq!(errors[0], op_error(&early, None));
    write(
        &*store,
        vec![
            Write::DeleteError {
                operation_id: "mm".to_owned(),
            },
            Write::DeleteError {
                operation_id: "missing".to_owned(),
            },
        ],
    );
    let order: Vec<String> = store
        .errors()
        .unwrap()
        .into_iter()
        .map(|e| e.operation_id)
        .collect();
    assert_eq!(order, vec!["aa-late-name", "zz-early-name"]);
    // An error record does not disappear with its op (only DeleteTableOperations takes both).
    write(
        &*store,
        vec![Write::DeleteOperation {
            id: "aa-late-name".to_owned(),
        }],
    );
    assert_eq!(store.errors().unwrap().len(), 2);
}

/// `SetConfig` sets, overwrites and removes values.
pub fn config_set_overwrite_remove(factory: &dyn StoreFactory) {
    let (_place, store) = fresh(factory);
    let set = |key: &str, value: Option<&str>| Write::SetConfig {
        key: key.to_owned(),
        value: value.map(str::to_owned),
    };
    assert_eq!(store.config("deltaToken|todo|q").unwrap(), None);
    write(
        &*store,
        vec![
            set("deltaToken|todo|q", Some("2024-01-01T00:00:00.000Z")),
            set("other", Some("")),
        ],
    );
    assert_eq!(
        store.config("deltaToken|todo|q").unwrap().as_deref(),
        Some("2024-01-01T00:00:00.000Z")
    );
    assert_eq!(store.config("other").unwrap().as_deref(), Some(""));
    write(
        &*store,
        vec![
            set("deltaToken|todo|q", Some("2025-02-02T00:00:00.000Z")),
            set("🍎 key", Some("'; DROP TABLE x; --")),
        ],
    );
    assert_eq!(
        store.config("deltaToken|todo|q").unwrap().as_deref(),
        Some("2025-02-02T00:00:00.000Z")
    );
    assert_eq!(
        store.config("🍎 key").unwrap().as_deref(),
        Some("'; DROP TABLE x; --")
    );
    write(
        &*store,
        vec![set("deltaToken|todo|q", None), set("never-set", None)],
    );
    assert_eq!(store.config("deltaToken|todo|q").unwrap(), None);
    assert_eq!(store.config("DELTATOKEN|todo|q").unwrap(), None);
    // Set and removed in one batch: the last write wins.
    write(
        &*store,
        vec![
            set("x", Some("1")),
            set("x", None),
            set("y", None),
            set("y", Some("2")),
        ],
    );
    assert_eq!(store.config("x").unwrap(), None);
    assert_eq!(store.config("y").unwrap().as_deref(), Some("2"));
}

/// 100,000 rows in one batch, as a pulled page is applied; prints the time.
pub fn bulk_apply_100k(factory: &dyn StoreFactory) {
    const N: usize = 100_000;
    let (_place, store) = queue_store(factory);
    let writes: Vec<Write> = (0..N)
        .map(|i| {
            put(
                "fx",
                json!({
                    "id": format!("row-{i:06}"),
                    "text": format!("text {i}"),
                    "n": i,
                    "x": i as f64 / 7.0,
                    "flag": i % 2 == 0,
                    "updatedAt": "2024-01-15T10:20:30.123Z",
                    "version": "v1",
                }),
            )
        })
        .chain([Write::SetConfig {
            key: "deltaToken|fx|all".to_owned(),
            value: Some("done".to_owned()),
        }])
        .collect();
    let batch = batch(writes);
    let started = Instant::now();
    store.write(&batch).unwrap();
    let elapsed = started.elapsed();
    eprintln!("bulk_apply_100k: {N} rows in one batch took {elapsed:?}");
    let counted = store
        .query("fx", &Query::all().with_count().top(0))
        .unwrap();
    assert_eq!(counted.count, Some(N as u64));
    assert!(counted.items.is_empty());
    let row = store.get("fx", "row-054321").unwrap().unwrap();
    assert_eq!(row.get("n"), Some(&json!(54321)));
    assert_eq!(row.get("flag"), Some(&Value::Bool(false)));
    let page = store
        .query("fx", &filter("n ge 99998").order_by_desc("n").with_count())
        .unwrap();
    assert_eq!(
        ids(&page.items),
        vec!["row-099999".to_owned(), "row-099998".to_owned()]
    );
    assert_eq!(
        store.config("deltaToken|fx|all").unwrap().as_deref(),
        Some("done")
    );
}

/// A reader thread never sees a half-applied batch and never fails while
/// another thread writes batches.
pub fn concurrent_reader_during_write(factory: &dyn StoreFactory) {
    const BATCHES: i64 = 150;
    let (_place, store) = fresh(factory);
    write(
        &*store,
        vec![
            put("todo", json!({"id": "a", "rank": 0})),
            put("todo", json!({"id": "b", "rank": 0})),
        ],
    );
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let store = Arc::clone(&store);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut last = 0;
                while !done.load(Ordering::Acquire) || reads == 0 {
                    let rows = store
                        .query("todo", &filter("rank ge 0").with_count())
                        .expect("query during writes");
                    let ranks: Vec<i64> = rows
                        .items
                        .iter()
                        .map(|r| r["rank"].as_i64().unwrap())
                        .collect();
                    assert_eq!(ranks.len(), 2, "rows {:?}", rows.items);
                    assert_eq!(ranks[0], ranks[1], "half-applied batch seen");
                    assert!(ranks[0] >= last, "went back in time");
                    last = ranks[0];
                    let row = store
                        .get("todo", "a")
                        .expect("get during writes")
                        .expect("row a");
                    assert!(row["rank"].as_i64().unwrap() >= last);
                    store.count_operations(None).expect("count during writes");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for k in 1..=BATCHES {
        let operation = op(&format!("op-{k}"), k as u64, "todo", "a", OpKind::Update);
        write(
            &*store,
            vec![
                put(
                    "todo",
                    json!({"id": "a", "rank": k, "text": "x".repeat(200)}),
                ),
                Write::PutOperation(operation),
                put("todo", json!({"id": "b", "rank": k})),
            ],
        );
    }
    done.store(true, Ordering::Release);
    for reader in readers {
        let reads = reader.join().expect("reader panicked");
        assert!(reads > 0);
    }
    assert_eq!(store.count_operations(None).unwrap(), BATCHES as u64);
}

/// `Clear` empties every table, the queue (ops kept anywhere), the error records
/// and the sync metadata, keeps the definitions, and the store works on after it,
/// across a reopen.
pub fn clear_empties_everything_but_definitions(factory: &dyn StoreFactory) {
    let place = place();
    let store = open(factory, &place);
    store.define_table(&todo_def()).unwrap();
    store.define_table(&fx_def()).unwrap();
    let ops = [
        op("t1", 1, "todo", "a", OpKind::Insert),
        op("t2", 2, "todo", "gone", OpKind::Delete),
        op("f1", 3, "fx", "b", OpKind::Update),
        op("f2", 4, "fx", "b", OpKind::Update),
        op("g1", 5, "ghost", "x", OpKind::Insert),
    ];
    let mut writes = vec![
        put("todo", json!({"id": "a"})),
        put("todo", json!({"id": "kept-no-op"})),
        put("fx", json!({"id": "b"})),
    ];
    writes.extend(ops.iter().cloned().map(Write::PutOperation));
    writes.push(Write::PutError(op_error(&ops[1], Some(412))));
    writes.push(Write::SetConfig {
        key: "deltaToken|todo|all".to_owned(),
        value: Some("cursor".to_owned()),
    });
    write(&*store, writes);
    assert_eq!(store.count_operations(None).unwrap(), 5);

    write(&*store, vec![Write::Clear]);
    let empty = |store: &dyn LocalStore| {
        for table in ["todo", "fx"] {
            assert!(
                store
                    .query(table, &Query::default())
                    .unwrap()
                    .items
                    .is_empty()
            );
            assert!(store.table(table).unwrap().is_some(), "definitions stay");
        }
        assert_eq!(store.count_operations(None).unwrap(), 0);
        assert!(store.errors().unwrap().is_empty());
        assert_eq!(store.config("deltaToken|todo|all").unwrap(), None);
    };
    empty(&*store);

    // The store works on: a row with its op, kept across a reopen.
    let next = op("t3", 6, "todo", "c", OpKind::Insert);
    write(
        &*store,
        vec![
            put("todo", json!({"id": "c"})),
            Write::PutOperation(next.clone()),
        ],
    );
    drop(store);
    let store = open(factory, &place);
    if factory.capabilities().durable {
        assert_eq!(store.operations(0, 10).unwrap(), vec![next]);
        assert!(store.get("todo", "c").unwrap().is_some());
        assert!(store.get("todo", "a").unwrap().is_none());
        assert!(store.get("todo", "kept-no-op").unwrap().is_none());
        write(&*store, vec![Write::Clear]);
        drop(store);
        empty(&*open(factory, &place));
    }
}
