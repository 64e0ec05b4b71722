//! The cost budget of a `$filter`, checked before any SQL is built: how many times its string
//! functions can multiply the length of a stored value.
//!
//! Nested `replace()` calls grow a value geometrically: `replace(replace(text,'a','aaaa'),
//! 'a','aaaa')` makes a 1 KB value 16 KB, five levels 1 MB, and a 121-character filter over
//! 500 rows kept a core busy for seconds. The *growth* of a string expression bounds the
//! length it can produce as a multiple of the longest value it reads:
//!
//! - a column is 1, a literal 0 (its length is bounded by the filter's own);
//! - `concat(a, b)` is `growth(a) + growth(b)`;
//! - `replace(a, b, c)` with a literal `c` is `growth(a)` times `len(c) / len(b)` rounded up
//!   (a non-literal `b` counts as one character; an empty `b` replaces nothing); a `c` that
//!   is not a literal could make the result quadratic in a value's length, so it is refused;
//! - `tolower`, `toupper`, `trim` and `substring` keep the growth of their string.
//!
//! A filter whose growth exceeds `limits.max_string_growth` answers 400 naming the limit,
//! fast, before the database sees it. What stays under the budget is still bounded by the
//! query deadline and (on SQLite) the longest string a read may build.

use tidesync_protocol::odata::{Expr, Function, Literal};

use super::StoreError;

/// Checks the growth of `filter` against `max_growth`.
///
/// # Errors
///
/// [`StoreError::OverLimit`] naming `limits.max_string_growth` when the filter can grow a
/// value more than `max_growth` times.
pub(crate) fn check_filter(filter: &Expr, max_growth: u64) -> Result<(), StoreError> {
    let growth = growth(filter);
    if growth <= max_growth {
        return Ok(());
    }
    let message = if growth == u64::MAX {
        "the filter's replace() takes a replacement that is not a string literal, which can \
         build strings without bound"
            .to_owned()
    } else {
        format!(
            "the filter's string functions can make a value {growth} times as long; the server \
             allows {max_growth} (replace() and concat() multiply)"
        )
    };
    Err(StoreError::OverLimit {
        limit: "limits.max_string_growth",
        message,
    })
}

/// The growth of `expr` (see the module documentation); for an expression that is not a
/// string, the largest growth of a string inside it.
fn growth(expr: &Expr) -> u64 {
    match expr {
        Expr::Member(_) => 1,
        Expr::Literal(_) => 0,
        Expr::Not(inner) | Expr::Neg(inner) => growth(inner),
        Expr::Binary { left, right, .. } => growth(left).max(growth(right)),
        Expr::In { expr, .. } => growth(expr),
        Expr::Call { func, args } => {
            let arg = |index: usize| args.get(index).map_or(0, growth);
            match func {
                Function::Concat => args.iter().map(growth).fold(0, u64::saturating_add),
                Function::Replace => replace_growth(arg(0), args.get(1), args.get(2)),
                _ => args.iter().map(growth).max().unwrap_or(0),
            }
        }
    }
}

fn replace_growth(subject: u64, search: Option<&Expr>, replacement: Option<&Expr>) -> u64 {
    let replacement = match replacement {
        Some(Expr::Literal(Literal::String(text))) => text.len(),
        Some(Expr::Literal(_)) | None => 0,
        Some(_) => return u64::MAX,
    };
    let factor = match search {
        Some(Expr::Literal(Literal::String(search))) if search.is_empty() => 1,
        Some(Expr::Literal(Literal::String(search))) => replacement.div_ceil(search.len()),
        // Unknown length: at least one character.
        _ => replacement,
    };
    let factor = u64::try_from(factor.max(1)).unwrap_or(u64::MAX);
    subject.max(1).saturating_mul(factor)
}

#[cfg(test)]
mod tests {
    use tidesync_protocol::odata::parse_filter;

    use super::*;

    fn growth_of(filter: &str) -> u64 {
        growth(&parse_filter(filter).unwrap())
    }

    #[test]
    fn string_functions_count_as_the_length_they_can_reach() {
        assert_eq!(growth_of("text eq 'x'"), 1);
        assert_eq!(growth_of("n gt 5"), 1);
        assert_eq!(growth_of("tolower(trim(text)) eq 'x'"), 1);
        assert_eq!(growth_of("concat(text, text) eq 'x'"), 2);
        assert_eq!(growth_of("concat(concat(text, 'x'), text) eq 'x'"), 2);
        assert_eq!(growth_of("replace(text, 'a', 'aaaa') eq 'x'"), 4);
        assert_eq!(growth_of("replace(text, 'aa', 'aaa') eq 'x'"), 2);
        assert_eq!(growth_of("replace(text, '', 'aaaa') eq 'x'"), 1);
        assert_eq!(growth_of("replace(text, 'aaaa', 'a') eq 'x'"), 1);
        assert_eq!(growth_of("replace(text, text, 'abc') eq 'x'"), 3);
        assert_eq!(
            growth_of(
                "length(replace(replace(replace(text,'a','aaaa'),'a','aaaa'),'a','aaaa')) gt 0"
            ),
            64
        );
        assert_eq!(growth_of("replace(text, 'a', text) eq 'x'"), u64::MAX);
    }

    #[test]
    fn a_filter_over_the_budget_names_the_limit() {
        let five = parse_filter(
            "length(replace(replace(replace(replace(replace(text,'a','aaaaa'),'a','aaaaa'),'a','aaaaa'),'a','aaaaa'),'a','aaaaa')) eq 1",
        )
        .unwrap();
        match check_filter(&five, 16) {
            Err(StoreError::OverLimit { limit, message }) => {
                assert_eq!(limit, "limits.max_string_growth");
                assert!(message.contains("3125"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let two = parse_filter("replace(replace(text,'a','aaaa'),'a','aaaa') eq 'x'").unwrap();
        assert!(check_filter(&two, 16).is_ok());
    }
}
