//! The one decide-and-write path. Every table write — v2 and v3, the single-item verbs and
//! each op of the batch extension — is described as a [`WriteOp`] and passes the same steps:
//!
//! 1. **authentication** (the caller, from the server's `Authenticator`) and
//!    **authorization** (the table's [`Guard`]: configured per-operation rules, then the
//!    app's `TablePolicy::authorize` without an item) — done by whoever read the request
//!    (`Ctx::new` for a single request, the batch for each op), before anything else;
//! 2. **table rules**: [`Guard::before_write`] (a client `userId` dropped, a tenant move
//!    refused, the app's `before_write`, scope columns stamped), and the [`Grant`] decides
//!    which rows the write may touch; an insert's item goes to the app's `authorize`;
//! 3. **schema check** (`schema_check`): the sent properties against the table's columns,
//!    as the write transaction sees them; a dynamic table's new columns are added only by a
//!    write that commits;
//! 4. **preconditions**: the row must exist in the caller's grant (404) and pass the app's
//!    `authorize` for it (403/400), not be a tombstone
//!    where the protocol forbids it (404 in v2, 410 in v3 and the batch), and `If-Match`,
//!    `If-None-Match`, `If-Unmodified-Since` or a v2 body `version` must hold (412 / 409); an
//!    insert must not hit an existing id (409, or 400 outside the caller's scope);
//! 5. **stamping and storing**, by the store, in the same transaction as steps 3–4 (the
//!    [`Decide`] built by [`prepare`] runs there);
//! 6. the app's `TablePolicy::after_commit` once the write committed (a failure is logged).
//!
//! The handlers only read their request into a [`WriteOp`] and shape the answer.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use tidesync_protocol::{ETag, Item};
use time::OffsetDateTime;

use super::AppState;
use super::context::{Ctx, date_header, etag_header, etag_matches};
use super::response::ItemResponse;
use super::schema_check;
use crate::config::{SchemaConfig, TableConfig};
use crate::error::ServerError;
use crate::policy::{Caller, Grant, Guard, Operation, PolicyError};
use crate::store::{Decide, Mutation, Refusal, Row, TableSchema, Written};

/// What a write does with the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    /// Create the row (`POST`, a batch insert).
    Insert,
    /// Merge the sent properties into the row (v2 `PATCH`, a batch update).
    Merge,
    /// Replace the row's properties (v3 `PUT`).
    Replace,
    /// Delete the row (a tombstone on soft-delete tables).
    Delete,
    /// Clear the row's tombstone (v2 `POST /tables/{table}/{id}`).
    Undelete,
}

impl Verb {
    /// The operation a table policy authorizes.
    pub(crate) fn operation(self) -> Operation {
        match self {
            Verb::Insert => Operation::Insert,
            Verb::Merge | Verb::Replace | Verb::Undelete => Operation::Update,
            Verb::Delete => Operation::Delete,
        }
    }

    fn sends_item(self) -> bool {
        matches!(self, Verb::Insert | Verb::Merge | Verb::Replace)
    }
}

/// How a write treats a soft-deleted row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tombstones {
    /// As if it did not exist: 404 (v2).
    NotFound,
    /// 410 Gone (v3, the batch).
    Gone,
    /// It may be written (v3 with include-deleted, undelete).
    Writable,
}

/// The conditions a write states on the row it changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Conditions {
    /// `If-Match` (or a batch op's `ifMatch`).
    pub(crate) if_match: Option<ETag>,
    /// `If-None-Match` (v3).
    pub(crate) if_none_match: Option<ETag>,
    /// `If-Unmodified-Since` (v3; ignored when `If-Match` is given).
    pub(crate) if_unmodified_since: Option<OffsetDateTime>,
    /// The `version` a v2 `PATCH` body names: a mismatch is a conflict (409) when there is no
    /// `If-Match`.
    pub(crate) body_version: Option<String>,
}

impl Conditions {
    /// The three conditional headers (v3).
    pub(crate) fn from_headers(headers: &HeaderMap) -> Conditions {
        Conditions {
            if_match: etag_header(headers, header::IF_MATCH),
            if_none_match: etag_header(headers, header::IF_NONE_MATCH),
            if_unmodified_since: date_header(headers, header::IF_UNMODIFIED_SINCE),
            body_version: None,
        }
    }

