//! Items are flat JSON objects; [`ItemExt`] reads their system properties.

use time::OffsetDateTime;

use crate::system;
use crate::time_fmt::parse_timestamp;

/// One table row as it travels: a JSON object.
pub type Item = serde_json::Map<String, serde_json::Value>;

/// Typed access to the system properties of an [`Item`] (exact, case-sensitive names).
pub trait ItemExt {
    /// The `id`, when it is a string.
    fn id(&self) -> Option<&str>;
    /// The `version`, when it is a string.
    fn version(&self) -> Option<&str>;
    /// The `updatedAt`, when it is a string holding a valid timestamp.
    fn updated_at(&self) -> Option<OffsetDateTime>;
    /// True when `deleted` is JSON `true`.
    fn is_deleted(&self) -> bool;
}

impl ItemExt for Item {
    fn id(&self) -> Option<&str> {
        self.get(system::ID).and_then(serde_json::Value::as_str)
    }

    fn version(&self) -> Option<&str> {
        self.get(system::VERSION)
            .and_then(serde_json::Value::as_str)
    }

    fn updated_at(&self) -> Option<OffsetDateTime> {
        let text = self.get(system::UPDATED_AT)?.as_str()?;
        parse_timestamp(text).ok()
    }

    fn is_deleted(&self) -> bool {
        self.get(system::DELETED)
            .and_then(serde_json::Value::as_bool)
            == Some(true)
    }
}
