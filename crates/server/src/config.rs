//! Server configuration: what the `--config` TOML file holds and what the command line and
//! the [`crate::ServerBuilder`] override.
//!
//! The file format (every key optional; `docs` of each field below):
//!
//! ```toml
//! listen = "127.0.0.1:8080"          # loopback by default
//! database = "sqlite://data.db"      # or sqlite:///abs/path.db or postgres://user@host:port/db
//! postgres_schema = "tidesync"       # PostgreSQL: the schema holding the tables (default public)
//! body_limit_bytes = 10485760        # larger bodies answer 413
//! cors_origins = ["http://localhost:3000"]   # "*" allows any origin; empty: no CORS headers
//! tombstone_retention_secs = 2592000 # soft-deleted rows older than this are purged; unset: kept
//! lenient_version = false            # true: a missing ZUMO-API-VERSION is treated as 3.0.0
//!
//! [paging]
//! page_size = 50          # sets both defaults below (the command line's --page-size)
//! v2_page_size = 50       # rows when $top is absent or 0 (v2)
//! v2_max_top = 1000       # a larger $top is refused with 400 (v2)
//! v3_page_size = 100      # the most rows per v3 page
//! v3_max_top = 128000     # a larger $top is refused with 400 (v3)
//! snapshot_page_size = 2000  # rows the snapshot extension reads per internal page
//!
//! [batch]
//! max_operations = 1000   # the most ops one batch request may carry (batch extension)
//! op_retention_secs = 86400  # how long applied op ids are remembered
//!
//! [schema]                         # caps on tables without declared columns; over one: 400
//! max_new_columns_per_write = 32   # new properties (nulls too) per request or batch op
//! max_columns_per_table = 256      # user columns a dynamic table may grow to (at most 1000)
//!
//! [feed]
//! heartbeat_ms = 15000    # a comment line on idle change feeds this often
//! coalesce_ms = 50        # at most one change event per table per feed this often
//! max_feeds = 512         # open change feeds per server; more answer 503 + Retry-After
//! max_feeds_per_user = 8  # per signed-in user (per client address without a token): 429
//! replay_events = 1024    # recent changes kept for feeds resuming with Last-Event-ID (shared)
//! max_opens_per_sec = 2000  # feeds opened per second; more: 503 + Retry-After: 1 (0: no cap)
//! write_timeout_ms = 10000  # a feed whose client takes no write for this long is closed
//!
//! # What one client can make the server do. A limit that is hit answers 400 (the request
//! # itself costs too much), 503 + Retry-After (the server is busy) or closes the connection,
//! # and the JSON error names the setting.
//! [limits]
//! query_timeout_ms = 2000          # a read running longer is stopped: 503 + Retry-After
//! max_string_bytes = 16777216      # longest string a SQLite read may hold or build (>= body_limit_bytes)
//! max_string_growth = 16           # $filter string functions may grow a value at most this many times: 400
//! max_concurrent_reads = 32        # reads at once; more wait in line
//! queue_timeout_ms = 1000          # longest wait for a read slot or a database connection: 503
//! pool_size = 16                   # PostgreSQL connections per server process
//! ddl_lock_timeout_ms = 2000       # PostgreSQL: adding a column waits this long for the table: 503
//! write_retries = 3                # PostgreSQL: a write that hit a deadlock or serialization failure is retried
//! max_json_values = 100000         # JSON values (scalars, arrays, objects) in one request body: 413
//! header_read_timeout_ms = 10000   # a request head must arrive within this (else the connection closes)
//! body_read_timeout_ms = 10000     # a request body that stalls this long between two reads: 400
//! keep_alive_timeout_ms = 30000    # an idle keep-alive connection is closed after this
//! max_connections = 1024           # open connections; more get 503 + Retry-After and are closed
//!
//! [auth]
//! jwt_secret = "…"                     # HS256 secret
//! jwt_public_key_file = "key.pem"      # or an RS256/ES256 public key (PEM)
//! audience = "urn:microsoft:windows-azure:zumo"
//! issuer = "urn:microsoft:windows-azure:zumo"
//! api_key = "…"                        # when set, every table and extension request needs it
//!                                      # in the `x-api-key` (or `zumo-api-key`) header
//! max_token_lifetime_secs = 86400      # tokens valid for longer (exp - iat) answer 401
//! roles_claim = "roles"                # the claim listing the user's roles (string or array)
//!
//! # An empty api_key, or a jwt_secret shorter than 32 bytes, stops the server at start.
//!
//! [[tables]]
//! name = "TodoItem"
//! access = "anonymous"    # anonymous | authenticated | owner
//! soft_delete = true
//! # The production setting: a fixed schema. An unknown property or a value of the wrong
//! # type answers 400. Types: string, bool, integer, number, datetime.
//! columns = { text = "string", complete = "bool", priority = "integer", due = "datetime" }
//!
//! # Optional: per-operation rules (an operation left out follows `access`). Each is
//! # anonymous | authenticated | owner | role:NAME | disabled. A refusal answers 401 without
//! # credentials, 403 with credentials that lack the right, 405 for disabled.
//! [tables.operations]
//! read = "anonymous"
//! insert = "authenticated"
//! update = "authenticated"
//! delete = "role:admin"
//!
//! # Optional: a tenant scope. A caller sees, changes and hears of only the rows whose
//! # `column` equals the token's `claim`; an insert gets the column stamped from the claim;
//! # a token without the claim answers 403.
//! [tables.scope]
//! column = "tenantId"
//! claim = "tid"
//! ```
//!
//! A table without `columns` is dynamic: it learns a column from the first write that
//! sends a new property and commits, typed by that value, within the `[schema]` caps. Any
//! writer can extend such a table (the server logs a warning naming these tables at start);
//! declare the columns of every table a public server serves.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::store::ColumnType;

