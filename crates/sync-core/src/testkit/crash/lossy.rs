//! [`Lossy`]: a planted fault for the crash test to catch, a store that acknowledges every
//! batch and silently drops every other one.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tidesync_protocol::Item;
use tidesync_protocol::odata::Query;

use crate::error::StoreError;
use crate::model::{Operation, OperationError, TableDef};
use crate::store::{LocalStore, QueryResult, WriteBatch};
use crate::testkit::{Capabilities, StoreFactory};

/// A [`StoreFactory`] whose stores answer `Ok` to every [`LocalStore::write`] but apply only
/// every other one (the first, the third, ...), and pass everything else to the store the
/// wrapped factory opens. A crash test must catch it: it exists to prove that the check
/// fails on a store that loses acknowledged batches.
#[derive(Clone, Copy)]
pub struct Lossy<'a>(pub &'a dyn StoreFactory);

impl std::fmt::Debug for Lossy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lossy(..)")
    }
}

impl StoreFactory for Lossy<'_> {
    fn open(&self, path: &Path) -> Result<Arc<dyn LocalStore>, StoreError> {
        Ok(Arc::new(LossyStore {
            inner: self.0.open(path)?,
            writes: AtomicU64::new(0),
        }))
    }

    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
}

#[derive(Debug)]
struct LossyStore {
    inner: Arc<dyn LocalStore>,
    writes: AtomicU64,
}

impl LocalStore for LossyStore {
    fn define_table(&self, def: &TableDef) -> Result<(), StoreError> {
        self.inner.define_table(def)
    }

    fn table(&self, name: &str) -> Result<Option<TableDef>, StoreError> {
        self.inner.table(name)
    }

    fn get(&self, table: &str, id: &str) -> Result<Option<Item>, StoreError> {
        self.inner.get(table, id)
    }

    fn query(&self, table: &str, query: &Query) -> Result<QueryResult, StoreError> {
        self.inner.query(table, query)
    }

    fn load_operations(&self) -> Result<Vec<Operation>, StoreError> {
        self.inner.load_operations()
    }

    fn errors(&self) -> Result<Vec<OperationError>, StoreError> {
        self.inner.errors()
    }

    fn config(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.config(key)
    }

    fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        if self.writes.fetch_add(1, Ordering::SeqCst) % 2 == 1 {
            return Ok(());
        }
        self.inner.write(batch)
    }
}
