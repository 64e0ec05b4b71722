//! Applying a [`WriteBatch`] inside one redb write transaction.
//!
//! Every table a batch touches is opened once and kept open for the batch; the
//! caller commits when every write succeeded and aborts otherwise, so a failed
//! batch leaves nothing behind. Queue changes are staged beside the
//! transaction ([`Staged`]) and reach the in-memory queue index only after the
//! commit (see the `queue` module).

use std::collections::HashMap;

use redb::{ReadableTable, Table, WriteTransaction};
use serde_json::Value;
use tidesync_core::{
    Item, OpState, Operation, OperationError, StoreError, Write, WriteBatch, normalize_value,
};
use tidesync_protocol::odata::Query;
use tidesync_protocol::system::ID;

use crate::codec::encode_row;
use crate::codec::{decode_error, decode_op};
use crate::error::{Message, corrupt_json, from_redb};
use crate::query::selected_ids;
use crate::queue::{Entry, QueueIndex, Staged};
use crate::schema::{CONFIG, ERRORS, Names, OPS, OpKey, StoredTable, TABLES, load_table};

/// One app table opened for the batch.
struct Open<'t> {
    stored: StoredTable,
    rows: Table<'t, &'static str, &'static [u8]>,
}

/// The tables of one batch.
pub(crate) struct Batch<'t> {
    txn: &'t WriteTransaction,
    tables: Table<'t, &'static str, &'static [u8]>,
    ops: Table<'t, OpKey, &'static [u8]>,
    queue: &'t QueueIndex,
    staged: Staged,
    errors: Table<'t, &'static str, &'static [u8]>,
    config: Table<'t, &'static str, &'static str>,
    open: HashMap<String, Open<'t>>,
    buffer: Vec<u8>,
}

