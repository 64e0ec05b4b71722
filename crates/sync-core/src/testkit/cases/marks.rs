//! The queue's conformance cases that follow many writes: `MarkAttempted` read back
//! through every later write and a reopen, and seeded random scripts checked against
//! [`MemoryStore`].

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tidesync_protocol::odata::Query;

use crate::memory::MemoryStore;
use crate::model::{ColumnType, OpKind, OpState, Operation, TableDef};
use crate::store::{LocalStore, Write, WriteBatch};
use crate::testkit::QueueView;
use crate::testkit::StoreFactory;
use crate::testkit::fixture::*;

/// `MarkAttempted`: the queued ops it names read back attempted, and nothing
/// else of them changes (in rows or apart, with `item` and `base`); an id not
/// queued is skipped; an op written or deleted afterwards is what that write
/// says, the others stay attempted; all of it survives a reopen, and once every
/// marked op is settled nothing of the mark is left to read back.
pub fn mark_attempted_reads_back(factory: &dyn StoreFactory) {
    let place = place();
    let store = open(factory, &place);
    store.define_table(&todo_def()).unwrap();
    let mut ops = Vec::new();
    for i in 1..=6u64 {
        let mut operation = op(
            &format!("op-{i}"),
            i,
            "todo",
            &format!("id-{i}"),
            OpKind::Insert,
        );
        if i % 2 == 0 {
            operation.kind = OpKind::Update;
            operation.base = Some(item(json!({"id": format!("id-{i}"), "text": "base"})));
        }
        if i == 6 {
            // No row: kept apart from the rows.
            operation.kind = OpKind::Delete;
            operation.item = Some(item(json!({"id": "id-6", "version": "v6"})));
            operation.state = OpState::Failed;
            write(&*store, vec![Write::PutOperation(operation.clone())]);
        } else {
            write(
                &*store,
                vec![Write::PutItemAndOperation {
                    table: "todo".to_owned(),
                    item: item(json!({"id": format!("id-{i}"), "text": format!("row {i}")})),
                    op: operation.clone(),
                }],
            );
        }
        ops.push(operation);
    }
    let attempted = |op: &Operation| Operation {
        state: OpState::Attempted,
        ..op.clone()
    };
    write(
        &*store,
        vec![Write::MarkAttempted {
            ids: ["op-1", "op-2", "op-3", "never-queued", "op-6"]
                .map(str::to_owned)
                .to_vec(),
        }],
    );
    let mut expected: Vec<Operation> = ops
        .iter()
        .map(|o| {
            if ["op-1", "op-2", "op-3", "op-6"].contains(&o.id.as_str()) {
                attempted(o)
            } else {
                o.clone()
            }
        })
        .collect();
    assert_eq!(store.operations(0, 10).unwrap(), expected);
    // Written, deleted and marked again since: each is what its last write says.
    let mut failed = expected[0].clone();
    failed.state = OpState::Failed;
    let mut pending = expected[1].clone();
    pending.state = OpState::Pending;
    write(
        &*store,
        vec![
            Write::PutOperation(failed.clone()),
            Write::PutOperation(pending.clone()),
            Write::DeleteOperation {
                id: "op-3".to_owned(),
            },
            Write::MarkAttempted {
                ids: vec!["op-4".to_owned()],
            },
        ],
    );
    expected[0] = failed;
    expected[1] = pending;
    expected.remove(2);
    expected[2] = attempted(&ops[3]);
    assert_eq!(store.operations(0, 10).unwrap(), expected);
    // A local write to a marked op's row rewrites the op: its state is the write's.
    let mut rewritten = ops[3].clone();
    rewritten.version = 2;
    write(
        &*store,
        vec![Write::PutItemAndOperation {
            table: "todo".to_owned(),
            item: item(json!({"id": "id-4", "text": "edited"})),
            op: rewritten.clone(),
        }],
    );
    expected[2] = rewritten;
    assert_eq!(store.operations(0, 10).unwrap(), expected);
    drop(store);
    let store = open(factory, &place);
    if !factory.capabilities().durable {
        return;
    }
    assert_eq!(store.operations(0, 10).unwrap(), expected);
    assert_eq!(store.operation("op-6").unwrap(), Some(attempted(&ops[5])));
    assert_eq!(
        store.get_with_operations("todo", "id-5").unwrap().1,
        vec![ops[4].clone()]
    );
    // Settled: the marked ops go, and a new op under one of their ids (ids are
    // never reused by the engine; a store must still not mark it) reads back
    // as written.
    write(
        &*store,
        vec![
            Write::DeleteOperation {
                id: "op-6".to_owned(),
            },
            Write::PutOperation(ops[5].clone()),
        ],
    );
    drop(store);
    let store = open(factory, &place);
    assert_eq!(store.operation("op-6").unwrap(), Some(ops[5].clone()));
}

const MODEL_TABLES: [&str; 2] = ["ma", "mb"];
const MODEL_ITEMS: [&str; 4] = ["1", "2", "3", "4"];
const MODEL_OPS: [&str; 6] = ["o1", "o2", "o3", "o4", "o5", "o6"];

