//! The store side of the batch extension: many writes in one transaction, each with the op
//! id the client gave it, so that a batch sent again is applied once.
//!
//! Each [`BatchWrite`] is decided and written on its own inside the batch's transaction: its
//! [`Decide`] runs on the current row (which sees the earlier writes of the same batch), and
//! an op whose decision fails writes nothing, so a conflicting op never rolls back the others.
//! Only failures of the database itself abort the whole batch.
//!
//! Applied ops are remembered in the table [`OPS_TABLE`] (`user_id`, `op_id`, `table_name`,
//! `fingerprint`, `result`, `at`) for the configured retention, keyed by [`OpKey`]: an op id
//! belongs to one user and one table, so one user's op ids can neither answer nor overwrite
//! another's. A later op with the same key *and* the same fingerprint (the SHA-256 of the user
//! and the op's content) answers the remembered result without being applied again; an op id
//! reused for different content (the client merged a new edit into the op after losing an
//! answer) is applied as new.

use sha2::{Digest, Sha256};

use super::{Decide, Outcome};

/// The table of remembered op ids, in every store.
pub const OPS_TABLE: &str = "__tidesync_batch_ops";

/// The table of remembered op ids before they were scoped by user and table (dropped when a
/// store opens: its unscoped ids and 64-bit fingerprints cannot be matched any more).
pub const LEGACY_OPS_TABLE: &str = "__tidesync_ops";

/// What a remembered op is found by: the user who sent it (empty without a token), the
/// table it wrote and the client's op id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpKey {
    /// The sending user's id (`sub`), empty for a caller without a token.
    pub user: String,
    /// The table.
    pub table: String,
    /// The client's op id.
    pub op_id: String,
}

/// The answer of one op, rendered for the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The JSON text of the op's result.
    pub json: String,
    /// Whether to remember it under the op id (applied ops are; refused ones are not, so a
    /// retry after the client resolved the refusal is decided again).
    pub remember: bool,
}

/// Turns the outcome of a write into its wire result. Runs inside the transaction; must not
/// block.
pub type Render = Box<dyn FnOnce(Outcome) -> Rendered + Send>;

/// One write of a batch.
pub struct BatchWrite {
    /// The sending user's id (empty for a caller without a token): remembered op ids are
    /// scoped by it and by the table.
    pub user: String,
    /// The client's op id.
    pub op_id: String,
    /// [`fingerprint`] of the user and the op's content.
    pub fingerprint: String,
    /// The table.
    pub table: String,
    /// The item id.
    pub id: String,
    /// The protocol decision.
    pub decide: Decide,
    /// The wire form of the outcome.
    pub render: Render,
}

impl BatchWrite {
    /// The key the op is remembered under.
    pub fn key(&self) -> OpKey {
        OpKey {
            user: self.user.clone(),
            table: self.table.clone(),
            op_id: self.op_id.clone(),
        }
    }
}

impl std::fmt::Debug for BatchWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchWrite")
            .field("op_id", &self.op_id)
            .field("table", &self.table)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The SHA-256 of `parts` (each followed by a 0 byte), as 64 hex digits.
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut hash = Fingerprint::new();
    for part in parts {
        hash.bytes(part);
        hash.end_part();
    }
    hash.finish()
}

/// [`fingerprint`] computed as the parts are written (e.g. by `serde_json::to_writer`), so
/// that a part need not be built as one buffer first. A cryptographic hash: nobody can make
/// another op that answers with an op's remembered result.
#[derive(Debug, Clone, Default)]
pub struct Fingerprint {
    hash: Sha256,
}

impl Fingerprint {
    /// The hash of nothing.
    pub fn new() -> Fingerprint {
        Fingerprint::default()
    }

    /// Adds bytes to the current part.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.hash.update(bytes);
    }

    /// Ends the current part (the 0 byte that separates parts).
    pub fn end_part(&mut self) {
        self.bytes(&[0]);
    }

    /// The hash as 64 hex digits.
    pub fn finish(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = self.hash.clone().finalize();
        let mut text = String::with_capacity(digest.len() * 2);
        for byte in digest {
            // A `format!` per byte cost more than the hash itself.
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        text
    }
}

impl std::io::Write for Fingerprint {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_separate_parts_and_are_stable() {
        assert_eq!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"ab", b"c"]));
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]));
        // SHA-256 of the empty input.
        assert_eq!(
            fingerprint(&[]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_streamed_fingerprint_equals_the_one_of_the_text() {
        let op = serde_json::json!({"id": "op", "item": {"text": "é\"x", "n": 1.5, "b": [true]}});
        let mut streamed = Fingerprint::new();
        streamed.bytes(b"alice");
        streamed.end_part();
        serde_json::to_writer(&mut streamed, &op).unwrap();
        streamed.end_part();
        assert_eq!(
            streamed.finish(),
            fingerprint(&[b"alice", op.to_string().as_bytes()])
        );
    }
}
