//! The reference model the property tests check the engine against: plain
//! `BTreeMap`s for the local rows, the queue, the error records, the server's
//! rows and the pull cursors, plus a mirror of the mock server's fault script.
//!
//! Every method here is written from the spec (`client-semantics.md` §2–§4) as
//! amended by `docs/ARCHITECTURE.md`, not from the engine's code: the collapse
//! matrix is [`matrix`], a push is [`Model::push`], a pull [`Model::pull`].
//! Versions are the mock's global version counter (`decode_version` of the
//! version text), so a write applied twice or lost shows up as a wrong number.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, VecDeque};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tidesync_core::{OpKind, OpState, PushStatus, QueueRefusal};
use tidesync_transport_mock::{CallKind, Fault};

/// The three related tables: a `List` has `Item`s, an `Item` has `Tag`s.
pub const TABLES: [&str; 3] = ["List", "Item", "Tag"];
/// The relation column of each table (`List` has none).
pub const RELATION: [Option<&str>; 3] = [None, Some("list_id"), Some("item_id")];

/// `(table index, item id)`.
pub type Key = (usize, String);

/// A local row as the model sees it: the user values and the version counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub v: String,
    pub rel: Option<String>,
    pub ver: Option<u64>,
}

/// A server row: user values, version counter, soft-delete flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRow {
    pub v: String,
    pub rel: Option<String>,
    pub rev: u64,
    pub deleted: bool,
}

/// A queued op. `snap_ver` is a delete's `If-Match` (its snapshot's version),
/// `snap` the snapshot's values; `sent` is what an insert's or update's last
/// attempt sent (the engine keeps it to recognise its own earlier write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub kind: OpKind,
    pub state: OpState,
    pub seq: u64,
    pub version: u32,
    pub snap_ver: Option<u64>,
    pub snap: Option<Row>,
    pub sent: Option<Row>,
}

/// A row's values without its version.
fn values(row: &Row) -> Row {
    Row {
        v: row.v.clone(),
        rel: row.rel.clone(),
        ver: None,
    }
}

/// An error record: the status and, for a real conflict, the server's copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrRec {
    pub status: Option<u16>,
    pub server: Option<ServerRow>,
}

/// How a call or a local write failed, compared by kind only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrKind {
    Refused(QueueRefusal),
    AlreadyExists,
    PendingOperations,
    PushFailed,
    Network,
    Auth,
    Conflict(u16),
    Http(u16),
    NotFound,
    Other,
}

/// One cell of the collapse matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// Queue the new op at the end.
    Enqueue,
    /// Fold into the existing op: its version + 1, sequence and state kept.
    Merge,
    /// Insert (never sent) + delete: both vanish.
    Annihilate,
    /// Update + delete: the update goes, the delete is queued at the end, version 2.
    DeleteToEnd,
    /// Refused; nothing changes.
    Refuse(QueueRefusal),
}

/// The collapse matrix of spec §2.3 (existing op × new op), with tidesync's
/// amendment for an existing op that is on the wire right now (ARCHITECTURE.md,
/// "in-flight edits don't block"): the new write is queued behind it, except a
/// write after a delete and an insert after anything, which stay refused.
pub fn matrix(existing: Option<(OpKind, OpState)>, in_flight: bool, new: OpKind) -> Cell {
    use OpKind::{Delete, Insert, Update};
    let Some((kind, state)) = existing else {
        return Cell::Enqueue;
    };
    match (kind, new) {
        (Delete, _) => Cell::Refuse(QueueRefusal::DeleteQueued),
        (_, Insert) => Cell::Refuse(QueueRefusal::InsertAfterQueued(kind)),
        _ if in_flight => Cell::Enqueue,
        (Insert | Update, Update) => Cell::Merge,
        (Insert, Delete) if state == OpState::Pending => Cell::Annihilate,
        (Insert, Delete) => Cell::Refuse(QueueRefusal::InsertMayBeOnServer),
        (Update, Delete) => Cell::DeleteToEnd,
    }
}

