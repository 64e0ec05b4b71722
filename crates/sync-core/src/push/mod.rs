//! [`PushRun`]: one push, as a value. It walks the queue in ascending sequence
//! ([`PushRun::take_next_ops`]), marks the ops it takes attempted
//! ([`PushRun::mark_attempted`]), sends them one by one ([`PushRun::send_one`])
//! or as batches ([`PushRun::run_batches`]), and settles each answer
//! (`settle.rs`): completes the op, stops the push, records an error, or
//! resolves a conflict. The queue and row changes that answers lead to are in
//! `local.rs`. What a push returns is in `outcome.rs`.
//!
//! Batches are pipelined: while one batch is on the wire, the next is taken
//! and marked attempted, and it is sent as soon as the answer to the first
//! arrives, before that answer is decoded ([`Transport::batch_answer`](crate::Transport::batch_answer))
//! and settled. One request is on the wire at a
//! time, so the server still sees the queue's order; the next batch never
//! holds an op of an item on the wire (it stops before one, as a batch stops
//! before a second op of an item), so an answer can never concern an item the
//! batch behind it also carries. A batch marked but not sent (the push
//! stopped first) gets its ops back as they were.

mod local;
mod settle;

use local::Acked;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tidesync_protocol::Item;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::engine::Engine;
use crate::error::{Error, Result, TransportError};
use crate::events::{ChangeEvent, SyncAction};
use crate::model::{OpKind, OpState, Operation};
use crate::outcome::{PushOptions, PushResult, PushStatus};
use crate::queue::{Queue, id_only, sent_form, split_attempts, with_attempts};
use crate::status::{SyncErrorInfo, SyncErrorKind};
use crate::store::{StoreError, Write, WriteBatch};
use crate::transport::{BatchAnswer, BatchOperation, BatchOutcome};

/// What one step of a push led to.
enum Step {
    /// Go on with the next op (this one succeeded, was resolved, or failed and
    /// stays queued with its item blocked for the rest of the push).
    Next,
    /// Stop the push.
    Stop(PushStatus),
}

/// A request to send for an op.
struct Outgoing {
    kind: OpKind,
    item: Item,
    if_match: Option<String>,
}

/// What [`PushRun::prepare`] made of an op.
enum Prepare {
    /// Marked attempted: send it.
    Send(Box<Prepared>),
    /// Resolved or collapsed away meanwhile: nothing to send.
    Gone,
    /// An insert or update whose local row is missing.
    Missing(Operation),
}

/// An op marked attempted, with what to send for it.
struct Prepared {
    /// What an unsent batch gives the op back (see [`PushRun::unmark`]).
    before: Before,
    /// The op as marked, but without its `item` (the queue holds it whole:
    /// [`PushRun::whole`] takes it from there where an answer needs it).
    op: Operation,
    send: Outgoing,
    /// What earlier attempts of this op sent and got no answer to, oldest first.
    earlier: Vec<Item>,
    /// The op's row when it was marked (see [`PushRun::complete_acked`]).
    row: Option<Item>,
}

/// An op's state and item before it was marked attempted (nothing else of the
/// op changes when it is marked).
struct Before {
    state: OpState,
    item: Option<Item>,
    /// The mark rewrote the item (with what it was about to send beside the
    /// earlier attempts); a mark that only records the state leaves it.
    item_rewritten: bool,
}

/// One push: its walk through the queue and its result so far.
pub(crate) struct PushRun {
    engine: Arc<Engine>,
    cancel: CancellationToken,
    /// Ops per request: 1 without batch support.
    batch_size: usize,
    /// The sequence of the last op taken.
    after: u64,
    /// Only these tables, when set.
    scope: Option<HashSet<String>>,
    /// Items whose op failed in this push: their later ops wait for the next push.
    blocked: HashSet<(String, String)>,
    result: PushResult,
}

