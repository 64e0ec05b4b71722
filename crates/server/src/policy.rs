//! The table rules: who may do what to a table, which rows a caller sees, and what the
//! server stamps on a write. The one decide-and-write path (`http::write`) and every read
//! path (queries, item reads, snapshots, the change feed) ask a table's `Guard`, so a rule
//! lives here once.
//!
//! A guard has two layers, run in this order:
//!
//! 1. the **configured rules** (`Rules`): per-operation access (`access` and
//!    `[tables.operations]`: anonymous, authenticated, owner, `role:NAME`, disabled) and the
//!    tenant scope (`[tables.scope]`); owner mode is the scope `userId` = the token's `sub`;
//! 2. the app's **[`TablePolicy`]**, when one is registered with
//!    [`crate::ServerBuilder::policy`]: an extra read filter, item-level authorization, a
//!    hook before each write and one after each commit.

use std::fmt::Debug;
use std::sync::Arc;

use serde_json::Value;
use tidesync_protocol::Item;
use tidesync_protocol::odata::eval::matches;
use tidesync_protocol::odata::{Expr, col, lit};
use tidesync_protocol::system::take_any_case;

use crate::auth::User;
use crate::config::{Rule, TableConfig};
use crate::error::ServerError;
pub use crate::operation::Operation;
use crate::store::{OWNER_COLUMN, Row, RowScope};

/// Who is asking: the authenticated user, if any (what the [`crate::auth::Authenticator`]
/// found).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Caller {
    /// The signed-in user; `None` for an anonymous request.
    pub user: Option<User>,
}

impl Caller {
    /// A caller with `user` (or none).
    pub fn new(user: Option<User>) -> Caller {
        Caller { user }
    }
}

/// Why an app policy refuses: a bad item (400) or a caller without the right (403). The
/// message is sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The item is not acceptable: 400.
    #[error("{0}")]
    Invalid(String),
    /// The caller may not do this: 403.
    #[error("{0}")]
    Forbidden(String),
}

impl From<PolicyError> for ServerError {
    fn from(error: PolicyError) -> ServerError {
        match error {
            PolicyError::Invalid(message) => ServerError::BadRequest { message },
            PolicyError::Forbidden(message) => ServerError::Forbidden { message },
        }
    }
}

/// An app's rules for one table, registered with [`crate::ServerBuilder::policy`]. They run
/// after the configured rules (which have already admitted the caller), for every verb of
/// both protocols, each op of the batch extension, the snapshot and the change feed. Every
/// method has a default that allows everything; none may block (they run on the request's
/// task, and [`TablePolicy::authorize`] for writes inside the store's write transaction).
///
/// - [`TablePolicy::read_filter`]: an extra filter on the rows the caller may see *and*
///   change, per request (added to queries and snapshots in the database, checked on item
///   reads, writes and change feed events);
/// - [`TablePolicy::authorize`]: once per request with no item (may the caller do this at
///   all?), then per row: the row read, the item inserted, the stored row updated or deleted;
/// - [`TablePolicy::before_write`]: validates the sent item (400/403 with the app's message)
///   or stamps server-side fields, before the schema check;
/// - [`TablePolicy::after_commit`]: side effects once a write committed; a failure is
///   logged and never undoes the commit.
pub trait TablePolicy: Send + Sync + Debug {
    /// A filter (in the shared OData AST, e.g. built with `tidesync_protocol::odata::col`)
    /// that the rows `caller` may see and change must pass.
    ///
    /// # Errors
    ///
    /// A refusal of the whole request.
    fn read_filter(&self, caller: &Caller) -> Result<Option<Expr>, PolicyError> {
        let _ = caller;
        Ok(None)
    }

    /// Whether `caller` may do `operation` (`item: None`, asked once per request) and on
    /// this row (`item: Some`: the row read, the item to insert, the stored row to update or
    /// delete).
    ///
    /// # Errors
    ///
    /// The refusal to answer with.
    fn authorize(
        &self,
        caller: &Caller,
        operation: Operation,
        item: Option<&Item>,
    ) -> Result<(), PolicyError> {
        let _ = (caller, operation, item);
        Ok(())
    }

    /// Prepares the user properties an insert or update sends: stamps server-side fields or
    /// refuses the write. Scope columns (`userId`, the tenant column) are stamped after it.
    ///
    /// # Errors
    ///
    /// The refusal to answer with.
    fn before_write(
        &self,
        caller: &Caller,
        operation: Operation,
        item: &mut Item,
    ) -> Result<(), PolicyError> {
        let _ = (caller, operation, item);
        Ok(())
    }

