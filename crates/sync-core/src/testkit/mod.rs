//! Test support for [`LocalStore`] implementations: the store conformance suite
//! ([`cases`]), the [`StoreFactory`] a store crate implements to run it, the
//! [`store_conformance!`](crate::store_conformance) macro that expands the suite
//! into one named `#[test]` per case, [`MemoryFactory`] for [`MemoryStore`], and
//! the SIGKILL harness of [`crash`].
//!
//! Backend differences are [`Capabilities`] the cases branch on, never skips: a
//! case asserts the behaviour each capability promises.
//!
//! This module is test code behind the `testkit` feature: its cases panic (assert)
//! on any deviation, so the workspace's `unwrap_used`/`expect_used` lints are
//! relaxed here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::StoreError;
use crate::memory::MemoryStore;
use crate::store::LocalStore;

pub mod cases;
pub mod crash;
mod fixture;
mod view;

pub use view::QueueView;

/// Opens stores for the conformance suite.
pub trait StoreFactory {
    /// Opens the store kept at `path`, a file path inside a fresh temporary
    /// directory. Opening the same path again after every earlier handle was
    /// dropped reopens the same data (when [`Capabilities::durable`]).
    ///
    /// # Errors
    /// Whatever the store's own `open` fails with, e.g. [`StoreError::Corrupt`]
    /// for a file that is not a store.
    fn open(&self, path: &Path) -> Result<Arc<dyn LocalStore>, StoreError>;

    /// What the store promises; the cases branch on it.
    fn capabilities(&self) -> Capabilities;
}

/// What a store behind a [`StoreFactory`] promises.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// Data survives dropping every handle and reopening the same path.
    pub durable: bool,
    /// The store keeps its data in the file at the path: a garbage file there
    /// must give `Err(Corrupt)` or `Err(Backend)` on open, never a panic. A store
    /// that is not file-backed ignores the file and opens empty.
    pub file_backed: bool,
}

/// Whether a store's fixture generator may write `path`: only with
/// `TIDESYNC_WRITE_FIXTURE` set, and never over an existing file (a committed fixture never
/// changes; a layout change bumps the format and adds a fixture, see `docs/FORMATS.md`).
///
/// # Panics
/// When the variable is set and `path` exists.
pub fn may_write_fixture(path: &Path) -> bool {
    if std::env::var_os("TIDESYNC_WRITE_FIXTURE").is_none() {
        eprintln!("set TIDESYNC_WRITE_FIXTURE=1 to write {}", path.display());
        return false;
    }
    assert!(
        !path.exists(),
        "{} exists: fixtures are frozen; bump the format instead",
        path.display()
    );
    true
}

/// A [`StoreFactory`] for [`MemoryStore`]: a process-wide map from path to store
/// makes it durable within the process (reopening a path gives the same data);
/// it is not file-backed (files at the path are ignored).
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryFactory;

impl StoreFactory for MemoryFactory {
    fn open(&self, path: &Path) -> Result<Arc<dyn LocalStore>, StoreError> {
        static STORES: OnceLock<Mutex<HashMap<PathBuf, MemoryStore>>> = OnceLock::new();
        let mut stores = STORES
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let store = stores.entry(path.to_owned()).or_default().clone();
        Ok(Arc::new(store))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            durable: true,
            file_backed: false,
        }
    }
}

/// Expands the store conformance suite into a module `conformance` with one
/// `#[test]` per case of [`testkit::cases`](crate::testkit::cases), each calling
/// the case with the given [`StoreFactory`] value.
///
/// ```ignore
/// tidesync_core::store_conformance!(tidesync_core::testkit::MemoryFactory);
/// ```
#[macro_export]
macro_rules! store_conformance {
    ($factory:expr) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            $crate::store_conformance!(@cases $factory;
                atomic_batch_undefined_table,
                atomic_batch_type_mismatch,
                atomic_batch_unknown_column,
                durable_reopen,
                define_twice_is_noop,
                schema_growth,
                conflicting_redefinition,
                invalid_names,
                round_trip_strings,
                round_trip_integers,
                round_trip_reals,
                round_trip_bools_and_nulls,
                round_trip_date_times,
                round_trip_json,
                put_replaces_whole_row,
                put_items_as_puts,
                put_unknown_column,
                put_type_mismatch,
                put_missing_id,
                get_missing_row,
                unknown_table,
                filter_comparisons,
                filter_nulls,
                filter_logic,
                filter_arithmetic,
                filter_string_functions,
                filter_date_functions,
                filter_math_functions_and_in,
                filter_date_time_literals,
                filter_errors,
                query_unknown_column,
                order_by_columns,
                order_by_json_and_bools,
                skip_top_count,
                select_projection,
                delete_item,
                delete_items_filter,
                delete_items_order_top,
                queue_put_and_lookup,
                row_with_operations,
                many_rows_with_operations,
                queue_paging_across_tables,
                queue_replace_operation,
                queue_order_survives_reopen,
                queue_follows_the_memory_store,
                mark_attempted_reads_back,
                delete_table_operations,
                clear_empties_everything_but_definitions,
                errors_ordered_by_sequence,
                config_set_overwrite_remove,
                bulk_apply_100k,
                concurrent_reader_during_write,
                corrupt_file,
            );
        }
    };
    (@cases $factory:expr; $($case:ident,)*) => {
        $(
            #[test]
            fn $case() {
                $crate::testkit::cases::$case(&$factory);
            }
        )*
    };
}