impl PushRun {
    /// Runs a push on its own task, so that a panic inside a store or transport
    /// surfaces as [`PushStatus::InternalError`] and a dropped caller does not
    /// abandon the push's bookkeeping halfway.
    ///
    /// # Errors
    /// Only a push task that neither finished nor panicked.
    pub(crate) async fn spawn(engine: &Arc<Engine>, options: PushOptions) -> Result<PushResult> {
        engine.emit(ChangeEvent::SyncStarted {
            action: SyncAction::Push,
            table: None,
        });
        let run = PushRun::new(engine.clone(), options);
        let span = tracing::info_span!("push", tables = ?run.scope, batch_size = run.batch_size);
        let task = tokio::spawn(
            async move {
                let engine = run.engine.clone();
                let _sync = engine.sync.lock().await;
                run.run().await
            }
            .instrument(span),
        );
        let outcome = task.await;
        engine.lock_queue().clear_all_in_flight();
        let result = match outcome {
            Ok(result) => result,
            Err(e) if e.is_panic() => PushResult {
                status: PushStatus::InternalError,
                other_error: Some(format!("push failed unexpectedly: {e}")),
                ..PushResult::default()
            },
            Err(e) => return Err(Error::Internal(e.to_string())),
        };
        if let Some(kind) = SyncErrorKind::of_push(&result) {
            engine.emit(ChangeEvent::SyncFailed {
                error: SyncErrorInfo {
                    action: SyncAction::Push,
                    table: None,
                    kind,
                    message: crate::status::push_message(&result),
                },
            });
        }
        engine.emit(ChangeEvent::SyncFinished {
            action: SyncAction::Push,
            table: None,
            push_status: Some(result.status),
            ok: result.is_success(),
        });
        Ok(result)
    }

    fn new(engine: Arc<Engine>, options: PushOptions) -> Self {
        let batch_size = if engine.transport.supports_batch() {
            engine.options.batch_size.max(1)
        } else {
            1
        };
        Self {
            engine,
            cancel: options.cancel.unwrap_or_default(),
            batch_size,
            after: 0,
            scope: options.tables.map(|t| t.into_iter().collect()),
            blocked: HashSet::new(),
            result: PushResult::default(),
        }
    }

    /// Walks the queue to its end, or until something stops the push; the
    /// caller holds the sync lock.
    async fn run(mut self) -> PushResult {
        if self.batch_size > 1 {
            match self.run_batches().await {
                Ok(Some(status)) => self.result.status = status,
                Ok(None) => {}
                Err(e) => {
                    self.result.other_error = Some(e.to_string());
                    self.result.status = PushStatus::CancelledBySyncStoreError;
                }
            }
            return self.finish();
        }
        loop {
            if self.cancel.is_cancelled() {
                self.result.status = PushStatus::CancelledByToken;
                break;
            }
            let step = match self.step().await {
                Ok(Some(step)) => step,
                Ok(None) => break,
                Err(e) => {
                    self.result.other_error = Some(e.to_string());
                    Step::Stop(PushStatus::CancelledBySyncStoreError)
                }
            };
            if let Step::Stop(status) = step {
                self.result.status = status;
                break;
            }
        }
        self.finish()
    }

    fn finish(self) -> PushResult {
        let result = self.result;
        tracing::info!(status = %result.status, pushed = result.pushed, errors = result.errors.len(), "push finished");
        result
    }

    /// Pushes the next op (one request per op); `None` when the queue is done.
    async fn step(&mut self) -> Result<Option<Step>, StoreError> {
        let Some(mut prepared) = self.take_and_mark(&OnWire::default())? else {
            return Ok(None);
        };
        let Some(one) = prepared.pop() else {
            return Ok(Some(Step::Next));
        };
        self.send_one(one).await.map(Some)
    }

    /// Takes the next ops (none of an item in `on_wire`) and marks them
    /// attempted. `None` when there is nothing to take now; an empty list when
    /// the ops taken were resolved, collapsed away or had lost their row.
    fn take_and_mark(&mut self, on_wire: &OnWire) -> Result<Option<Vec<Prepared>>, StoreError> {
        let engine = self.engine.clone();
        let mut queue = engine.lock_queue();
        let ops = self.take_next_ops(&queue, on_wire);
        if ops.is_empty() {
            return Ok(None);
        }
        let (prepared, missing) = self.mark_attempted(&mut queue, ops)?;
        drop(queue);
        for op in missing {
            self.missing_row(op)?;
        }
        Ok(Some(prepared))
    }