    /// `If-Match` only (v2 honours no other conditional header).
    pub(crate) fn if_match(headers: &HeaderMap) -> Conditions {
        Conditions {
            if_match: etag_header(headers, header::IF_MATCH),
            ..Conditions::default()
        }
    }

    /// 412 (or 409 for a body version) with the stored row when a condition fails.
    fn check(&self, row: &Row) -> Result<(), Refusal> {
        let failed = match (&self.if_match, &self.if_none_match) {
            (Some(tag), _) if !etag_matches(tag, row) => true,
            (_, Some(tag)) if etag_matches(tag, row) => true,
            (None, _) => self
                .if_unmodified_since
                .is_some_and(|since| row.updated_at_ms / 1000 > since.unix_timestamp()),
            _ => false,
        };
        if failed {
            return Err(Refusal::PreconditionFailed(Box::new(row.clone())));
        }
        if self.if_match.is_none() {
            if let Some(expected) = &self.body_version {
                if *expected != row.version_text() {
                    return Err(Refusal::Conflict(Box::new(row.clone())));
                }
            }
        }
        Ok(())
    }
}

/// One write, as read from its request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WriteOp {
    /// What to do.
    pub(crate) verb: Verb,
    /// The item id.
    pub(crate) id: String,
    /// The sent user properties (no system properties); empty for deletes and undeletes.
    pub(crate) item: Item,
    /// The soft-delete flag a v3 `PUT` sends (kept only on soft-delete tables).
    pub(crate) deleted: bool,
    /// The conditions on the stored row.
    pub(crate) conditions: Conditions,
    /// How a tombstone answers.
    pub(crate) tombstones: Tombstones,
}

impl WriteOp {
    /// A write of `verb` on `id` with no item, conditions or flags yet.
    pub(crate) fn new(verb: Verb, id: impl Into<String>, tombstones: Tombstones) -> WriteOp {
        WriteOp {
            verb,
            id: id.into(),
            item: Item::new(),
            deleted: false,
            conditions: Conditions::default(),
            tombstones,
        }
    }
}

/// Steps 2–4 for an authorized `op`: the table policy's changes to the item, then the
/// decision the store runs in its transaction (schema check and preconditions).
///
/// # Errors
///
/// The policy's refusal.
pub(crate) fn prepare(
    state: &AppState,
    table: &TableConfig,
    guard: &Arc<Guard>,
    caller: &Caller,
    op: WriteOp,
) -> Result<Decide, ServerError> {
    let mut op = op;
    let operation = op.verb.operation();
    let grant = guard.grant(caller, operation)?;
    if op.verb.sends_item() {
        guard.before_write(caller, operation, &grant, &mut op.item)?;
    }
    if op.verb == Verb::Insert {
        guard.authorize_item(caller, operation, &op.item)?;
    }
    let rules = Rules {
        grant,
        guard: Arc::clone(guard),
        caller: caller.clone(),
        protected: guard.protected_columns(),
        soft_delete: table.soft_delete,
        limits: state.schema,
    };
    Ok(Box::new(move |existing, schema| {
        decide(&op, &rules, existing, schema)
    }))
}

/// What a decision knows besides the op: the caller, their grant, the table's rules and
/// settings.
#[derive(Debug, Clone)]
struct Rules {
    grant: Grant,
    guard: Arc<Guard>,
    caller: Caller,
    /// Columns a replacement keeps from the stored row when it does not send them.
    protected: Vec<String>,
    soft_delete: bool,
    limits: SchemaConfig,
}

/// The whole path for one single-item request whose caller `ctx` has authorized: returns
/// what was written.
///
/// # Errors
///
/// The refusal of any step, as the API answers it.
pub(crate) async fn apply(ctx: &Ctx, op: WriteOp) -> Result<Written, ServerError> {
    let operation = op.verb.operation();
    let id = op.id.clone();
    let decide = prepare(&ctx.state, &ctx.table, &ctx.guard, &ctx.caller, op)?;
    let written = ctx
        .state
        .store
        .write(&ctx.table.name, &id, decide)
        .await?
        .map_err(|refusal| refused(refusal, ctx.table.soft_delete))?;
    ctx.state.metrics.add_ops(1);
    ctx.guard.after_commit(
        &ctx.caller,
        operation,
        written_row(&written),
        ctx.table.soft_delete,
    );
    Ok(written)
}

