//! tidesync-server embedded in an app's own axum router: the app serves its own routes
//! (`GET /` and a toy `POST /login` that hands out session tokens), mounts the tidesync
//! router next to them, signs requests in with its own [`SessionAuth`] (the sessions `/login`
//! created) instead of JWTs, and runs a [`TodoPolicy`] on the `TodoItem` table that stamps
//! `modifiedBy` with the signed-in user and refuses a `text` over 200 characters.
//!
//! What it is not: a real login (anyone may log in as anyone; the sessions live in memory
//! and are lost on restart). It shows where an app's identity provider and rules plug in.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use async_trait::async_trait;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tidesync_protocol::Item;
use tidesync_server::error::ServerError;
use tidesync_server::{
    Access, App, Authenticator, Caller, ColumnType, Database, Operation, PolicyError, Server,
    TableConfig, TablePolicy, User,
};

/// The longest `text` the policy accepts, in characters.
pub const MAX_TEXT_CHARS: usize = 200;

/// The sessions `POST /login` created: token → user name.
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    tokens: Arc<RwLock<HashMap<String, String>>>,
}

impl Sessions {
    /// A new session for `user`; returns its token.
    pub fn open(&self, user: &str) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.clone(), user.to_owned());
        token
    }

    fn user(&self, token: &str) -> Option<String> {
        self.tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }
}

/// The app's identity provider: `Authorization: Bearer TOKEN` with a token from `/login`.
#[derive(Debug, Clone)]
pub struct SessionAuth {
    sessions: Sessions,
}

#[async_trait]
impl Authenticator for SessionAuth {
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<User>, ServerError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        match self.sessions.user(token) {
            Some(user) => Ok(Some(User::new(user))),
            None => Err(ServerError::InvalidToken {
                message: "unknown session".to_owned(),
            }),
        }
    }
}

/// The rules of `TodoItem`: `modifiedBy` is the signed-in user (whatever a client sends),
/// and `text` has at most [`MAX_TEXT_CHARS`] characters.
#[derive(Debug, Clone, Copy, Default)]
pub struct TodoPolicy;

impl TablePolicy for TodoPolicy {
    fn before_write(
        &self,
        caller: &Caller,
        _operation: Operation,
        item: &mut Item,
    ) -> Result<(), PolicyError> {
        let text = item.get("text").and_then(Value::as_str).unwrap_or_default();
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(PolicyError::Invalid(format!(
                "text has at most {MAX_TEXT_CHARS} characters"
            )));
        }
        let user = caller
            .user
            .as_ref()
            .ok_or_else(|| PolicyError::Forbidden("sign in first".to_owned()))?;
        item.insert("modifiedBy".to_owned(), Value::String(user.id.clone()));
        Ok(())
    }

    fn after_commit(
        &self,
        caller: &Caller,
        operation: Operation,
        item: &Item,
    ) -> Result<(), PolicyError> {
        let user = caller.user.as_ref().map_or("", |u| u.id.as_str());
        let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
        tracing::info!(user, operation = operation.as_str(), id, "todo written");
        Ok(())
    }
}

/// Builds the tidesync app over `database` (`sqlite://FILE` or `postgres://…`) with the
/// session authenticator and the policy.
///
/// # Errors
///
/// When the database URL is not understood or the server cannot start on it.
pub async fn tidesync_app(database: &str, sessions: &Sessions) -> anyhow::Result<App> {
    let database = Database::parse(database).map_err(anyhow::Error::msg)?;
    let table = TableConfig::new("TodoItem")
        .access(Access::Authenticated)
        .column("text", ColumnType::String)
        .column("complete", ColumnType::Boolean)
        .column("modifiedBy", ColumnType::String);
    Server::builder()
        .database(database)
        .table_config(table)
        .authenticator(Arc::new(SessionAuth {
            sessions: sessions.clone(),
        }))
        .policy("TodoItem", Arc::new(TodoPolicy))
        .build()
        .await
        .context("starting tidesync")
}

/// The host app: its own routes, the tidesync router merged next to them, and its own
/// fallback.
pub fn host_router(app: &App, sessions: Sessions) -> Router {
    let own = Router::new()
        .route("/", get(|| async { "an app that embeds tidesync\n" }))
        .route("/login", post(login))
        .with_state(sessions);
    own.merge(app.router())
        .fallback(|| async { (StatusCode::NOT_FOUND, "not here\n") })
}

/// `POST /login {"user": NAME}` → `{"token": …}`.
async fn login(
    State(sessions): State<Sessions>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    match body.get("user").and_then(Value::as_str) {
        Some(user) if !user.trim().is_empty() => (
            StatusCode::OK,
            Json(json!({ "token": sessions.open(user.trim()) })),
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "send {\"user\": NAME}" })),
        ),
    }
}