impl<'t> Batch<'t> {
    pub(crate) fn new(
        txn: &'t WriteTransaction,
        queue: &'t QueueIndex,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            txn,
            tables: txn.open_table(TABLES).map_err(from_redb)?,
            ops: txn.open_table(OPS).map_err(from_redb)?,
            queue,
            staged: Staged::default(),
            errors: txn.open_table(ERRORS).map_err(from_redb)?,
            config: txn.open_table(CONFIG).map_err(from_redb)?,
            open: HashMap::new(),
            buffer: Vec::with_capacity(256),
        })
    }

    /// Applies every write of the batch, in order, stopping at the first error.
    /// Returns the queue changes to apply to the index once the transaction
    /// has committed.
    pub(crate) fn apply_all(mut self, batch: &WriteBatch) -> Result<Staged, StoreError> {
        batch.writes.iter().try_for_each(|w| self.apply(w))?;
        Ok(self.staged)
    }

    fn apply(&mut self, write: &Write) -> Result<(), StoreError> {
        match write {
            Write::PutItem { table, item } => self.put_item(table, item),
            // One write transaction is redb's only unit of cost: rows go in one by one.
            Write::PutItems { table, items } => {
                items.iter().try_for_each(|item| self.put_item(table, item))
            }
            Write::DeleteItem { table, id } => self.delete_item(table, id),
            Write::DeleteItems { table, query } => self.delete_items(table, query),
            Write::PutItemAndOperation { table, item, op } => {
                self.put_item(table, item)?;
                self.put_op(op)
            }
            Write::PutOperation(op) => self.put_op(op),
            Write::MarkAttempted { ids } => ids.iter().try_for_each(|id| self.mark_attempted(id)),
            Write::DeleteOperation { id } => self.remove_op(id),
            Write::DeleteTableOperations { table } => self.delete_table_ops(table),
            Write::Clear => self.clear(),
            Write::PutError(error) => self.put_error(error),
            Write::DeleteError { operation_id } => {
                self.errors
                    .remove(operation_id.as_str())
                    .map_err(from_redb)?;
                Ok(())
            }
            Write::SetConfig { key, value } => {
                match value {
                    Some(v) => self.config.insert(key.as_str(), v.as_str()).map(drop),
                    None => self.config.remove(key.as_str()).map(drop),
                }
                .map_err(from_redb)?;
                Ok(())
            }
            // `Write` is non-exhaustive: refuse what this build does not know
            // rather than silently dropping part of a batch.
            other => Err(StoreError::backend(Message(format!(
                "unsupported write {other:?}"
            )))),
        }
    }

    /// The open tables of an app table, opened on first use.
    fn table(&mut self, name: &str) -> Result<&mut Open<'t>, StoreError> {
        if !self.open.contains_key(name) {
            let stored = load_table(&self.tables, name)?
                .ok_or_else(|| StoreError::UnknownTable(name.to_owned()))?;
            let names = Names::of(name);
            let open = Open {
                stored,
                rows: self.txn.open_table(names.rows()).map_err(from_redb)?,
            };
            self.open.insert(name.to_owned(), open);
        }
        self.open
            .get_mut(name)
            .ok_or_else(|| StoreError::UnknownTable(name.to_owned()))
    }

    fn put_item(&mut self, table: &str, item: &Item) -> Result<(), StoreError> {
        let mut buffer = std::mem::take(&mut self.buffer);
        let open = self.table(table)?;
        let id = item
            .get(ID)
            .and_then(Value::as_str)
            .ok_or_else(|| StoreError::MissingId {
                table: table.to_owned(),
            })?;
        let mut values = Vec::with_capacity(item.len());
        for (name, value) in item {
            if name == ID {
                continue;
            }
            let (slot, ty) = open
                .stored
                .slot(name)
                .ok_or_else(|| StoreError::UnknownColumn {
                    table: table.to_owned(),
                    column: name.clone(),
                })?;
            let value = normalize_value(table, name, ty, value)?;
            values.push((slot, ty, value));
        }
        encode_row(values, &mut buffer)
            .map_err(|why| StoreError::backend(Message(format!("encoding row {id:?}: {why}"))))?;
        open.rows.insert(id, buffer.as_slice()).map_err(from_redb)?;
        self.buffer = buffer;
        Ok(())
    }

    fn delete_item(&mut self, table: &str, id: &str) -> Result<(), StoreError> {
        let open = self.table(table)?;
        open.rows.remove(id).map_err(from_redb)?;
        Ok(())
    }

    fn delete_items(&mut self, table: &str, query: &Query) -> Result<(), StoreError> {
        let open = self.table(table)?;
        let ids = selected_ids(table, &open.stored, &open.rows, query)?;
        for id in ids {
            self.delete_item(table, &id)?;
        }
        Ok(())
    }

    fn put_op(&mut self, op: &Operation) -> Result<(), StoreError> {
        self.remove_op(&op.id)?;
        let bytes = serde_json::to_vec(op).map_err(|e| corrupt_json("encoding an op", e))?;
        self.ops
            .insert((op.sequence, op.id.as_str()), bytes.as_slice())
            .map_err(from_redb)?;
        self.staged.put(&op.id, Entry::of(op));
        Ok(())
    }

    /// Rewrites a queued op as attempted (redb commits pages, not rows: one op
    /// more in the transaction costs what its bytes cost).
    fn mark_attempted(&mut self, id: &str) -> Result<(), StoreError> {
        let Some(sequence) = self.staged.get(self.queue, id).map(|e| e.sequence) else {
            return Ok(());
        };
        let bytes = self
            .ops
            .get((sequence, id))
            .map_err(from_redb)?
            .ok_or_else(|| {
                StoreError::Corrupt(format!("op {id} points at a missing sequence {sequence}"))
            })?
            .value()
            .to_vec();
        let mut op = decode_op(&bytes)?;
        op.state = OpState::Attempted;
        self.put_op(&op)
    }

    /// Removes an op from the queue; its error record stays. The index says
    /// where it is, so an op that is not queued costs no read.
    fn remove_op(&mut self, id: &str) -> Result<(), StoreError> {
        let Some(sequence) = self.staged.get(self.queue, id).map(|e| e.sequence) else {
            return Ok(());
        };
        if self
            .ops
            .remove((sequence, id))
            .map_err(from_redb)?
            .is_none()
        {
            return Err(StoreError::Corrupt(format!(
                "op {id} points at a missing sequence {sequence}"
            )));
        }
        self.staged.remove(id);
        Ok(())
    }

    fn delete_table_ops(&mut self, table: &str) -> Result<(), StoreError> {
        for id in self.staged.ids_in(self.queue, table) {
            self.remove_op(&id)?;
        }
        let mut error_ids = Vec::new();
        for entry in self.errors.iter().map_err(from_redb)? {
            let (id, bytes) = entry.map_err(from_redb)?;
            if decode_error(bytes.value())?.table == table {
                error_ids.push(id.value().to_owned());
            }
        }
        for id in error_ids {
            self.errors.remove(id.as_str()).map_err(from_redb)?;
        }
        Ok(())
    }

    /// Empties every app table, the queue, the error records and the sync
    /// metadata; the table definitions stay.
    fn clear(&mut self) -> Result<(), StoreError> {
        let mut names = Vec::new();
        for entry in self.tables.iter().map_err(from_redb)? {
            let (name, _) = entry.map_err(from_redb)?;
            names.push(name.value().to_owned());
        }
        for name in names {
            let open = self.table(&name)?;
            let mut ids = Vec::new();
            for entry in open.rows.iter().map_err(from_redb)? {
                let (id, _) = entry.map_err(from_redb)?;
                ids.push(id.value().to_owned());
            }
            for id in ids {
                open.rows.remove(id.as_str()).map_err(from_redb)?;
            }
        }
        let mut ops = Vec::new();
        for entry in self.ops.iter().map_err(from_redb)? {
            let (key, _) = entry.map_err(from_redb)?;
            let (sequence, id) = key.value();
            ops.push((sequence, id.to_owned()));
        }
        for (sequence, id) in ops {
            self.ops
                .remove((sequence, id.as_str()))
                .map_err(from_redb)?;
            self.staged.remove(&id);
        }
        let mut errors = Vec::new();
        for entry in self.errors.iter().map_err(from_redb)? {
            let (id, _) = entry.map_err(from_redb)?;
            errors.push(id.value().to_owned());
        }
        for id in errors {
            self.errors.remove(id.as_str()).map_err(from_redb)?;
        }
        let mut keys = Vec::new();
        for entry in self.config.iter().map_err(from_redb)? {
            let (key, _) = entry.map_err(from_redb)?;
            keys.push(key.value().to_owned());
        }
        for key in keys {
            self.config.remove(key.as_str()).map_err(from_redb)?;
        }
        Ok(())
    }

    fn put_error(&mut self, error: &OperationError) -> Result<(), StoreError> {
        let bytes =
            serde_json::to_vec(error).map_err(|e| corrupt_json("encoding an error record", e))?;
        self.errors
            .insert(error.operation_id.as_str(), bytes.as_slice())
            .map_err(from_redb)?;
        Ok(())
    }
}