/// Who may use a table (spec 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// No token needed (a token, if sent, must still be valid).
    #[default]
    Anonymous,
    /// A valid token is required; everyone sees every row.
    Authenticated,
    /// A valid token is required and each user sees and changes only their own rows
    /// (the `userId` column, filled from the token's `sub`).
    Owner,
}

impl Access {
    /// The name used in the configuration and the capabilities document.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Anonymous => "anonymous",
            Access::Authenticated => "authenticated",
            Access::Owner => "owner",
        }
    }
}

/// Who may do one operation on a table (`[tables.operations]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Anyone (a token, if sent, must still be valid).
    Anonymous,
    /// Any signed-in user.
    Authenticated,
    /// A signed-in user, on their own rows only (`userId` = the token's `sub`).
    Owner,
    /// A signed-in user whose roles (the `[auth] roles_claim` claim) include this one.
    Role(String),
    /// Nobody: the operation answers 405.
    Disabled,
}

impl Rule {
    /// Reads `anonymous`, `authenticated`, `owner`, `role:NAME` or `disabled`.
    ///
    /// # Errors
    ///
    /// A message naming the accepted forms.
    pub fn parse(text: &str) -> Result<Rule, String> {
        Ok(match text {
            "anonymous" => Rule::Anonymous,
            "authenticated" => Rule::Authenticated,
            "owner" => Rule::Owner,
            "disabled" => Rule::Disabled,
            _ => match text.strip_prefix("role:").map(str::trim) {
                Some(role) if !role.is_empty() => Rule::Role(role.to_owned()),
                _ => {
                    return Err(format!(
                        "unknown access rule '{text}': use anonymous, authenticated, owner, \
                         role:NAME or disabled"
                    ));
                }
            },
        })
    }
}

impl std::fmt::Display for Rule {
    /// The configuration form (`role:NAME` for a role).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rule::Anonymous => f.write_str("anonymous"),
            Rule::Authenticated => f.write_str("authenticated"),
            Rule::Owner => f.write_str("owner"),
            Rule::Role(role) => write!(f, "role:{role}"),
            Rule::Disabled => f.write_str("disabled"),
        }
    }
}

