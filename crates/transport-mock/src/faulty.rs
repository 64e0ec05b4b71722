//! [`Faulty`]: fault decorators around **any** [`Transport`] — offline, scripted failures,
//! lost answers, a seeded partition, latency and a gate on the next write — so tests of the
//! HTTP transport (or any other) get the same faults the mock server scripts for itself.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tidesync_core::{
    BatchOperation, BatchOutcome, ChangeFeed, Page, ReadRequest, Snapshot, SnapshotRequest,
    Transport, TransportError,
};
use tidesync_protocol::Item;

use crate::faults::Fault;
use crate::gate::{Gate, GateShared};

/// A [`Transport`] that wraps another and fails calls on request.
///
/// - **Offline** ([`set_offline`](Faulty::set_offline)): every call fails with
///   [`TransportError::Network`] before it leaves; the inner transport sees nothing.
/// - **Scripted faults** ([`fail_writes`](Faulty::fail_writes),
///   [`fail_reads`](Faulty::fail_reads)): the next calls fail with a [`Fault`], classified
///   as the mock classifies it. [`Fault::CommitThenLoseResponse`] is the **lost answer**:
///   the call is sent and applied, and its answer replaced by a network error.
/// - **Partition** ([`partition`](Faulty::partition)): each write fails with a
///   percentage, as a lost answer or a plain network error, drawn from a seeded
///   xorshift generator, so a run fails the same way every time.
/// - **Latency** ([`set_latency`](Faulty::set_latency)) before every call, and a **gate**
///   ([`hold_next_write`](Faulty::hold_next_write)) that holds the next write before it
///   leaves until released.
///
/// Change feeds and snapshots pass through untouched, except offline, unless
/// [`without_streams`](Faulty::without_streams) hides them. Writes are `insert`,
/// `replace`, `delete` and `batch`; reads are `read`.
#[derive(Debug)]
pub struct Faulty<T> {
    inner: T,
    streams: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    offline: bool,
    latency: Duration,
    writes: VecDeque<Fault>,
    reads: VecDeque<Fault>,
    /// `(xorshift state, percent)`.
    partition: Option<(u64, u64)>,
    gate: Option<Arc<GateShared>>,
}

impl<T: Transport> Faulty<T> {
    /// Wraps `inner`, with no faults.
    pub fn new(inner: T) -> Faulty<T> {
        Faulty {
            inner,
            streams: true,
            state: Mutex::default(),
        }
    }

    /// Answers `Unsupported` to change feeds and snapshots, as a transport offering only
    /// the table API (and batch, when the inner one has it) would: tests of paged pulls
    /// keep the engine off the snapshot path.
    #[must_use]
    pub fn without_streams(mut self) -> Faulty<T> {
        self.streams = false;
        self
    }

    /// The wrapped transport.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Cuts the transport off (or reconnects it).
    pub fn set_offline(&self, offline: bool) {
        self.state().offline = offline;
    }

    /// Delays every call by `latency` (`Duration::ZERO` for none).
    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    /// Fails the next `count` write calls with `fault`.
    pub fn fail_writes(&self, count: usize, fault: Fault) {
        self.state().writes.extend((0..count).map(|_| fault));
    }

    /// Fails the next `count` reads with `fault` (a lost answer on a read is a network error).
    pub fn fail_reads(&self, count: usize, fault: Fault) {
        self.state().reads.extend((0..count).map(|_| fault));
    }

    /// A network partition: from now on each write fails with `percent` probability,
    /// half of them as lost answers, drawn from a generator seeded with `seed`.
    pub fn partition(&self, seed: u64, percent: u64) {
        self.state().partition = Some((seed | 1, percent));
    }

    /// Ends the partition and drops every scripted fault (offline and latency stay).
    pub fn heal(&self) {
        let mut state = self.state();
        state.partition = None;
        state.writes.clear();
        state.reads.clear();
    }

    /// Holds the next write call before it leaves, until the returned gate is released
    /// (or dropped).
    pub fn hold_next_write(&self) -> Gate {
        let (gate, shared) = Gate::new();
        self.state().gate = Some(shared);
        gate
    }

    fn next_write_fault(state: &mut State) -> Option<Fault> {
        if let Some(fault) = state.writes.pop_front() {
            return Some(fault);
        }
        let (rng, percent) = state.partition.as_mut()?;
        let percent = *percent;
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let roll = *rng % 100;
        (roll < percent).then_some(if roll % 2 == 0 {
            Fault::CommitThenLoseResponse
        } else {
            Fault::Network
        })
    }

    /// Latency and the offline switch, for every call.
    async fn arrive(&self) -> Result<(), TransportError> {
        let latency = self.state().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if self.state().offline {
            return Err(Fault::Network.error());
        }
        Ok(())
    }

    /// Runs a write through the gate and the faults.
    async fn write<R>(
        &self,
        call: impl Future<Output = Result<R, TransportError>>,
    ) -> Result<R, TransportError> {
        self.arrive().await?;
        let gate = self.state().gate.take();
        if let Some(gate) = gate {
            gate.pass().await;
        }
        let fault = Faulty::<T>::next_write_fault(&mut self.state());
        match fault {
            None => call.await,
            Some(Fault::CommitThenLoseResponse) => {
                let _ = call.await;
                Err(Fault::CommitThenLoseResponse.error())
            }
            Some(fault) => Err(fault.error()),
        }
    }
}

#[async_trait]
impl<T: Transport> Transport for Faulty<T> {
    async fn read(&self, request: &ReadRequest) -> Result<Page, TransportError> {
        self.arrive().await?;
        let fault = self.state().reads.pop_front();
        match fault {
            None => self.inner.read(request).await,
            Some(fault) => Err(fault.error()),
        }
    }

    async fn insert(&self, table: &str, item: &Item) -> Result<Item, TransportError> {
        self.write(self.inner.insert(table, item)).await
    }

    async fn replace(
        &self,
        table: &str,
        item: &Item,
        if_match: Option<&str>,
    ) -> Result<Item, TransportError> {
        self.write(self.inner.replace(table, item, if_match)).await
    }

    async fn delete(
        &self,
        table: &str,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), TransportError> {
        match self.write(self.inner.delete(table, id, if_match)).await {
            // The contract: a missing item counts as deleted (an injected 404 too).
            Err(TransportError::NotFound { .. }) => Ok(()),
            other => other,
        }
    }

    async fn change_feed(&self, tables: &[String]) -> Result<ChangeFeed, TransportError> {
        if !self.streams {
            return Err(TransportError::Unsupported("change feed"));
        }
        self.arrive().await?;
        self.inner.change_feed(tables).await
    }

    async fn snapshot(&self, request: &SnapshotRequest) -> Result<Snapshot, TransportError> {
        if !self.streams {
            return Err(TransportError::Unsupported("snapshot"));
        }
        self.arrive().await?;
        self.inner.snapshot(request).await
    }

    fn supports_batch(&self) -> bool {
        self.inner.supports_batch()
    }

    async fn batch(
        &self,
        operations: &[BatchOperation],
    ) -> Result<Vec<BatchOutcome>, TransportError> {
        self.write(self.inner.batch(operations)).await
    }
}
