//! The OData query AST: filter expressions, ordering and the query options
//! that travel with a table read.

use time::OffsetDateTime;

/// A `$filter` expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A constant.
    Literal(Literal),
    /// A property of the item, e.g. `complete`.
    Member(String),
    /// Logical negation, `not x`.
    Not(Box<Expr>),
    /// Arithmetic negation, `-x` (a minus sign before a numeric literal is folded into the literal).
    Neg(Box<Expr>),
    /// A binary operator.
    Binary {
        /// Which operator.
        op: BinaryOp,
        /// The left operand.
        left: Box<Expr>,
        /// The right operand.
        right: Box<Expr>,
    },
    /// A function call such as `startswith(text, 'a')`; the arity is checked by the parser.
    Call {
        /// Which function.
        func: Function,
        /// Its arguments, in source order.
        args: Vec<Expr>,
    },
    /// OData v4 `x in ('a', 'b')`.
    In {
        /// The tested expression.
        expr: Box<Expr>,
        /// The candidate values.
        list: Vec<Literal>,
    },
}

/// A constant value in a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer, with an optional `L` suffix on the wire.
    Int(i64),
    /// A real number (never NaN or infinite).
    Float(f64),
    /// A string, single-quoted on the wire with `''` for a quote.
    String(String),
    /// `datetime'…'`, `datetimeoffset'…'`, a bare ISO timestamp or `cast(…, Edm.DateTimeOffset)`.
    DateTime(OffsetDateTime),
}

/// Binary operators, loosest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `or`
    Or,
    /// `and`
    And,
    /// `eq`
    Eq,
    /// `ne`
    Ne,
    /// `gt`
    Gt,
    /// `ge`
    Ge,
    /// `lt`
    Lt,
    /// `le`
    Le,
    /// `add`
    Add,
    /// `sub`
    Sub,
    /// `mul`
    Mul,
    /// `div`
    Div,
    /// `mod`
    Mod,
}

/// The filter functions of the protocol (see the server protocol spec, 7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    /// `substringof(needle, haystack)` (OData v3).
    SubstringOf,
    /// `contains(haystack, needle)` (OData v4).
    Contains,
    /// `startswith(s, prefix)`
    StartsWith,
    /// `endswith(s, suffix)`
    EndsWith,
    /// `tolower(s)`
    ToLower,
    /// `toupper(s)`
    ToUpper,
    /// `trim(s)`
    Trim,
    /// `length(s)`
    Length,
    /// `indexof(s, find)`, 0-based, -1 when absent.
    IndexOf,
    /// `substring(s, start[, len])`, 0-based.
    Substring,
    /// `concat(a, b)`
    Concat,
    /// `replace(s, find, with)`
    Replace,
    /// `year(d)`
    Year,
    /// `month(d)`
    Month,
    /// `day(d)`
    Day,
    /// `hour(d)`
    Hour,
    /// `minute(d)`
    Minute,
    /// `second(d)`
    Second,
    /// `round(x)`
    Round,
    /// `floor(x)`
    Floor,
    /// `ceiling(x)`
    Ceiling,
}

/// One `$orderby` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    /// The property ordered by.
    pub member: String,
    /// `desc` when true.
    pub descending: bool,
}

/// A table query: what `$filter`, `$orderby`, `$skip`, `$top`, `$select` and
/// `$count` say. Used for local queries and for server reads alike.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// `$filter`, if any.
    pub filter: Option<Expr>,
    /// `$orderby` terms in order.
    pub order_by: Vec<OrderBy>,
    /// `$skip`.
    pub skip: Option<u64>,
    /// `$top`.
    pub top: Option<u64>,
    /// `$select`; `None` means every property.
    pub select: Option<Vec<String>>,
    /// `$count=true` / `$inlinecount=allpages`.
    pub count: bool,
}
