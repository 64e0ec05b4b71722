//! The fault script: offline switches, counted failures, latency and seeded random faults.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tidesync_core::TransportError;

use crate::{Shared, lock};

/// A failure the mock can inject into a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// No answer: [`TransportError::Network`]. Nothing is applied.
    Network,
    /// An HTTP error status, classified as a real transport would: 401 →
    /// [`TransportError::Auth`], 404 and 410 → [`TransportError::NotFound`], 409 and 412 →
    /// [`TransportError::Conflict`] without a server item, others →
    /// [`TransportError::Http`]. Nothing is applied. On a delete, 404 and 410 count as
    /// success, as the [`Transport`](tidesync_core::Transport) contract says.
    Status(u16),
    /// 401: [`TransportError::Auth`]. Nothing is applied.
    Auth,
    /// The write is applied, then the response is lost: the caller gets
    /// [`TransportError::Network`]. On a read this is a plain network fault.
    CommitThenLoseResponse,
}

impl Fault {
    /// The error a caller sees for this fault.
    pub(crate) fn error(self) -> TransportError {
        match self {
            Fault::Network => TransportError::Network("injected network fault".into()),
            Fault::CommitThenLoseResponse => TransportError::Network(
                "injected fault: the response was lost after the request was applied".into(),
            ),
            Fault::Auth | Fault::Status(401) => TransportError::Auth {
                message: "injected authentication failure".to_owned(),
            },
            Fault::Status(status @ (404 | 410)) => TransportError::NotFound { status, raw: None },
            Fault::Status(status @ (409 | 412)) => TransportError::Conflict {
                status,
                server_item: None,
                raw: None,
            },
            Fault::Status(status) => TransportError::Http {
                status,
                message: format!("injected HTTP {status}"),
                raw: None,
            },
        }
    }
}

/// A handle on a server's fault script, from [`MockServer::faults`](crate::MockServer::faults).
///
/// Faults are decided when a call arrives, in arrival order, so a script (and a seeded
/// random one) gives the same failures for the same sequence of calls.
#[derive(Clone)]
pub struct Faults {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults").finish_non_exhaustive()
    }
}

impl Faults {
    /// Takes the whole server offline (or back): every call of every transport fails with
    /// [`TransportError::Network`] and nothing is applied. Offline calls do not use up
    /// [`fail_next`](Faults::fail_next) counts or random draws.
    pub fn set_offline(&self, offline: bool) {
        lock(&self.shared).faults.offline = offline;
    }

    /// Makes the next `n` calls that reach the server fail with `fault`, then behave
    /// normally. Several scripts queue up: `fail_next(1, a); fail_next(2, b)` fails one call
    /// with `a`, then two with `b`.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        if n > 0 {
            lock(&self.shared).faults.scripted.push_back((n, fault));
        }
    }

    /// Delays every call by `latency` before it reaches the server (`Duration::ZERO` for
    /// none).
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.shared).faults.latency = latency;
    }

    /// Makes each call that reaches the server fail with `probability` (clamped to 0..=1)
    /// with a fault picked uniformly from `kinds`, both drawn from the server's seeded
    /// random generator. An empty `kinds` turns random faults off.
    pub fn set_random_faults(&self, probability: f64, kinds: Vec<Fault>) {
        let probability = if probability.is_nan() {
            0.0
        } else {
            probability.clamp(0.0, 1.0)
        };
        lock(&self.shared).faults.random = (!kinds.is_empty()).then_some((probability, kinds));
    }

    /// Removes every fault: online, no scripted failures, no latency, no random faults.
    /// The random generator keeps its position; transports' own offline switches stay.
    pub fn clear_faults(&self) {
        let mut state = lock(&self.shared);
        state.faults.offline = false;
        state.faults.scripted.clear();
        state.faults.latency = Duration::ZERO;
        state.faults.random = None;
    }
}

/// The fault script of one server.
pub(crate) struct FaultState {
    pub(crate) offline: bool,
    pub(crate) latency: Duration,
    /// `(calls left, fault)`, oldest first.
    scripted: VecDeque<(usize, Fault)>,
    random: Option<(f64, Vec<Fault>)>,
    rng: StdRng,
}

impl FaultState {
    pub(crate) fn new(seed: u64) -> FaultState {
        FaultState {
            offline: false,
            latency: Duration::ZERO,
            scripted: VecDeque::new(),
            random: None,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The fault for a call that reached the server (not offline), if any: scripted
    /// failures first, then a random draw.
    pub(crate) fn next_fault(&mut self) -> Option<Fault> {
        if let Some((left, fault)) = self.scripted.front_mut() {
            let fault = *fault;
            *left -= 1;
            if *left == 0 {
                self.scripted.pop_front();
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
}