    /// The next ops in scope, at most one batch, skipping items blocked by an
    /// earlier failure and stopping before a second op of an item already
    /// taken or an op of an item on the wire.
    fn take_next_ops(&mut self, queue: &Queue, on_wire: &OnWire) -> Vec<Operation> {
        let mut taken: Vec<Operation> = Vec::new();
        let mut keys: HashSet<(&str, &str)> = HashSet::new();
        for op in queue.after(self.after) {
            if self.scope.as_ref().is_some_and(|s| !s.contains(&op.table))
                || (!self.blocked.is_empty()
                    && self
                        .blocked
                        .contains(&(op.table.clone(), op.item_id.clone())))
            {
                continue;
            }
            let key = (op.table.as_str(), op.item_id.as_str());
            if keys.contains(&key) || taken.len() == self.batch_size || on_wire.holds(key) {
                break;
            }
            keys.insert(key);
            taken.push(op.clone());
        }
        self.after = taken.last().map_or(self.after, |o| o.sequence);
        taken
    }

    /// Under the queue lock, one store read for every op's row; every op is then
    /// marked attempted in one store write, before anything is sent. Returns
    /// the ops to send and the inserts or updates whose row is gone.
    fn mark_attempted(
        &mut self,
        queue: &mut Queue,
        ops: Vec<Operation>,
    ) -> Result<(Vec<Prepared>, Vec<Operation>), StoreError> {
        let keys: Vec<(&str, &str)> = ops
            .iter()
            .map(|op| (op.table.as_str(), op.item_id.as_str()))
            .collect();
        let rows = self.engine.store.get_many(&keys)?;
        drop(keys);
        let mut prepared = Vec::with_capacity(ops.len());
        let mut missing = Vec::new();
        let mut marks = WriteBatch::new();
        let mut marked = Vec::new();
        for (op, row) in ops.into_iter().zip(rows) {
            match self.prepare(queue, op, row, &mut marks, &mut marked)? {
                Prepare::Send(p) => prepared.push(*p),
                Prepare::Gone => {}
                Prepare::Missing(op) => missing.push(op),
            }
        }
        if !marked.is_empty() {
            marks.push(Write::MarkAttempted { ids: marked });
        }
        queue.commit_owned(&*self.engine.store, &mut marks)?;
        for p in &prepared {
            queue.set_in_flight(&p.op.id);
        }
        Ok((prepared, missing))
    }