/// What the model predicts a push returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    pub status: PushStatus,
    pub pushed: u64,
    /// `(table, id, status)` of the errors this push recorded.
    pub errors: Vec<(usize, String, Option<u16>)>,
}

impl PushOutcome {
    pub fn is_success(&self) -> bool {
        self.status == PushStatus::Complete && self.errors.is_empty()
    }
}

/// What the model predicts a pull returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullOutcome {
    pub upserted: u64,
    pub deleted: u64,
    pub skipped: u64,
}

/// The whole reference model.
#[derive(Debug, Clone)]
pub struct Model {
    pub local: BTreeMap<Key, Row>,
    pub server: BTreeMap<Key, ServerRow>,
    pub ops: BTreeMap<Key, Op>,
    /// What each op's earlier attempts sent, unanswered, oldest first (the
    /// engine keeps them to recognise any of them as its own write; not part
    /// of what the app sees of an op).
    pub attempts: BTreeMap<Key, Vec<Row>>,
    pub errors: BTreeMap<Key, ErrRec>,
    pub cursor: [Option<u64>; 3],
    pub next_seq: u64,
    /// The last version counter the server handed out.
    pub rev: u64,
    /// The calls the server saw since the last check: `(kind, table, id)`.
    pub calls: Vec<(CallKind, usize, Option<String>)>,
    // The mirror of the mock's fault script.
    pub offline: bool,
    script: VecDeque<(usize, Fault)>,
    random: Option<(f64, Vec<Fault>)>,
    rng: StdRng,
}

/// The result of a call as the engine sees it.
enum Answer {
    Ok(Option<ServerRow>),
    Network,
    Auth,
    /// 409/412, with the server's copy for a real conflict.
    Conflict(u16, Option<ServerRow>),
    NotFound,
    Http(u16),
}