/// One random write of the model case. Op ids keep one sequence each for the
/// whole script (`sequences`), since two ops sharing a sequence have no
/// defined order.
fn model_write(rng: &mut StdRng, sequences: &mut [u64; 6], next: &mut u64) -> Write {
    let table = MODEL_TABLES[rng.random_range(0..2)].to_owned();
    let id = MODEL_ITEMS[rng.random_range(0..4)];
    let n: i64 = rng.random_range(0..100);
    let row = |id: &str, n: i64| item(json!({"id": id, "n": n}));
    match rng.random_range(0..19) {
        0..=3 => Write::PutItem {
            table,
            item: row(id, n),
        },
        4 | 5 => Write::DeleteItem {
            table,
            id: id.to_owned(),
        },
        6 => Write::DeleteItems {
            table,
            query: Query::all().filter(
                tidesync_protocol::odata::parse_filter(&format!("n gt {n}"))
                    .expect("a valid filter"),
            ),
        },
        7..=11 => {
            let which = rng.random_range(0..6);
            if sequences[which] == 0 {
                *next += 1;
                sequences[which] = *next;
            }
            let kind = [OpKind::Insert, OpKind::Update, OpKind::Delete][rng.random_range(0..3)];
            Write::PutOperation(Operation {
                id: MODEL_OPS[which].to_owned(),
                kind,
                state: [OpState::Pending, OpState::Attempted, OpState::Failed]
                    [rng.random_range(0..3)],
                table,
                item_id: id.to_owned(),
                item: (kind == OpKind::Delete).then(|| row(id, -1)),
                base: (rng.random_range(0..2) == 0).then(|| row(id, -2)),
                sequence: sequences[which],
                version: u32::try_from(n).unwrap_or(0),
            })
        }
        12 | 13 => Write::DeleteOperation {
            id: MODEL_OPS[rng.random_range(0..6)].to_owned(),
        },
        15 | 16 => {
            // A local write: the row and its op as one change (any op id, so
            // also an op queued for another item, or one its row already holds).
            let which = rng.random_range(0..6);
            if sequences[which] == 0 {
                *next += 1;
                sequences[which] = *next;
            }
            Write::PutItemAndOperation {
                table: table.clone(),
                item: row(id, n),
                op: Operation {
                    id: MODEL_OPS[which].to_owned(),
                    kind: [OpKind::Insert, OpKind::Update][rng.random_range(0..2)],
                    state: OpState::Pending,
                    table,
                    item_id: id.to_owned(),
                    item: None,
                    base: None,
                    sequence: sequences[which],
                    version: u32::try_from(n).unwrap_or(0),
                },
            }
        }
        17 | 18 => Write::MarkAttempted {
            ids: MODEL_OPS
                .iter()
                .filter(|_| rng.random_range(0..2) == 0)
                .map(|id| (*id).to_owned())
                .collect(),
        },
        _ => Write::DeleteTableOperations { table },
    }
}

/// Everything a caller can see of the model case's rows and queue.
fn model_view(store: &dyn LocalStore) -> String {
    let mut seen = vec![
        format!("ops {:?}", store.operations(0, 100).unwrap()),
        format!("count {}", store.count_operations(None).unwrap()),
        format!("max {}", store.max_sequence().unwrap()),
    ];
    for table in MODEL_TABLES {
        let rows = store.query(table, &Query::all().order_by("id")).unwrap();
        seen.push(format!("{table} rows {:?}", rows.items));
        let count = store.count_operations(Some(table)).unwrap();
        seen.push(format!("{table} count {count}"));
        for id in MODEL_ITEMS {
            let both = store.get_with_operations(table, id).unwrap();
            seen.push(format!("{table}/{id} {both:?}"));
        }
    }
    for id in MODEL_OPS {
        seen.push(format!("{id} {:?}", store.operation(id).unwrap()));
    }
    seen.join("\n")
}

/// Seeded random batches of row writes, row deletes (one and by query), op
/// puts (new, replaced, moved to another item), local writes (a row with its
/// op), op deletes and table purges,
/// with reopens in between for durable stores, leave the store showing what
/// `MemoryStore` shows: rows, queue order, each item's ops, counts. (A store
/// that keeps ops in several places, as the SQLite store does, is exercised
/// through every move between them.)
pub fn queue_follows_the_memory_store(factory: &dyn StoreFactory) {
    let def = |name: &str| TableDef::new(name).column("n", ColumnType::Integer);
    for seed in 1..=48u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (place, mut store) = fresh(factory);
        let reference = MemoryStore::new();
        for table in MODEL_TABLES {
            store.define_table(&def(table)).unwrap();
            reference.define_table(&def(table)).unwrap();
        }
        let (mut sequences, mut next) = ([0u64; 6], 0u64);
        for batch_no in 0..12 {
            let len = 1 + rng.random_range(0..5);
            let batch = WriteBatch {
                writes: (0..len)
                    .map(|_| model_write(&mut rng, &mut sequences, &mut next))
                    .collect(),
            };
            let expected = reference.write(&batch);
            let got = store.write(&batch);
            assert_eq!(
                expected.is_ok(),
                got.is_ok(),
                "seed {seed}, batch {batch_no}: {expected:?} vs {got:?} for {batch:?}"
            );
            if factory.capabilities().durable && rng.random_range(0..5) == 0 {
                drop(store);
                store = open(factory, &place);
            }
            assert_eq!(
                model_view(&reference),
                model_view(&*store),
                "seed {seed}, after batch {batch_no}: {batch:?}"
            );
        }
    }
}