    /// Works out what to send for an op from its current row and queued ops
    /// (the caller holds the queue lock) and adds its mark: its id to `marked`
    /// (one [`Write::MarkAttempted`] for the batch), or the op rewritten with
    /// its attempts to `marks`.
    fn prepare(
        &self,
        queue: &mut Queue,
        listed: Operation,
        row: Option<Item>,
        marks: &mut WriteBatch,
        marked: &mut Vec<String>,
    ) -> Result<Prepare, StoreError> {
        let mut op = match queue.get(&listed.id) {
            Some(current) if *current == listed => listed,
            Some(current) => current.clone(),
            None => return Ok(Prepare::Gone), // resolved or collapsed away meanwhile
        };
        if !self.fold_follow_up(queue, &mut op)? {
            return Ok(Prepare::Gone);
        }
        let mut before = Before {
            state: op.state,
            item: op.item.clone(),
            item_rewritten: false,
        };
        let row_when_marked = row.clone();
        // What the op sent before (an insert's or update's attempts, a delete's
        // replaced attempts), any of which the server may hold if an answer was lost.
        let (last, mut earlier) = match op.item.clone() {
            Some(item) => {
                let (last, earlier) = split_attempts(item);
                (Some(last), earlier)
            }
            None => (None, Vec::new()),
        };
        let item = match op.kind {
            OpKind::Delete => Some(last.clone().unwrap_or_else(|| id_only(&op.item_id))),
            OpKind::Insert | OpKind::Update => row,
        };
        let Some(item) = item else {
            return Ok(Prepare::Missing(op));
        };
        let (item, if_match) = sent_form(item);
        // What an insert or update sends is its row. While its `item` is empty,
        // the row is also what it sent before, if it was sent: no write changes
        // the row of an op that may be on the server without first keeping that
        // row in the op's `item` as an attempt (`Transaction::write`). So the
        // mark only records the state, for the whole batch at once. Once the
        // `item` holds attempts, what is sent now is kept beside them, written
        // with the op, so that a later attempt can tell its own earlier write
        // (answered but lost) from a foreign one (see `settle`). A delete's
        // `item` is its snapshot (with the replaced op's attempts).
        let keeps_attempts = matches!(op.kind, OpKind::Insert | OpKind::Update) && last.is_some();
        if keeps_attempts {
            if let Some(last) = last {
                earlier.push(last);
            }
            op.item = Some(with_attempts(item.clone(), earlier.clone()));
            before.item_rewritten = true;
        }
        op.state = OpState::Attempted;
        // The queue keeps the marked op whole; the push's copy goes without its
        // item (see [`Prepared::op`]).
        let item_less = Operation {
            id: op.id.clone(),
            table: op.table.clone(),
            item_id: op.item_id.clone(),
            item: None,
            base: op.base.clone(),
            ..op
        };
        if keeps_attempts {
            marks.push(Write::PutOperation(op));
        } else {
            marked.push(op.id);
        }
        let op = item_less;
        let send = Outgoing {
            kind: op.kind,
            item,
            if_match,
        };
        Ok(Prepare::Send(Box::new(Prepared {
            before,
            op,
            send,
            earlier,
            row: row_when_marked,
        })))
    }

    /// Sends one op and settles its answer.
    async fn send_one(&mut self, one: Prepared) -> Result<Step, StoreError> {
        let Prepared {
            op, send, earlier, ..
        } = one;
        let op = self.whole(op);
        let Some(outcome) = self.send_unless_cancelled(&op, &send).await else {
            return Ok(Step::Stop(PushStatus::CancelledByToken));
        };
        self.settle(op, send, earlier, outcome).await
    }

