//! The four things a request can do to a table, named once for the access rules in
//! the configuration and for the policy seam (a leaf: it imports nothing of the crate).

/// What a request does to a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Reads rows (queries, single reads, snapshots, the change feed).
    Read,
    /// Creates a row.
    Insert,
    /// Changes a row (v2 `PATCH`, v3 `PUT`, undelete, a batch update).
    Update,
    /// Deletes a row (a tombstone on soft-delete tables).
    Delete,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 4] = [
        Operation::Read,
        Operation::Insert,
        Operation::Update,
        Operation::Delete,
    ];

    /// The name used in the configuration (`read`, `insert`, `update`, `delete`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }
}
