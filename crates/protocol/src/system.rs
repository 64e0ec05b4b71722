//! The system properties every item carries and the helpers that strip them before a push.

use crate::Item;

/// The item id. Not a "system property" in the stripping sense: it always travels.
pub const ID: &str = "id";
/// When the server created the item.
pub const CREATED_AT: &str = "createdAt";
/// When the server last wrote the item.
pub const UPDATED_AT: &str = "updatedAt";
/// The opaque server version, also sent as the ETag.
pub const VERSION: &str = "version";
/// The soft-delete flag.
pub const DELETED: &str = "deleted";

/// True for `createdAt`, `updatedAt`, `version` and `deleted`, compared ASCII
/// case-insensitively. `id` is not a system property here: it is never stripped.
pub fn is_system_property(name: &str) -> bool {
    [CREATED_AT, UPDATED_AT, VERSION, DELETED]
        .iter()
        .any(|system| system.eq_ignore_ascii_case(name))
}

/// Removes `name` from `item` in any letter case (a client may send `Id` or
/// `VERSION`), returning the first value found.
pub fn take_any_case(item: &mut Item, name: &str) -> Option<serde_json::Value> {
    let keys: Vec<String> = item
        .keys()
        .filter(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .collect();
    let mut found = None;
    for key in keys {
        let value = item.remove(&key);
        if found.is_none() {
            found = value;
        }
    }
    found
}

/// Removes the system properties (any letter case) from `item`, keeping `version` when
/// `keep_version` is set (updates send it as the expected version).
pub fn strip_system_properties(item: &mut Item, keep_version: bool) {
    item.retain(|name, _| {
        !is_system_property(name) || (keep_version && name.eq_ignore_ascii_case(VERSION))
    });
}