    /// Pushes the queue as batches, pipelined (see the module's doc); the
    /// status that stopped the push, or `None` when the queue is done.
    async fn run_batches(&mut self) -> Result<Option<PushStatus>, StoreError> {
        let mut on_wire: Option<InFlight> = None;
        loop {
            if self.cancel.is_cancelled() {
                if let Some(wire) = on_wire {
                    wire.answer.abort();
                }
                return Ok(Some(PushStatus::CancelledByToken));
            }
            let keys = on_wire.as_ref().map(|w| &w.items);
            let next = match self.take_and_mark(keys.unwrap_or(&OnWire::default()))? {
                Some(next) if next.is_empty() => continue, // nothing left to send of these
                next => next,
            };
            let Some(wire) = on_wire.take() else {
                match next {
                    Some(next) => on_wire = Some(self.launch(next).await),
                    None => return Ok(None),
                }
                continue;
            };
            let answer = tokio::select! {
                biased;
                () = self.cancel.cancelled() => None,
                answer = wire.answer => Some(answer),
            };
            let Some(answer) = answer else {
                // The token fired: what is on the wire stays attempted (it may
                // have arrived); the batch behind it was never sent.
                self.unmark(next.unwrap_or_default());
                return Ok(Some(PushStatus::CancelledByToken));
            };
            let answer = answered(answer);
            if let Err(e @ (TransportError::Network(_) | TransportError::Auth { .. })) = answer {
                // The request as a whole failed: the batch behind it stays unsent.
                self.unmark(next.unwrap_or_default());
                let prepared = take_back(wire.prepared, wire.request);
                return self.settle_batch(prepared, Err(e), None).await;
            }
            let behind = match next {
                Some(next) => Some(self.launch(next).await),
                None => None,
            };
            // Decoded now, with the batch behind already on its way.
            let outcomes = answer.and_then(BatchAnswer::outcomes);
            let prepared = take_back(wire.prepared, wire.request);
            match self.settle_batch(prepared, outcomes, None).await {
                Ok(None) => on_wire = behind,
                Ok(Some(status)) => {
                    // Stopping: the batch behind is on the wire already; its
                    // answer is settled as well (without resolving conflicts).
                    if let Some(behind) = behind {
                        let outcomes =
                            answered(behind.answer.await).and_then(BatchAnswer::outcomes);
                        let prepared = take_back(behind.prepared, behind.request);
                        self.settle_batch(prepared, outcomes, Some(status)).await?;
                    }
                    return Ok(Some(status));
                }
                Err(e) => {
                    if let Some(behind) = behind {
                        behind.answer.abort();
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Sends prepared ops as one batch request on a task of its own, so that
    /// the push can settle and prepare other batches meanwhile.
    async fn launch(&self, mut prepared: Vec<Prepared>) -> InFlight {
        // An insert's or update's item moves into the request, and back out of
        // it when the answer has come (`take_back`): no copy.
        let request: Vec<BatchOperation> = prepared
            .iter_mut()
            .map(|p| BatchOperation {
                operation_id: p.op.id.clone(),
                kind: p.send.kind,
                table: p.op.table.clone(),
                item_id: p.op.item_id.clone(),
                item: (p.send.kind != OpKind::Delete).then(|| std::mem::take(&mut p.send.item)),
                if_match: p.send.if_match.clone(),
            })
            .collect();
        let request = Arc::new(request);
        let mut items = OnWire::default();
        for p in &prepared {
            items.add(&p.op.table, &p.op.item_id);
        }
        let transport = self.engine.transport.clone();
        let sent = Arc::clone(&request);
        let answer = tokio::spawn(
            async move { transport.batch_answer(&sent).await }.instrument(tracing::Span::current()),
        );
        // The new task sits in this worker's next-task slot, which other workers
        // do not take from: let it send the request now, not after the store
        // work this push does next.
        tokio::task::yield_now().await;
        InFlight {
            prepared,
            items,
            request,
            answer,
        }
    }

    /// Settles the answer to a batch: the server applied the successful ops
    /// whatever happened to the others, and they are completed in one store
    /// write; refusals are settled one by one (once the push is stopping,
    /// `stopping`, they are only marked failed). The status that stops the
    /// push, if any.
    async fn settle_batch(
        &mut self,
        prepared: Vec<Prepared>,
        outcomes: Result<Vec<BatchOutcome>, TransportError>,
        stopping: Option<PushStatus>,
    ) -> Result<Option<PushStatus>, StoreError> {
        let failed_all = |message: String, n: usize| -> Vec<BatchOutcome> {
            std::iter::repeat_with(|| BatchOutcome::Err(TransportError::Protocol(message.clone())))
                .take(n)
                .collect()
        };
        let outcomes = match outcomes {
            Ok(outcomes) if outcomes.len() == prepared.len() => outcomes,
            Ok(outcomes) => failed_all(
                format!(
                    "batch answered {} outcomes for {} ops",
                    outcomes.len(),
                    prepared.len()
                ),
                prepared.len(),
            ),
            Err(e @ (TransportError::Network(_) | TransportError::Auth { .. })) => {
                let status = if matches!(e, TransportError::Network(_)) {
                    PushStatus::CancelledByNetworkError
                } else {
                    PushStatus::CancelledByAuthenticationError
                };
                tracing::info!(error = %e, "push stopped");
                for p in &prepared {
                    self.fail_op(&p.op, None)?;
                }
                return Ok(Some(stopping.unwrap_or(status)));
            }
            Err(e) => failed_all(e.to_string(), prepared.len()),
        };
        let mut done = Vec::new();
        let mut stop = stopping;
        for (p, outcome) in prepared.into_iter().zip(outcomes) {
            match outcome {
                BatchOutcome::Ok(item) => done.push(Acked {
                    op: p.op,
                    server_item: item,
                    row_when_marked: Some(p.row),
                }),
                BatchOutcome::Err(_) if stop.is_some() => self.fail_op(&p.op, None)?,
                BatchOutcome::Err(e) => {
                    let op = self.whole(p.op);
                    let step = self.settle(op, p.send, p.earlier, Err(e)).await?;
                    if let Step::Stop(status) = step {
                        stop = Some(status);
                    }
                }
            }
        }
        self.complete_acked(done)?;
        Ok(stop)
    }

    /// `op` (a [`Prepared::op`]) with its item: the queue's copy, or `op` as
    /// it is when it is no longer queued.
    fn whole(&self, op: Operation) -> Operation {
        match self.engine.lock_queue().get(&op.id) {
            Some(queued) => queued.clone(),
            None => op,
        }
    }

    /// Gives ops that were marked attempted but never sent their state back
    /// (unless something else of them changed since). Their item too, when the
    /// mark rewrote it or the op had never been sent; otherwise the item stays
    /// as it is now: a local write made while the op was marked may have kept
    /// its row there as what an earlier attempt sent.
    fn unmark(&self, prepared: Vec<Prepared>) {
        if prepared.is_empty() {
            return;
        }
        let mut queue = self.engine.lock_queue();
        let mut batch = WriteBatch::new();
        for p in prepared {
            queue.clear_in_flight(&p.op.id);
            let Some(current) = queue
                .get(&p.op.id)
                .filter(|current| same_but_item(current, &p.op))
            else {
                continue;
            };
            let mut op = current.clone();
            op.state = p.before.state;
            if p.before.item_rewritten || p.before.state == OpState::Pending {
                op.item = p.before.item;
            }
            batch.push(Write::PutOperation(op));
        }
        if let Err(e) = queue.commit_owned(&*self.engine.store, &mut batch) {
            // Harmless: an op left attempted is sent again by the next push.
            tracing::warn!(error = %e, "could not unmark ops that were not sent");
        }
    }
}

/// Whether two ops are the same but for their `item`.
fn same_but_item(a: &Operation, b: &Operation) -> bool {
    a.id == b.id
        && a.kind == b.kind
        && a.state == b.state
        && a.table == b.table
        && a.item_id == b.item_id
        && a.base == b.base
        && a.sequence == b.sequence
        && a.version == b.version
}

/// What a batch request's task gave: its answer, or the task's end as a
/// protocol error (a panic inside the transport goes on as a panic).
fn answered(
    answer: Result<Result<BatchAnswer, TransportError>, tokio::task::JoinError>,
) -> Result<BatchAnswer, TransportError> {
    match answer {
        Ok(outcomes) => outcomes,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(TransportError::Protocol(format!(
            "batch request ended: {e}"
        ))),
    }
}

/// A batch request on the wire.
struct InFlight {
    /// Its ops; an insert's or update's `send.item` is in `request` meanwhile.
    prepared: Vec<Prepared>,
    /// The items its ops are for.
    items: OnWire,
    /// The request, shared with the task sending it.
    request: Arc<Vec<BatchOperation>>,
    answer: tokio::task::JoinHandle<Result<BatchAnswer, TransportError>>,
}

/// The ops of a batch whose answer has come (or never will), each with the item
/// it sent back in its `send` (moved out of the request when the sending task
/// has let go of it, copied otherwise).
fn take_back(mut prepared: Vec<Prepared>, request: Arc<Vec<BatchOperation>>) -> Vec<Prepared> {
    let request = Arc::try_unwrap(request).unwrap_or_else(|shared| (*shared).clone());
    for (p, sent) in prepared.iter_mut().zip(request) {
        if let Some(item) = sent.item {
            p.send.item = item;
        }
    }
    prepared
}

/// The items of a batch on the wire: table → item ids.
#[derive(Default)]
struct OnWire(HashMap<String, HashSet<String>>);

impl OnWire {
    fn add(&mut self, table: &str, id: &str) {
        self.0
            .entry(table.to_owned())
            .or_default()
            .insert(id.to_owned());
    }

    fn holds(&self, (table, id): (&str, &str)) -> bool {
        self.0.get(table).is_some_and(|ids| ids.contains(id))
    }
}
