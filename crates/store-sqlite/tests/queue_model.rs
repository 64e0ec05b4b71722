//! Random batches of row and queue writes applied to a `SqliteStore` file and
//! to `MemoryStore` (the reference): after every batch, and after reopening
//! the file, both must show the same rows, the same queue (in order, by id, by
//! item) and the same counts. This drives the format-3 queue through its two
//! places (ops in rows, ops in `__operations`) and the moves between them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::json;
use tidesync_core::{
    ColumnType, LocalStore, MemoryStore, OpKind, OpState, Operation, Query, TableDef, Write,
    WriteBatch,
};
use tidesync_store_sqlite::SqliteStore;

const TABLES: [&str; 2] = ["a", "b"];
const ITEMS: [&str; 4] = ["1", "2", "3", "4"];
const OP_IDS: [&str; 6] = ["o1", "o2", "o3", "o4", "o5", "o6"];

/// One step of a script.
#[derive(Debug, Clone)]
enum Step {
    PutItem(usize, usize, i64),
    DeleteItem(usize, usize),
    DeleteItemsAbove(usize, i64),
    PutOperation {
        op: usize,
        table: usize,
        item: usize,
        kind: usize,
        state: usize,
        sequence: u64,
        with_base: bool,
    },
    DeleteOperation(usize),
    DeleteTableOperations(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..2usize, 0..4usize, 0..100i64).prop_map(|(t, i, n)| Step::PutItem(t, i, n)),
        2 => (0..2usize, 0..4usize).prop_map(|(t, i)| Step::DeleteItem(t, i)),
        1 => (0..2usize, 0..100i64).prop_map(|(t, n)| Step::DeleteItemsAbove(t, n)),
        5 => (0..6usize, 0..2usize, 0..4usize, 0..3usize, 0..3usize, 1..50u64, any::<bool>())
            .prop_map(|(op, table, item, kind, state, sequence, with_base)| Step::PutOperation {
                op, table, item, kind, state, sequence, with_base,
            }),
        2 => (0..6usize).prop_map(Step::DeleteOperation),
        1 => (0..2usize).prop_map(Step::DeleteTableOperations),
    ]
}

/// A script: batches of steps, and whether to reopen the file after each.
fn script() -> impl Strategy<Value = Vec<(Vec<Step>, bool)>> {
    prop::collection::vec(
        (
            prop::collection::vec(step(), 1..6),
            prop::bool::weighted(0.2),
        ),
        1..12,
    )
}

fn write_of(step: &Step) -> Write {
    let item = |i: usize, n: i64| {
        json!({"id": ITEMS[i], "n": n})
            .as_object()
            .cloned()
            .unwrap()
    };
    match step {
        Step::PutItem(t, i, n) => Write::PutItem {
            table: TABLES[*t].into(),
            item: item(*i, *n),
        },
        Step::DeleteItem(t, i) => Write::DeleteItem {
            table: TABLES[*t].into(),
            id: ITEMS[*i].into(),
        },
        Step::DeleteItemsAbove(t, n) => Write::DeleteItems {
            table: TABLES[*t].into(),
            query: Query::all()
                .filter(tidesync_protocol::odata::parse_filter(&format!("n gt {n}")).unwrap()),
        },
        Step::PutOperation {
            op,
            table,
            item: i,
            kind,
            state,
            sequence,
            with_base,
        } => {
            let kind = [OpKind::Insert, OpKind::Update, OpKind::Delete][*kind];
            Write::PutOperation(Operation {
                id: OP_IDS[*op].into(),
                kind,
                state: [OpState::Pending, OpState::Attempted, OpState::Failed][*state],
                table: TABLES[*table].into(),
                item_id: ITEMS[*i].into(),
                item: (kind == OpKind::Delete).then(|| item(*i, -1)),
                base: with_base.then(|| item(*i, -2)),
                sequence: *sequence,
                version: u32::try_from(*sequence).unwrap(),
            })
        }
        Step::DeleteOperation(op) => Write::DeleteOperation {
            id: OP_IDS[*op].into(),
        },
        Step::DeleteTableOperations(t) => Write::DeleteTableOperations {
            table: TABLES[*t].into(),
        },
    }
}

/// Everything a caller can see of the queue and rows, in a comparable form.
fn observe(store: &dyn LocalStore) -> String {
    let mut seen = Vec::new();
    seen.push(format!("ops {:?}", store.operations(0, 100).unwrap()));
    seen.push(format!("count {}", store.count_operations(None).unwrap()));
    seen.push(format!("max {}", store.max_sequence().unwrap()));
    for table in TABLES {
        let rows = store.query(table, &Query::all().order_by("id")).unwrap();
        seen.push(format!("{table} rows {:?}", rows.items));
        seen.push(format!(
            "{table} count {}",
            store.count_operations(Some(table)).unwrap()
        ));
        for item in ITEMS {
            seen.push(format!(
                "{table}/{item} {:?}",
                store.get_with_operations(table, item).unwrap()
            ));
        }
    }
    for op in OP_IDS {
        seen.push(format!("{op} {:?}", store.operation(op).unwrap()));
    }
    seen.join("\n")
}

fn define(store: &dyn LocalStore) {
    for table in TABLES {
        store
            .define_table(&TableDef::new(table).column("n", ColumnType::Integer))
            .unwrap();
    }
}

/// Keeps a script's op ids unique per sequence number (two ops sharing a
/// sequence have no defined order, in either store).
fn distinct_sequences(script: &mut [(Vec<Step>, bool)]) {
    let mut owner: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    for (steps, _) in script.iter_mut() {
        for step in steps.iter_mut() {
            if let Step::PutOperation { op, sequence, .. } = step {
                while owner.get(sequence).is_some_and(|o| o != op) {
                    *sequence += 50;
                }
                owner.insert(*sequence, *op);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sqlite_queue_matches_the_memory_store(mut script in script()) {
        distinct_sequences(&mut script);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.db");
        let reference = MemoryStore::new();
        define(&reference);
        let mut store = SqliteStore::open(&path).unwrap();
        define(&store);
        for (steps, reopen) in script {
            let batch = WriteBatch {
                writes: steps.iter().map(write_of).collect(),
            };
            let expected = reference.write(&batch).map_err(|e| e.to_string());
            let got = store.write(&batch).map_err(|e| e.to_string());
            prop_assert_eq!(expected.is_ok(), got.is_ok(), "{:?} vs {:?}", expected, got);
            if reopen {
                drop(store);
                store = SqliteStore::open(&path).unwrap();
            }
            prop_assert_eq!(observe(&reference), observe(&store));
        }
    }
}