/// A refusal of a write's decision as the API answers it: 409 and 412 carry the stored item
/// (shaped for a table with or without soft delete).
pub(crate) fn refused(refusal: Refusal, soft_delete: bool) -> ServerError {
    match refusal {
        Refusal::NotFound => ServerError::NotFound,
        Refusal::Gone => ServerError::Gone,
        Refusal::Conflict(row) => ServerError::Conflict {
            item: Box::new(ItemResponse::from_row(&row, soft_delete)),
        },
        Refusal::PreconditionFailed(row) => ServerError::PreconditionFailed {
            item: Box::new(ItemResponse::from_row(&row, soft_delete)),
        },
        Refusal::IdNotAvailable => ServerError::IdNotAvailable,
        Refusal::Invalid { message } => ServerError::BadRequest { message },
        Refusal::Forbidden { message } => ServerError::Forbidden { message },
    }
}

/// The row a write stored (or, for a hard delete, the row as it was).
pub(crate) fn written_row(written: &Written) -> &Row {
    match written {
        Written::Stored(row) | Written::Removed(row) => row,
    }
}

/// Steps 3–4, inside the store's transaction.
fn decide(
    op: &WriteOp,
    rules: &Rules,
    existing: Option<&Row>,
    schema: &TableSchema,
) -> Result<Mutation, Refusal> {
    let soft_delete = rules.soft_delete;
    let checked = if op.verb.sends_item() {
        schema_check::check(schema, op.item.clone(), &rules.limits)?
    } else {
        schema_check::Checked::default()
    };
    let visible = |row: &&Row| rules.grant.admits(row);
    let row = match (op.verb, existing) {
        (Verb::Insert, None) => {
            return Ok(Mutation::Put {
                values: checked.values,
                deleted: false,
                new_columns: checked.new_columns,
            });
        }
        (Verb::Insert, Some(row)) if !visible(&row) => return Err(Refusal::IdNotAvailable),
        (Verb::Insert, Some(row)) => return Err(Refusal::Conflict(Box::new(row.clone()))),
        (_, existing) => existing.filter(visible).ok_or(Refusal::NotFound)?,
    };
    if row.deleted {
        match op.tombstones {
            Tombstones::NotFound => return Err(Refusal::NotFound),
            Tombstones::Gone => return Err(Refusal::Gone),
            Tombstones::Writable => {}
        }
    }
    rules
        .guard
        .authorize_item(
            &rules.caller,
            op.verb.operation(),
            &row.to_item(soft_delete),
        )
        .map_err(|error| match error {
            PolicyError::Invalid(message) => Refusal::Invalid { message },
            PolicyError::Forbidden(message) => Refusal::Forbidden { message },
        })?;
    op.conditions.check(row)?;
    Ok(match op.verb {
        // An insert returned above.
        Verb::Insert | Verb::Merge => {
            let mut values = row.values.clone();
            values.extend(checked.values);
            Mutation::Put {
                values,
                deleted: false,
                new_columns: checked.new_columns,
            }
        }
        Verb::Replace => {
            let mut values = checked.values;
            for column in &rules.protected {
                if !values.contains_key(column) {
                    if let Some(kept) = row.values.get(column) {
                        values.insert(column.clone(), kept.clone());
                    }
                }
            }
            Mutation::Put {
                values,
                deleted: op.deleted && soft_delete,
                new_columns: checked.new_columns,
            }
        }
        Verb::Delete if soft_delete => Mutation::Put {
            values: row.values.clone(),
            deleted: true,
            new_columns: Vec::new(),
        },
        Verb::Delete => Mutation::Remove,
        Verb::Undelete => Mutation::Put {
            values: row.values.clone(),
            deleted: false,
            new_columns: Vec::new(),
        },
    })
}
