//! The collapse matrix: what a new local write does to the op already queued
//! for the same item (reference client, spec §2.3).

use crate::error::QueueRefusal;
use crate::model::{OpKind, OpState};

/// What a new local write does to the queue, given the newest op of its item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Collapse {
    /// Queue the new op at the end.
    Enqueue,
    /// Fold the new op into the existing one (its version goes up; sequence kept).
    Merge,
    /// The existing insert and the new delete cancel out: both vanish.
    Annihilate,
    /// Drop the existing update and queue the delete at the end, op version 2.
    ReplaceWithDelete,
}

/// The collapse matrix (reference client, spec §2.3), plus tidesync's rule for
/// ops being pushed right now: a write behind an in-flight op is queued after it.
pub(crate) fn collapse(
    existing: Option<(OpKind, OpState)>,
    in_flight: bool,
    new: OpKind,
) -> std::result::Result<Collapse, QueueRefusal> {
    use OpKind::{Delete, Insert, Update};
    let Some((kind, state)) = existing else {
        return Ok(Collapse::Enqueue);
    };
    if in_flight {
        return match (kind, new) {
            (Delete, _) => Err(QueueRefusal::DeleteQueued),
            (_, Insert) => Err(QueueRefusal::InsertAfterQueued(kind)),
            _ => Ok(Collapse::Enqueue),
        };
    }
    match (kind, new) {
        (Delete, _) => Err(QueueRefusal::DeleteQueued),
        (_, Insert) => Err(QueueRefusal::InsertAfterQueued(kind)),
        (Insert | Update, Update) => Ok(Collapse::Merge),
        (Insert, Delete) if state == OpState::Pending => Ok(Collapse::Annihilate),
        (Insert, Delete) => Err(QueueRefusal::InsertMayBeOnServer),
        (Update, Delete) => Ok(Collapse::ReplaceWithDelete),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OpKind::{Delete, Insert, Update};
    use OpState::{Attempted, Failed, Pending};

    /// One row of the matrix: existing op, in flight?, new op, expected outcome.
    fn check_collapse(
        existing: Option<(OpKind, OpState)>,
        in_flight: bool,
        new: OpKind,
        expect: std::result::Result<Collapse, QueueRefusal>,
    ) {
        assert_eq!(
            collapse(existing, in_flight, new),
            expect,
            "existing {existing:?} (in flight: {in_flight}) + new {new:?}"
        );
    }

    #[test]
    fn collapse_matrix_matches_the_reference() {
        use Collapse::*;
        let rows = [
            (None, Insert, Ok(Enqueue)),
            (None, Update, Ok(Enqueue)),
            (None, Delete, Ok(Enqueue)),
            (
                Some((Insert, Pending)),
                Insert,
                Err(QueueRefusal::InsertAfterQueued(Insert)),
            ),
            (Some((Insert, Pending)), Update, Ok(Merge)),
            (Some((Insert, Pending)), Delete, Ok(Annihilate)),
            (
                Some((Insert, Attempted)),
                Insert,
                Err(QueueRefusal::InsertAfterQueued(Insert)),
            ),
            (Some((Insert, Attempted)), Update, Ok(Merge)),
            (
                Some((Insert, Attempted)),
                Delete,
                Err(QueueRefusal::InsertMayBeOnServer),
            ),
            (Some((Insert, Failed)), Update, Ok(Merge)),
            (
                Some((Insert, Failed)),
                Delete,
                Err(QueueRefusal::InsertMayBeOnServer),
            ),
            (
                Some((Update, Pending)),
                Insert,
                Err(QueueRefusal::InsertAfterQueued(Update)),
            ),
            (Some((Update, Pending)), Update, Ok(Merge)),
            (Some((Update, Failed)), Update, Ok(Merge)),
            (Some((Update, Pending)), Delete, Ok(ReplaceWithDelete)),
            (Some((Update, Failed)), Delete, Ok(ReplaceWithDelete)),
            (
                Some((Delete, Pending)),
                Insert,
                Err(QueueRefusal::DeleteQueued),
            ),
            (
                Some((Delete, Pending)),
                Update,
                Err(QueueRefusal::DeleteQueued),
            ),
            (
                Some((Delete, Failed)),
                Delete,
                Err(QueueRefusal::DeleteQueued),
            ),
        ];
        for (existing, new, expect) in rows {
            check_collapse(existing, false, new, expect);
        }
    }

    #[test]
    fn writes_behind_an_in_flight_op_queue_after_it() {
        use Collapse::*;
        let rows = [
            (Insert, Update, Ok(Enqueue)),
            (Insert, Delete, Ok(Enqueue)),
            (Update, Update, Ok(Enqueue)),
            (Update, Delete, Ok(Enqueue)),
            (Insert, Insert, Err(QueueRefusal::InsertAfterQueued(Insert))),
            (Delete, Update, Err(QueueRefusal::DeleteQueued)),
            (Delete, Insert, Err(QueueRefusal::DeleteQueued)),
        ];
        for (existing, new, expect) in rows {
            check_collapse(Some((existing, Attempted)), true, new, expect);
        }
    }
}