impl From<Access> for Rule {
    fn from(access: Access) -> Rule {
        match access {
            Access::Anonymous => Rule::Anonymous,
            Access::Authenticated => Rule::Authenticated,
            Access::Owner => Rule::Owner,
        }
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Rule, D::Error> {
        let text = String::deserialize(deserializer)?;
        Rule::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Per-operation rules (`[tables.operations]`); an operation left out follows the table's
/// `access`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operations {
    /// Queries, item reads, snapshots and the change feed.
    pub read: Option<Rule>,
    /// Creating rows.
    pub insert: Option<Rule>,
    /// Changing rows (v2 `PATCH`, v3 `PUT`, undelete, batch updates).
    pub update: Option<Rule>,
    /// Deleting rows.
    pub delete: Option<Rule>,
}

/// A tenant scope (`[tables.scope]`): a caller sees, changes and hears of only the rows whose
/// `column` equals their token's `claim`; inserts get the column stamped from the claim.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    /// The string column that holds the tenant (created with the table).
    pub column: String,
    /// The token claim whose value is the caller's tenant (a string or a number).
    pub claim: String,
}

/// One served table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// The table name (letters, digits, `_`; matched case-insensitively in URLs).
    pub name: String,
    /// The access mode.
    #[serde(default)]
    pub access: Access,
    /// Whether DELETE keeps a tombstone (default on: offline clients need them).
    #[serde(default = "default_true")]
    pub soft_delete: bool,
    /// The declared user columns and their types: a table with them has a fixed schema.
    /// `None` (the default) for a dynamic table, which learns its columns from writes.
    #[serde(default)]
    pub columns: Option<BTreeMap<String, ColumnType>>,
    /// Per-operation rules on top of `access`.
    #[serde(default)]
    pub operations: Operations,
    /// The tenant scope, if any.
    #[serde(default)]
    pub scope: Option<ScopeConfig>,
}

impl TableConfig {
    /// An anonymous table with soft delete.
    pub fn new(name: impl Into<String>) -> TableConfig {
        TableConfig {
            name: name.into(),
            access: Access::Anonymous,
            soft_delete: true,
            columns: None,
            operations: Operations::default(),
            scope: None,
        }
    }

    /// Sets the rule of one operation (overriding `access` for it).
    #[must_use]
    pub fn operation(mut self, operation: crate::operation::Operation, rule: Rule) -> TableConfig {
        use crate::operation::Operation;
        let slot = match operation {
            Operation::Read => &mut self.operations.read,
            Operation::Insert => &mut self.operations.insert,
            Operation::Update => &mut self.operations.update,
            Operation::Delete => &mut self.operations.delete,
        };
        *slot = Some(rule);
        self
    }

    /// Scopes the table by tenant: rows whose `column` equals the token's `claim`.
    #[must_use]
    pub fn scope(mut self, column: impl Into<String>, claim: impl Into<String>) -> TableConfig {
        self.scope = Some(ScopeConfig {
            column: column.into(),
            claim: claim.into(),
        });
        self
    }

    /// The rule of `operation`: its own, else the table's `access`.
    pub fn rule(&self, operation: crate::operation::Operation) -> Rule {
        use crate::operation::Operation;
        let own = match operation {
            Operation::Read => &self.operations.read,
            Operation::Insert => &self.operations.insert,
            Operation::Update => &self.operations.update,
            Operation::Delete => &self.operations.delete,
        };
        own.clone().unwrap_or_else(|| self.access.into())
    }

    /// Whether rows carry the `userId` owner column (some operation is `owner`).
    pub fn has_owner_column(&self) -> bool {
        crate::operation::Operation::ALL
            .iter()
            .any(|op| self.rule(*op) == Rule::Owner)
    }

    /// Whether any operation needs a signed-in user (so the server must verify tokens).
    pub fn needs_users(&self) -> bool {
        self.scope.is_some()
            || crate::operation::Operation::ALL.iter().any(|op| {
                matches!(
                    self.rule(*op),
                    Rule::Authenticated | Rule::Owner | Rule::Role(_)
                )
            })
    }

    /// Declares a column (the table then has a fixed schema: every column it takes must be
    /// declared).
    #[must_use]
    pub fn column(mut self, name: impl Into<String>, ty: ColumnType) -> TableConfig {
        self.columns
            .get_or_insert_with(BTreeMap::new)
            .insert(name.into(), ty);
        self
    }

    /// Whether any writer can add columns to the table (no declared columns).
    pub fn is_dynamic(&self) -> bool {
        self.columns.is_none()
    }

    /// Sets the access mode.
    #[must_use]
    pub fn access(mut self, access: Access) -> TableConfig {
        self.access = access;
        self
    }

    /// Sets soft delete.
    #[must_use]
    pub fn soft_delete(mut self, on: bool) -> TableConfig {
        self.soft_delete = on;
        self
    }
}

