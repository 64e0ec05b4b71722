//! Recursive-descent parser for `$filter` (server protocol 7.2), plus the small
//! `$orderby` and `$select` parsers.

use super::ast::{BinaryOp, Expr, Function, Literal, OrderBy};
use super::error::ParseError;
use super::lexer::{Token, TokenKind, is_identifier, tokenize};

/// Bounds on the input a parser accepts, so a hostile query cannot exhaust the stack or CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseLimits {
    /// Longest accepted input, in bytes.
    pub max_len: usize,
    /// Deepest accepted nesting (parentheses, unary operators, calls and operator chains).
    pub max_depth: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_len: 16_384,
            max_depth: 64,
        }
    }
}

/// Parses a `$filter` expression with the default [`ParseLimits`].
///
/// The text must already be percent-decoded (`+` is not a space here).
///
/// # Errors
///
/// A [`ParseError`] with the byte position of the first problem.
pub fn parse_filter(input: &str) -> Result<Expr, ParseError> {
    parse_filter_with(input, &ParseLimits::default())
}

/// Parses a `$filter` expression within `limits`.
///
/// `cast(<timestamp or string>, Edm.DateTimeOffset)` becomes a [`Literal::DateTime`]; every
/// other cast (`Edm.Guid`, `Edm.String`, `Edm.Date`, …) is refused with a parse error.
///
/// # Errors
///
/// [`ParseError::TooLong`] / [`ParseError::TooDeep`] past the limits, otherwise a syntax or
/// unknown-function error with the byte position of the first problem.
pub fn parse_filter_with(input: &str, limits: &ParseLimits) -> Result<Expr, ParseError> {
    if input.len() > limits.max_len {
        return Err(ParseError::TooLong {
            position: limits.max_len,
        });
    }
    let tokens = tokenize(input)?;
    let mut parser = Parser {
        tokens,
        index: 0,
        end: input.len(),
        depth: 0,
        max_depth: limits.max_depth,
    };
    let expr = parser.or()?;
    match parser.peek() {
        None => Ok(expr),
        Some(token) => Err(ParseError::syntax(
            "expected an operator or the end of the filter",
            token.position,
        )),
    }
}

/// Parses `$orderby`: comma-separated `member [asc|desc]` terms. Blank input gives no terms.
///
/// # Errors
///
/// A [`ParseError`] when a term is empty, a name is not an identifier or the direction is
/// neither `asc` nor `desc`.
pub fn parse_order_by(input: &str) -> Result<Vec<OrderBy>, ParseError> {
    let mut terms = Vec::new();
    if input.trim().is_empty() {
        return Ok(terms);
    }
    for (offset, term) in split_commas(input) {
        let mut words = words(term, offset);
        let Some((member_at, member)) = words.next() else {
            return Err(ParseError::syntax("expected a property name", offset));
        };
        check_identifier(member, member_at)?;
        let descending = match words.next() {
            None => false,
            Some((_, "asc")) => false,
            Some((_, "desc")) => true,
            Some((at, _)) => return Err(ParseError::syntax("expected 'asc' or 'desc'", at)),
        };
        if let Some((at, _)) = words.next() {
            return Err(ParseError::syntax("expected ',' or the end", at));
        }
        terms.push(OrderBy {
            member: member.to_owned(),
            descending,
        });
    }
    Ok(terms)
}

