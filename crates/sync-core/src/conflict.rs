//! Conflict handling: the [`ConflictHandler`] seam and its built-ins.
//!
//! A push calls the handler when the server answers 409 or 412. Beyond the
//! reference clients, the [`Conflict`] record carries the *base*: the last server
//! version the local edit started from, which makes a real three-way merge
//! ([`MergeFields`]) possible.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use serde_json::Value;
use tidesync_protocol::Item;
use tidesync_protocol::system::{ID, is_system_property};

use crate::model::Operation;

/// Everything known about a conflict.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The queued op that was refused.
    pub operation: Operation,
    /// 409 (the item exists, or a stale body version) or 412 (stale `If-Match`).
    pub status: u16,
    /// The client's copy that was sent (for a delete, the delete's snapshot).
    pub local_item: Option<Item>,
    /// The server's current copy, when the response carried it.
    pub server_item: Option<Item>,
    /// The server version the local edit started from, when known.
    pub base_item: Option<Item>,
}

/// What to do about a conflict.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Leave it: the op stays queued (state `Failed`) and an error record is
    /// written for the app to resolve later.
    Fail,
    /// Stop the whole push with status `CancelledByOperation`; the op stays queued.
    AbortPush,
    /// Client wins: resend the local copy conditioned on the server's current version.
    KeepClient,
    /// Server wins: drop the op and store the server's copy locally.
    TakeServer,
    /// Store this item locally and send it conditioned on the server's current version.
    Merge(Item),
}

/// Decides conflicts during a push. Async because a handler may ask the user or
/// the network; object-safe so the engine holds an `Arc<dyn ConflictHandler>`.
#[async_trait]
pub trait ConflictHandler: Send + Sync + std::fmt::Debug {
    /// Decides one conflict. Called again if the resolution's retry conflicts again
    /// (a bounded number of times).
    async fn resolve(&self, conflict: &Conflict) -> Resolution;
}

/// The default: report the conflict, never resolve it silently. The op stays
/// queued and an [`OperationError`](crate::OperationError) is recorded.
#[derive(Debug, Clone, Copy, Default)]
pub struct FailOnConflict;

#[async_trait]
impl ConflictHandler for FailOnConflict {
    async fn resolve(&self, _conflict: &Conflict) -> Resolution {
        Resolution::Fail
    }
}

/// The local copy wins: it is resent conditioned on the server's version.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientWins;

#[async_trait]
impl ConflictHandler for ClientWins {
    async fn resolve(&self, conflict: &Conflict) -> Resolution {
        if conflict.server_item.is_some() {
            Resolution::KeepClient
        } else {
            Resolution::Fail
        }
    }
}

/// The server's copy wins: the op is dropped and the server's copy stored locally.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerWins;

#[async_trait]
impl ConflictHandler for ServerWins {
    async fn resolve(&self, conflict: &Conflict) -> Resolution {
        if conflict.server_item.is_some() {
            Resolution::TakeServer
        } else {
            Resolution::Fail
        }
    }
}

/// A three-way field merge. A field changed only locally keeps the local value,
/// a field changed only on the server takes the server's; a field changed on
/// both sides to different values is a real conflict, which is reported
/// ([`Resolution::Fail`]) unless a fallback is set. Without a base (an insert that
/// met an existing item) every differing field counts as changed on both sides.
#[derive(Debug, Clone, Copy, Default)]
pub struct MergeFields {
    fallback: Option<Fallback>,
}

/// What [`MergeFields`] does with fields changed on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The local value wins for those fields.
    PreferLocal,
    /// The server value wins for those fields.
    PreferServer,
}

impl MergeFields {
    /// Reports fields changed on both sides as a conflict.
    pub fn new() -> Self {
        Self { fallback: None }
    }

    /// Decides fields changed on both sides with `fallback` instead of failing.
    pub fn with_fallback(fallback: Fallback) -> Self {
        Self {
            fallback: Some(fallback),
        }
    }

    /// The merge itself: `Ok(merged)` or `Err(fields changed on both sides)`.
    /// System properties are taken from the server's copy.
    ///
    /// # Errors
    /// The names of the fields both sides changed, when there is no fallback.
    pub fn merge(
        &self,
        base: Option<&Item>,
        local: &Item,
        server: &Item,
    ) -> Result<Item, Vec<String>> {
        let mut merged = server.clone();
        let mut clashes = Vec::new();
        let names: BTreeSet<&String> = local
            .keys()
            .chain(server.keys())
            .chain(base.into_iter().flat_map(|b| b.keys()))
            .filter(|k| k.as_str() != ID && !is_system_property(k))
            .collect();
        for name in names {
            let l = local.get(name.as_str()).unwrap_or(&Value::Null);
            let s = server.get(name.as_str()).unwrap_or(&Value::Null);
            if l == s {
                continue;
            }
            let b = base.map(|b| b.get(name.as_str()).unwrap_or(&Value::Null));
            let pick_local = match b {
                Some(b) if b == s => true,  // only the client changed it
                Some(b) if b == l => false, // only the server changed it
                _ => match self.fallback {
                    Some(Fallback::PreferLocal) => true,
                    Some(Fallback::PreferServer) => false,
                    None => {
                        clashes.push(name.clone());
                        continue;
                    }
                },
            };
            if pick_local {
                merged.insert(name.clone(), l.clone());
            }
        }
        if clashes.is_empty() {
            Ok(merged)
        } else {
            Err(clashes)
        }
    }
}

#[async_trait]
impl ConflictHandler for MergeFields {
    async fn resolve(&self, conflict: &Conflict) -> Resolution {
        let (Some(local), Some(server)) = (&conflict.local_item, &conflict.server_item) else {
            return Resolution::Fail;
        };
        if conflict.operation.kind == crate::model::OpKind::Delete {
            // A delete has no fields to merge; let the app decide.
            return Resolution::Fail;
        }
        match self.merge(conflict.base_item.as_ref(), local, server) {
            Ok(merged) => Resolution::Merge(merged),
            Err(fields) => {
                tracing::debug!(table = %conflict.operation.table, id = %conflict.operation.item_id, ?fields, "fields changed on both sides");
                Resolution::Fail
            }
        }
    }
}

type BoxedResolve =
    dyn Fn(Conflict) -> Pin<Box<dyn Future<Output = Resolution> + Send>> + Send + Sync;

/// A handler made from an async closure: `FnHandler::new(|c| async move { … })`.
pub struct FnHandler {
    f: Box<BoxedResolve>,
}

impl FnHandler {
    /// Wraps a closure that receives an owned copy of the conflict.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(Conflict) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Resolution> + Send + 'static,
    {
        Self {
            f: Box::new(move |c| Box::pin(f(c))),
        }
    }

    /// Wraps a synchronous closure.
    pub fn sync<F>(f: F) -> Self
    where
        F: Fn(&Conflict) -> Resolution + Send + Sync + 'static,
    {
        Self::new(move |c| std::future::ready(f(&c)))
    }
}

impl std::fmt::Debug for FnHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnHandler")
    }
}

#[async_trait]
impl ConflictHandler for FnHandler {
    async fn resolve(&self, conflict: &Conflict) -> Resolution {
        (self.f)(conflict.clone()).await
    }
}