/// Page sizes and `$top` limits (spec 7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Paging {
    /// Sets both page sizes when given.
    pub page_size: Option<u64>,
    /// v2 rows per page when `$top` is absent or 0.
    pub v2_page_size: u64,
    /// Largest v2 `$top`.
    pub v2_max_top: u64,
    /// v3 rows per page at most.
    pub v3_page_size: u64,
    /// Largest v3 `$top`.
    pub v3_max_top: u64,
    /// Rows the snapshot extension reads from the store at a time (its memory bound).
    pub snapshot_page_size: u64,
}

impl Default for Paging {
    fn default() -> Self {
        Paging {
            page_size: None,
            v2_page_size: 50,
            v2_max_top: 1000,
            v3_page_size: 100,
            v3_max_top: 128_000,
            snapshot_page_size: 2000,
        }
    }
}

impl Paging {
    /// The v2 page size after the `page_size` override.
    pub fn v2(&self) -> u64 {
        self.page_size.unwrap_or(self.v2_page_size).max(1)
    }

    /// The v3 page size after the `page_size` override.
    pub fn v3(&self) -> u64 {
        self.page_size.unwrap_or(self.v3_page_size).max(1)
    }

    /// The snapshot extension's internal page size (at least 1).
    pub fn snapshot(&self) -> u64 {
        self.snapshot_page_size.max(1)
    }
}

/// The audience and issuer App Service tokens carry.
pub const ZUMO_AUDIENCE: &str = "urn:microsoft:windows-azure:zumo";

/// Token and API key settings (spec 9). Its `Debug` form hides the secret and the key.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The HS256 secret: at least [`crate::auth::MIN_SECRET_BYTES`] bytes, or the server
    /// refuses to start.
    pub jwt_secret: Option<String>,
    /// A PEM public key (RS256 or ES256), as text.
    pub jwt_public_key: Option<String>,
    /// A file holding the PEM public key (read at start).
    pub jwt_public_key_file: Option<String>,
    /// The required `aud`.
    pub audience: String,
    /// The required `iss`.
    pub issuer: String,
    /// The API key, when one is required (an empty key is refused at start).
    pub api_key: Option<String>,
    /// The longest token lifetime accepted, in seconds: `exp - iat` (or `exp - now` when the
    /// token has no `iat`). A stolen token is useful only this long.
    pub max_token_lifetime_secs: u64,
    /// The token claim that lists the user's roles (a string or an array of strings), for
    /// `role:NAME` rules.
    pub roles_claim: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt_secret: None,
            jwt_public_key: None,
            jwt_public_key_file: None,
            audience: ZUMO_AUDIENCE.to_owned(),
            issuer: ZUMO_AUDIENCE.to_owned(),
            api_key: None,
            max_token_lifetime_secs: 24 * 60 * 60,
            roles_claim: "roles".to_owned(),
        }
    }
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |value: &Option<String>| value.as_ref().map(|_| "…");
        f.debug_struct("AuthConfig")
            .field("jwt_secret", &hidden(&self.jwt_secret))
            .field("jwt_public_key", &self.jwt_public_key.is_some())
            .field("jwt_public_key_file", &self.jwt_public_key_file)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("api_key", &hidden(&self.api_key))
            .field("max_token_lifetime_secs", &self.max_token_lifetime_secs)
            .field("roles_claim", &self.roles_claim)
            .finish()
    }
}

/// Everything the server needs to start.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The listen address.
    pub listen: Option<String>,
    /// The database URL.
    pub database: Option<String>,
    /// The PostgreSQL schema that holds the tables (created if missing; default `public`).
    pub postgres_schema: Option<String>,
    /// The served tables.
    pub tables: Vec<TableConfig>,
    /// Page sizes.
    pub paging: Paging,
    /// Tokens and API key.
    pub auth: AuthConfig,
    /// Origins allowed by CORS (`*` for any).
    pub cors_origins: Vec<String>,
    /// How long tombstones are kept, in seconds; `None` keeps them.
    pub tombstone_retention_secs: Option<u64>,
    /// The largest accepted request body.
    pub body_limit_bytes: usize,
    /// Treat a missing `ZUMO-API-VERSION` as v3 instead of refusing it.
    pub lenient_version: bool,
    /// The batch extension.
    pub batch: BatchConfig,
    /// The caps on dynamic tables' schemas.
    pub schema: SchemaConfig,
    /// The change feed.
    pub feed: crate::feed::FeedConfig,
    /// What one client can make the server do.
    pub limits: Limits,
}

