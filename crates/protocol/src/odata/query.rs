//! The [`Query`] builder and the translation between a query and `$`-options in a URL.

use std::fmt::Write as _;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};

use super::ast::{BinaryOp, Expr, OrderBy, Query};
use super::error::ParseError;
use super::parser::{ParseLimits, parse_filter_with, parse_order_by, parse_select};

/// Which OData dialect a server speaks; decides the count option and filter spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Azure Mobile Apps: `$inlinecount=allpages`, `substringof`, `datetimeoffset'…'`.
    V2,
    /// Datasync (OData v4): `$count=true`, `contains`, bare timestamps.
    V3,
}

/// Why the query options of a request could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A parameter has a value outside its domain (`$top=-1`, `$count=maybe`).
    #[error("invalid {name}: {message}")]
    InvalidParameter {
        /// The parameter, e.g. `$top`.
        name: String,
        /// What is wrong with its value.
        message: String,
    },
    /// `$filter`, `$orderby` or `$select` does not parse.
    #[error("invalid {name}: {source}")]
    Syntax {
        /// The parameter, e.g. `$filter`.
        name: String,
        /// The parse error, with its position in the parameter value.
        source: ParseError,
    },
}

impl QueryError {
    /// The query parameter the error is about.
    pub fn parameter(&self) -> &str {
        match self {
            QueryError::InvalidParameter { name, .. } | QueryError::Syntax { name, .. } => name,
        }
    }
}

/// Characters escaped in query strings: everything but ASCII letters, digits and
/// `- _ . ~ $ ' ( ) , :`, so `+` becomes `%2B` and a space `%20`.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'$')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b',')
    .remove(b':');

impl Query {
    /// An empty query: every item, no order, no paging.
    pub fn new() -> Query {
        Query::default()
    }

    /// The same as [`Query::new`]; reads well at call sites (`Query::all().top(10)`).
    pub fn all() -> Query {
        Query::default()
    }

    /// Adds a filter, combined with `and` with any filter already set.
    #[must_use]
    pub fn filter(mut self, expr: Expr) -> Query {
        self.filter = Some(match self.filter.take() {
            Some(existing) => Expr::Binary {
                op: BinaryOp::And,
                left: Box::new(existing),
                right: Box::new(expr),
            },
            None => expr,
        });
        self
    }

    /// Appends an ascending `$orderby` term.
    #[must_use]
    pub fn order_by(mut self, member: &str) -> Query {
        self.order_by.push(OrderBy {
            member: member.to_owned(),
            descending: false,
        });
        self
    }

    /// Appends a descending `$orderby` term.
    #[must_use]
    pub fn order_by_desc(mut self, member: &str) -> Query {
        self.order_by.push(OrderBy {
            member: member.to_owned(),
            descending: true,
        });
        self
    }

    /// Sets `$skip`.
    #[must_use]
    pub fn skip(mut self, n: u64) -> Query {
        self.skip = Some(n);
        self
    }

    /// Sets `$top`.
    #[must_use]
    pub fn top(mut self, n: u64) -> Query {
        self.top = Some(n);
        self
    }

    /// Sets `$select`, replacing any earlier selection.
    #[must_use]
    pub fn select(mut self, members: impl IntoIterator<Item = impl Into<String>>) -> Query {
        self.select = Some(members.into_iter().map(Into::into).collect());
        self
    }

    /// Asks for the total count of matching items.
    #[must_use]
    pub fn with_count(mut self) -> Query {
        self.count = true;
        self
    }