    /// Called once a write committed, with the item as stored (as it was, for a hard
    /// delete). An error is logged; the write stays committed.
    ///
    /// # Errors
    ///
    /// A failed side effect (logged).
    fn after_commit(
        &self,
        caller: &Caller,
        operation: Operation,
        item: &Item,
    ) -> Result<(), PolicyError> {
        let _ = (caller, operation, item);
        Ok(())
    }
}

/// The configured rules of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rules {
    /// The rule of each operation, in [`Operation::ALL`] order.
    rules: [Rule; 4],
    /// `(column, claim)` of the tenant scope.
    scope: Option<(String, String)>,
    /// Whether rows carry `userId` (some operation is `owner`).
    owner_column: bool,
}

impl Rules {
    /// The rules `table` configures.
    pub(crate) fn new(table: &TableConfig) -> Rules {
        Rules {
            rules: Operation::ALL.map(|op| table.rule(op)),
            scope: table
                .scope
                .as_ref()
                .map(|s| (s.column.clone(), s.claim.clone())),
            owner_column: table.has_owner_column(),
        }
    }

    fn rule(&self, operation: Operation) -> &Rule {
        let at = Operation::ALL
            .iter()
            .position(|op| *op == operation)
            .unwrap_or(0);
        &self.rules[at]
    }

    /// 405 for a disabled operation, 401 without a user where one is needed, 403 for a
    /// user without the role or the tenant claim.
    fn authorize(&self, caller: &Caller, operation: Operation) -> Result<(), ServerError> {
        let rule = self.rule(operation);
        if *rule == Rule::Disabled {
            return Err(ServerError::OperationDisabled {
                operation: operation.as_str(),
            });
        }
        let needs_user = *rule != Rule::Anonymous || self.scope.is_some();
        let Some(user) = &caller.user else {
            return if needs_user {
                Err(ServerError::Unauthenticated)
            } else {
                Ok(())
            };
        };
        if let Rule::Role(role) = rule {
            if !user.has_role(role) {
                return Err(ServerError::forbidden(format!(
                    "the {} operation needs the role '{role}'",
                    operation.as_str()
                )));
            }
        }
        if let Some((_, claim)) = &self.scope {
            if user.claim_text(claim).is_none() {
                return Err(ServerError::forbidden(format!(
                    "this table is scoped by the token's '{claim}' claim, which it lacks"
                )));
            }
        }
        Ok(())
    }

    /// The scopes an authorized `operation` of `caller` is confined to: the tenant scope,
    /// and the owner's rows for an `owner` operation.
    fn scopes(&self, caller: &Caller, operation: Operation) -> Vec<RowScope> {
        let mut scopes = Vec::new();
        let Some(user) = &caller.user else {
            return scopes;
        };
        if let Some((column, claim)) = &self.scope {
            if let Some(value) = user.claim_text(claim) {
                scopes.push(RowScope {
                    column: column.clone(),
                    value,
                });
            }
        }
        if *self.rule(operation) == Rule::Owner {
            scopes.push(RowScope::owner(&user.id));
        }
        scopes
    }
}

/// What one caller may see and touch for one operation: row scopes (column = value) and the
/// app's filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Grant {
    pub(crate) scopes: Vec<RowScope>,
    pub(crate) filter: Option<Expr>,
}

impl Grant {
    /// Whether every row is visible.
    pub(crate) fn is_unrestricted(&self) -> bool {
        self.scopes.is_empty() && self.filter.is_none()
    }

    /// The restriction as one filter, for the store to add to a read.
    pub(crate) fn as_filter(&self) -> Option<Expr> {
        let mut parts = self
            .scopes
            .iter()
            .map(|scope| col(scope.column.as_str()).eq(lit(scope.value.as_str())))
            .chain(self.filter.clone());
        let first = parts.next()?;
        Some(parts.fold(first, Expr::and))
    }

    /// `client`'s filter restricted to this grant (an AST conjunction: no client text can
    /// escape it).
    pub(crate) fn restrict(&self, client: Option<Expr>) -> Option<Expr> {
        match (client, self.as_filter()) {
            (Some(client), Some(mine)) => Some(client.and(mine)),
            (client, mine) => client.or(mine),
        }
    }

