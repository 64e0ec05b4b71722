//! Starting a server: [`Server::builder`] opens the store, prepares the tables and either
//! hands back the router ([`App`], for in-process tests) or binds and serves
//! ([`RunningServer`]).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::auth::{Authenticator, JwtAuthenticator};
use crate::config::{ServerConfig, TableConfig};
use crate::http::{self, AppState, Shared};
use crate::policy::TablePolicy;
use crate::store::{
    SqliteStore, Store, StoreError, StoreLimits, TableSpec, check_table_name, now_ms,
};

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL database; `schema` (created if missing) holds the tables when given.
    Postgres {
        /// The connection URL.
        url: String,
        /// The PostgreSQL schema for the tables (default `public`).
        schema: Option<String>,
    },
}

impl Database {
    /// Reads `sqlite://relative.db`, `sqlite:///absolute.db` or `postgres://…`
    /// (`postgresql://` too).
    ///
    /// # Errors
    ///
    /// A message for any other form.
    pub fn parse(url: &str) -> Result<Database, String> {
        if let Some(rest) = url.strip_prefix("sqlite://") {
            if rest.is_empty() {
                return Err("sqlite:// needs a file path".to_owned());
            }
            return Ok(Database::Sqlite(PathBuf::from(rest)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Database::Postgres {
                url: url.to_owned(),
                schema: None,
            });
        }
        Err(format!(
            "unsupported database URL '{url}': use sqlite://FILE, sqlite:///ABS/FILE or postgres://…"
        ))
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is incomplete or contradictory.
    #[error("configuration: {0}")]
    Config(String),
    /// The database could not be opened or prepared.
    #[error("database: {0}")]
    Database(#[source] StoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("server: {0}")]
    Serve(#[source] std::io::Error),
}

/// The entry point: `Server::builder()`.
#[derive(Debug, Clone, Copy)]
pub struct Server;

impl Server {
    /// A builder with the default configuration and no tables.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}

/// Configures and starts a server. See the crate documentation for an example.
#[derive(Debug, Default)]
pub struct ServerBuilder {
    config: ServerConfig,
    database: Option<Database>,
    store: Option<Arc<dyn Store>>,
    authenticator: Option<Arc<dyn Authenticator>>,
    policies: HashMap<String, Arc<dyn TablePolicy>>,
}

impl ServerBuilder {
    /// Starts from a whole configuration (e.g. read from a file); later calls override it.
    #[must_use]
    pub fn config(mut self, config: ServerConfig) -> ServerBuilder {
        self.config = config;
        self
    }

    /// Uses the SQLite file at `path`.
    #[must_use]
    pub fn sqlite(mut self, path: impl AsRef<Path>) -> ServerBuilder {
        self.database = Some(Database::Sqlite(path.as_ref().to_path_buf()));
        self
    }

    /// Uses the PostgreSQL database at `url`, tables in `schema` (created if missing).
    #[must_use]
    pub fn postgres(mut self, url: impl Into<String>, schema: Option<String>) -> ServerBuilder {
        self.database = Some(Database::Postgres {
            url: url.into(),
            schema,
        });
        self
    }

    /// Uses `database`.
    #[must_use]
    pub fn database(mut self, database: Database) -> ServerBuilder {
        self.database = Some(database);
        self
    }

    /// Uses an already opened store (overrides [`ServerBuilder::database`]).
    #[must_use]
    pub fn store(mut self, store: Arc<dyn Store>) -> ServerBuilder {
        self.store = Some(store);
        self
    }

    /// Uses `authenticator` to sign requests in, instead of the built-in
    /// [`JwtAuthenticator`] (the `[auth]` settings then go unused).
    #[must_use]
    pub fn authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> ServerBuilder {
        self.authenticator = Some(authenticator);
        self
    }

    /// Runs the app's `policy` on `table` (a configured table; the name in any case), after
    /// the configured rules. A later call for the same table replaces it.
    #[must_use]
    pub fn policy(
        mut self,
        table: impl Into<String>,
        policy: Arc<dyn TablePolicy>,
    ) -> ServerBuilder {
        self.policies.insert(table.into(), policy);
        self
    }

    /// Serves an anonymous table with soft delete.
    #[must_use]
    pub fn table(self, name: impl Into<String>) -> ServerBuilder {
        self.table_config(TableConfig::new(name))
    }

    /// Serves a table configured in full.
    #[must_use]
    pub fn table_config(mut self, table: TableConfig) -> ServerBuilder {
        self.config.add_table(table);
        self
    }

    /// The address to listen on, e.g. `127.0.0.1:0` for any free loopback port.
    #[must_use]
    pub fn bind(mut self, addr: impl Into<String>) -> ServerBuilder {
        self.config.listen = Some(addr.into());
        self
    }

    /// Requires this API key on table and extension requests.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> ServerBuilder {
        self.config.auth.api_key = Some(key.into());
        self
    }

    /// Verifies HS256 tokens with this secret.
    #[must_use]
    pub fn jwt_secret(mut self, secret: impl Into<String>) -> ServerBuilder {
        self.config.auth.jwt_secret = Some(secret.into());
        self
    }

    /// Sets both protocol versions' page size.
    #[must_use]
    pub fn page_size(mut self, rows: u64) -> ServerBuilder {
        self.config.paging.page_size = Some(rows);
        self
    }

    /// Sets how many rows the snapshot extension reads from the store at a time.
    #[must_use]
    pub fn snapshot_page_size(mut self, rows: u64) -> ServerBuilder {
        self.config.paging.snapshot_page_size = rows;
        self
    }

    /// Sets the batch extension's limits.
    #[must_use]
    pub fn batch(mut self, batch: crate::config::BatchConfig) -> ServerBuilder {
        self.config.batch = batch;
        self
    }

    /// Sets what one client can make the server do (see [`crate::config::Limits`]).
    #[must_use]
    pub fn limits(mut self, limits: crate::config::Limits) -> ServerBuilder {
        self.config.limits = limits;
        self
    }

    /// Sets the caps on dynamic tables' schemas.
    #[must_use]
    pub fn schema(mut self, schema: crate::config::SchemaConfig) -> ServerBuilder {
        self.config.schema = schema;
        self
    }

    /// Sets the change feed's heartbeat, coalescing and caps.
    #[must_use]
    pub fn feed(mut self, feed: crate::feed::FeedConfig) -> ServerBuilder {
        self.config.feed = feed;
        self
    }

    /// Keeps tombstones this long, then purges them. The retention is kept in whole seconds,
    /// rounded up: a retention is a minimum, so a sub-second one must not become "purge now".
    #[must_use]
    pub fn tombstone_retention(mut self, retention: Duration) -> ServerBuilder {
        let secs = retention.as_secs() + u64::from(retention.subsec_nanos() > 0);
        self.config.tombstone_retention_secs = Some(secs);
        self
    }

    /// Opens the store and prepares every table, returning the router without serving it.
    ///
    /// # Errors
    ///
    /// [`StartError::Config`] without tables or a database, [`StartError::Database`] when
    /// the store cannot be opened or prepared.
    pub async fn build(self) -> Result<App, StartError> {
        let config = self.config;
        if config.tables.is_empty() {
            return Err(StartError::Config("no tables configured".to_owned()));
        }
        for table in &config.tables {
            check_table_name(&table.name).map_err(StartError::Config)?;
            for name in table.columns.iter().flat_map(|columns| columns.keys()) {
                crate::http::check_declared_column(name).map_err(|reason| {
                    StartError::Config(format!("table '{}': {reason}", table.name))
                })?;
            }
        }
        if config.schema.max_columns_per_table > crate::config::SchemaConfig::MAX_COLUMNS_LIMIT {
            return Err(StartError::Config(format!(
                "[schema] max_columns_per_table is at most {}",
                crate::config::SchemaConfig::MAX_COLUMNS_LIMIT
            )));
        }
        let dynamic: Vec<&str> = config
            .tables
            .iter()
            .filter(|t| t.is_dynamic())
            .map(|t| t.name.as_str())
            .collect();
        if !dynamic.is_empty() {
            tracing::warn!(
                tables = %dynamic.join(", "),
                "these tables have no declared columns: any writer can add columns to them \
                 (up to [schema] max_columns_per_table); declare `columns` for production"
            );
        }
        if let Some(name) = self.policies.keys().find(|name| {
            !config
                .tables
                .iter()
                .any(|t| t.name.eq_ignore_ascii_case(name))
        }) {
            return Err(StartError::Config(format!(
                "a policy is registered for '{name}', which is not a configured table"
            )));
        }
        for table in &config.tables {
            if let Some(scope) = &table.scope {
                crate::http::check_declared_column(&scope.column).map_err(|reason| {
                    StartError::Config(format!("table '{}' scope column: {reason}", table.name))
                })?;
                let declared = table.columns.as_ref().and_then(|c| c.get(&scope.column));
                if declared.is_some_and(|ty| *ty != crate::store::ColumnType::String) {
                    return Err(StartError::Config(format!(
                        "table '{}': the scope column '{}' must be a string column",
                        table.name, scope.column
                    )));
                }
                if scope.claim.trim().is_empty() {
                    return Err(StartError::Config(format!(
                        "table '{}': the scope needs a claim",
                        table.name
                    )));
                }
            }
        }
        let auth: Arc<dyn Authenticator> = match self.authenticator {
            Some(auth) => auth,
            None => Arc::new(JwtAuthenticator::new(&config.auth).map_err(StartError::Config)?),
        };
        config
            .limits
            .check(config.body_limit_bytes)
            .map_err(StartError::Config)?;
        if !auth.verifies_tokens() {
            if let Some(table) = config.tables.iter().find(|t| t.needs_users()) {
                return Err(StartError::Config(format!(
                    "table '{}' needs signed-in users but no JWT secret or public key is configured",
                    table.name
                )));
            }
        }
        let database = match (&self.database, &config.database) {
            (Some(database), _) => Some(database.clone()),
            (None, Some(url)) => Some(match Database::parse(url).map_err(StartError::Config)? {
                Database::Postgres { url, .. } => Database::Postgres {
                    url,
                    schema: config.postgres_schema.clone(),
                },
                other => other,
            }),
            (None, None) => None,
        };
        let postgres_feed = match (&self.store, &database) {
            (None, Some(Database::Postgres { url, schema })) => Some((url.clone(), schema.clone())),
            _ => None,
        };
        let store: Arc<dyn Store> = match (self.store, database) {
            (Some(store), _) => store,
            (None, Some(Database::Sqlite(path))) => Arc::new(
                SqliteStore::open_with(&path, StoreLimits::from(&config.limits))
                    .await
                    .map_err(StartError::Database)?,
            ),
            (None, Some(Database::Postgres { url, schema })) => {
                open_postgres(&url, schema.as_deref(), StoreLimits::from(&config.limits)).await?
            }
            (None, None) => return Err(StartError::Config("no database configured".to_owned())),
        };
        for table in &config.tables {
            let mut spec = TableSpec::new(
                table.name.clone(),
                table.soft_delete,
                table.has_owner_column(),
            );
            spec.scope_column = table.scope.as_ref().map(|s| s.column.clone());
            spec.declared = table
                .columns
                .as_ref()
                .map(|columns| columns.iter().map(|(n, t)| (n.clone(), *t)).collect());
            store
                .prepare_table(&spec)
                .await
                .map_err(StartError::Database)?;
        }
        let (store, feed) = feed_source(
            store,
            postgres_feed,
            &config.tables,
            config.feed.replay_events,
        )
        .await?;
        let retention = config.tombstone_retention_secs;
        let state = Arc::new(AppState {
            purger: std::sync::Mutex::new(None),
            store,
            guards: http::guards(&config.tables, &self.policies),
            tables: config.tables.clone(),
            paging: config.paging,
            auth,
            body_limit: config.body_limit_bytes,
            lenient_version: config.lenient_version,
            tombstone_retention_secs: config.tombstone_retention_secs,
            cors_origins: config.cors_origins.clone(),
            batch: config.batch,
            schema: config.schema,
            feed,
            feed_config: config.feed,
            limits: config.limits,
            metrics: http::metrics::Metrics::default(),
        });
        // The purge task holds the state weakly: it stops when the last router and the `App`
        // are gone (and at once when the state drops, by its `PurgeTask`).
        if let Some(secs) = retention {
            let task = tokio::spawn(purge_loop(Arc::downgrade(&state), secs));
            *state.purger.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(PurgeTask(task.abort_handle()));
        }
        Ok(App {
            state,
            listen: config.listen.unwrap_or_else(|| "127.0.0.1:8080".to_owned()),
        })
    }

    /// [`ServerBuilder::build`], then binds and serves in a background task. The port
    /// accepts connections only once the database is ready.
    ///
    /// # Errors
    ///
    /// As [`ServerBuilder::build`], and [`StartError::Bind`] when the address is taken.
    pub async fn start(self) -> Result<RunningServer, StartError> {
        self.build().await?.serve().await
    }
}

/// Where the change feed hears of writes: a PostgreSQL opened here gets the notify trigger
/// and this process's listener (writes through every server are seen); any other store is
/// wrapped so that its writes through this process are published.
async fn feed_source(
    store: Arc<dyn Store>,
    postgres: Option<(String, Option<String>)>,
    tables: &[TableConfig],
    replay_events: usize,
) -> Result<(Arc<dyn Store>, crate::feed::FeedHub), StartError> {
    let hub = crate::feed::FeedHub::with_replay(replay_events);
    match postgres {
        Some((url, schema)) => {
            let schema = schema.as_deref().unwrap_or("public");
            let names: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
            crate::feed::postgres::install(&url, schema, &names)
                .await
                .map_err(StartError::Database)?;
            crate::feed::postgres::start_listener(&url, schema, &hub).await;
            Ok((store, hub))
        }
        None => Ok((
            Arc::new(crate::feed::FeedStore::new(store, hub.clone())),
            hub,
        )),
    }
}

async fn open_postgres(
    url: &str,
    schema: Option<&str>,
    limits: StoreLimits,
) -> Result<Arc<dyn Store>, StartError> {
    let store = crate::store::PostgresStore::open_with(url, schema, limits)
        .await
        .map_err(StartError::Database)?;
    Ok(Arc::new(store))
}

/// A built server that is not serving yet: its router can be driven in-process.
#[derive(Debug, Clone)]
pub struct App {
    state: Shared,
    listen: String,
}

impl App {
    /// The router: for `tower::ServiceExt::oneshot` in tests, or to `merge` (or `nest`) into
    /// a host axum app. It serves `/tables`, `/tidesync/v1`, `/health` and `/ready` and has
    /// no fallback of its own (the host's applies elsewhere). Tombstone purging runs as long
    /// as the app lives (it started with [`ServerBuilder::build`]); end open change feeds on
    /// shutdown with [`App::close`] or [`App::graceful_shutdown`].
    pub fn router(&self) -> Router {
        http::router(Arc::clone(&self.state))
    }

    /// The store behind the server.
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.state.store)
    }

    /// Binds the configured address and serves in a background task.
    ///
    /// # Errors
    ///
    /// [`StartError::Bind`] when the address cannot be bound.
    pub async fn serve(self) -> Result<RunningServer, StartError> {
        let listener = tokio::net::TcpListener::bind(&self.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: self.listen.clone(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: self.listen.clone(),
            source,
        })?;
        let (stop, stopped) = oneshot::channel::<()>();
        // Standalone, the whole URL space is the server's: unknown paths get its JSON 404.
        let router = self.router().fallback(http::not_found);
        let limits = self.state.limits;
        let server = tokio::spawn(crate::listen::serve(listener, router, limits, stopped));
        Ok(RunningServer {
            addr,
            app: self,
            stop: Some(stop),
            server,
        })
    }

    /// Ends every open change feed and stops the tombstone purge: call it when the host app
    /// shuts down (or use [`App::graceful_shutdown`]), since an open feed is a response that
    /// never ends on its own and would hold a graceful shutdown forever.
    pub fn close(&self) {
        self.state.feed.close();
        if let Some(purger) = self
            .state
            .purger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            purger.0.abort();
        }
    }

    /// A shutdown signal for a host's `axum::serve(…).with_graceful_shutdown(…)`: waits for
    /// `signal`, then [`App::close`]s this app, so that open change feeds end and the host's
    /// graceful shutdown can finish.
    pub fn graceful_shutdown<F>(&self, signal: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let app = self.clone();
        async move {
            signal.await;
            app.close();
        }
    }
}

/// The tombstone purge task of an app; aborted when the app's state is dropped.
#[derive(Debug)]
pub(crate) struct PurgeTask(tokio::task::AbortHandle);

impl Drop for PurgeTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A server serving in the background.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    app: App,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections, lets in-flight requests finish and waits.
    ///
    /// # Errors
    ///
    /// [`StartError::Serve`] when the server had failed.
    pub async fn shutdown(mut self) -> Result<(), StartError> {
        // Open change feeds never end on their own; end them so the shutdown can finish.
        self.app.close();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.server).await {
            Ok(result) => result.map_err(StartError::Serve),
            Err(join) => Err(StartError::Serve(std::io::Error::other(join.to_string()))),
        }
    }
}

/// Purges tombstones older than the retention, every minute (or sooner for short
/// retentions), for as long as the app's state lives.
async fn purge_loop(state: std::sync::Weak<AppState>, retention_secs: u64) {
    let period = Duration::from_secs(retention_secs.clamp(1, 60));
    loop {
        let Some(state) = state.upgrade() else {
            return;
        };
        let retention_ms = i64::try_from(retention_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let before = now_ms().saturating_sub(retention_ms);
        for table in state.tables.iter().filter(|t| t.soft_delete) {
            match state.store.purge_deleted(&table.name, before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(table = %table.name, removed = n, "purged tombstones"),
                Err(error) => tracing::warn!(table = %table.name, %error, "tombstone purge failed"),
            }
        }
        drop(state);
        tokio::time::sleep(period).await;
    }
}
