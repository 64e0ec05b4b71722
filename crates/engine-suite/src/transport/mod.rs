//! The transport conformance suite: the same cases, through the public
//! [`Transport`] API, against every server a transport talks to.
//!
//! A crate's test file implements [`Target`] (start a fresh server with the suite's
//! tables, connect a transport to it) and expands the suite with
//! [`transport_conformance!`](crate::transport_conformance), one `#[test]` per case of
//! [`cases`]. Servers legitimately differ in what they offer (the official Node server
//! has no batch extension, and its clock cannot be pinned): a case that needs more than
//! the plain table API declares it ([`Capabilities`]) and, on a target without it, says
//! so on stderr and passes. Everything else is asserted alike for every target, so the
//! mock transport is held to the real servers.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tidesync_core::{Page, ReadRequest, Transport};
use tidesync_protocol::Item;
use tidesync_protocol::odata::Query;

pub mod cases;

/// The table every case works on: columns `text` (string), `n` (number), `done`
/// (boolean), soft delete on.
pub const TABLE: &str = "Conformance";

/// What a target offers beyond the plain table API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The tidesync batch extension (`Transport::batch`).
    pub batch: bool,
    /// The server's clock can be pinned ([`Setup::fixed_clock`]), so rows share one
    /// `updatedAt`.
    pub fixed_clock: bool,
}

/// A capability a case needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// [`Capabilities::batch`].
    Batch,
    /// [`Capabilities::fixed_clock`].
    FixedClock,
}

/// What a case asks of the server it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    /// The most rows the server answers in one page.
    pub page_size: u64,
    /// Stamp every write with one `updatedAt` (only asked where
    /// [`Capabilities::fixed_clock`] is set).
    pub fixed_clock: bool,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            page_size: 50,
            fixed_clock: false,
        }
    }
}

/// A transport connected to a fresh server, and whatever keeps that server running.
pub struct Connection {
    /// The transport under test.
    pub transport: Arc<dyn Transport>,
    /// Dropped when the case ends (a server handle, a temporary directory, a child process).
    pub keep: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

/// A server (kind) the suite runs against.
#[async_trait]
pub trait Target: Send + Sync {
    /// A short name for messages (`"mock"`, `"tidesync-server v3"`, `"official v2"`).
    fn name(&self) -> String;

    /// What the target offers.
    fn capabilities(&self) -> Capabilities;

    /// Starts a fresh, empty server holding [`TABLE`], set up as `setup` says, and
    /// connects a transport to it. `None` when the target cannot run here (e.g. no
    /// Node.js outside CI): the target has printed why, and the case passes.
    async fn start(&self, setup: &Setup) -> Option<Connection>;
}

/// Runs one case on a fresh multi-threaded runtime (the expansion of
/// [`transport_conformance!`](crate::transport_conformance) calls this).
pub fn run<F: Future<Output = ()>>(case: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(case);
}

/// Starts `target` for a case, or `None` (with a message) when the target cannot run
/// here or lacks a capability the case `needs`.
pub async fn start(
    target: &dyn Target,
    case: &str,
    needs: &[Needs],
    setup: &Setup,
) -> Option<Connection> {
    let caps = target.capabilities();
    for need in needs {
        let has = match need {
            Needs::Batch => caps.batch,
            Needs::FixedClock => caps.fixed_clock,
        };
        if !has {
            eprintln!(
                "skipping {case} on {}: it needs {need:?}, which this target does not offer",
                target.name()
            );
            return None;
        }
    }
    target.start(setup).await
}

/// An item from a JSON object.
///
/// # Panics
/// When `value` is not an object.
pub fn item(value: Value) -> Item {
    match value {
        Value::Object(item) => item,
        other => panic!("not an object: {other}"),
    }
}

/// A read of [`TABLE`].
pub fn read_request(query: Query, include_deleted: bool) -> ReadRequest {
    ReadRequest {
        table: TABLE.to_owned(),
        query,
        include_deleted,
    }
}

/// The ids of a page, in order.
pub fn ids(page: &Page) -> Vec<String> {
    page.items
        .iter()
        .map(|item| item["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Expands the transport conformance suite into one `#[test]` per case, each running
/// against `$target` (an expression of a type implementing
/// [`Target`](crate::transport::Target)).
///
/// ```ignore
/// tidesync_engine_suite::transport_conformance!(MockTarget);
/// ```
#[macro_export]
macro_rules! transport_conformance {
    ($target:expr) => {
        $crate::transport_conformance!(@cases $target;
            insert_returns_the_server_copy,
            insert_of_an_existing_id_is_a_409_conflict_with_an_item,
            insert_without_an_id_gets_one_from_the_server,
            replace_with_the_current_version_makes_a_new_version,
            replace_with_a_stale_version_is_a_412_with_the_server_copy,
            replace_without_a_version_is_unconditional,
            replace_of_a_missing_item_is_not_found,
            replace_of_a_deleted_item_is_not_found,
            delete_leaves_a_tombstone_only_deleted_reads_see,
            delete_with_a_stale_version_is_a_412_with_the_server_copy,
            delete_of_a_missing_item_succeeds,
            reads_filter_order_skip_top_and_count,
            filters_compare_strings_numbers_and_booleans,
            select_returns_the_named_members,
            a_page_cut_by_the_server_says_more_follow,
            incremental_read_after_a_keyset_cursor_sees_changes_and_tombstones,
            tied_stamps_are_paged_by_id,
            reading_an_unknown_table_is_a_404,
            batch_applies_each_op_with_its_own_outcome,
            a_retried_batch_is_applied_once,
            system_properties_from_the_client_are_the_servers_business,
            ids_with_spaces_and_unicode_round_trip,
            insert_over_a_tombstone_is_a_409_conflict,
            a_second_delete_succeeds_and_changes_nothing,
            a_conditional_replace_of_a_missing_item_creates_nothing,
        );
    };
    (@cases $target:expr; $($case:ident,)*) => {
        $(
            #[test]
            fn $case() {
                $crate::transport::run($crate::transport::cases::$case(&$target));
            }
        )*
    };
}