    /// Whether `row` is visible.
    pub(crate) fn admits(&self, row: &Row) -> bool {
        self.scopes.iter().all(|scope| scope.admits(row))
            && self.filter.as_ref().is_none_or(|filter| {
                matches(filter, &row.to_item(true)).unwrap_or_else(|error| {
                    tracing::warn!(%error, "a policy read filter failed on a row; hidden");
                    false
                })
            })
    }
}

/// A table's rules: the configured ones, then the app's policy.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    rules: Rules,
    app: Option<Arc<dyn TablePolicy>>,
}

impl Guard {
    /// The guard of `table`, with the app's `policy` if one is registered.
    pub(crate) fn new(table: &TableConfig, app: Option<Arc<dyn TablePolicy>>) -> Guard {
        Guard {
            rules: Rules::new(table),
            app,
        }
    }

    /// Whether `caller` may do `operation` on this table at all: the configured rules, then
    /// the app's `authorize` without an item.
    pub(crate) fn authorize(
        &self,
        caller: &Caller,
        operation: Operation,
    ) -> Result<(), ServerError> {
        self.rules.authorize(caller, operation)?;
        if let Some(app) = &self.app {
            app.authorize(caller, operation, None)?;
        }
        Ok(())
    }

    /// The rows an authorized `operation` of `caller` may see or touch.
    pub(crate) fn grant(
        &self,
        caller: &Caller,
        operation: Operation,
    ) -> Result<Grant, ServerError> {
        let filter = match &self.app {
            Some(app) => app.read_filter(caller)?,
            None => None,
        };
        Ok(Grant {
            scopes: self.rules.scopes(caller, operation),
            filter,
        })
    }

    /// The app's verdict on one row or item.
    pub(crate) fn authorize_item(
        &self,
        caller: &Caller,
        operation: Operation,
        item: &Item,
    ) -> Result<(), PolicyError> {
        match &self.app {
            Some(app) => app.authorize(caller, operation, Some(item)),
            None => Ok(()),
        }
    }

    /// The columns a write may not change: `userId` on owner tables, the tenant column.
    pub(crate) fn protected_columns(&self) -> Vec<String> {
        let mut columns = Vec::new();
        if self.rules.owner_column {
            columns.push(OWNER_COLUMN.to_owned());
        }
        if let Some((column, _)) = &self.rules.scope {
            columns.push(column.clone());
        }
        columns
    }

    /// Prepares a sent item: a client-sent `userId` is dropped (every table); an update that
    /// names another tenant than the caller's is refused (403); the app's `before_write`
    /// runs; then the caller's scope values are stamped (an insert also gets `userId` on
    /// tables with an owner column).
    pub(crate) fn before_write(
        &self,
        caller: &Caller,
        operation: Operation,
        grant: &Grant,
        item: &mut Item,
    ) -> Result<(), ServerError> {
        take_any_case(item, OWNER_COLUMN);
        for scope in &grant.scopes {
            if scope.column == OWNER_COLUMN {
                continue;
            }
            let sent = take_any_case(item, &scope.column);
            let moves = sent
                .as_ref()
                .is_some_and(|value| value.as_str() != Some(scope.value.as_str()));
            if moves && operation != Operation::Insert {
                return Err(ServerError::forbidden(format!(
                    "a row cannot be moved to another {}",
                    scope.column
                )));
            }
        }
        if let Some(app) = &self.app {
            app.before_write(caller, operation, item)?;
        }
        for scope in &grant.scopes {
            take_any_case(item, &scope.column);
            item.insert(scope.column.clone(), Value::String(scope.value.clone()));
        }
        if operation == Operation::Insert && self.rules.owner_column {
            if let Some(user) = &caller.user {
                item.insert(OWNER_COLUMN.to_owned(), Value::String(user.id.clone()));
            }
        }
        Ok(())
    }

    /// Tells the app of a committed write; a failure is logged.
    pub(crate) fn after_commit(
        &self,
        caller: &Caller,
        operation: Operation,
        row: &Row,
        soft_delete: bool,
    ) {
        let Some(app) = &self.app else {
            return;
        };
        if let Err(error) = app.after_commit(caller, operation, &row.to_item(soft_delete)) {
            tracing::warn!(
                %error,
                operation = operation.as_str(),
                id = %row.id,
                "after_commit failed (the write stays committed)"
            );
        }
    }
}
