//! A page of rows written straight to JSON: each [`Row`] is serialized as its wire item
//! (the keys in the order `serde_json` gives an [`Item`](tidesync_protocol::Item) map)
//! without building that map first, so a page costs one pass over its rows.

use serde::ser::{Serialize, SerializeMap, Serializer};
use tidesync_protocol::{encode_version, format_timestamp, system};

use crate::store::{Row, ms_to_time};

/// A row as its wire item (what [`Row::to_item`] gives, serialized).
pub(crate) struct WireRow<'a> {
    pub(crate) row: &'a Row,
    pub(crate) soft_delete: bool,
}

impl Serialize for WireRow<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let row = self.row;
        // The system properties in key order; the user columns are in key order already
        // (a sorted map) and never share a name with them.
        let system: [(&str, System); 5] = [
            (system::CREATED_AT, System::Time(row.created_at_ms)),
            (system::DELETED, System::Deleted),
            (system::ID, System::Id),
            (system::UPDATED_AT, System::Time(row.updated_at_ms)),
            (system::VERSION, System::Version),
        ];
        let system: Vec<&(&str, System)> = system
            .iter()
            .filter(|(name, _)| self.soft_delete || *name != system::DELETED)
            .collect();
        let mut map =
            serializer.serialize_map(Some(row.values.len().saturating_add(system.len())))?;
        let mut user = row.values.iter().peekable();
        for (name, value) in system {
            while let Some((column, column_value)) = user.next_if(|(c, _)| c.as_str() < *name) {
                map.serialize_entry(column, column_value)?;
            }
            match value {
                System::Time(ms) => {
                    map.serialize_entry(name, &format_timestamp(ms_to_time(*ms)))?;
                }
                System::Deleted => map.serialize_entry(name, &row.deleted)?,
                System::Id => map.serialize_entry(name, &row.id)?,
                System::Version => map.serialize_entry(name, &encode_version(row.version))?,
            }
        }
        for (column, value) in user {
            map.serialize_entry(column, value)?;
        }
        map.end()
    }
}

/// Which system property an entry is.
enum System {
    Time(i64),
    Deleted,
    Id,
    Version,
}

/// A v2 page with its count: `{"results":[…],"count":n}` (as `V2CountedPage`).
#[derive(serde::Serialize)]
pub(crate) struct V2Counted<'a> {
    pub(crate) results: &'a [WireRow<'a>],
    pub(crate) count: u64,
}

/// A v3 page: `{"items":[…],"count":…,"nextLink":…}` (as `V3Page`).
#[derive(serde::Serialize)]
pub(crate) struct V3<'a> {
    pub(crate) items: &'a [WireRow<'a>],
    pub(crate) count: Option<u64>,
    #[serde(rename = "nextLink")]
    pub(crate) next_link: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn a_wire_row_is_the_item_of_the_row() {
        let mut values = tidesync_protocol::Item::new();
        // Keys before, between and after the system ones, in both cases.
        for (name, value) in [
            ("Zeta", json!(1)),
            ("alpha", json!("a")),
            ("done", json!(true)),
            ("text", json!({"k": [1, 2.5, null]})),
            ("zz", Value::Null),
        ] {
            values.insert(name.to_owned(), value);
        }
        let row = Row {
            id: "r\"1".to_owned(),
            created_at_ms: 1_700_000_000_123,
            updated_at_ms: 1_700_000_001_456,
            version: 42,
            deleted: true,
            values,
        };
        for soft_delete in [true, false] {
            let direct = serde_json::to_string(&WireRow {
                row: &row,
                soft_delete,
            })
            .unwrap();
            let built = serde_json::to_string(&row.to_item(soft_delete)).unwrap();
            assert_eq!(direct, built);
        }
    }
}