impl Model {
    pub fn new(seed: u64) -> Model {
        Model {
            local: BTreeMap::new(),
            server: BTreeMap::new(),
            ops: BTreeMap::new(),
            attempts: BTreeMap::new(),
            errors: BTreeMap::new(),
            cursor: [None; 3],
            next_seq: 1,
            rev: 0,
            calls: Vec::new(),
            offline: false,
            script: VecDeque::new(),
            random: None,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    // ---- faults (the mock's `FaultState`, mirrored) ----

    pub fn fail_next(&mut self, n: usize, fault: Fault) {
        if n > 0 {
            self.script.push_back((n, fault));
        }
    }

    pub fn set_random_faults(&mut self, probability: f64, kinds: Vec<Fault>) {
        self.random = (!kinds.is_empty()).then_some((probability.clamp(0.0, 1.0), kinds));
    }

    pub fn clear_faults(&mut self) {
        self.offline = false;
        self.script.clear();
        self.random = None;
    }

    /// The next fault decision, for the test that checks this mirror against the mock.
    pub fn draw(&mut self) -> Option<Fault> {
        self.next_fault()
    }

    /// The fault of the next call: offline first (no script or draw used), then
    /// the script, then a seeded draw, exactly as the mock decides.
    fn next_fault(&mut self) -> Option<Fault> {
        if self.offline {
            return Some(Fault::Network);
        }
        if let Some((left, fault)) = self.script.front_mut() {
            let fault = *fault;
            *left -= 1;
            if *left == 0 {
                self.script.pop_front();
            }
            return Some(fault);
        }
        let (probability, kinds) = self.random.as_ref()?;
        if self.rng.random::<f64>() >= *probability {
            return None;
        }
        let pick = self.rng.random_range(0..kinds.len());
        kinds.get(pick).copied()
    }

    // ---- local writes ----

    /// A local insert / update / delete (delete by id: the stored row is the
    /// snapshot). Returns the refusal, if any; on refusal nothing changes.
    pub fn write(&mut self, kind: OpKind, key: &Key, v: &str) -> Result<(), ErrKind> {
        let existing = self.ops.get(key).map(|op| (op.kind, op.state));
        let cell = matrix(existing, false, kind);
        if let Cell::Refuse(reason) = cell {
            return Err(ErrKind::Refused(reason));
        }
        if kind == OpKind::Insert && self.local.contains_key(key) {
            return Err(ErrKind::AlreadyExists);
        }
        let rel = RELATION[key.0].map(|_| key.1.clone());
        let snapshot_ver = self.local.get(key).and_then(|r| r.ver);
        let snapshot = self.local.get(key).map(values);
        match kind {
            OpKind::Insert => {
                self.local.insert(
                    key.clone(),
                    Row {
                        v: v.to_owned(),
                        rel,
                        ver: None,
                    },
                );
            }
            OpKind::Update => {
                let ver = self.local.get(key).and_then(|r| r.ver);
                self.local.insert(
                    key.clone(),
                    Row {
                        v: v.to_owned(),
                        rel,
                        ver,
                    },
                );
            }
            OpKind::Delete => {
                self.local.remove(key);
            }
        }
        match cell {
            Cell::Enqueue => self.enqueue(kind, key, snapshot_ver, snapshot, 1),
            Cell::Merge => {
                self.errors.remove(key);
                if let Some(op) = self.ops.get_mut(key) {
                    op.version += 1;
                }
            }
            Cell::Annihilate => {
                self.errors.remove(key);
                self.ops.remove(key);
            }
            Cell::DeleteToEnd => {
                self.errors.remove(key);
                // A delete replacing an insert or update that was sent keeps what that
                // attempt sent as its snapshot's values (the server may hold exactly them),
                // and the attempts before it.
                let earlier = self.attempts.remove(key).unwrap_or_default();
                let (snapshot, earlier) = match self.ops.remove(key) {
                    Some(op) if op.state != OpState::Pending && op.kind != OpKind::Delete => {
                        (op.sent.or(snapshot), earlier)
                    }
                    _ => (snapshot, Vec::new()),
                };
                self.enqueue(kind, key, snapshot_ver, snapshot, 2);
                if !earlier.is_empty() {
                    self.attempts.insert(key.clone(), earlier);
                }
            }
            Cell::Refuse(_) => unreachable!(),
        }
        Ok(())
    }

    fn enqueue(
        &mut self,
        kind: OpKind,
        key: &Key,
        snapshot_ver: Option<u64>,
        snapshot: Option<Row>,
        version: u32,
    ) {
        let delete = kind == OpKind::Delete;
        let op = Op {
            kind,
            state: OpState::Pending,
            seq: self.next_seq,
            version,
            snap_ver: delete.then_some(snapshot_ver).flatten(),
            snap: delete.then_some(snapshot).flatten(),
            sent: None,
        };
        self.next_seq += 1;
        self.attempts.remove(key);
        self.ops.insert(key.clone(), op);
    }

    /// A restart: the next sequence is one past the largest queued.
    pub fn restart(&mut self) {
        self.next_seq = self.ops.values().map(|op| op.seq).max().unwrap_or(0) + 1;
    }

    /// Purge of a table with its query id: refused with pending ops unless forced.
    pub fn purge(&mut self, table: usize, force: bool) -> Result<(), ErrKind> {
        let pending = self.ops.keys().any(|k| k.0 == table);
        if pending && !force {
            return Err(ErrKind::PendingOperations);
        }
        self.ops.retain(|k, _| k.0 != table);
        self.errors.retain(|k, _| k.0 != table);
        self.local.retain(|k, _| k.0 != table);
        self.cursor[table] = None;
        Ok(())
    }

    // ---- the server (the mock's semantics) and "another client" ----

    fn stamp(&mut self) -> u64 {
        self.rev += 1;
        self.rev
    }

    pub fn server_update(&mut self, key: &Key, v: &str) {
        let rev = self.stamp();
        let rel = RELATION[key.0].map(|_| key.1.clone());
        let deleted = self.server.get(key).is_some_and(|r| r.deleted);
        self.server.insert(
            key.clone(),
            ServerRow {
                v: v.to_owned(),
                rel,
                rev,
                deleted,
            },
        );
    }

    pub fn server_delete(&mut self, key: &Key) {
        if self.server.get(key).is_some_and(|r| !r.deleted) {
            let rev = self.stamp();
            if let Some(row) = self.server.get_mut(key) {
                row.rev = rev;
                row.deleted = true;
            }
        }
    }

    /// Applies one write call on the server, as the mock does.
    fn apply(
        &mut self,
        kind: OpKind,
        key: &Key,
        sent: Option<&Row>,
        if_match: Option<u64>,
    ) -> Answer {
        let stored = self.server.get(key).cloned();
        match kind {
            OpKind::Insert => {
                if let Some(stored) = stored {
                    return Answer::Conflict(409, Some(stored));
                }
                let sent = sent.expect("an insert sends a row");
                let row = ServerRow {
                    v: sent.v.clone(),
                    rel: sent.rel.clone(),
                    rev: self.stamp(),
                    deleted: false,
                };
                self.server.insert(key.clone(), row.clone());
                Answer::Ok(Some(row))
            }
            OpKind::Update => {
                let Some(stored) = stored.filter(|s| !s.deleted) else {
                    return Answer::NotFound;
                };
                if if_match.is_some_and(|v| v != stored.rev) {
                    return Answer::Conflict(412, Some(stored));
                }
                let sent = sent.expect("an update sends a row");
                let row = ServerRow {
                    v: sent.v.clone(),
                    rel: sent.rel.clone(),
                    rev: self.stamp(),
                    deleted: false,
                };
                self.server.insert(key.clone(), row.clone());
                Answer::Ok(Some(row))
            }
            OpKind::Delete => {
                let Some(stored) = stored.filter(|s| !s.deleted) else {
                    return Answer::Ok(None);
                };
                if if_match.is_some_and(|v| v != stored.rev) {
                    return Answer::Conflict(412, Some(stored));
                }
                self.server_delete(key);
                Answer::Ok(None)
            }
        }
    }

    /// One call through the fault script: the engine's view of its answer.
    fn call(
        &mut self,
        kind: OpKind,
        key: &Key,
        sent: Option<&Row>,
        if_match: Option<u64>,
    ) -> Answer {
        let call_kind = match kind {
            OpKind::Insert => CallKind::Insert,
            OpKind::Update => CallKind::Replace,
            OpKind::Delete => CallKind::Delete,
        };
        self.calls.push((call_kind, key.0, Some(key.1.clone())));
        match self.next_fault() {
            None => self.apply(kind, key, sent, if_match),
            Some(Fault::CommitThenLoseResponse) => {
                let _ = self.apply(kind, key, sent, if_match);
                Answer::Network
            }
            Some(Fault::Network) => Answer::Network,
            Some(Fault::Auth | Fault::Status(401)) => Answer::Auth,
            // A delete's 404/410 is a success (the transport contract).
            Some(Fault::Status(404 | 410)) if kind == OpKind::Delete => Answer::Ok(None),
            Some(Fault::Status(404 | 410)) => Answer::NotFound,
            Some(Fault::Status(s @ (409 | 412))) => Answer::Conflict(s, None),
            Some(Fault::Status(s)) => Answer::Http(s),
        }
    }

    // ---- push ----

    /// A push of every table: ops in ascending sequence; a network error or 401
    /// stops it; any other failure records an error and the push goes on.
    pub fn push(&mut self) -> PushOutcome {
        let mut out = PushOutcome {
            status: PushStatus::Complete,
            pushed: 0,
            errors: Vec::new(),
        };
        let mut order: Vec<(u64, Key)> =
            self.ops.iter().map(|(k, op)| (op.seq, k.clone())).collect();
        order.sort();
        'ops: for (_, key) in order {
            let op = self.ops[&key].clone();
            let sent = match op.kind {
                OpKind::Delete => None,
                _ => match self.local.get(&key) {
                    Some(row) => Some(row.clone()),
                    None => {
                        self.fail(
                            &key,
                            Some(ErrRec {
                                status: None,
                                server: None,
                            }),
                        );
                        out.errors.push((key.0, key.1.clone(), None));
                        continue;
                    }
                },
            };
            // Every earlier attempt got no answer the op heard: any may be what
            // the server holds.
            let mut earlier = self.attempts.get(&key).cloned().unwrap_or_default();
            if let Some(op) = self.ops.get_mut(&key) {
                op.state = OpState::Attempted;
                if op.kind != OpKind::Delete {
                    if let Some(last) = std::mem::replace(&mut op.sent, sent.as_ref().map(values)) {
                        earlier.push(last);
                    }
                    let mut kept = earlier.clone();
                    if kept.len() > 8 {
                        kept.drain(..kept.len() - 8);
                    }
                    self.attempts.insert(key.clone(), kept);
                }
            }
            let mut kind = op.kind;
            let mut if_match = match op.kind {
                OpKind::Delete => op.snap_ver,
                _ => sent.as_ref().and_then(|r| r.ver),
            };
            let mut rounds = 0;
            loop {
                match self.call(kind, &key, sent.as_ref(), if_match) {
                    Answer::Ok(server) => {
                        self.complete(&key, server);
                        out.pushed += 1;
                    }
                    Answer::Network => {
                        self.fail(&key, None);
                        out.status = PushStatus::CancelledByNetworkError;
                        break 'ops;
                    }
                    Answer::Auth => {
                        self.fail(&key, None);
                        out.status = PushStatus::CancelledByAuthenticationError;
                        break 'ops;
                    }
                    Answer::Conflict(_, Some(server))
                        if kind != OpKind::Delete
                            && !server.deleted
                            && sent
                                .as_ref()
                                .is_some_and(|s| s.v == server.v && s.rel == server.rel) =>
                    {
                        // Our own earlier write whose answer was lost.
                        self.complete(&key, Some(server));
                        out.pushed += 1;
                    }
                    Answer::Conflict(_, Some(server))
                        if rounds < 3
                            && !server.deleted
                            && (earlier
                                .iter()
                                .any(|e| e.v == server.v && e.rel == server.rel)
                                || (kind == OpKind::Delete
                                    && op.snap.as_ref().is_some_and(|e| {
                                        e.v == server.v && e.rel == server.rel
                                    }))) =>
                    {
                        // The server holds this op's earlier attempt (answer lost)
                        // and a newer write joined the op: resend it against the
                        // server's version.
                        rounds += 1;
                        if_match = Some(server.rev);
                        if let Some(op) = self.ops.get_mut(&key) {
                            if kind == OpKind::Delete {
                                op.snap_ver = Some(server.rev);
                            } else {
                                op.kind = OpKind::Update;
                            }
                        }
                        if kind != OpKind::Delete {
                            kind = OpKind::Update;
                            if let Some(row) = self.local.get_mut(&key) {
                                row.ver = Some(server.rev);
                            }
                        }
                        continue;
                    }
                    Answer::Conflict(status, server) => {
                        self.fail(
                            &key,
                            Some(ErrRec {
                                status: Some(status),
                                server,
                            }),
                        );
                        out.errors.push((key.0, key.1.clone(), Some(status)));
                    }
                    Answer::NotFound => {
                        self.fail(
                            &key,
                            Some(ErrRec {
                                status: Some(404),
                                server: None,
                            }),
                        );
                        out.errors.push((key.0, key.1.clone(), Some(404)));
                    }
                    Answer::Http(status) => {
                        self.fail(
                            &key,
                            Some(ErrRec {
                                status: Some(status),
                                server: None,
                            }),
                        );
                        out.errors.push((key.0, key.1.clone(), Some(status)));
                    }
                }
                break;
            }
        }
        out
    }

    fn complete(&mut self, key: &Key, server: Option<ServerRow>) {
        self.ops.remove(key);
        self.errors.remove(key);
        if let Some(s) = server {
            self.local.insert(
                key.clone(),
                Row {
                    v: s.v,
                    rel: s.rel,
                    ver: Some(s.rev),
                },
            );
        }
    }

    /// The op is marked failed; an error record replaces the old one if given
    /// (a network error or 401 leaves an older record alone).
    fn fail(&mut self, key: &Key, error: Option<ErrRec>) {
        if let Some(op) = self.ops.get_mut(key) {
            op.state = OpState::Failed;
        }
        if error.is_some() {
            // The server answered (and refused) the last attempt: the ones before
            // it are no longer candidates.
            self.attempts.remove(key);
        }
        if let Some(error) = error {
            self.errors.insert(key.clone(), error);
        }
    }

    // ---- pull ----

    /// An incremental pull of one table: the implicit push when the table has
    /// ops, then one read (the pool is smaller than a page), applied in one go.
    pub fn pull(&mut self, table: usize) -> (Option<PushOutcome>, Result<PullOutcome, ErrKind>) {
        let mut push = None;
        if self.ops.keys().any(|k| k.0 == table) {
            let outcome = self.push();
            let ok = outcome.is_success();
            push = Some(outcome);
            if !ok {
                return (push, Err(ErrKind::PushFailed));
            }
        }
        (push, self.read(table))
    }

    fn read(&mut self, table: usize) -> Result<PullOutcome, ErrKind> {
        self.calls.push((CallKind::Read, table, None));
        match self.next_fault() {
            None => {}
            Some(Fault::Network | Fault::CommitThenLoseResponse) => return Err(ErrKind::Network),
            Some(Fault::Auth | Fault::Status(401)) => return Err(ErrKind::Auth),
            Some(Fault::Status(s @ (409 | 412))) => return Err(ErrKind::Conflict(s)),
            Some(Fault::Status(404 | 410)) => return Err(ErrKind::NotFound),
            Some(Fault::Status(s)) => return Err(ErrKind::Http(s)),
        }
        let after = self.cursor[table].unwrap_or(0);
        let mut page: Vec<(Key, ServerRow)> = self
            .server
            .iter()
            .filter(|(k, r)| k.0 == table && r.rev > after)
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        page.sort_by_key(|(_, r)| r.rev);
        let mut out = PullOutcome {
            upserted: 0,
            deleted: 0,
            skipped: 0,
        };
        for (key, row) in page {
            self.cursor[table] = Some(row.rev);
            if self.ops.contains_key(&key) {
                out.skipped += 1;
            } else if row.deleted {
                out.deleted += 1;
                self.local.remove(&key);
            } else {
                out.upserted += 1;
                self.local.insert(
                    key,
                    Row {
                        v: row.v,
                        rel: row.rel,
                        ver: Some(row.rev),
                    },
                );
            }
        }
        Ok(out)
    }

    // ---- resolutions (the final phase's policy) ----

    /// Drops the op and the local row (`cancel_and_discard`).
    pub fn discard(&mut self, key: &Key) {
        self.ops.remove(key);
        self.errors.remove(key);
        self.local.remove(key);
    }

    /// Client wins (`update_and_retry` with the server's version): the op goes
    /// back to pending, conditioned on `rev`; a 409'd insert becomes an update.
    pub fn retry_with_version(&mut self, key: &Key, rev: u64) {
        let status = self.errors.remove(key).and_then(|e| e.status);
        let Some(op) = self.ops.get_mut(key) else {
            return;
        };
        if op.kind == OpKind::Delete {
            op.snap_ver = Some(rev);
        } else {
            if let Some(row) = self.local.get_mut(key) {
                row.ver = Some(rev);
            }
            if op.kind == OpKind::Insert && status == Some(409) {
                op.kind = OpKind::Update;
            }
        }
        op.version += 1;
        op.state = OpState::Pending;
    }
}
