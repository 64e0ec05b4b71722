//! The layout of a store file: the redb tables, the stored table definitions
//! and the format version with its migration hook.
//!
//! | redb table            | key                          | value                         |
//! |-----------------------|------------------------------|-------------------------------|
//! | `tidesync/meta`       | `&str` (`format_version`)    | `u64`                         |
//! | `tidesync/tables`     | table name                   | [`StoredTable`] as JSON       |
//! | `tidesync/ops`        | `(sequence, op id)`          | `Operation` as JSON           |
//! | `tidesync/errors`     | op id                        | `OperationError` as JSON      |
//! | `tidesync/config`     | key                          | value                         |
//! | `rows/<table>`        | item id                      | the row ([`crate::codec`])    |
//!
//! Table names are identifiers (`TableDef::validate`), so `rows/<t>` never
//! collides with `tidesync/*`.
//!
//! Format 2 writes one B-tree per row and one per queued op. The queue's
//! lookups by op id and by item are not in the file (format 1 kept them in
//! `tidesync/op_ids` and `tidesync/op_items`): the store builds them in memory
//! when it opens (the `queue` module). Format 1 also kept an `(updatedAt, id)`
//! index per app table (`updated/<t>`); queries now always scan. Migrating a
//! format 1 file drops all of those tables.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use tidesync_core::{ColumnType, StoreError, TableDef};
use tidesync_protocol::system::ID;

use crate::codec::Slot;
use crate::error::{corrupt_json, from_redb};

// Bump `FORMAT_VERSION` (lib.rs), and add an arm to `migrate`, when the layout
// or the row encoding changes.
use crate::FORMAT_VERSION;
const FORMAT_KEY: &str = "format_version";

const META_NAME: &str = "tidesync/meta";
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new(META_NAME);
pub(crate) const TABLES: TableDefinition<&str, &[u8]> = TableDefinition::new("tidesync/tables");
/// Ops by `(sequence, id)`: the engine gives each op its own sequence, but two
/// ops sharing one are both kept, in id order.
pub(crate) const OPS: TableDefinition<OpKey, &[u8]> = TableDefinition::new("tidesync/ops");
pub(crate) const ERRORS: TableDefinition<&str, &[u8]> = TableDefinition::new("tidesync/errors");
pub(crate) const CONFIG: TableDefinition<&str, &str> = TableDefinition::new("tidesync/config");

/// The key of the queue: `(sequence, op id)`.
pub(crate) type OpKey = (u64, &'static str);

/// The redb table names of one app table.
#[derive(Debug)]
pub(crate) struct Names {
    pub(crate) rows: String,
}

impl Names {
    pub(crate) fn of(table: &str) -> Self {
        Self {
            rows: format!("rows/{table}"),
        }
    }

    pub(crate) fn rows(&self) -> TableDefinition<'_, &'static str, &'static [u8]> {
        TableDefinition::new(&self.rows)
    }
}

/// A table as the store keeps it: the definition `LocalStore::table` returns,
/// and the append-only slot list the row encoding numbers columns by.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredTable {
    pub(crate) def: TableDef,
    pub(crate) slots: Vec<Slot>,
}

impl StoredTable {
    fn new(def: &TableDef) -> Self {
        Self {
            def: def.clone(),
            slots: def
                .all_columns()
                .filter(|c| c.name != ID)
                .map(|c| Slot {
                    name: c.name,
                    ty: c.ty,
                })
                .collect(),
        }
    }

    /// The slot number and type of a column (not `id`, which is the key).
    pub(crate) fn slot(&self, name: &str) -> Option<(usize, ColumnType)> {
        self.slots
            .iter()
            .position(|s| s.name == name)
            .map(|i| (i, self.slots[i].ty))
    }

    /// Adds the columns `def` declares and this table lacks. Refuses, without
    /// changing anything, a column declared with another type. Returns whether
    /// anything was added.
    fn grow(&mut self, def: &TableDef) -> Result<bool, StoreError> {
        for c in def.columns() {
            if let Some(ty) = self.def.column_type(&c.name) {
                if ty != c.ty {
                    return Err(StoreError::InvalidDefinition(format!(
                        "column {} of table {} is {ty:?}, not {:?}",
                        c.name,
                        def.name(),
                        c.ty
                    )));
                }
            }
        }
        let mut grown = false;
        for c in def.columns() {
            if self.def.column_type(&c.name).is_none() {
                self.def = self.def.clone().column(c.name.clone(), c.ty);
                self.slots.push(Slot {
                    name: c.name.clone(),
                    ty: c.ty,
                });
                grown = true;
            }
        }
        // The grown whole must be valid too (no two columns differing only in
        // case); on an error the caller drops this copy and aborts.
        self.def.validate()?;
        Ok(grown)
    }
}

/// Reads a stored table definition.
pub(crate) fn load_table(
    tables: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<Option<StoredTable>, StoreError> {
    match tables.get(name).map_err(from_redb)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(|e| corrupt_json(&format!("definition of table {name}"), e)),
    }
}

