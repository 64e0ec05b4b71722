//! The inputs of the properties (tables, ids, faults, steps and their strategies) and
//! the conversions between engine values and the model's.

use proptest::prelude::*;
use serde_json::Value;
use tidesync_core::protocol::decode_version;
use tidesync_core::{ColumnType, Error, Item, PushResult, TableDef, TransportError};
use tidesync_transport_mock::Fault;

use super::model::{ErrKind, PushOutcome, RELATION, Row, ServerRow, TABLES};

// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum T {
    List,
    Item,
    Tag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    A,
    B,
    C,
}

/// A fault kind, as the mock injects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum F {
    Network,
    LoseResponse,
    S500,
    S503,
    C409,
    C412,
    Auth,
}

#[derive(Debug, Clone)]
pub enum Step {
    Insert(T, Id),
    Update(T, Id),
    Delete(T, Id),
    /// A list, its item and the item's tag, in one transaction.
    InsertFamily(Id),
    Push,
    Pull(T),
    Purge(T, bool),
    Restart,
    ServerUpdate(T, Id),
    ServerDelete(T, Id),
    FailNext(u8, F),
    Offline(bool),
    LatencyMs(u8),
}

impl T {
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl Id {
    pub(crate) fn name(self) -> &'static str {
        ["a", "b", "c"][self as usize]
    }
}

impl F {
    pub fn fault(self) -> Fault {
        match self {
            F::Network => Fault::Network,
            F::LoseResponse => Fault::CommitThenLoseResponse,
            F::S500 => Fault::Status(500),
            F::S503 => Fault::Status(503),
            F::C409 => Fault::Status(409),
            F::C412 => Fault::Status(412),
            F::Auth => Fault::Auth,
        }
    }
}

pub const ALL_FAULTS: [F; 7] = [
    F::Network,
    F::LoseResponse,
    F::S500,
    F::S503,
    F::C409,
    F::C412,
    F::Auth,
];

pub fn table() -> impl Strategy<Value = T> {
    prop_oneof![Just(T::List), Just(T::Item), Just(T::Tag)]
}

pub fn id() -> impl Strategy<Value = Id> {
    prop_oneof![Just(Id::A), Just(Id::B), Just(Id::C)]
}

pub fn fault() -> impl Strategy<Value = F> {
    proptest::sample::select(ALL_FAULTS.to_vec())
}

pub fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (table(), id()).prop_map(|(t, i)| Step::Insert(t, i)),
        4 => (table(), id()).prop_map(|(t, i)| Step::Update(t, i)),
        3 => (table(), id()).prop_map(|(t, i)| Step::Delete(t, i)),
        1 => id().prop_map(Step::InsertFamily),
        3 => Just(Step::Push),
        2 => table().prop_map(Step::Pull),
        1 => (table(), any::<bool>()).prop_map(|(t, f)| Step::Purge(t, f)),
        1 => Just(Step::Restart),
        2 => (table(), id()).prop_map(|(t, i)| Step::ServerUpdate(t, i)),
        1 => (table(), id()).prop_map(|(t, i)| Step::ServerDelete(t, i)),
        2 => (1u8..3, fault()).prop_map(|(n, f)| Step::FailNext(n, f)),
        1 => any::<bool>().prop_map(Step::Offline),
        1 => (0u8..30).prop_map(Step::LatencyMs),
    ]
}

/// `PROPTEST_CASES` (256 by default); regressions become named tests instead
/// of files outside `tests/`.
pub fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

pub fn table_def(t: usize) -> TableDef {
    let def = TableDef::new(TABLES[t]).column("v", ColumnType::String);
    match RELATION[t] {
        Some(rel) => def.column(rel, ColumnType::String),
        None => def,
    }
}

pub fn err_kind(e: &Error) -> ErrKind {
    match e {
        Error::QueueRefused { reason, .. } => ErrKind::Refused(*reason),
        Error::AlreadyExists { .. } => ErrKind::AlreadyExists,
        Error::PendingOperations { .. } => ErrKind::PendingOperations,
        Error::PushFailed(_) => ErrKind::PushFailed,
        Error::Transport(TransportError::Network(_)) => ErrKind::Network,
        Error::Transport(TransportError::Auth { .. }) => ErrKind::Auth,
        Error::Transport(TransportError::Conflict { status, .. }) => ErrKind::Conflict(*status),
        Error::Transport(TransportError::NotFound { .. }) => ErrKind::NotFound,
        Error::Transport(TransportError::Http { status, .. }) => ErrKind::Http(*status),
        _ => ErrKind::Other,
    }
}

pub fn table_index(name: &str) -> usize {
    TABLES.iter().position(|t| *t == name).unwrap()
}

pub fn rev_of(item: &Item) -> Option<u64> {
    item.get("version")
        .and_then(Value::as_str)
        .map(|v| decode_version(v).expect("mock versions decode"))
}

pub fn row_of(t: usize, item: &Item) -> Row {
    Row {
        v: item["v"].as_str().unwrap().to_owned(),
        rel: RELATION[t].map(|rel| item[rel].as_str().unwrap().to_owned()),
        ver: rev_of(item),
    }
}

pub fn server_row_of(t: usize, item: &Item) -> ServerRow {
    ServerRow {
        v: item["v"].as_str().unwrap().to_owned(),
        rel: RELATION[t].map(|rel| item[rel].as_str().unwrap().to_owned()),
        rev: rev_of(item).unwrap(),
        deleted: item.get("deleted").and_then(Value::as_bool) == Some(true),
    }
}

pub fn push_outcome(result: &PushResult) -> PushOutcome {
    PushOutcome {
        status: result.status,
        pushed: result.pushed,
        errors: result
            .errors
            .iter()
            .map(|e| (table_index(&e.table), e.item_id.clone(), e.status))
            .collect(),
    }
}
