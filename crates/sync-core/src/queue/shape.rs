//! Item shaping: how an item from the app or the server is fitted to its local
//! table, and how a stored row is shown to the app and sent to the server.

use std::borrow::Cow;

use serde_json::Value;
use tidesync_protocol::Item;
use tidesync_protocol::system::{ID, VERSION, is_system_property};

use crate::model::{InvalidItem, TableDef, UNMAPPED_COLUMN, fit_value};

/// Keeps only the columns a table has, checking and normalising their values.
/// App data refuses unknown properties; server data keeps the ones that are not
/// system properties in [`UNMAPPED_COLUMN`], so that push can send them back.
pub(crate) fn conform_item(
    def: &TableDef,
    item: &Item,
    from_server: bool,
) -> std::result::Result<Item, InvalidItem> {
    conform_owned(def, item.clone(), from_server)
}

/// [`conform_item`] on an owned item: values already in normal form are kept, not copied.
pub(crate) fn conform_owned(
    def: &TableDef,
    mut item: Item,
    from_server: bool,
) -> std::result::Result<Item, InvalidItem> {
    conform_in_place(def, &mut item, from_server)?;
    Ok(item)
}

/// [`conform_item`] in place. On an error the item is left with some values in
/// normal form and nothing removed (its caller may still show it).
pub(crate) fn conform_in_place(
    def: &TableDef,
    item: &mut Item,
    from_server: bool,
) -> std::result::Result<(), InvalidItem> {
    let mut unknown = false;
    for (name, value) in item.iter_mut() {
        match defined_type(def, name) {
            Some(ty) => {
                let normal = match fit_value(def.name(), name, ty, value)? {
                    Cow::Borrowed(_) => None,
                    Cow::Owned(normal) => Some(normal),
                };
                if let Some(normal) = normal {
                    *value = normal;
                }
            }
            None if from_server || is_system_property(name) => unknown = true,
            None => {
                return Err(InvalidItem::UnknownColumn {
                    table: def.name().to_owned(),
                    column: name.clone(),
                });
            }
        }
    }
    if !unknown {
        return Ok(());
    }
    let mut unmapped = Item::new();
    item.retain(|name, value| {
        if defined_type(def, name).is_some() {
            return true;
        }
        if from_server && !is_system_property(name) && name != UNMAPPED_COLUMN {
            unmapped.insert(name.clone(), std::mem::take(value));
        }
        false
    });
    if !unmapped.is_empty() {
        item.insert(UNMAPPED_COLUMN.to_owned(), Value::Object(unmapped));
    }
    Ok(())
}

/// The type of a column the app may write: every column of the table but the
/// engine's hidden [`UNMAPPED_COLUMN`].
fn defined_type(def: &TableDef, name: &str) -> Option<crate::model::ColumnType> {
    if name == UNMAPPED_COLUMN {
        return None;
    }
    def.column_type(name)
}

/// A stored row as the app sees it: without the engine's hidden column.
pub(crate) fn app_view(mut row: Item) -> Item {
    row.remove(UNMAPPED_COLUMN);
    row
}

/// A stored row as the server knows it: the properties kept in the hidden
/// column are put back beside the defined ones (which win on a clash).
pub(crate) fn server_view(row: &mut Item) {
    if let Some(Value::Object(unmapped)) = row.remove(UNMAPPED_COLUMN) {
        for (name, value) in unmapped {
            row.entry(name).or_insert(value);
        }
    }
}

/// `item` for a write resent against the server's copy (client wins, a merge,
/// a retry after an error): what the local table defines comes from `item`,
/// the properties it does not define from `server`. The app never edits those
/// (it cannot see them), so the server's values are the current ones; taking
/// them keeps a full replace from erasing or rolling back another client's
/// change to a column this app does not know.
pub(crate) fn with_server_unmapped(def: &TableDef, mut item: Item, server: &Item) -> Item {
    item.retain(|name, _| defined_type(def, name).is_some());
    for (name, value) in server {
        if !is_system_property(name) && defined_type(def, name).is_none() {
            item.insert(name.clone(), value.clone());
        }
    }
    item
}

/// Overlays a server copy (already conformed) on the stored row: the server's
/// values win, and the row's hidden column is the server copy's.
pub(crate) fn overlay_server_copy(mut row: Item, server: Item) -> Item {
    row.remove(UNMAPPED_COLUMN);
    merge_into(row, server)
}

/// Removes `createdAt`, `updatedAt` and `deleted` (any case), keeping `version`.
pub(crate) fn strip_all_but_version(item: &mut Item) {
    let strip = |k: &str| k != VERSION && is_system_property(k);
    // App items rarely carry any: looking costs less than `retain` walking the map.
    if item.keys().any(|k| strip(k)) {
        item.retain(|k, _| !strip(k));
    }
}

/// Overlays `changes` on `row` (the reference store's column merge).
pub(crate) fn merge_into(mut row: Item, changes: Item) -> Item {
    for (k, v) in changes {
        row.insert(k, v);
    }
    row
}

/// What an insert or update sends for `row`: the row without system properties
/// but `id`, with the server's properties the local table does not define put
/// back beside the others (a v3 update replaces the whole item), and the row's
/// `version` apart, as the `If-Match` to send.
pub(crate) fn sent_form(mut row: Item) -> (Item, Option<String>) {
    row.retain(|k, _| k == ID || k == VERSION || !is_system_property(k));
    server_view(&mut row);
    let if_match = row
        .remove(VERSION)
        .and_then(|v| v.as_str().map(str::to_owned))
        .filter(|v| !v.is_empty());
    (row, if_match)
}

/// Where an op keeps its earlier unanswered attempts: a key inside its `item`
/// (engine bookkeeping, opaque to stores, removed from every view the app
/// gets). An insert's or update's `item` is its last attempt; a delete's is its
/// snapshot. Any earlier attempt may be what the server holds when an answer
/// was lost, so push recognises each of them as its own write.
pub(crate) const EARLIER_ATTEMPTS: &str = "__tidesync_earlier_attempts";

/// How many earlier attempts an op remembers (the oldest are forgotten first;
/// each one needs an answer lost, so more is unlikely).
pub(crate) const MAX_EARLIER_ATTEMPTS: usize = 8;

/// An op's `item` without its earlier attempts, and the attempts.
pub(crate) fn split_attempts(mut item: Item) -> (Item, Vec<Item>) {
    let attempts = match item.remove(EARLIER_ATTEMPTS) {
        Some(Value::Array(list)) => list
            .into_iter()
            .filter_map(|v| match v {
                Value::Object(map) => Some(map),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    (item, attempts)
}

/// `item` carrying `attempts` (the newest last, at most
/// [`MAX_EARLIER_ATTEMPTS`]).
pub(crate) fn with_attempts(mut item: Item, mut attempts: Vec<Item>) -> Item {
    if attempts.len() > MAX_EARLIER_ATTEMPTS {
        attempts.drain(..attempts.len() - MAX_EARLIER_ATTEMPTS);
    }
    if !attempts.is_empty() {
        item.insert(
            EARLIER_ATTEMPTS.to_owned(),
            Value::Array(attempts.into_iter().map(Value::Object).collect()),
        );
    }
    item
}

/// An op as the app and conflict handlers see it: without the engine's record
/// of earlier attempts.
pub(crate) fn op_view(mut op: crate::model::Operation) -> crate::model::Operation {
    if let Some(item) = op.item.take() {
        op.item = Some(split_attempts(item).0);
    }
    op
}
