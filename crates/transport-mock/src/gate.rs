//! Gates hold a write in flight: it has reached the server but is not applied yet.

use tokio::sync::watch;

/// A hold on the next write call (insert, replace, delete or batch), from
/// [`MockServer::block_next_write`](crate::MockServer::block_next_write).
///
/// The call waits after it arrives and before it is applied, until [`Gate::release`] is
/// called. Dropping the gate releases it too, so a failing test cannot leave a call stuck.
#[derive(Debug)]
#[must_use = "dropping a gate releases it at once"]
pub struct Gate {
    shared: std::sync::Arc<GateShared>,
}

/// The state a gate shares with the call it holds.
#[derive(Debug)]
pub(crate) struct GateShared {
    reached: watch::Sender<bool>,
    released: watch::Sender<bool>,
}

impl Gate {
    pub(crate) fn new() -> (Gate, std::sync::Arc<GateShared>) {
        let shared = std::sync::Arc::new(GateShared {
            reached: watch::channel(false).0,
            released: watch::channel(false).0,
        });
        (
            Gate {
                shared: shared.clone(),
            },
            shared,
        )
    }

    /// Resolves once a call is waiting at the gate (at once if one already is, or was).
    pub async fn reached(&self) {
        let mut reached = self.shared.reached.subscribe();
        // The sender lives in `self.shared`, so the channel cannot close while we wait.
        let _ = reached.wait_for(|reached| *reached).await;
    }

    /// True when a call has arrived at the gate.
    pub fn is_reached(&self) -> bool {
        *self.shared.reached.borrow()
    }

    /// Lets the held call (or the next one to arrive) go on.
    pub fn release(&self) {
        self.shared.released.send_replace(true);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.release();
    }
}

impl GateShared {
    /// Called by the held call: announces its arrival, then waits for the release.
    pub(crate) async fn pass(&self) {
        self.reached.send_replace(true);
        let mut released = self.released.subscribe();
        let _ = released.wait_for(|released| *released).await;
    }
}