/// Bounds on what clients can make the server do (`[limits]`). Every field has a safe
/// default; see the module documentation for the file form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// A read (a query, an item read, a snapshot page) running longer than this many
    /// milliseconds is stopped (SQLite: progress handler; PostgreSQL: `statement_timeout`) and
    /// answered 503 with `Retry-After`.
    pub query_timeout_ms: u64,
    /// The longest string or blob, in bytes, a SQLite read may hold or build
    /// (`SQLITE_LIMIT_LENGTH` of the read connections); must be at least `body_limit_bytes`,
    /// since a stored value can be that long. A query building a longer one answers 400.
    pub max_string_bytes: usize,
    /// How many times the string functions of a `$filter` may multiply the length of a value:
    /// `replace(text,'a','aaaa')` counts 4, `concat(text,text)` 2, nested calls multiply. A
    /// filter above it answers 400 before it reaches the database.
    pub max_string_growth: u64,
    /// Reads (queries, item reads, snapshot pages) running at once; more wait in line.
    pub max_concurrent_reads: usize,
    /// The longest wait, in milliseconds, for a read slot or a pooled database connection;
    /// then 503 with `Retry-After`.
    pub queue_timeout_ms: u64,
    /// PostgreSQL connections per server process.
    pub pool_size: usize,
    /// PostgreSQL: how long adding a dynamic column waits for the table's lock, in
    /// milliseconds (so a slow read cannot stall every writer behind the DDL); then 503.
    pub ddl_lock_timeout_ms: u64,
    /// PostgreSQL: how many times a write that hit a deadlock or a serialization failure is
    /// run again inside the server before it answers 503.
    pub write_retries: u32,
    /// The most JSON values (every scalar, array and object) one request body may hold; more
    /// answer 413. Bounds the memory a body takes once parsed.
    pub max_json_values: usize,
    /// A request head (request line and headers) must arrive within this many milliseconds of
    /// its first byte, or of the connection opening; otherwise the connection is closed.
    pub header_read_timeout_ms: u64,
    /// A request body that sends nothing for this many milliseconds ends its request (400).
    pub body_read_timeout_ms: u64,
    /// An idle keep-alive connection is closed after this many milliseconds.
    pub keep_alive_timeout_ms: u64,
    /// Open connections at most; one more is answered 503 with `Retry-After` and closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            query_timeout_ms: 2_000,
            max_string_bytes: 16 * 1024 * 1024,
            max_string_growth: 16,
            max_concurrent_reads: 32,
            queue_timeout_ms: 1_000,
            pool_size: 16,
            ddl_lock_timeout_ms: 2_000,
            write_retries: 3,
            max_json_values: 100_000,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
            keep_alive_timeout_ms: 30_000,
            max_connections: 1024,
        }
    }
}

