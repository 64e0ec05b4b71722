//! Builders for filter expressions in Rust code:
//! `col("complete").eq(false).and(col("text").starts_with("a"))`.

use time::OffsetDateTime;

use super::ast::{BinaryOp, Expr, Function, Literal};

/// A reference to the item property `name`.
pub fn col(name: impl Into<String>) -> Expr {
    Expr::Member(name.into())
}

/// The rows after the keyset position `(updated_at, id)` in `(updatedAt, id)` order:
/// `(updatedAt ge T) and ((updatedAt gt T) or (id gt 'X'))`. It selects the same rows as
/// `(updatedAt gt T) or ((updatedAt eq T) and (id gt 'X'))`, but the leading `ge` lets a
/// SQL store seek its `(updatedAt, id)` index instead of scanning it from the start (SQLite
/// scanned with the other form, so each page of a long read cost more than the last).
pub fn after_keyset(updated_at: OffsetDateTime, id: &str) -> Expr {
    col(crate::system::UPDATED_AT).ge(updated_at).and(
        col(crate::system::UPDATED_AT)
            .gt(updated_at)
            .or(col(crate::system::ID).gt(id)),
    )
}

/// `filter and more`, or `more` alone when there is no filter.
pub fn and_maybe(filter: Option<Expr>, more: Expr) -> Expr {
    match filter {
        Some(filter) => filter.and(more),
        None => more,
    }
}

/// A constant. Non-finite floats become [`Literal::Null`].
pub fn lit(value: impl Into<Literal>) -> Expr {
    Expr::Literal(value.into())
}

macro_rules! binary_methods {
    ($($(#[$doc:meta])* $method:ident => $op:ident;)*) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $method(self, other: impl Into<Expr>) -> Expr {
                self.binary(BinaryOp::$op, other.into())
            }
        )*
    };
}

macro_rules! unary_calls {
    ($($(#[$doc:meta])* $method:ident => $func:ident;)*) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $method(self) -> Expr {
                self.call(Function::$func, Vec::new())
            }
        )*
    };
}

macro_rules! binary_calls {
    ($($(#[$doc:meta])* $method:ident => $func:ident;)*) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $method(self, other: impl Into<Expr>) -> Expr {
                self.call(Function::$func, vec![other.into()])
            }
        )*
    };
}

// The arithmetic and `not` methods deliberately share names with the std operator traits:
// they build expressions, they do not compute.
#[allow(clippy::should_implement_trait)]
impl Expr {
    binary_methods! {
        /// `self eq other`
        eq => Eq;
        /// `self ne other`
        ne => Ne;
        /// `self gt other`
        gt => Gt;
        /// `self ge other`
        ge => Ge;
        /// `self lt other`
        lt => Lt;
        /// `self le other`
        le => Le;
        /// `self add other`
        add => Add;
        /// `self sub other`
        sub => Sub;
        /// `self mul other`
        mul => Mul;
        /// `self div other`
        div => Div;
        /// `self mod other`
        modulo => Mod;
    }

    /// `self and other`
    #[must_use]
    pub fn and(self, other: Expr) -> Expr {
        self.binary(BinaryOp::And, other)
    }

    /// `self or other`
    #[must_use]
    pub fn or(self, other: Expr) -> Expr {
        self.binary(BinaryOp::Or, other)
    }

    /// `not self`
    #[must_use]
    pub fn not(self) -> Expr {
        Expr::Not(Box::new(self))
    }

    /// `self eq null`: true when the property is missing or null.
    #[must_use]
    pub fn is_null(self) -> Expr {
        self.binary(BinaryOp::Eq, Expr::Literal(Literal::Null))
    }

    unary_calls! {
        /// `tolower(self)`
        to_lower => ToLower;
        /// `toupper(self)`
        to_upper => ToUpper;
        /// `trim(self)`
        trim => Trim;
        /// `length(self)`
        length => Length;
        /// `year(self)`
        year => Year;
        /// `month(self)`
        month => Month;
        /// `day(self)`
        day => Day;
        /// `hour(self)`
        hour => Hour;
        /// `minute(self)`
        minute => Minute;
        /// `second(self)`
        second => Second;
        /// `round(self)`
        round => Round;
        /// `floor(self)`
        floor => Floor;
        /// `ceiling(self)`
        ceiling => Ceiling;
    }

