//! [`MemoryStore`]: a [`LocalStore`] in memory, for tests and examples. Nothing
//! survives the process; clones share one store.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tidesync_protocol::Item;
use tidesync_protocol::odata::{Query, eval};

use crate::model::{OpState, Operation, OperationError, TableDef, item_id, normalize_value};
use crate::store::{LocalStore, QueryResult, StoreError, Write, WriteBatch};

#[derive(Debug, Clone)]
struct Table {
    def: TableDef,
    rows: BTreeMap<String, Item>,
}

#[derive(Debug, Default)]
struct State {
    tables: HashMap<String, Table>,
    /// Ops by id, their only key (the engine keeps the queue's order and
    /// indexes; this store sorts only when it loads).
    ops: HashMap<String, Operation>,
    errors: HashMap<String, OperationError>,
    config: HashMap<String, String>,
}

/// What a write replaced, to put back if a later write of the batch fails.
enum Undo {
    Row(String, String, Option<Item>),
    Op(String, Option<Operation>),
    Error(String, Option<OperationError>),
    Config(String, Option<String>),
}

/// An in-memory [`LocalStore`]: the reference behaviour every store must match,
/// checked by the same conformance suite. Clones share the same data.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn table(&self, name: &str) -> Result<&Table, StoreError> {
        self.tables
            .get(name)
            .ok_or_else(|| StoreError::UnknownTable(name.to_owned()))
    }

    fn put_op(&mut self, op: Operation, undo: &mut Vec<Undo>) {
        let previous = self.ops.insert(op.id.clone(), op.clone());
        undo.push(Undo::Op(op.id, previous));
    }

    fn remove_op(&mut self, id: &str) -> Option<Operation> {
        self.ops.remove(id)
    }

    fn put_item(
        &mut self,
        table: &str,
        item: &Item,
        undo: &mut Vec<Undo>,
    ) -> Result<(), StoreError> {
        let t = self.table(table)?;
        let id = item_id(item)
            .ok_or_else(|| StoreError::MissingId {
                table: table.to_owned(),
            })?
            .to_owned();
        let mut row = Item::new();
        for (name, value) in item.iter().filter(|(_, v)| !v.is_null()) {
            let ty = t
                .def
                .column_type(name)
                .ok_or_else(|| StoreError::UnknownColumn {
                    table: table.to_owned(),
                    column: name.clone(),
                })?;
            row.insert(name.clone(), normalize_value(table, name, ty, value)?);
        }
        let t = self
            .tables
            .get_mut(table)
            .ok_or_else(|| StoreError::UnknownTable(table.to_owned()))?;
        let previous = t.rows.insert(id.clone(), row);
        undo.push(Undo::Row(table.to_owned(), id, previous));
        Ok(())
    }

    fn apply(&mut self, write: &Write, undo: &mut Vec<Undo>) -> Result<(), StoreError> {
        match write {
            Write::PutItem { table, item } => self.put_item(table, item, undo)?,
            Write::PutItems { table, items } => {
                for item in items {
                    self.put_item(table, item, undo)?;
                }
            }
            Write::PutItemAndOperation { table, item, op } => {
                self.put_item(table, item, undo)?;
                self.put_op(op.clone(), undo);
            }
            Write::DeleteItem { table, id } => {
                let t = self
                    .tables
                    .get_mut(table)
                    .ok_or_else(|| StoreError::UnknownTable(table.clone()))?;
                let previous = t.rows.remove(id);
                undo.push(Undo::Row(table.clone(), id.clone(), previous));
            }
            Write::DeleteItems { table, query } => {
                let t = self.table(table)?;
                let ids = select_ids(table, t, query)?;
                let t = self
                    .tables
                    .get_mut(table)
                    .ok_or_else(|| StoreError::UnknownTable(table.clone()))?;
                for id in ids {
                    let previous = t.rows.remove(&id);
                    undo.push(Undo::Row(table.clone(), id, previous));
                }
            }
            Write::PutOperation(op) => self.put_op(op.clone(), undo),
            Write::MarkAttempted { ids } => {
                for id in ids {
                    if let Some(mut op) = self.ops.get(id).cloned() {
                        op.state = OpState::Attempted;
                        self.put_op(op, undo);
                    }
                }
            }
            Write::DeleteOperation { id } => {
                let previous = self.remove_op(id);
                undo.push(Undo::Op(id.clone(), previous));
            }
            Write::DeleteTableOperations { table } => {
                let ids: Vec<String> = self
                    .ops
                    .values()
                    .filter(|op| &op.table == table)
                    .map(|op| op.id.clone())
                    .collect();
                for id in ids {
                    let previous = self.remove_op(&id);
                    undo.push(Undo::Op(id.clone(), previous));
                }
                let error_ids: Vec<String> = self
                    .errors
                    .values()
                    .filter(|e| &e.table == table)
                    .map(|e| e.operation_id.clone())
                    .collect();
                for id in error_ids {
                    let previous = self.errors.remove(&id);
                    undo.push(Undo::Error(id, previous));
                }
            }
            Write::PutError(error) => {
                let previous = self
                    .errors
                    .insert(error.operation_id.clone(), error.clone());
                undo.push(Undo::Error(error.operation_id.clone(), previous));
            }
            Write::DeleteError { operation_id } => {
                let previous = self.errors.remove(operation_id);
                undo.push(Undo::Error(operation_id.clone(), previous));
            }
            Write::Clear => {
                for (name, table) in &mut self.tables {
                    for (id, row) in std::mem::take(&mut table.rows) {
                        undo.push(Undo::Row(name.clone(), id, Some(row)));
                    }
                }
                for (id, op) in std::mem::take(&mut self.ops) {
                    undo.push(Undo::Op(id, Some(op)));
                }
                for (id, error) in std::mem::take(&mut self.errors) {
                    undo.push(Undo::Error(id, Some(error)));
                }
                for (key, value) in std::mem::take(&mut self.config) {
                    undo.push(Undo::Config(key, Some(value)));
                }
            }
            Write::SetConfig { key, value } => {
                let previous = match value {
                    Some(v) => self.config.insert(key.clone(), v.clone()),
                    None => self.config.remove(key),
                };
                undo.push(Undo::Config(key.clone(), previous));
            }
        }
        Ok(())
    }

    fn undo(&mut self, undo: Vec<Undo>) {
        for step in undo.into_iter().rev() {
            match step {
                Undo::Row(table, id, previous) => {
                    if let Some(t) = self.tables.get_mut(&table) {
                        match previous {
                            Some(row) => t.rows.insert(id, row),
                            None => t.rows.remove(&id),
                        };
                    }
                }
                Undo::Op(id, previous) => {
                    match previous {
                        Some(op) => self.ops.insert(id, op),
                        None => self.ops.remove(&id),
                    };
                }
                Undo::Error(id, previous) => {
                    match previous {
                        Some(e) => self.errors.insert(id, e),
                        None => self.errors.remove(&id),
                    };
                }
                Undo::Config(key, previous) => {
                    match previous {
                        Some(v) => self.config.insert(key, v),
                        None => self.config.remove(&key),
                    };
                }
            }
        }
    }
}