/// Parses `$select`: comma-separated property names. Blank input gives no names.
///
/// # Errors
///
/// A [`ParseError`] when an entry is empty or not an identifier.
pub fn parse_select(input: &str) -> Result<Vec<String>, ParseError> {
    let mut names = Vec::new();
    if input.trim().is_empty() {
        return Ok(names);
    }
    for (offset, term) in split_commas(input) {
        let mut words = words(term, offset);
        let Some((at, name)) = words.next() else {
            return Err(ParseError::syntax("expected a property name", offset));
        };
        check_identifier(name, at)?;
        if let Some((at, _)) = words.next() {
            return Err(ParseError::syntax("expected ',' or the end", at));
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

impl Function {
    /// The lowercase name used on the wire.
    pub fn name(self) -> &'static str {
        self.info().0
    }

    /// The smallest and largest number of arguments the function takes.
    pub fn arity(self) -> (usize, usize) {
        let (_, min, max) = self.info();
        (min, max)
    }

    /// The function with this exact (lowercase) wire name.
    pub fn from_name(name: &str) -> Option<Function> {
        Function::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Every function, in declaration order.
    pub const ALL: [Function; 21] = [
        Function::SubstringOf,
        Function::Contains,
        Function::StartsWith,
        Function::EndsWith,
        Function::ToLower,
        Function::ToUpper,
        Function::Trim,
        Function::Length,
        Function::IndexOf,
        Function::Substring,
        Function::Concat,
        Function::Replace,
        Function::Year,
        Function::Month,
        Function::Day,
        Function::Hour,
        Function::Minute,
        Function::Second,
        Function::Round,
        Function::Floor,
        Function::Ceiling,
    ];

    fn info(self) -> (&'static str, usize, usize) {
        match self {
            Function::SubstringOf => ("substringof", 2, 2),
            Function::Contains => ("contains", 2, 2),
            Function::StartsWith => ("startswith", 2, 2),
            Function::EndsWith => ("endswith", 2, 2),
            Function::ToLower => ("tolower", 1, 1),
            Function::ToUpper => ("toupper", 1, 1),
            Function::Trim => ("trim", 1, 1),
            Function::Length => ("length", 1, 1),
            Function::IndexOf => ("indexof", 2, 2),
            Function::Substring => ("substring", 2, 3),
            Function::Concat => ("concat", 2, 2),
            Function::Replace => ("replace", 3, 3),
            Function::Year => ("year", 1, 1),
            Function::Month => ("month", 1, 1),
            Function::Day => ("day", 1, 1),
            Function::Hour => ("hour", 1, 1),
            Function::Minute => ("minute", 1, 1),
            Function::Second => ("second", 1, 1),
            Function::Round => ("round", 1, 1),
            Function::Floor => ("floor", 1, 1),
            Function::Ceiling => ("ceiling", 1, 1),
        }
    }
}

impl BinaryOp {
    /// The lowercase keyword used on the wire.
    pub fn keyword(self) -> &'static str {
        match self {
            BinaryOp::Or => "or",
            BinaryOp::And => "and",
            BinaryOp::Eq => "eq",
            BinaryOp::Ne => "ne",
            BinaryOp::Gt => "gt",
            BinaryOp::Ge => "ge",
            BinaryOp::Lt => "lt",
            BinaryOp::Le => "le",
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Mod => "mod",
        }
    }
}

/// Words that cannot be member names.
const RESERVED: [&str; 17] = [
    "and", "or", "not", "eq", "ne", "gt", "ge", "lt", "le", "add", "sub", "mul", "div", "mod",
    "in", "true", "false",
];

struct Parser {
    tokens: Vec<Token>,
    index: usize,
    end: usize,
    depth: usize,
    max_depth: usize,
}

/// The binary operator levels, loosest first.
const LEVELS: [&[BinaryOp]; 5] = [
    &[BinaryOp::Or],
    &[BinaryOp::And],
    &[
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::Gt,
        BinaryOp::Ge,
        BinaryOp::Lt,
        BinaryOp::Le,
    ],
    &[BinaryOp::Add, BinaryOp::Sub],
    &[BinaryOp::Mul, BinaryOp::Div, BinaryOp::Mod],
];

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.index)
    }

    fn peek_kind(&self) -> Option<&TokenKind> {
        self.peek().map(|t| &t.kind)
    }

    fn position(&self) -> usize {
        self.peek().map_or(self.end, |t| t.position)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.index).cloned();
        self.index += 1;
        token
    }

    fn peek_ident(&self, word: &str) -> bool {
        matches!(self.peek_kind(), Some(TokenKind::Ident(name)) if name == word)
    }

    fn expect(&mut self, kind: &TokenKind, what: &str) -> Result<(), ParseError> {
        if self.peek_kind() == Some(kind) {
            self.index += 1;
            Ok(())
        } else {
            Err(ParseError::syntax(
                format!("expected {what}"),
                self.position(),
            ))
        }
    }

    /// Counts one more level of nesting, failing past the limit.
    fn descend(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(ParseError::TooDeep {
                position: self.position(),
            });
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        self.level(0)
    }

    /// One left-associative binary level; every operator in a chain counts as nesting.
    fn level(&mut self, level: usize) -> Result<Expr, ParseError> {
        let Some(ops) = LEVELS.get(level) else {
            return self.unary();
        };
        let saved = self.depth;
        let mut left = self.level(level + 1)?;
        while let Some(op) = ops.iter().copied().find(|op| self.peek_ident(op.keyword())) {
            self.index += 1;
            self.descend()?;
            let right = self.level(level + 1)?;
            left = Expr::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
        self.depth = saved;
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        let saved = self.depth;
        let expr = if self.peek_ident("not") {
            self.index += 1;
            self.descend()?;
            Expr::Not(Box::new(self.unary()?))
        } else if self.peek_kind() == Some(&TokenKind::Minus) {
            self.index += 1;
            self.descend()?;
            Expr::Neg(Box::new(self.unary()?))
        } else {
            self.postfix()?
        };
        self.depth = saved;
        Ok(expr)
    }

    /// A primary, followed by any number of `in (…)` lists.
    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let saved = self.depth;
        let mut expr = self.primary()?;
        while self.peek_ident("in") {
            self.index += 1;
            self.descend()?;
            let list = self.literal_list()?;
            expr = Expr::In {
                expr: Box::new(expr),
                list,
            };
        }
        self.depth = saved;
        Ok(expr)
    }

    fn literal_list(&mut self) -> Result<Vec<Literal>, ParseError> {
        self.expect(&TokenKind::LParen, "'(' after 'in'")?;
        let mut list = Vec::new();
        if self.peek_kind() == Some(&TokenKind::RParen) {
            self.index += 1;
            return Ok(list);
        }
        loop {
            let at = self.position();
            match self.primary()? {
                Expr::Literal(literal) => list.push(literal),
                _ => return Err(ParseError::syntax("expected a literal", at)),
            }
            match self.next().map(|t| t.kind) {
                Some(TokenKind::Comma) => {}
                Some(TokenKind::RParen) => return Ok(list),
                _ => {
                    return Err(ParseError::syntax(
                        "expected ',' or ')'",
                        self.previous_position(),
                    ));
                }
            }
        }
    }

    fn previous_position(&self) -> usize {
        self.index
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i))
            .map_or(self.end, |t| t.position)
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let position = self.position();
        let Some(token) = self.next() else {
            return Err(ParseError::syntax("expected an expression", position));
        };
        let literal = match token.kind {
            TokenKind::Str(s) => Literal::String(s),
            TokenKind::Int(i) => Literal::Int(i),
            TokenKind::Float(f) => Literal::Float(f),
            TokenKind::DateTime(t) => Literal::DateTime(t),
            TokenKind::LParen => {
                self.descend()?;
                let inner = self.or()?;
                self.depth = self.depth.saturating_sub(1);
                self.expect(&TokenKind::RParen, "')'")?;
                return Ok(inner);
            }
            TokenKind::Ident(name) => return self.named(name, position),
            TokenKind::RParen | TokenKind::Comma | TokenKind::Minus => {
                return Err(ParseError::syntax("expected an expression", position));
            }
        };
        Ok(Expr::Literal(literal))
    }

    /// What follows a name: a keyword literal, a call, a cast or a member.
    fn named(&mut self, name: String, position: usize) -> Result<Expr, ParseError> {
        match name.as_str() {
            "true" => return Ok(Expr::Literal(Literal::Bool(true))),
            "false" => return Ok(Expr::Literal(Literal::Bool(false))),
            "null" => return Ok(Expr::Literal(Literal::Null)),
            _ => {}
        }
        if self.peek_kind() == Some(&TokenKind::LParen) {
            self.index += 1;
            self.descend()?;
            let expr = if name == "cast" {
                self.cast(position)?
            } else {
                let func =
                    Function::from_name(&name).ok_or_else(|| ParseError::UnknownFunction {
                        name: name.clone(),
                        position,
                    })?;
                let args = self.arguments()?;
                let (min, max) = func.arity();
                if args.len() < min || args.len() > max {
                    let wanted = if min == max {
                        min.to_string()
                    } else {
                        format!("{min} or {max}")
                    };
                    return Err(ParseError::syntax(
                        format!("{name} takes {wanted} arguments, not {}", args.len()),
                        position,
                    ));
                }
                Expr::Call { func, args }
            };
            self.depth = self.depth.saturating_sub(1);
            return Ok(expr);
        }
        if RESERVED.contains(&name.as_str()) {
            return Err(ParseError::syntax("expected an expression", position));
        }
        if name.contains('.') {
            return Err(ParseError::syntax(
                format!("member paths are not supported ('{name}')"),
                position,
            ));
        }
        Ok(Expr::Member(name))
    }

    /// Arguments after the opening parenthesis, through the closing one.
    fn arguments(&mut self) -> Result<Vec<Expr>, ParseError> {
        let mut args = Vec::new();
        if self.peek_kind() == Some(&TokenKind::RParen) {
            self.index += 1;
            return Ok(args);
        }
        loop {
            args.push(self.or()?);
            match self.peek_kind() {
                Some(TokenKind::Comma) => self.index += 1,
                Some(TokenKind::RParen) => {
                    self.index += 1;
                    return Ok(args);
                }
                _ => return Err(ParseError::syntax("expected ',' or ')'", self.position())),
            }
        }
    }

    /// `cast(value, Edm.Type)` after the opening parenthesis.
    fn cast(&mut self, position: usize) -> Result<Expr, ParseError> {
        let value = self.or()?;
        self.expect(&TokenKind::Comma, "',' in cast")?;
        let type_at = self.position();
        let Some(TokenKind::Ident(type_name)) = self.next().map(|t| t.kind) else {
            return Err(ParseError::syntax("expected a type name", type_at));
        };
        self.expect(&TokenKind::RParen, "')'")?;
        if type_name != "Edm.DateTimeOffset" {
            return Err(ParseError::syntax(
                format!("cast to '{type_name}' is not supported"),
                type_at,
            ));
        }
        match value {
            Expr::Literal(Literal::DateTime(t)) => Ok(Expr::Literal(Literal::DateTime(t))),
            Expr::Literal(Literal::String(text)) => crate::time_fmt::parse_timestamp(&text)
                .map(|t| Expr::Literal(Literal::DateTime(t)))
                .map_err(|_| ParseError::syntax(format!("invalid date-time '{text}'"), position)),
            _ => Err(ParseError::syntax(
                "cast needs a date-time or string literal",
                position,
            )),
        }
    }
}

/// The comma-separated parts of `input` with their byte offsets.
fn split_commas(input: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut offset = 0;
    input.split(',').map(move |part| {
        let start = offset;
        offset += part.len() + 1;
        (start, part)
    })
}

/// The space-separated words of `part` with their byte offsets in the whole input.
fn words(part: &str, offset: usize) -> impl Iterator<Item = (usize, &str)> {
    part.split(' ')
        .scan(offset, |at, word| {
            let start = *at;
            *at += word.len() + 1;
            Some((start, word))
        })
        .filter(|(_, word)| !word.is_empty())
}

fn check_identifier(name: &str, position: usize) -> Result<(), ParseError> {
    if is_identifier(name) {
        Ok(())
    } else {
        Err(ParseError::syntax(
            format!("'{name}' is not a property name"),
            position,
        ))
    }
}
