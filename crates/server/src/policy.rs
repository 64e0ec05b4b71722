//! The table policy: who may do what to a table, which rows a caller sees, and what the
//! server stamps on a write. This is the seam where per-table rules plug in; the one
//! decide-and-write path (`http::write`) and every read path ask it, so a rule lives here once.
//!
//! Today the only policy is [`AccessPolicy`], the three access modes of the configuration
//! (`anonymous`, `authenticated`, `owner`). Custom policies (per-operation access, roles,
//! tenant scopes, app hooks) implement [`TablePolicy`] and are looked up by
//! `AppState::policy`.

use std::fmt::Debug;

use serde_json::Value;
use tidesync_protocol::Item;

use crate::auth::User;
use crate::config::{Access, TableConfig};
use crate::error::ServerError;
use crate::store::{OWNER_COLUMN, Row, RowScope};

/// What a request does to a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    /// Reads rows (queries, single reads, snapshots, the change feed).
    Read,
    /// Creates a row.
    Insert,
    /// Changes a row (v2 `PATCH`, v3 `PUT`, undelete, a batch update).
    Update,
    /// Deletes a row (a tombstone on soft-delete tables).
    Delete,
}

/// Who is asking: the authenticated user, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The verified token's user; `None` for an anonymous request.
    pub(crate) user: Option<User>,
}

impl Caller {
    /// A caller with `user` (or none).
    pub(crate) fn new(user: Option<User>) -> Caller {
        Caller { user }
    }
}

/// The rules of one table. Every method is called by the shared paths at the point its
/// name says; none may block.
///
/// - [`TablePolicy::authorize`] runs first, before anything is read (401/403 come from here);
/// - [`TablePolicy::scope`] restricts reads (a filter the store adds) and the rows a write
///   may touch (a row outside it is "not found");
/// - [`TablePolicy::before_write`] may change or refuse the sent item, before the schema
///   check and the preconditions;
/// - [`TablePolicy::after_commit`] sees each committed write; it cannot undo it.
pub(crate) trait TablePolicy: Send + Sync + Debug {
    /// Whether `caller` may do `operation` on this table at all.
    ///
    /// # Errors
    ///
    /// The refusal to answer with (e.g. [`ServerError::Unauthenticated`]).
    fn authorize(&self, caller: &Caller, operation: Operation) -> Result<(), ServerError>;

    /// The rows `caller` may see and change; `None` for every row.
    fn scope(&self, caller: &Caller) -> Option<RowScope>;

    /// Prepares the item a write sends (its user properties): stamps server-side fields,
    /// drops ones the caller may not set, or refuses the write.
    ///
    /// # Errors
    ///
    /// The refusal to answer with.
    fn before_write(
        &self,
        caller: &Caller,
        operation: Operation,
        item: &mut Item,
    ) -> Result<(), ServerError>;

    /// Called once a write committed, with the row as stored (or as it was, for a hard
    /// delete).
    fn after_commit(&self, caller: &Caller, operation: Operation, row: &Row) {
        let _ = (caller, operation, row);
    }
}

/// The access modes of the configuration: anonymous tables need no user, authenticated and
/// owner tables need one, and on owner tables each user sees and changes only the rows whose
/// `userId` is their token's `sub` (the server stamps it; a client-sent `userId` is dropped on
/// every table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AccessPolicy {
    access: Access,
}

impl AccessPolicy {
    /// The policy of `table`'s access mode.
    pub(crate) fn new(table: &TableConfig) -> AccessPolicy {
        AccessPolicy {
            access: table.access,
        }
    }
}

impl TablePolicy for AccessPolicy {
    fn authorize(&self, caller: &Caller, _operation: Operation) -> Result<(), ServerError> {
        if self.access != Access::Anonymous && caller.user.is_none() {
            return Err(ServerError::Unauthenticated);
        }
        Ok(())
    }

    fn scope(&self, caller: &Caller) -> Option<RowScope> {
        match (self.access, &caller.user) {
            (Access::Owner, Some(user)) => Some(RowScope::owner(&user.id)),
            _ => None,
        }
    }

    fn before_write(
        &self,
        caller: &Caller,
        _operation: Operation,
        item: &mut Item,
    ) -> Result<(), ServerError> {
        let sent: Vec<String> = item
            .keys()
            .filter(|k| k.eq_ignore_ascii_case(OWNER_COLUMN))
            .cloned()
            .collect();
        for key in sent {
            item.remove(&key);
        }
        if let Some(scope) = self.scope(caller) {
            item.insert(scope.column, Value::String(scope.value));
        }
        Ok(())
    }
}