impl Limits {
    /// [`Limits::query_timeout_ms`] as a duration (at least 1 ms).
    pub fn query_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.query_timeout_ms.max(1))
    }

    /// [`Limits::queue_timeout_ms`] as a duration.
    pub fn queue_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.queue_timeout_ms)
    }

    /// [`Limits::header_read_timeout_ms`] as a duration (at least 1 ms).
    pub fn header_read_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.header_read_timeout_ms.max(1))
    }

    /// [`Limits::body_read_timeout_ms`] as a duration (at least 1 ms).
    pub fn body_read_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.body_read_timeout_ms.max(1))
    }

    /// [`Limits::keep_alive_timeout_ms`] as a duration (at least 1 ms).
    pub fn keep_alive_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.keep_alive_timeout_ms.max(1))
    }

    /// Checks the limits against each other and the body limit.
    ///
    /// # Errors
    ///
    /// A message naming the setting that cannot work.
    pub fn check(&self, body_limit_bytes: usize) -> Result<(), String> {
        if self.max_string_bytes < body_limit_bytes {
            return Err(format!(
                "limits.max_string_bytes ({}) is below body_limit_bytes ({body_limit_bytes}): a stored value could not be read back",
                self.max_string_bytes
            ));
        }
        for (name, value) in [
            ("limits.max_connections", self.max_connections),
            ("limits.max_concurrent_reads", self.max_concurrent_reads),
            ("limits.pool_size", self.pool_size),
            ("limits.max_json_values", self.max_json_values),
        ] {
            if value == 0 || value > u32::MAX as usize {
                return Err(format!("{name} must be between 1 and {}", u32::MAX));
            }
        }
        if self.max_string_growth == 0 {
            return Err("limits.max_string_growth must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// How far writers may grow a dynamic table's schema (`[schema]`). Declared tables have a
/// fixed schema and ignore these.
///
/// The defaults: 32 new columns per write is far more than any app adds in one release,
/// and keeps the catalogue work one request can cause small (each new column is a schema
/// change that holds the table's lock). 256 user columns per table keeps every row within
/// PostgreSQL's 8,160-byte row limit whatever the columns hold (each column costs at most 18
/// bytes in the row: 8 for a number, a TOAST pointer for long text) and far below SQLite's
/// 2,000 and PostgreSQL's 1,600 columns. A write over either cap answers 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaConfig {
    /// The most columns one write (a request, or one op of a batch) may add.
    pub max_new_columns_per_write: usize,
    /// The most user columns a dynamic table may have (at most
    /// [`SchemaConfig::MAX_COLUMNS_LIMIT`]).
    pub max_columns_per_table: usize,
}

impl SchemaConfig {
    /// The largest accepted `max_columns_per_table`: below both stores' own column limits
    /// (SQLite 2,000, PostgreSQL 1,600, each less the five system columns and, on
    /// PostgreSQL, any dropped ones).
    pub const MAX_COLUMNS_LIMIT: usize = 1_000;
}

impl Default for SchemaConfig {
    fn default() -> Self {
        SchemaConfig {
            max_new_columns_per_write: 32,
            max_columns_per_table: 256,
        }
    }
}

/// The batch extension's limits (`POST /tidesync/v1/batch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// The most ops one request may carry; more answer 413.
    pub max_operations: usize,
    /// How long applied op ids (and their results) are remembered, in seconds.
    pub op_retention_secs: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_operations: 1000,
            op_retention_secs: 24 * 60 * 60,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: None,
            database: None,
            postgres_schema: None,
            tables: Vec::new(),
            paging: Paging::default(),
            auth: AuthConfig::default(),
            cors_origins: Vec::new(),
            tombstone_retention_secs: None,
            body_limit_bytes: 10 * 1024 * 1024,
            lenient_version: false,
            batch: BatchConfig::default(),
            schema: SchemaConfig::default(),
            feed: crate::feed::FeedConfig::default(),
            limits: Limits::default(),
        }
    }
}

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid configuration {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The TOML error.
        source: Box<toml::de::Error>,
    },
}

impl ServerConfig {
    /// Reads a TOML configuration file.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the file cannot be read or does not match the schema.
    pub fn from_file(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        ServerConfig::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source: Box::new(source),
        })
    }

    /// Parses TOML text.
    ///
    /// # Errors
    ///
    /// The TOML error when the text does not match the schema.
    pub fn from_toml(text: &str) -> Result<ServerConfig, toml::de::Error> {
        toml::from_str(text)
    }

    /// Adds a table unless one of that name (any case) is configured already.
    pub fn add_table(&mut self, table: TableConfig) {
        if !self
            .tables
            .iter()
            .any(|t| t.name.eq_ignore_ascii_case(&table.name))
        {
            self.tables.push(table);
        }
    }
}

fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference at the top of this file is a configuration the server reads.
    #[test]
    fn the_documented_file_format_parses() {
        let source = include_str!("config.rs");
        let doc: String = source
            .lines()
            .take_while(|line| line.starts_with("//!"))
            .map(|line| {
                format!(
                    "{}\n",
                    line.trim_start_matches("//!").trim_start_matches(' ')
                )
            })
            .collect();
        let start = doc.find("```toml\n").map(|at| at + 8).unwrap_or_default();
        let end = doc[start..].find("```").map_or(doc.len(), |at| start + at);
        let config = ServerConfig::from_toml(&doc[start..end]).map_err(|e| e.to_string());
        let config = config.as_ref().map_err(String::as_str);
        assert!(config.is_ok(), "{config:?}");
        let Ok(config) = config else { return };
        assert_eq!(config.schema, SchemaConfig::default());
        assert_eq!(config.tables.len(), 1);
        assert_eq!(
            config.tables[0].columns.as_ref().map(BTreeMap::len),
            Some(4)
        );
    }
}
