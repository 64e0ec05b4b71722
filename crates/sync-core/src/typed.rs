//! App types that know their table: the [`SyncItem`] trait that
//! `#[derive(tidesync::SyncItem)]` implements.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::model::TableDef;

/// A serde type that is one row of a sync table, and knows that table's name and
/// declared columns, so an app states its schema once: in the type.
///
/// Usually derived: `#[derive(tidesync::SyncItem)]` with `#[tidesync(table = "…")]`
/// reads the columns and their types from the fields, honouring serde's `rename`,
/// `rename_all` and `skip`. Implement it by hand for a type the derive cannot read.
/// The system properties (`id`, `createdAt`, `updatedAt`, `version`, `deleted`) are
/// never declared columns: every table has them.
pub trait SyncItem: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The table's name, as the server knows it.
    const TABLE: &'static str;

    /// The table definition: [`Self::TABLE`] and the declared columns.
    fn table_def() -> TableDef;
}