    binary_calls! {
        /// `startswith(self, prefix)`
        starts_with => StartsWith;
        /// `endswith(self, suffix)`
        ends_with => EndsWith;
        /// `contains(self, needle)`; printed as `substringof(needle, self)` for v2 servers.
        contains => Contains;
        /// `indexof(self, needle)`
        index_of => IndexOf;
        /// `concat(self, other)`
        concat => Concat;
    }

    /// `replace(self, find, with)`
    #[must_use]
    pub fn replace(self, find: impl Into<Expr>, with: impl Into<Expr>) -> Expr {
        self.call(Function::Replace, vec![find.into(), with.into()])
    }

    /// `substring(self, start)` or `substring(self, start, len)`, 0-based, in characters.
    #[must_use]
    pub fn substring(self, start: impl Into<Expr>, len: Option<i64>) -> Expr {
        let mut rest = vec![start.into()];
        rest.extend(len.map(|n| Expr::Literal(Literal::Int(n))));
        self.call(Function::Substring, rest)
    }

    /// `self in (values…)`.
    #[must_use]
    pub fn is_in(self, values: impl IntoIterator<Item = impl Into<Literal>>) -> Expr {
        Expr::In {
            expr: Box::new(self),
            list: values.into_iter().map(Into::into).collect(),
        }
    }

    fn binary(self, op: BinaryOp, right: Expr) -> Expr {
        Expr::Binary {
            op,
            left: Box::new(self),
            right: Box::new(right),
        }
    }

    fn call(self, func: Function, rest: Vec<Expr>) -> Expr {
        let mut args = vec![self];
        args.extend(rest);
        Expr::Call { func, args }
    }
}

impl std::ops::Not for Expr {
    type Output = Expr;

    fn not(self) -> Expr {
        Expr::Not(Box::new(self))
    }
}

impl From<Literal> for Expr {
    fn from(literal: Literal) -> Expr {
        Expr::Literal(literal)
    }
}

macro_rules! literal_from {
    ($($t:ty => |$v:ident| $body:expr;)*) => {
        $(
            impl From<$t> for Literal {
                fn from($v: $t) -> Literal {
                    $body
                }
            }

            impl From<$t> for Expr {
                fn from(value: $t) -> Expr {
                    Expr::Literal(Literal::from(value))
                }
            }
        )*
    };
}

literal_from! {
    bool => |v| Literal::Bool(v);
    i32 => |v| Literal::Int(i64::from(v));
    i64 => |v| Literal::Int(v);
    u32 => |v| Literal::Int(i64::from(v));
    f64 => |v| if v.is_finite() { Literal::Float(v) } else { Literal::Null };
    &str => |v| Literal::String(v.to_owned());
    String => |v| Literal::String(v);
    OffsetDateTime => |v| Literal::DateTime(v);
}

impl<T: Into<Literal>> From<Option<T>> for Literal {
    fn from(value: Option<T>) -> Literal {
        value.map_or(Literal::Null, Into::into)
    }
}

impl<T: Into<Literal>> From<Option<T>> for Expr {
    fn from(value: Option<T>) -> Expr {
        Expr::Literal(value.map_or(Literal::Null, Into::into))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use crate::odata::eval::matches;
    use crate::system::{ID, UPDATED_AT};
    use crate::time_fmt::parse_timestamp;

    #[test]
    fn after_keyset_selects_what_the_or_form_selects() {
        let at = parse_timestamp("2026-01-01T00:00:00.005Z").unwrap();
        let keyset = after_keyset(at, "m");
        let or_form = col(UPDATED_AT)
            .gt(at)
            .or(col(UPDATED_AT).eq(at).and(col(ID).gt("m")));
        for (stamp, id, after) in [
            ("2026-01-01T00:00:00.004Z", "z", false),
            ("2026-01-01T00:00:00.005Z", "a", false),
            ("2026-01-01T00:00:00.005Z", "m", false),
            ("2026-01-01T00:00:00.005Z", "n", true),
            ("2026-01-01T00:00:00.006Z", "a", true),
        ] {
            let item = json!({"updatedAt": stamp, "id": id});
            let item = item.as_object().unwrap();
            assert_eq!(matches(&keyset, item).unwrap(), after, "{stamp} {id}");
            assert_eq!(matches(&or_form, item).unwrap(), after, "{stamp} {id}");
        }
        let no_stamp = json!({"id": "z"});
        assert!(!matches(&keyset, no_stamp.as_object().unwrap()).unwrap());
    }
}
