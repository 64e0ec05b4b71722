//! The server model: tables of rows, the write clock, the version counter, and what each
//! call does to them. Everything here is synchronous and runs under the server's one lock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tidesync_core::{Page, ReadRequest, TransportError};
use tidesync_protocol::odata::OrderBy;
use tidesync_protocol::system::{self, strip_system_properties};
use tidesync_protocol::version::{ETag, encode_version, parse_etag};
use tidesync_protocol::{Item, ItemExt, format_timestamp, ids, run_query};
use time::OffsetDateTime;
use time::macros::datetime;

use crate::calls::CallSlot;
use crate::faults::FaultState;
use crate::feed::FeedState;
use crate::gate::GateShared;
use crate::{Clock, TableOptions};

/// Where the [`Clock::Auto`] clock starts: the first write is stamped with this instant.
pub(crate) const AUTO_CLOCK_START: OffsetDateTime = datetime!(2026-01-01 0:00 UTC);

/// The page limit a new server starts with (the v2 Node default page size).
pub(crate) const DEFAULT_PAGE_LIMIT: usize = 50;

/// Everything a server holds, behind its one mutex.
pub(crate) struct State {
    pub(crate) tables: BTreeMap<String, Table>,
    pub(crate) clock: Clock,
    /// The last stamp handed out, truncated to milliseconds.
    last_stamp: Option<OffsetDateTime>,
    /// The last version counter handed out.
    version_counter: u64,
    pub(crate) page_limit: Option<usize>,
    pub(crate) batch_support: bool,
    /// The call log in arrival order, in-flight calls included.
    pub(crate) calls: Vec<CallSlot>,
    /// The sequence number of the next call to arrive.
    pub(crate) next_call_seq: u64,
    pub(crate) faults: FaultState,
    /// Batch ops that were applied, by op id, with the item they answered (none for deletes),
    /// so that a retried op gets the same answer and is not applied twice.
    pub(crate) applied_ops: HashMap<String, Option<Item>>,
    /// Gates waiting for the next writes, oldest first.
    pub(crate) gates: VecDeque<Arc<GateShared>>,
    /// The change feed's subscribers.
    pub(crate) feed: FeedState,
}

/// One table: its options and its rows by id (soft-deleted rows included).
pub(crate) struct Table {
    pub(crate) options: TableOptions,
    pub(crate) rows: BTreeMap<String, Item>,
}

/// The system values of one write.
struct Stamp {
    updated_at: String,
    version: String,
}

impl State {
    pub(crate) fn new(seed: u64) -> State {
        State {
            tables: BTreeMap::new(),
            clock: Clock::Auto,
            last_stamp: None,
            version_counter: 0,
            page_limit: Some(DEFAULT_PAGE_LIMIT),
            batch_support: false,
            calls: Vec::new(),
            next_call_seq: 0,
            faults: FaultState::new(seed),
            applied_ops: HashMap::new(),
            gates: VecDeque::new(),
            feed: FeedState::default(),
        }
    }

    /// Adds a table, or changes the options of an existing one (keeping its rows).
    pub(crate) fn add_table(&mut self, name: &str, options: TableOptions) {
        self.tables
            .entry(name.to_owned())
            .and_modify(|table| table.options = options)
            .or_insert_with(|| Table {
                options,
                rows: BTreeMap::new(),
            });
    }

    /// The stamp for the next write: a new version, and `updatedAt` from the clock.
    fn stamp(&mut self) -> Stamp {
        self.version_counter += 1;
        let at = match self.clock {
            Clock::Fixed(at) => truncate_to_millis(at),
            Clock::Auto => match self.last_stamp {
                None => AUTO_CLOCK_START,
                Some(last) => {
                    let next = last.saturating_add(time::Duration::MILLISECOND);
                    next.max(AUTO_CLOCK_START)
                }
            },
        };
        self.last_stamp = Some(self.last_stamp.map_or(at, |last| last.max(at)));
        Stamp {
            updated_at: format_timestamp(at),
            version: encode_version(self.version_counter),
        }
    }

    /// Moves the automatic clock forward: the next write is stamped at least `by` later
    /// than the last one.
    pub(crate) fn advance_clock(&mut self, by: Duration) {
        let by = time::Duration::try_from(by).unwrap_or(time::Duration::MAX);
        let base = self
            .last_stamp
            .unwrap_or(AUTO_CLOCK_START - time::Duration::MILLISECOND);
        self.last_stamp = Some(truncate_to_millis(base.saturating_add(by)));
    }

    fn table(&self, name: &str) -> Result<&Table, TransportError> {
        self.tables.get(name).ok_or_else(|| unknown_table(name))
    }

    fn table_mut(&mut self, name: &str) -> Result<&mut Table, TransportError> {
        self.tables.get_mut(name).ok_or_else(|| unknown_table(name))
    }

