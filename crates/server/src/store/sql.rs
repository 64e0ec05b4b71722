//! The shared OData AST turned into parameterised SQL for SQLite and PostgreSQL.
//!
//! Every value from the request travels as a bound parameter; identifiers come only from the
//! table schema (and are quoted). The expression is type-checked against the schema first, so
//! both databases see only well-typed SQL: a mismatch is a 400 here, never a database error.
//! Timestamps are stored as integer milliseconds, so date comparisons are exact at the
//! precision the protocol emits.

use tidesync_protocol::odata::{BinaryOp, Expr, Function, Literal};
use tidesync_protocol::{decode_version, parse_timestamp, system};

use super::schema::{ColumnType, TableSchema};
use super::{ReadRequest, StoreError, time_to_ms};

/// Which SQL dialect to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// SQLite: `?N` parameters, booleans as 0/1.
    Sqlite,
    /// PostgreSQL: `$N::type` parameters, real booleans.
    Postgres,
}

/// A bound parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    /// A boolean (PostgreSQL only; SQLite gets integers).
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// A double.
    Float(f64),
    /// Text.
    Text(String),
}

/// The `WHERE` and `ORDER BY` clauses of a read, with their parameters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Translated {
    /// The condition (never empty).
    pub(crate) where_sql: String,
    /// The order terms, `id` last.
    pub(crate) order_sql: String,
    /// The parameters, numbered from 1 in the text.
    pub(crate) params: Vec<Param>,
}

/// Quotes an identifier.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Translates the filter, soft-delete and scope restrictions and the order of `request`.
///
/// # Errors
///
/// [`StoreError::UnknownColumn`] for a member the table lacks, [`StoreError::InvalidQuery`]
/// for an ill-typed expression or a literal that cannot be converted,
/// [`StoreError::OverLimit`] for a filter over its cost budget (`store::cost`).
pub(crate) fn translate(
    flavor: Flavor,
    schema: &TableSchema,
    request: &ReadRequest,
    max_string_growth: u64,
) -> Result<Translated, StoreError> {
    if let Some(filter) = &request.filter {
        super::cost::check_filter(filter, max_string_growth)?;
    }
    let mut translator = Translator {
        flavor,
        schema,
        params: Vec::new(),
    };
    let mut conditions = Vec::new();
    if !request.include_deleted {
        conditions.push(match flavor {
            Flavor::Sqlite => "\"deleted\" = 0".to_owned(),
            Flavor::Postgres => "NOT \"deleted\"".to_owned(),
        });
    }
    if let Some(scope) = &request.scope {
        let param = translator.param(Param::Text(scope.value.clone()));
        conditions.push(format!("{} = {param}", quote(&scope.column)));
    }
    if let Some(filter) = &request.filter {
        let ty = translator.ty(filter)?;
        if !matches!(ty, Ty::Bool | Ty::Null) {
            return Err(type_error(format!(
                "$filter must be a condition, not {}",
                ty.describe()
            )));
        }
        conditions.push(translator.expr(filter, None)?);
    }
    let where_sql = if conditions.is_empty() {
        "1 = 1".to_owned()
    } else {
        conditions.join(" AND ")
    };

    let mut terms = Vec::new();
    let mut has_id = false;
    for term in &request.order_by {
        translator.member_type(&term.member)?;
        has_id |= term.member == system::ID;
        terms.push(if term.descending {
            format!("{} DESC NULLS LAST", quote(&term.member))
        } else {
            format!("{} ASC NULLS FIRST", quote(&term.member))
        });
    }
    if !has_id {
        terms.push(format!("{} ASC", quote(system::ID)));
    }
    Ok(Translated {
        where_sql,
        order_sql: terms.join(", "),
        params: translator.params,
    })
}

/// Checks the names of `$select` against the schema.
///
/// # Errors
///
/// [`StoreError::UnknownColumn`] for the first unknown name.
pub(crate) fn check_select(schema: &TableSchema, select: &[String]) -> Result<(), StoreError> {
    let translator = Translator {
        flavor: Flavor::Sqlite,
        schema,
        params: Vec::new(),
    };
    for name in select {
        translator.member_type(name)?;
    }
    Ok(())
}

/// The static type of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Bool,
    Num,
    Str,
    /// Milliseconds since the epoch.
    Date,
    /// The version counter (compared with version strings).
    Version,
    Json,
    Null,
}