    /// The query as (name, value) pairs, unencoded, in the order `$filter`, `$orderby`,
    /// `$skip`, `$top`, `$select`, count. Only options that are set appear; an empty
    /// `$select` list is left out.
    pub fn to_query_pairs(&self, dialect: Dialect) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        if let Some(filter) = &self.filter {
            pairs.push(("$filter".to_owned(), filter.to_odata(dialect)));
        }
        if !self.order_by.is_empty() {
            let terms: Vec<String> = self
                .order_by
                .iter()
                .map(|term| {
                    if term.descending {
                        format!("{} desc", term.member)
                    } else {
                        term.member.clone()
                    }
                })
                .collect();
            pairs.push(("$orderby".to_owned(), terms.join(",")));
        }
        if let Some(skip) = self.skip {
            pairs.push(("$skip".to_owned(), skip.to_string()));
        }
        if let Some(top) = self.top {
            pairs.push(("$top".to_owned(), top.to_string()));
        }
        if let Some(select) = self.select.as_ref().filter(|s| !s.is_empty()) {
            pairs.push(("$select".to_owned(), select.join(",")));
        }
        if self.count {
            pairs.push(match dialect {
                Dialect::V2 => ("$inlinecount".to_owned(), "allpages".to_owned()),
                Dialect::V3 => ("$count".to_owned(), "true".to_owned()),
            });
        }
        pairs
    }

    /// [`Query::to_query_pairs`] joined as a percent-encoded query string without the `?`.
    pub fn to_query_string(&self, dialect: Dialect) -> String {
        let mut out = String::new();
        for (i, (name, value)) in self.to_query_pairs(dialect).iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            let _ = write!(
                out,
                "{}={}",
                percent_encode(name.as_bytes(), QUERY_VALUE),
                percent_encode(value.as_bytes(), QUERY_VALUE)
            );
        }
        out
    }

    /// Reads a query from already percent-decoded (name, value) pairs.
    ///
    /// Understands `$filter`, `$orderby`, `$top`, `$skip`, `$select` (`*` means all),
    /// `$count` (`true`/`false`) and `$inlinecount` (`allpages`/`none`); names match ASCII
    /// case-insensitively. Other parameters, `$`-prefixed or not, are ignored. A blank value
    /// counts as absent.
    ///
    /// # Errors
    ///
    /// [`QueryError::Syntax`] when `$filter`, `$orderby` or `$select` does not parse;
    /// [`QueryError::InvalidParameter`] for a non-numeric or negative `$top`/`$skip`, an
    /// unknown `$count`/`$inlinecount` value, or an option given twice.
    pub fn from_query_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        limits: &ParseLimits,
    ) -> Result<Query, QueryError> {
        const KNOWN: [&str; 7] = [
            "$filter",
            "$orderby",
            "$top",
            "$skip",
            "$select",
            "$count",
            "$inlinecount",
        ];
        let mut seen: Vec<&str> = Vec::new();
        let mut query = Query::new();
        for (raw_name, value) in pairs {
            let Some(name) = KNOWN.into_iter().find(|k| k.eq_ignore_ascii_case(raw_name)) else {
                continue;
            };
            if seen.contains(&name) {
                return Err(invalid(name, "given more than once"));
            }
            seen.push(name);
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let syntax = |source| QueryError::Syntax {
                name: name.to_owned(),
                source,
            };
            match name {
                "$filter" => query.filter = Some(parse_filter_with(value, limits).map_err(syntax)?),
                "$orderby" => query.order_by = parse_order_by(value).map_err(syntax)?,
                "$top" => query.top = Some(parse_count(name, value)?),
                "$skip" => query.skip = Some(parse_count(name, value)?),
                "$select" if value == "*" => query.select = None,
                "$select" => query.select = Some(parse_select(value).map_err(syntax)?),
                "$count" => {
                    query.count = match value.to_ascii_lowercase().as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(invalid(name, "expected 'true' or 'false'")),
                    };
                }
                _ => {
                    query.count = match value.to_ascii_lowercase().as_str() {
                        "allpages" => true,
                        "none" => false,
                        _ => return Err(invalid(name, "expected 'allpages' or 'none'")),
                    };
                }
            }
        }
        Ok(query)
    }
}

fn invalid(name: &str, message: &str) -> QueryError {
    QueryError::InvalidParameter {
        name: name.to_owned(),
        message: message.to_owned(),
    }
}

fn parse_count(name: &str, value: &str) -> Result<u64, QueryError> {
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(name, "expected a non-negative integer"));
    }
    value
        .parse::<u64>()
        .map_err(|_| invalid(name, "number too large"))
}