    /// A page of a table, as `GET /tables/{table}` would answer it.
    pub(crate) fn read(&self, request: &ReadRequest) -> Result<Page, TransportError> {
        let table = self.table(&request.table)?;
        let rows = table
            .rows
            .values()
            .filter(|row| request.include_deleted || !row.is_deleted())
            .cloned();
        select_page(rows, &request.query, self.page_limit)
    }

    /// `POST /tables/{table}`: create, or 409 with the stored item when the id exists.
    pub(crate) fn insert(&mut self, table: &str, body: &Item) -> Result<Item, TransportError> {
        let soft_delete = self.table(table)?.options.soft_delete;
        let id = match body.get(system::ID) {
            None | Some(Value::Null) => ids::new_server_id(),
            Some(Value::String(id)) => {
                ids::validate_id(id).map_err(|e| bad_request(&e.to_string()))?;
                id.clone()
            }
            Some(_) => return Err(bad_request("the item id must be a string")),
        };
        if let Some(stored) = self.table(table)?.rows.get(&id) {
            return Err(conflict(409, stored));
        }
        let stamp = self.stamp();
        let mut row = body.clone();
        strip_system_properties(&mut row, false);
        row.insert(system::ID.to_owned(), Value::String(id.clone()));
        row.insert(
            system::CREATED_AT.to_owned(),
            Value::String(stamp.updated_at.clone()),
        );
        set_system(&mut row, stamp, soft_delete.then_some(false));
        self.table_mut(table)?.rows.insert(id, row.clone());
        self.announce(table, &row);
        Ok(row)
    }

    /// `PUT /tables/{table}/{id}`: a full replace of the user properties, conditional on
    /// `if_match`.
    pub(crate) fn replace(
        &mut self,
        table: &str,
        body: &Item,
        if_match: Option<&str>,
    ) -> Result<Item, TransportError> {
        let soft_delete = self.table(table)?.options.soft_delete;
        let id = match body.get(system::ID) {
            Some(Value::String(id)) => id.clone(),
            _ => return Err(bad_request("the item to replace has no string id")),
        };
        let stored = match self.table(table)?.rows.get(&id) {
            Some(stored) if !stored.is_deleted() => stored,
            _ => return Err(not_found()),
        };
        if !precondition_holds(if_match, stored) {
            return Err(conflict(412, stored));
        }
        let created_at = stored.get(system::CREATED_AT).cloned();
        let stamp = self.stamp();
        let mut row = body.clone();
        strip_system_properties(&mut row, false);
        if let Some(created_at) = created_at {
            row.insert(system::CREATED_AT.to_owned(), created_at);
        }
        set_system(&mut row, stamp, soft_delete.then_some(false));
        self.table_mut(table)?.rows.insert(id, row.clone());
        self.announce(table, &row);
        Ok(row)
    }

    /// `DELETE /tables/{table}/{id}`: a missing or already deleted item is a success.
    pub(crate) fn delete(
        &mut self,
        table: &str,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), TransportError> {
        let stored = match self.table(table)?.rows.get(id) {
            Some(stored) if !stored.is_deleted() => stored,
            _ => return Ok(()),
        };
        if !precondition_holds(if_match, stored) {
            return Err(conflict(412, stored));
        }
        self.remove_row(table, id)
    }

    /// Soft-deletes (bumping version and `updatedAt`) or removes a live row.
    fn remove_row(&mut self, table: &str, id: &str) -> Result<(), TransportError> {
        if self.table(table)?.options.soft_delete {
            let stamp = self.stamp();
            if let Some(row) = self.table_mut(table)?.rows.get_mut(id) {
                set_system(row, stamp, Some(true));
                let row = row.clone();
                self.announce(table, &row);
            }
        } else {
            self.table_mut(table)?.rows.remove(id);
            self.feed.publish(table, None, id);
        }
        Ok(())
    }

    /// A write by "another client": insert, or overwrite an existing row (undeleting it).
    pub(crate) fn server_insert(&mut self, table: &str, mut item: Item) -> Item {
        let soft_delete = self.ensure_table(table).options.soft_delete;
        let id = match item.get(system::ID) {
            Some(Value::String(id)) => id.clone(),
            _ => ids::new_server_id(),
        };
        let stamp = self.stamp();
        strip_system_properties(&mut item, false);
        item.insert(system::ID.to_owned(), Value::String(id.clone()));
        item.insert(
            system::CREATED_AT.to_owned(),
            Value::String(stamp.updated_at.clone()),
        );
        set_system(&mut item, stamp, soft_delete.then_some(false));
        self.ensure_table(table).rows.insert(id, item.clone());
        self.announce(table, &item);
        item
    }

    /// A write by "another client": merges the user properties of `item` into the stored
    /// row (inserting it when missing); the deleted flag is kept.
    pub(crate) fn server_update(&mut self, table: &str, mut item: Item) -> Item {
        let existing = item
            .id()
            .and_then(|id| self.ensure_table(table).rows.get(id))
            .cloned();
        let Some(mut row) = existing else {
            return self.server_insert(table, item);
        };
        strip_system_properties(&mut item, false);
        row.extend(item);
        let deleted = self
            .ensure_table(table)
            .options
            .soft_delete
            .then(|| row.is_deleted());
        let stamp = self.stamp();
        set_system(&mut row, stamp, deleted);
        if let Some(id) = row.id().map(str::to_owned) {
            self.ensure_table(table).rows.insert(id, row.clone());
        }
        self.announce(table, &row);
        row
    }

