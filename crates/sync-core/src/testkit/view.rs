//! [`QueueView`]: what tests ask a store about its queue, answered from the
//! one thing a store tells about ops, [`LocalStore::load_operations`].
//!
//! The store trait has no queue queries (the engine's `Queue` owns them); the
//! suite still checks every op a store keeps, through this view of its load.

use crate::model::Operation;
use crate::store::{LocalStore, StoreError};
use tidesync_protocol::Item;

/// Queue questions about a store, answered from its loaded ops.
pub trait QueueView {
    /// Up to `limit` ops with a sequence above `after_sequence`, in order.
    ///
    /// # Errors
    /// The store's.
    fn operations(&self, after_sequence: u64, limit: usize) -> Result<Vec<Operation>, StoreError>;
    /// The ops of one item, oldest first.
    ///
    /// # Errors
    /// The store's.
    fn operations_for(&self, table: &str, item_id: &str) -> Result<Vec<Operation>, StoreError>;
    /// One op by id.
    ///
    /// # Errors
    /// The store's.
    fn operation(&self, id: &str) -> Result<Option<Operation>, StoreError>;
    /// How many ops, of one table or of all.
    ///
    /// # Errors
    /// The store's.
    fn count_operations(&self, table: Option<&str>) -> Result<u64, StoreError>;
    /// The highest sequence, 0 for an empty queue.
    ///
    /// # Errors
    /// The store's.
    fn max_sequence(&self) -> Result<u64, StoreError>;
    /// A row and its ops.
    ///
    /// # Errors
    /// The store's.
    fn get_with_operations(
        &self,
        table: &str,
        id: &str,
    ) -> Result<(Option<Item>, Vec<Operation>), StoreError>;
}

impl<S: LocalStore + ?Sized> QueueView for S {
    fn operations(&self, after_sequence: u64, limit: usize) -> Result<Vec<Operation>, StoreError> {
        Ok(self
            .load_operations()?
            .into_iter()
            .filter(|op| op.sequence > after_sequence)
            .take(limit)
            .collect())
    }

    fn operations_for(&self, table: &str, item_id: &str) -> Result<Vec<Operation>, StoreError> {
        Ok(self
            .load_operations()?
            .into_iter()
            .filter(|op| op.table == table && op.item_id == item_id)
            .collect())
    }

    fn operation(&self, id: &str) -> Result<Option<Operation>, StoreError> {
        Ok(self.load_operations()?.into_iter().find(|op| op.id == id))
    }

    fn count_operations(&self, table: Option<&str>) -> Result<u64, StoreError> {
        let n = self
            .load_operations()?
            .iter()
            .filter(|op| table.is_none_or(|t| op.table == t))
            .count();
        Ok(n as u64)
    }

    fn max_sequence(&self) -> Result<u64, StoreError> {
        Ok(self.load_operations()?.last().map_or(0, |op| op.sequence))
    }

    fn get_with_operations(
        &self,
        table: &str,
        id: &str,
    ) -> Result<(Option<Item>, Vec<Operation>), StoreError> {
        Ok((self.get(table, id)?, self.operations_for(table, id)?))
    }
}
