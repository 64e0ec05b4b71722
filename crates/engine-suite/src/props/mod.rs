//! The engine's model-based properties: random sequences of local writes, pushes, pulls,
//! purges, restarts and server-side changes under scripted and seeded mock faults,
//! checked after every step against the `BTreeMap` model in [`model`]; plus properties
//! for the `(updatedAt, id)` cursor, the collapse matrix, restarts and push statuses.
//!
//! They run on any [`LocalStore`]: a store crate's test file implements
//! [`StoreUnderTest`] and expands [`engine_properties!`](crate::engine_properties)
//! (sync-core runs them on `MemoryStore`, store-sqlite and store-redb on files). Every property
//! runs `PROPTEST_CASES` cases (256 by default) on a current-thread runtime with paused
//! time, so injected latency costs nothing.

use std::path::Path;
use std::sync::Arc;

use tidesync_core::LocalStore;

pub mod collapse;
pub mod cursor;
pub mod inputs;
pub mod model;
pub mod status;
pub mod world;

/// The store the properties run on.
pub trait StoreUnderTest: Sync {
    /// A directory for one case's store files, removed when dropped.
    fn scratch(&self) -> tempfile::TempDir {
        tempfile::tempdir().expect("a temporary directory")
    }

    /// A fresh, empty store (keeping its files, if any, under `dir`).
    fn open(&self, dir: &Path) -> Arc<dyn LocalStore>;

    /// The same store again, as a restarted app opens it; `store` is the last handle
    /// of the old app (every other is dropped).
    fn reopen(&self, store: Arc<dyn LocalStore>, dir: &Path) -> Arc<dyn LocalStore>;
}

/// Expands the engine's properties into named tests (`proptest!` blocks and plain
/// `#[test]`s) running on `$under`, a constant expression (a unit struct) of a type
/// implementing [`StoreUnderTest`].
#[macro_export]
macro_rules! engine_properties {
    ($under:expr) => {
        use $crate::proptest::prelude::*;

        $crate::proptest::proptest! {
            #![proptest_config($crate::props::inputs::config())]

            /// Three related tables under scripted faults (offline, network, lost
            /// responses, 5xx, injected 409/412, 401) and concurrent server changes:
            /// after every step the queue (kind, state, sequence, op version, a
            /// delete's If-Match), every refusal, the local rows, the server rows with
            /// their version counters, the error records and the exact calls the
            /// server saw equal the model's; no item ever has two ops; writes reach the
            /// server in ascending sequence; after a final sync everything agrees.
            #[test]
            fn prop_three_tables_follow_the_model_under_scripted_faults(
                seed in any::<u64>(),
                steps in $crate::proptest::collection::vec($crate::props::inputs::step(), 1..40),
            ) {
                $crate::props::inputs::runtime()
                    .block_on($crate::props::world::run_steps(&$under, seed, None, &steps));
            }

            /// The same, with the mock's seeded random faults on every call on top
            /// (the seed and probability come from the input, so a failure shrinks to
            /// a fixed fault sequence).
            #[test]
            fn prop_three_tables_follow_the_model_under_seeded_random_faults(
                seed in any::<u64>(),
                percent in 5u8..40,
                steps in $crate::proptest::collection::vec($crate::props::inputs::step(), 1..40),
            ) {
                $crate::props::inputs::runtime().block_on($crate::props::world::run_steps(
                    &$under,
                    seed,
                    Some(f64::from(percent) / 100.0),
                    &steps,
                ));
            }

            /// Restarts between every kind of step keep the queue and the error
            /// records byte for byte (checked inside every `Restart`), and sequences
            /// continue after the largest one queued.
            #[test]
            fn prop_restarts_keep_the_queue_and_its_errors(
                seed in any::<u64>(),
                steps in $crate::proptest::collection::vec(
                    prop_oneof![
                        3 => $crate::props::inputs::step(),
                        2 => Just($crate::props::inputs::Step::Restart)
                    ],
                    1..40,
                ),
            ) {
                $crate::props::inputs::runtime()
                    .block_on($crate::props::world::run_steps(&$under, seed, None, &steps));
            }

            /// Pairs and triples of writes on one item (fresh or already on the
            /// server), each optionally after a failed push or while the op is on the
            /// wire, against the collapse matrix of spec §2.3 as amended by
            /// ARCHITECTURE.md: the result or refusal, the queue (kind, state,
            /// sequence, op version) and the local row all match.
            #[test]
            fn prop_collapse_matches_the_matrix(
                seeded in any::<bool>(),
                writes in $crate::proptest::collection::vec(
                    ($crate::props::collapse::before(), $crate::props::collapse::op_kind()),
                    2..=3,
                ),
            ) {
                $crate::props::inputs::runtime()
                    .block_on($crate::props::collapse::collapse_case(&$under, seeded, &writes));
            }

            /// One fault on the k-th call of a push of n inserts across the three
            /// tables: the push status is the one the spec gives that fault
            /// (network and lost response → CancelledByNetworkError, 401 →
            /// CancelledByAuthenticationError, 5xx/409/412 → Complete with one error of
            /// that status), exactly the earlier ops (and, for a collected error, the
            /// later ones) are pushed, and the next push delivers the rest exactly once.
            #[test]
            fn prop_push_status_matches_the_injected_fault(
                tables in $crate::proptest::collection::vec($crate::props::inputs::table(), 1..6),
                at in 0usize..6,
                fault in $crate::props::inputs::fault(),
            ) {
                $crate::props::inputs::runtime()
                    .block_on($crate::props::status::status_case(&$under, &tables, at, fault));
            }

            /// Random server inserts, updates and deletes stamped from a fixed clock
            /// that moves between a few instants (so many rows share one `updatedAt`),
            /// random server page limits and client page sizes, and incremental pulls
            /// some of which are cut by a network fault on a random page: every changed
            /// row is delivered exactly once per change (never twice, never a stale
            /// copy), an interrupted pull loses nothing on resume, and after each
            /// successful pull the local table equals the server's live rows.
            #[test]
            fn prop_cursor_delivers_every_change_once_despite_ties(
                limit in 1usize..5,
                steps in $crate::proptest::collection::vec($crate::props::cursor::cstep(), 1..40),
            ) {
                $crate::props::inputs::runtime()
                    .block_on($crate::props::cursor::cursor_case(&$under, limit, &steps));
            }
        }

        /// See [`a_full_page_does_not_end_the_pull`](tidesync_engine_suite::props::cursor::a_full_page_does_not_end_the_pull).
        #[test]
        fn a_full_page_does_not_end_the_pull() {
            $crate::props::cursor::a_full_page_does_not_end_the_pull(&$under);
        }

        /// See [`the_model_mirrors_the_mocks_seeded_faults`](tidesync_engine_suite::props::world::the_model_mirrors_the_mocks_seeded_faults).
        #[test]
        fn the_model_mirrors_the_mocks_seeded_faults() {
            $crate::props::world::the_model_mirrors_the_mocks_seeded_faults();
        }

        /// See [`collapse_matches_the_matrix_for_every_short_sequence`](tidesync_engine_suite::props::collapse::collapse_matches_the_matrix_for_every_short_sequence).
        #[test]
        fn collapse_matches_the_matrix_for_every_short_sequence() {
            $crate::props::collapse::collapse_matches_the_matrix_for_every_short_sequence(&$under);
        }
    };
}