    /// A delete by "another client"; a missing or already deleted row is left alone.
    pub(crate) fn server_delete(&mut self, table: &str, id: &str) {
        let live = self
            .tables
            .get(table)
            .and_then(|t| t.rows.get(id))
            .is_some_and(|row| !row.is_deleted());
        if live {
            let _ = self.remove_row(table, id);
        }
    }

    /// Tells the change feed that `row` of `table` was written.
    fn announce(&mut self, table: &str, row: &Item) {
        let updated_at = row.get(system::UPDATED_AT).and_then(Value::as_str);
        if let Some(id) = row.id() {
            self.feed.publish(table, updated_at, id);
        }
    }

    fn ensure_table(&mut self, name: &str) -> &mut Table {
        self.tables.entry(name.to_owned()).or_insert_with(|| Table {
            options: TableOptions::default(),
            rows: BTreeMap::new(),
        })
    }
}

/// Filters, orders (with the `id` tiebreak), counts and pages `rows`, then applies
/// `$select`. `has_more` is exact: true when rows within the request's `$top` remain after
/// this page.
fn select_page(
    rows: impl Iterator<Item = Item>,
    query: &tidesync_protocol::Query,
    page_limit: Option<usize>,
) -> Result<Page, TransportError> {
    let mut whole = query.clone();
    whole.skip = None;
    whole.top = None;
    whole.select = None;
    whole.count = true;
    if !whole.order_by.iter().any(|o| o.member == system::ID) {
        whole.order_by.push(OrderBy {
            member: system::ID.to_owned(),
            descending: false,
        });
    }
    let ordered = run_query(rows, &whole)
        .map_err(|e| bad_request(&format!("the query cannot be evaluated: {e}")))?
        .items;
    let total = ordered.len();
    let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let start = query.skip.map_or(0, to_usize).min(total);
    let end = match query.top {
        Some(top) => start.saturating_add(to_usize(top)).min(total),
        None => total,
    };
    let page_end = match page_limit {
        Some(limit) => start.saturating_add(limit).min(end),
        None => end,
    };
    let mut items: Vec<Item> = ordered
        .into_iter()
        .skip(start)
        .take(page_end - start)
        .collect();
    if let Some(names) = &query.select {
        items = items
            .into_iter()
            .map(|mut row| {
                names
                    .iter()
                    .filter_map(|name| row.remove_entry(name))
                    .collect()
            })
            .collect();
    }
    Ok(Page {
        items,
        has_more: Some(page_end < end),
        count: query
            .count
            .then(|| u64::try_from(total).unwrap_or(u64::MAX)),
        purged_before: None,
    })
}

/// Writes `updatedAt`, `version` and (when the table has soft delete) `deleted`.
fn set_system(row: &mut Item, stamp: Stamp, deleted: Option<bool>) {
    row.insert(
        system::UPDATED_AT.to_owned(),
        Value::String(stamp.updated_at),
    );
    row.insert(system::VERSION.to_owned(), Value::String(stamp.version));
    match deleted {
        Some(deleted) => row.insert(system::DELETED.to_owned(), Value::Bool(deleted)),
        None => row.remove(system::DELETED),
    };
}

/// True when a write conditional on `if_match` may go ahead on `stored`: no condition,
/// `*`, or the stored version. A weak tag never matches.
fn precondition_holds(if_match: Option<&str>, stored: &Item) -> bool {
    match if_match.map(parse_etag) {
        None | Some(ETag::Any) => true,
        Some(ETag::Weak(_)) => false,
        Some(ETag::Strong(version)) => stored.version() == Some(version.as_str()),
    }
}

fn truncate_to_millis(at: OffsetDateTime) -> OffsetDateTime {
    let millis = at.nanosecond() / 1_000_000 * 1_000_000;
    at.replace_nanosecond(millis).unwrap_or(at)
}

fn error_body(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

pub(crate) fn unknown_table(table: &str) -> TransportError {
    let message = format!("table {table} does not exist");
    TransportError::Http {
        status: 404,
        raw: Some(error_body(&message)),
        message,
    }
}

pub(crate) fn bad_request(message: &str) -> TransportError {
    TransportError::Http {
        status: 400,
        message: message.to_owned(),
        raw: Some(error_body(message)),
    }
}

fn not_found() -> TransportError {
    TransportError::NotFound {
        status: 404,
        raw: Some(error_body("The item does not exist")),
    }
}

fn conflict(status: u16, stored: &Item) -> TransportError {
    TransportError::Conflict {
        status,
        server_item: Some(stored.clone()),
        raw: serde_json::to_string(stored).ok(),
    }
}