impl Ty {
    fn describe(self) -> &'static str {
        match self {
            Ty::Bool => "a boolean",
            Ty::Num => "a number",
            Ty::Str => "a string",
            Ty::Date => "a date",
            Ty::Version => "a version",
            Ty::Json => "an object or array",
            Ty::Null => "null",
        }
    }
}

fn type_error(message: String) -> StoreError {
    StoreError::InvalidQuery { message }
}

struct Translator<'a> {
    flavor: Flavor,
    schema: &'a TableSchema,
    params: Vec<Param>,
}

impl Translator<'_> {
    fn param(&mut self, param: Param) -> String {
        let param = match (self.flavor, param) {
            (Flavor::Sqlite, Param::Bool(b)) => Param::Int(i64::from(b)),
            (_, other) => other,
        };
        let cast = match &param {
            Param::Bool(_) => "boolean",
            Param::Int(_) => "bigint",
            Param::Float(_) => "float8",
            Param::Text(_) => "text",
        };
        self.params.push(param);
        let n = self.params.len();
        match self.flavor {
            Flavor::Sqlite => format!("?{n}"),
            Flavor::Postgres => format!("${n}::{cast}"),
        }
    }

    fn member_type(&self, name: &str) -> Result<Ty, StoreError> {
        let ty = match name {
            system::ID => Ty::Str,
            system::CREATED_AT | system::UPDATED_AT => Ty::Date,
            system::VERSION => Ty::Version,
            system::DELETED => Ty::Bool,
            _ => match self.schema.column(name) {
                Some(ColumnType::String) => Ty::Str,
                Some(ColumnType::Integer | ColumnType::Number) => Ty::Num,
                Some(ColumnType::Boolean) => Ty::Bool,
                Some(ColumnType::DateTime) => Ty::Date,
                Some(ColumnType::Json) => Ty::Json,
                None => {
                    return Err(StoreError::UnknownColumn {
                        table: self.schema.spec.name.clone(),
                        column: name.to_owned(),
                    });
                }
            },
        };
        Ok(ty)
    }

    /// Type-checks `expr` and returns its type.
    fn ty(&self, expr: &Expr) -> Result<Ty, StoreError> {
        match expr {
            Expr::Literal(literal) => Ok(literal_type(literal)),
            Expr::Member(name) => self.member_type(name),
            Expr::Not(inner) => {
                self.expect(inner, &[Ty::Bool], "not")?;
                Ok(Ty::Bool)
            }
            Expr::Neg(inner) => {
                self.expect(inner, &[Ty::Num], "-")?;
                Ok(Ty::Num)
            }
            Expr::Binary { op, left, right } => self.binary_type(*op, left, right),
            Expr::Call { func, args } => self.call_type(*func, args),
            Expr::In { expr, list } => {
                let ty = self.ty(expr)?;
                for literal in list {
                    let item = Expr::Literal(literal.clone());
                    comparable(ty, literal_type(literal), expr, &item)?;
                    // The items are rendered in the subject's type: a string item can become a
                    // date or version, but a string subject cannot meet a date item (found by
                    // the filter fuzzer: PostgreSQL refused `text IN (bigint)` with a 500).
                    if ty == Ty::Str && matches!(literal_type(literal), Ty::Date | Ty::Version) {
                        return Err(type_error(format!(
                            "cannot compare {} with {}",
                            ty.describe(),
                            literal_type(literal).describe()
                        )));
                    }
                }
                Ok(Ty::Bool)
            }
        }
    }

    fn expect(&self, expr: &Expr, allowed: &[Ty], context: &str) -> Result<Ty, StoreError> {
        let ty = self.ty(expr)?;
        if ty == Ty::Null || allowed.contains(&ty) {
            Ok(ty)
        } else {
            Err(type_error(format!(
                "{context} needs {}, not {}",
                allowed.first().map_or("a value", |t| t.describe()),
                ty.describe()
            )))
        }
    }

    fn binary_type(&self, op: BinaryOp, left: &Expr, right: &Expr) -> Result<Ty, StoreError> {
        let name = op_name(op);
        match op {
            BinaryOp::And | BinaryOp::Or => {
                self.expect(left, &[Ty::Bool], name)?;
                self.expect(right, &[Ty::Bool], name)?;
                Ok(Ty::Bool)
            }
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Gt
            | BinaryOp::Ge
            | BinaryOp::Lt
            | BinaryOp::Le => {
                let (l, r) = (self.ty(left)?, self.ty(right)?);
                comparable(l, r, left, right)?;
                Ok(Ty::Bool)
            }
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => {
                self.expect(left, &[Ty::Num], name)?;
                self.expect(right, &[Ty::Num], name)?;
                Ok(Ty::Num)
            }
        }
    }

    fn call_type(&self, func: Function, args: &[Expr]) -> Result<Ty, StoreError> {
        let name = func.name();
        let want = |index: usize, ty: Ty| -> Result<(), StoreError> {
            match args.get(index) {
                Some(arg) => self.expect(arg, &[ty], name).map(|_| ()),
                None => Ok(()),
            }
        };
        use Function as F;
        match func {
            F::SubstringOf | F::Contains | F::StartsWith | F::EndsWith => {
                want(0, Ty::Str)?;
                want(1, Ty::Str)?;
                Ok(Ty::Bool)
            }
            F::ToLower | F::ToUpper | F::Trim => {
                want(0, Ty::Str)?;
                Ok(Ty::Str)
            }
            F::Length => {
                want(0, Ty::Str)?;
                Ok(Ty::Num)
            }
            F::IndexOf => {
                want(0, Ty::Str)?;
                want(1, Ty::Str)?;
                Ok(Ty::Num)
            }
            F::Substring => {
                want(0, Ty::Str)?;
                want(1, Ty::Num)?;
                want(2, Ty::Num)?;
                Ok(Ty::Str)
            }
            F::Concat | F::Replace => {
                for index in 0..args.len() {
                    want(index, Ty::Str)?;
                }
                Ok(Ty::Str)
            }
            F::Year | F::Month | F::Day | F::Hour | F::Minute | F::Second => {
                want(0, Ty::Date)?;
                Ok(Ty::Num)
            }
            F::Round | F::Floor | F::Ceiling => {
                want(0, Ty::Num)?;
                Ok(Ty::Num)
            }
        }
    }

    /// Renders a type-checked expression; `hint` is the type of the other side of a comparison.
    fn expr(&mut self, expr: &Expr, hint: Option<Ty>) -> Result<String, StoreError> {
        match expr {
            Expr::Literal(literal) => self.literal(literal, hint),
            Expr::Member(name) => Ok(quote(name)),
            Expr::Not(inner) => Ok(format!("(NOT {})", self.expr(inner, None)?)),
            Expr::Neg(inner) => Ok(format!("(-{})", self.operand(inner)?)),
            Expr::Binary { op, left, right } => self.binary(*op, left, right),
            Expr::Call { func, args } => self.call(*func, args),
            Expr::In { expr, list } => {
                let hint = self.ty(expr)?;
                // Before the subject is rendered: its parameters would be bound to a
                // statement that does not use them (found by the filter fuzzer: a 500).
                if list.is_empty() {
                    return Ok("(1 = 0)".to_owned());
                }
                let subject = self.expr(expr, None)?;
                let mut items = Vec::new();
                for literal in list {
                    items.push(self.literal(literal, Some(hint))?);
                }
                Ok(format!("({subject} IN ({}))", items.join(", ")))
            }
        }
    }

    fn literal(&mut self, literal: &Literal, hint: Option<Ty>) -> Result<String, StoreError> {
        Ok(match literal {
            Literal::Null => "NULL".to_owned(),
            Literal::Bool(b) => self.param(Param::Bool(*b)),
            Literal::Int(i) => self.param(Param::Int(*i)),
            Literal::Float(f) => self.param(Param::Float(*f)),
            Literal::DateTime(t) => self.param(Param::Int(time_to_ms(*t))),
            Literal::String(s) => match hint {
                Some(Ty::Date) => {
                    let t =
                        parse_timestamp(s).map_err(|e| StoreError::invalid_query(e.to_string()))?;
                    self.param(Param::Int(time_to_ms(t)))
                }
                Some(Ty::Version) => {
                    let counter = decode_version(s).and_then(|c| i64::try_from(c).ok());
                    self.param(Param::Int(counter.unwrap_or(-1)))
                }
                _ => self.param(Param::Text(s.clone())),
            },
        })
    }

    /// An operand of arithmetic: a bare `null` gets a type on PostgreSQL, which cannot
    /// choose an operator for `-NULL` or `NULL + NULL` (found by the filter fuzzer: a 500).
    fn operand(&mut self, expr: &Expr) -> Result<String, StoreError> {
        match (expr, self.flavor) {
            (Expr::Literal(Literal::Null), Flavor::Postgres) => {
                Ok("CAST(NULL AS numeric)".to_owned())
            }
            _ => self.expr(expr, None),
        }
    }

    fn binary(&mut self, op: BinaryOp, left: &Expr, right: &Expr) -> Result<String, StoreError> {
        let is_null = |e: &Expr| matches!(e, Expr::Literal(Literal::Null));
        match op {
            BinaryOp::And | BinaryOp::Or => {
                let l = self.expr(left, None)?;
                let r = self.expr(right, None)?;
                Ok(format!(
                    "({l} {} {r})",
                    if op == BinaryOp::And { "AND" } else { "OR" }
                ))
            }
            BinaryOp::Eq | BinaryOp::Ne if is_null(left) || is_null(right) => {
                let (subject, both) = if is_null(left) {
                    (right, is_null(right))
                } else {
                    (left, false)
                };
                if both {
                    return Ok(if op == BinaryOp::Eq {
                        "(1 = 1)"
                    } else {
                        "(1 = 0)"
                    }
                    .to_owned());
                }
                let subject = self.expr(subject, None)?;
                Ok(format!(
                    "({subject} IS {}NULL)",
                    if op == BinaryOp::Eq { "" } else { "NOT " }
                ))
            }
            BinaryOp::Gt | BinaryOp::Ge | BinaryOp::Lt | BinaryOp::Le
                if is_null(left) || is_null(right) =>
            {
                Ok("(1 = 0)".to_owned())
            }
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Gt
            | BinaryOp::Ge
            | BinaryOp::Lt
            | BinaryOp::Le => {
                let (lt, rt) = (self.ty(left)?, self.ty(right)?);
                let l = self.expr(left, Some(rt))?;
                let r = self.expr(right, Some(lt))?;
                let sql_op = match (op, self.flavor) {
                    (BinaryOp::Eq, _) => "=",
                    (BinaryOp::Ne, Flavor::Sqlite) => "IS NOT",
                    (BinaryOp::Ne, Flavor::Postgres) => "IS DISTINCT FROM",
                    (BinaryOp::Gt, _) => ">",
                    (BinaryOp::Ge, _) => ">=",
                    (BinaryOp::Lt, _) => "<",
                    _ => "<=",
                };
                Ok(format!("({l} {sql_op} {r})"))
            }
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul => {
                let l = self.operand(left)?;
                let r = self.operand(right)?;
                let sql_op = match op {
                    BinaryOp::Add => "+",
                    BinaryOp::Sub => "-",
                    _ => "*",
                };
                Ok(format!("({l} {sql_op} {r})"))
            }
            BinaryOp::Div => {
                // Integers divide as integers (OData); anything else as doubles, also where
                // a number column happens to hold an integer (SQLite keeps those as
                // integers, PostgreSQL as numeric).
                let integers = self.integral(left) && self.integral(right);
                let l = self.operand(left)?;
                let r = self.operand(right)?;
                Ok(match (integers, self.flavor) {
                    (true, _) => format!("({l} / NULLIF({r}, 0))"),
                    (false, Flavor::Sqlite) => format!("(CAST({l} AS REAL) / NULLIF({r}, 0))"),
                    (false, Flavor::Postgres) => {
                        format!("(CAST({l} AS float8) / NULLIF({r}, 0))")
                    }
                })
            }
            BinaryOp::Mod => {
                let l = self.operand(left)?;
                let r = self.operand(right)?;
                Ok(match self.flavor {
                    Flavor::Sqlite => format!("({l} % NULLIF({r}, 0))"),
                    Flavor::Postgres => {
                        format!("mod(CAST({l} AS numeric), CAST(NULLIF({r}, 0) AS numeric))")
                    }
                })
            }
        }
    }

    fn call(&mut self, func: Function, args: &[Expr]) -> Result<String, StoreError> {
        let mut rendered = Vec::with_capacity(args.len());
        for arg in args {
            rendered.push(self.expr(arg, None)?);
        }
        let arg = |index: usize| {
            rendered
                .get(index)
                .cloned()
                .unwrap_or_else(|| "NULL".to_owned())
        };
        let (a, b, c) = (arg(0), arg(1), arg(2));
        let pg = self.flavor == Flavor::Postgres;
        let position = |hay: &str, needle: &str| {
            if pg {
                format!("strpos({hay}, {needle})")
            } else {
                format!("instr({hay}, {needle})")
            }
        };
        use Function as F;
        Ok(match func {
            F::SubstringOf => format!("({} > 0)", position(&b, &a)),
            F::Contains => format!("({} > 0)", position(&a, &b)),
            F::StartsWith => format!("(substr({a}, 1, length({b})) = {b})"),
            F::EndsWith => format!(
                "(length({a}) >= length({b}) AND substr({a}, length({a}) - length({b}) + 1) = {b})"
            ),
            F::ToLower => format!("lower({a})"),
            F::ToUpper => format!("upper({a})"),
            F::Trim => format!("trim({a})"),
            F::Length => format!("length({a})"),
            F::IndexOf => format!("({} - 1)", position(&a, &b)),
            F::Substring => {
                let start = if pg {
                    format!("CAST({b} + 1 AS integer)")
                } else {
                    format!("({b} + 1)")
                };
                if rendered.len() > 2 {
                    let len = if pg {
                        format!("CAST({c} AS integer)")
                    } else {
                        c
                    };
                    format!("substr({a}, {start}, {len})")
                } else {
                    format!("substr({a}, {start})")
                }
            }
            F::Concat => format!("({a} || {b})"),
            F::Replace => format!("replace({a}, {b}, {c})"),
            F::Year => self.date_part(&a, "YEAR", "%Y"),
            F::Month => self.date_part(&a, "MONTH", "%m"),
            F::Day => self.date_part(&a, "DAY", "%d"),
            F::Hour => self.date_part(&a, "HOUR", "%H"),
            F::Minute => self.date_part(&a, "MINUTE", "%M"),
            F::Second => self.date_part(&a, "SECOND", "%S"),
            F::Round => {
                if pg {
                    format!("round(CAST({a} AS numeric))")
                } else {
                    format!("round({a})")
                }
            }
            F::Floor => {
                if pg {
                    format!("floor({a})")
                } else {
                    format!("(CAST({a} AS INTEGER) - ({a} < CAST({a} AS INTEGER)))")
                }
            }
            F::Ceiling => {
                if pg {
                    format!("ceiling({a})")
                } else {
                    format!("(CAST({a} AS INTEGER) + ({a} > CAST({a} AS INTEGER)))")
                }
            }
        })
    }

    /// Whether a numeric expression is an integer by its type: an integer literal or
    /// `integer` column, integer functions, and arithmetic (other than `div` of a non-integer)
    /// on those.
    fn integral(&self, expr: &Expr) -> bool {
        match expr {
            Expr::Literal(Literal::Int(_)) => true,
            Expr::Member(name) => self.schema.column(name) == Some(ColumnType::Integer),
            Expr::Neg(inner) => self.integral(inner),
            Expr::Binary { op, left, right } => {
                matches!(
                    op,
                    BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod
                ) && self.integral(left)
                    && self.integral(right)
            }
            Expr::Call { func, .. } => matches!(
                func,
                Function::Length
                    | Function::IndexOf
                    | Function::Year
                    | Function::Month
                    | Function::Day
                    | Function::Hour
                    | Function::Minute
                    | Function::Second
            ),
            _ => false,
        }
    }

    fn date_part(&self, ms: &str, pg_field: &str, sqlite_format: &str) -> String {
        match self.flavor {
            Flavor::Sqlite => {
                format!("CAST(strftime('{sqlite_format}', {ms} / 1000.0, 'unixepoch') AS INTEGER)")
            }
            Flavor::Postgres => format!(
                "CAST(floor(EXTRACT({pg_field} FROM (to_timestamp({ms} / 1000.0) AT TIME ZONE 'UTC'))) AS bigint)"
            ),
        }
    }
}

fn literal_type(literal: &Literal) -> Ty {
    match literal {
        Literal::Null => Ty::Null,
        Literal::Bool(_) => Ty::Bool,
        Literal::Int(_) | Literal::Float(_) => Ty::Num,
        Literal::String(_) => Ty::Str,
        Literal::DateTime(_) => Ty::Date,
    }
}

/// Whether two sides may be compared; a date or version may meet a string literal (which is
/// converted), everything else must agree.
fn comparable(l: Ty, r: Ty, left: &Expr, right: &Expr) -> Result<(), StoreError> {
    let string_literal = |e: &Expr| matches!(e, Expr::Literal(Literal::String(_)));
    let ok = l == Ty::Null
        || r == Ty::Null
        || (l == r && l != Ty::Json)
        || (matches!(l, Ty::Date | Ty::Version) && r == Ty::Str && string_literal(right))
        || (matches!(r, Ty::Date | Ty::Version) && l == Ty::Str && string_literal(left));
    if ok {
        Ok(())
    } else {
        Err(type_error(format!(
            "cannot compare {} with {}",
            l.describe(),
            r.describe()
        )))
    }
}

fn op_name(op: BinaryOp) -> &'static str {
    match op {
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
