//! [`TableCache`]: the local tables' definitions, read from the store once.

use std::sync::{Arc, RwLock};

use crate::model::{ColumnType, TableDef, UNMAPPED_COLUMN};
use crate::store::{LocalStore, StoreError};

/// Looked up once per local write: foldhash, not SipHash.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Table definitions read from the store, cached.
#[derive(Debug, Default)]
pub(crate) struct TableCache {
    map: RwLock<HashMap<String, Arc<TableDef>>>,
}

impl TableCache {
    /// A table's definition, with the engine's hidden column.
    ///
    /// # Errors
    /// [`StoreError::UnknownTable`] and store failures.
    pub(crate) fn get(
        &self,
        store: &dyn LocalStore,
        name: &str,
    ) -> Result<Arc<TableDef>, StoreError> {
        if let Some(def) = self.map.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok(def.clone());
        }
        let mut def = store
            .table(name)?
            .ok_or_else(|| StoreError::UnknownTable(name.to_owned()))?;
        if def.column_type(UNMAPPED_COLUMN).is_none() {
            // Tables defined before the engine first used them lack the hidden
            // column; growing a table is idempotent, so two racing users agree.
            def = def.column(UNMAPPED_COLUMN, ColumnType::Json);
            store.define_table(&def)?;
        }
        let def = Arc::new(def);
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), def.clone());
        Ok(def)
    }

    /// Drops a cached definition (the table was redefined).
    pub(crate) fn forget(&self, name: &str) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
}