/// Creates a table or grows it, in one write transaction; `Ok(false)` when
/// nothing changed (the caller then aborts instead of committing).
pub(crate) fn define(txn: &WriteTransaction, def: &TableDef) -> Result<bool, StoreError> {
    let mut tables = txn.open_table(TABLES).map_err(from_redb)?;
    for entry in tables.iter().map_err(from_redb)? {
        let (name, _) = entry.map_err(from_redb)?;
        let name = name.value();
        if name != def.name() && name.eq_ignore_ascii_case(def.name()) {
            return Err(StoreError::InvalidDefinition(format!(
                "table {} differs from table {name} only in letter case",
                def.name()
            )));
        }
    }
    let (stored, changed) = match load_table(&tables, def.name())? {
        None => (StoredTable::new(def), true),
        Some(mut stored) => {
            let grown = stored.grow(def)?;
            (stored, grown)
        }
    };
    if !changed {
        return Ok(false);
    }
    let bytes = serde_json::to_vec(&stored).map_err(|e| corrupt_json("table definition", e))?;
    tables
        .insert(def.name(), bytes.as_slice())
        .map_err(from_redb)?;
    let names = Names::of(def.name());
    txn.open_table(names.rows()).map_err(from_redb)?;
    Ok(true)
}

/// Checks or writes the format version and creates the system tables. A file
/// that already holds redb tables but no tidesync metadata is refused as
/// `Corrupt` (it is some other redb database), a newer format as
/// `UnsupportedFormat`; an older one is migrated in the same transaction.
pub(crate) fn prepare(txn: &WriteTransaction) -> Result<(), StoreError> {
    let fresh = txn.list_tables().map_err(from_redb)?.next().is_none();
    let has_meta = txn
        .list_tables()
        .map_err(from_redb)?
        .any(|t| redb::TableHandle::name(&t) == META_NAME);
    if !fresh && !has_meta {
        return Err(StoreError::Corrupt(
            "a redb database, but not a tidesync store".to_owned(),
        ));
    }
    let found = {
        let meta = txn.open_table(META).map_err(from_redb)?;
        meta.get(FORMAT_KEY).map_err(from_redb)?.map(|v| v.value())
    };
    match found {
        None if fresh => {}
        None => {
            return Err(StoreError::Corrupt(
                "the store metadata has no format version".to_owned(),
            ));
        }
        Some(v) if v > FORMAT_VERSION => {
            return Err(StoreError::UnsupportedFormat {
                found: u32::try_from(v).unwrap_or(u32::MAX),
                supported: FORMAT_VERSION as u32,
            });
        }
        Some(v) if v < FORMAT_VERSION => migrate(txn, v)?,
        Some(_) => return Ok(()),
    }
    txn.open_table(META)
        .map_err(from_redb)?
        .insert(FORMAT_KEY, FORMAT_VERSION)
        .map_err(from_redb)?;
    txn.open_table(TABLES).map_err(from_redb)?;
    txn.open_table(OPS).map_err(from_redb)?;
    txn.open_table(ERRORS).map_err(from_redb)?;
    txn.open_table(CONFIG).map_err(from_redb)?;
    Ok(())
}

/// Upgrades a file of an older format, inside the open's write transaction, so
/// a crash mid-migration leaves the old format intact. Each step upgrades by
/// one format; a later format adds its step after the last.
fn migrate(txn: &WriteTransaction, from: u64) -> Result<(), StoreError> {
    let mut version = from;
    while version < FORMAT_VERSION {
        match version {
            1 => upgrade_1_to_2(txn)?,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown store format version {other}"
                )));
            }
        }
        version += 1;
    }
    Ok(())
}

/// Format 2 keeps the queue's op-id and per-item lookups in memory and has no
/// `(updatedAt, id)` index: drop the tables format 1 kept them in. The rows
/// and `tidesync/ops` hold everything already, keyed by `(sequence, op id)`
/// except in format 1's first layout (commits f36987e to f38a9e0), which keyed
/// the queue by the sequence alone: its ops are moved to the current key.
fn upgrade_1_to_2(txn: &WriteTransaction) -> Result<(), StoreError> {
    rekey_sequence_only_queue(txn)?;
    let mut names = vec!["tidesync/op_ids".to_owned(), "tidesync/op_items".to_owned()];
    let tables = txn.open_table(TABLES).map_err(from_redb)?;
    for entry in tables.iter().map_err(from_redb)? {
        let (name, _) = entry.map_err(from_redb)?;
        names.push(format!("updated/{}", name.value()));
    }
    drop(tables);
    for name in &names {
        txn.delete_table(TableDefinition::<&str, ()>::new(name))
            .map_err(from_redb)?;
    }
    Ok(())
}

/// Format 1 until commit f38a9e0 keyed `tidesync/ops` by the sequence (`u64`); the key
/// became `(sequence, op id)` without a version bump. Moves such a queue to the current
/// key; does nothing to a queue that has it.
fn rekey_sequence_only_queue(txn: &WriteTransaction) -> Result<(), StoreError> {
    const SEQUENCE_ONLY: TableDefinition<u64, &[u8]> = TableDefinition::new("tidesync/ops");
    match txn.open_table(OPS) {
        Ok(_) => return Ok(()),
        Err(redb::TableError::TableTypeMismatch { .. }) => {}
        Err(e) => return Err(from_redb(e)),
    }
    let mut ops = Vec::new();
    {
        let old = txn.open_table(SEQUENCE_ONLY).map_err(from_redb)?;
        for entry in old.iter().map_err(from_redb)? {
            let (sequence, bytes) = entry.map_err(from_redb)?;
            let op = crate::codec::decode_op(bytes.value())?;
            ops.push((sequence.value(), op.id, bytes.value().to_vec()));
        }
    }
    txn.delete_table(SEQUENCE_ONLY).map_err(from_redb)?;
    let mut new = txn.open_table(OPS).map_err(from_redb)?;
    for (sequence, id, bytes) in &ops {
        new.insert((*sequence, id.as_str()), bytes.as_slice())
            .map_err(from_redb)?;
    }
    Ok(())
}