fn invalid_query(table: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::InvalidQuery {
        table: table.to_owned(),
        message: e.to_string(),
    }
}

/// Checks that a query names only columns of the table.
fn check_members(table: &str, t: &Table, query: &Query) -> Result<(), StoreError> {
    let mut names: Vec<&str> = query.filter.as_ref().map(eval::members).unwrap_or_default();
    names.extend(query.order_by.iter().map(|o| o.member.as_str()));
    if let Some(select) = &query.select {
        names.extend(select.iter().map(String::as_str));
    }
    match names.into_iter().find(|n| t.def.column_type(n).is_none()) {
        Some(n) => Err(invalid_query(table, format!("no column {n}"))),
        None => Ok(()),
    }
}

fn run(table: &str, t: &Table, query: &Query) -> Result<QueryResult, StoreError> {
    check_members(table, t, query)?;
    let out =
        eval::run_query(t.rows.values().cloned(), query).map_err(|e| invalid_query(table, e))?;
    Ok(QueryResult {
        items: out.items,
        count: out.count,
    })
}

fn select_ids(table: &str, t: &Table, query: &Query) -> Result<Vec<String>, StoreError> {
    let query = Query {
        select: None,
        count: false,
        ..query.clone()
    };
    Ok(run(table, t, &query)?
        .items
        .iter()
        .filter_map(|i| item_id(i).map(str::to_owned))
        .collect())
}

