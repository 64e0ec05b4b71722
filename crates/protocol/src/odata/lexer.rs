//! Splits a `$filter` into tokens. Lexing is slightly contextual: a `-` directly before a digit
//! starts a negative number, `datetime'…'` is one token, a bare ISO timestamp is one token and
//! dotted names (`Edm.DateTimeOffset`) are one identifier.

use time::OffsetDateTime;

use super::error::ParseError;
use crate::time_fmt::parse_timestamp;

/// One token and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    pub(crate) position: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    /// A name or keyword; may contain dots (`Edm.Guid`).
    Ident(String),
    /// A quoted string with `''` unescaped.
    Str(String),
    Int(i64),
    Float(f64),
    DateTime(OffsetDateTime),
    LParen,
    RParen,
    Comma,
    /// A `-` not directly followed by a digit.
    Minus,
}

/// Tokenises `input` (already checked against the length limit).
pub(crate) fn tokenize(input: &str) -> Result<Vec<Token>, ParseError> {
    let mut lexer = Lexer { input, pos: 0 };
    let mut tokens = Vec::new();
    while let Some(token) = lexer.next_token()? {
        tokens.push(token);
    }
    Ok(tokens)
}

/// True for characters that may start an identifier.
pub(crate) fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

/// True for characters that may continue an identifier.
pub(crate) fn is_ident_continue(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// True when `name` is a plain identifier (what a member name must be).
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(is_ident_start) && chars.all(is_ident_continue)
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        self.input.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn next_token(&mut self) -> Result<Option<Token>, ParseError> {
        while let Some(c) = self.peek() {
            if matches!(c, ' ' | '\t' | '\r' | '\n') {
                self.pos += 1;
            } else {
                break;
            }
        }
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Ok(None);
        };
        let kind = match c {
            '(' => self.single(TokenKind::LParen),
            ')' => self.single(TokenKind::RParen),
            ',' => self.single(TokenKind::Comma),
            '\'' => TokenKind::Str(self.string()?),
            '-' if self.peek_second().is_some_and(|d| d.is_ascii_digit()) => self.number()?,
            '-' => self.single(TokenKind::Minus),
            '0'..='9' => match self.bare_timestamp()? {
                Some(kind) => kind,
                None => self.number()?,
            },
            c if is_ident_start(c) => self.ident_or_typed_literal()?,
            other => {
                return Err(ParseError::syntax(
                    format!("unexpected character {other:?}"),
                    start,
                ));
            }
        };
        Ok(Some(Token {
            kind,
            position: start,
        }))
    }

    fn single(&mut self, kind: TokenKind) -> TokenKind {
        self.pos += 1;
        kind
    }

    /// A quoted string starting at the current `'`.
    fn string(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut value = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(ParseError::syntax("unterminated string", start));
            };
            self.pos += c.len_utf8();
            if c == '\'' {
                if self.peek() == Some('\'') {
                    self.pos += 1;
                    value.push('\'');
                } else {
                    return Ok(value);
                }
            } else {
                value.push(c);
            }
        }
    }

    /// A number, optionally signed, with an optional `L` (integer) or `f`/`m`/`d` (real) suffix.
    fn number(&mut self) -> Result<TokenKind, ParseError> {
        let start = self.pos;
        let bytes = self.input.as_bytes();
        let at = |i: usize| bytes.get(i).copied();
        let mut end = start;
        if at(end) == Some(b'-') {
            end += 1;
        }
        let digits = |mut i: usize| {
            while at(i).is_some_and(|b| b.is_ascii_digit()) {
                i += 1;
            }
            i
        };
        end = digits(end);
        let mut is_real = false;
        if at(end) == Some(b'.') && at(end + 1).is_some_and(|b| b.is_ascii_digit()) {
            is_real = true;
            end = digits(end + 1);
        }
        if matches!(at(end), Some(b'e' | b'E')) {
            let mut exp = end + 1;
            if matches!(at(exp), Some(b'+' | b'-')) {
                exp += 1;
            }
            if at(exp).is_some_and(|b| b.is_ascii_digit()) {
                is_real = true;
                end = digits(exp);
            }
        }
        let text = self.input.get(start..end).unwrap_or("");
        let suffix = at(end);
        let kind = match suffix {
            Some(b'L' | b'l') if !is_real => {
                end += 1;
                let value = text
                    .parse::<i64>()
                    .map_err(|_| ParseError::syntax("integer literal out of range", start))?;
                TokenKind::Int(value)
            }
            Some(b'f' | b'F' | b'm' | b'M' | b'd' | b'D') => {
                end += 1;
                TokenKind::Float(parse_real(text, start)?)
            }
            _ if is_real => TokenKind::Float(parse_real(text, start)?),
            _ => match text.parse::<i64>() {
                Ok(value) => TokenKind::Int(value),
                // Too big for an integer: OData would make it a decimal.
                Err(_) => TokenKind::Float(parse_real(text, start)?),
            },
        };
        self.pos = end;
        if self
            .peek()
            .is_some_and(|c| is_ident_continue(c) || c == '.')
        {
            return Err(ParseError::syntax("malformed number", start));
        }
        Ok(kind)
    }

    /// An OData v4 bare timestamp (`2026-11-27T08:29:32.659Z`), if one starts here.
    fn bare_timestamp(&mut self) -> Result<Option<TokenKind>, ParseError> {
        let rest = self.rest().as_bytes();
        let shape = rest.len() >= 11
            && rest.iter().take(4).all(u8::is_ascii_digit)
            && rest.get(4) == Some(&b'-')
            && rest.get(7) == Some(&b'-')
            && matches!(rest.get(10), Some(b'T' | b't'));
        if !shape {
            return Ok(None);
        }
        let len = rest
            .iter()
            .position(|b| !(b.is_ascii_digit() || b"-:.+TtZz".contains(b)))
            .unwrap_or(rest.len());
        let start = self.pos;
        let text = self.input.get(start..start + len).unwrap_or("");
        let value = parse_timestamp(text)
            .map_err(|_| ParseError::syntax(format!("invalid date-time '{text}'"), start))?;
        self.pos += len;
        Ok(Some(TokenKind::DateTime(value)))
    }

    /// A name (possibly dotted), or `datetime'…'` / `datetimeoffset'…'`.
    fn ident_or_typed_literal(&mut self) -> Result<TokenKind, ParseError> {
        let start = self.pos;
        loop {
            while self.peek().is_some_and(is_ident_continue) {
                self.pos += self.peek().map_or(1, char::len_utf8);
            }
            if self.peek() == Some('.') && self.peek_second().is_some_and(is_ident_start) {
                self.pos += 1;
            } else {
                break;
            }
        }
        let name = self.input.get(start..self.pos).unwrap_or("").to_owned();
        if self.peek() != Some('\'') {
            return Ok(TokenKind::Ident(name));
        }
        let text_start = self.pos;
        let text = self.string()?;
        match name.as_str() {
            "datetime" | "datetimeoffset" => parse_timestamp(&text)
                .map(TokenKind::DateTime)
                .map_err(|_| ParseError::syntax(format!("invalid date-time '{text}'"), text_start)),
            _ => Err(ParseError::syntax(
                format!("unsupported literal type '{name}'"),
                start,
            )),
        }
    }
}

fn parse_real(text: &str, position: usize) -> Result<f64, ParseError> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(ParseError::syntax("number out of range", position)),
    }
}
