//! The error type of the `$filter`, `$orderby` and `$select` parsers.

/// Why a filter (or `$orderby` / `$select`) could not be parsed. Every variant carries the
/// byte offset in the input where the problem was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The text does not follow the grammar.
    #[error("{message} at {position}")]
    Syntax {
        /// What was wrong, e.g. `expected an expression`.
        message: String,
        /// Byte offset of the problem.
        position: usize,
    },
    /// A call to a function the protocol does not have.
    #[error("unknown function '{name}' at {position}")]
    UnknownFunction {
        /// The function name as written.
        name: String,
        /// Byte offset of the name.
        position: usize,
    },
    /// The input is longer than [`ParseLimits::max_len`](super::ParseLimits) bytes.
    #[error("filter too long")]
    TooLong {
        /// The limit, which is also where reading stopped.
        position: usize,
    },
    /// The input nests deeper than [`ParseLimits::max_depth`](super::ParseLimits).
    #[error("filter nested too deeply")]
    TooDeep {
        /// Byte offset where the limit was passed.
        position: usize,
    },
}

impl ParseError {
    /// The byte offset in the input where the problem was found.
    pub fn position(&self) -> usize {
        match self {
            ParseError::Syntax { position, .. }
            | ParseError::UnknownFunction { position, .. }
            | ParseError::TooLong { position }
            | ParseError::TooDeep { position } => *position,
        }
    }

    pub(crate) fn syntax(message: impl Into<String>, position: usize) -> ParseError {
        ParseError::Syntax {
            message: message.into(),
            position,
        }
    }
}