impl LocalStore for MemoryStore {
    fn define_table(&self, def: &TableDef) -> Result<(), StoreError> {
        def.validate()?;
        let mut state = self.lock();
        if let Some(other) = state
            .tables
            .keys()
            .find(|n| n.eq_ignore_ascii_case(def.name()) && n.as_str() != def.name())
        {
            return Err(StoreError::InvalidDefinition(format!(
                "table {} differs from table {other} only in letter case",
                def.name()
            )));
        }
        match state.tables.get_mut(def.name()) {
            None => {
                state.tables.insert(
                    def.name().to_owned(),
                    Table {
                        def: def.clone(),
                        rows: BTreeMap::new(),
                    },
                );
            }
            Some(existing) => {
                // Check everything first, so a refused definition changes nothing.
                let mut grown = existing.def.clone();
                for c in def.columns() {
                    match grown.column_type(&c.name) {
                        Some(ty) if ty != c.ty => {
                            return Err(StoreError::InvalidDefinition(format!(
                                "column {} of table {} is {ty:?}, not {:?}",
                                c.name,
                                def.name(),
                                c.ty
                            )));
                        }
                        Some(_) => {}
                        None => grown = grown.column(c.name.clone(), c.ty),
                    }
                }
                grown.validate()?;
                existing.def = grown;
            }
        }
        Ok(())
    }

    fn table(&self, name: &str) -> Result<Option<TableDef>, StoreError> {
        Ok(self.lock().tables.get(name).map(|t| t.def.clone()))
    }

    fn get(&self, table: &str, id: &str) -> Result<Option<Item>, StoreError> {
        Ok(self.lock().table(table)?.rows.get(id).cloned())
    }

    fn query(&self, table: &str, query: &Query) -> Result<QueryResult, StoreError> {
        let state = self.lock();
        run(table, state.table(table)?, query)
    }

    fn load_operations(&self) -> Result<Vec<Operation>, StoreError> {
        let mut ops: Vec<Operation> = self.lock().ops.values().cloned().collect();
        ops.sort_by(|a, b| (a.sequence, &a.id).cmp(&(b.sequence, &b.id)));
        Ok(ops)
    }

    fn errors(&self) -> Result<Vec<OperationError>, StoreError> {
        let state = self.lock();
        let mut errors: Vec<(u64, OperationError)> = state
            .errors
            .values()
            .map(|e| {
                let seq = state
                    .ops
                    .get(&e.operation_id)
                    .map_or(u64::MAX, |op| op.sequence);
                (seq, e.clone())
            })
            .collect();
        errors.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| a.1.operation_id.cmp(&b.1.operation_id))
        });
        Ok(errors.into_iter().map(|(_, e)| e).collect())
    }

    fn config(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock().config.get(key).cloned())
    }

    fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        let mut state = self.lock();
        let mut undo = Vec::with_capacity(batch.len());
        for write in &batch.writes {
            if let Err(e) = state.apply(write, &mut undo) {
                state.undo(undo);
                return Err(e);
            }
        }
        Ok(())
    }
}
