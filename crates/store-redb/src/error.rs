//! How redb's errors become [`StoreError`]s.

use tidesync_core::StoreError;

/// Maps any redb error: a lock held by another handle or process is `Busy`, a
/// damaged file or a file that is not a redb database is `Corrupt`, anything
/// else (I/O, a full disk) is `Backend` with the redb error as its source.
pub(crate) fn from_redb(err: impl Into<redb::Error>) -> StoreError {
    match err.into() {
        redb::Error::DatabaseAlreadyOpen => {
            StoreError::Busy("the store file is open in another handle or process".to_owned())
        }
        redb::Error::LockProtocolMismatch => StoreError::Busy(
            "the store file is open in a process using another redb locking protocol".to_owned(),
        ),
        redb::Error::Corrupted(message) => StoreError::Corrupt(message),
        redb::Error::UpgradeRequired(version) => StoreError::Corrupt(format!(
            "redb file format {version} is too old for this build of redb"
        )),
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            StoreError::Corrupt(format!("not a redb database: {io}"))
        }
        other => StoreError::backend(other),
    }
}

/// A plain message as an error source, for [`StoreError::Backend`].
#[derive(Debug)]
pub(crate) struct Message(pub(crate) String);

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

/// Maps a JSON failure while encoding or decoding a stored op, error record or
/// table definition: decoding failures mean the file holds bytes this build
/// did not write.
pub(crate) fn corrupt_json(what: &str, err: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("{what}: {err}"))
}
