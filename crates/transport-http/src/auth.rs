//! Credentials: the [`AuthProvider`] trait and the built-in providers.
//!
//! A provider hands out the headers to add to every request. When the server answers
//! 401, the transport calls [`AuthProvider::refresh`] once; if the provider says it has
//! new credentials, the request is sent again, otherwise (or on a second 401) the call
//! fails with `TransportError::Auth` and a push stops with `CancelledByAuthenticationError`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use tidesync_core::BoxError;
use tidesync_protocol::wire::X_ZUMO_AUTH;

/// Headers as (name, value) pairs.
pub type Headers = Vec<(String, String)>;

/// A boxed, sendable future, as returned by the closures of [`FnAuth`] and [`BearerToken`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The header [`ApiKey`] sends unless told otherwise.
pub const DEFAULT_API_KEY_HEADER: &str = "X-API-KEY";

/// Supplies credentials for each request.
///
/// Object-safe (through `async-trait`): the transport holds an `Arc<dyn AuthProvider>`.
#[async_trait]
pub trait AuthProvider: Send + Sync + fmt::Debug {
    /// The headers to add to the next request.
    ///
    /// # Errors
    /// Any failure to obtain credentials; the call then fails with `TransportError::Auth`.
    async fn headers(&self) -> Result<Headers, BoxError>;

    /// Called once after a 401. Returns `true` when new credentials are ready and the
    /// request should be sent again; the default has nothing to refresh.
    ///
    /// # Errors
    /// A failed refresh; the call then fails with `TransportError::Auth`.
    async fn refresh(&self) -> Result<bool, BoxError> {
        Ok(false)
    }
}

#[async_trait]
impl<T: AuthProvider + ?Sized> AuthProvider for Arc<T> {
    async fn headers(&self) -> Result<Headers, BoxError> {
        (**self).headers().await
    }

    async fn refresh(&self) -> Result<bool, BoxError> {
        (**self).refresh().await
    }
}

/// A static API key sent in one header (by default [`DEFAULT_API_KEY_HEADER`]).
#[derive(Clone)]
pub struct ApiKey {
    header: String,
    key: String,
}

impl ApiKey {
    /// A key sent as `X-API-KEY: <key>`.
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            header: DEFAULT_API_KEY_HEADER.to_owned(),
            key: key.into(),
        }
    }

    /// Sends the key in another header.
    #[must_use]
    pub fn header_name(mut self, header: impl Into<String>) -> Self {
        self.header = header.into();
        self
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("header", &self.header)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[async_trait]
impl AuthProvider for ApiKey {
    async fn headers(&self) -> Result<Headers, BoxError> {
        Ok(vec![(self.header.clone(), self.key.clone())])
    }
}

type TokenSource = Arc<dyn Fn() -> BoxFuture<Result<String, BoxError>> + Send + Sync>;

/// A bearer token, sent both as `Authorization: Bearer <token>` and as `X-ZUMO-AUTH: <token>`
/// (Azure Mobile Apps servers read the latter, Datasync servers the former).
///
/// The token can be replaced at any time with [`BearerToken::set_token`], and an optional
/// refresher is asked for a new one after a 401.
#[derive(Clone)]
pub struct BearerToken {
    token: Arc<RwLock<String>>,
    refresher: Option<TokenSource>,
}

impl BearerToken {
    /// A fixed token (until [`set_token`](BearerToken::set_token) changes it).
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: Arc::new(RwLock::new(token.into())),
            refresher: None,
        }
    }

    /// Asks `refresher` for a new token after a 401; the request is then sent again once.
    #[must_use]
    pub fn with_refresh<F, Fut>(mut self, refresher: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, BoxError>> + Send + 'static,
    {
        self.refresher = Some(Arc::new(move || Box::pin(refresher())));
        self
    }

    /// Replaces the token; clones of this provider see the change.
    pub fn set_token(&self, token: impl Into<String>) {
        let mut slot = self
            .token
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = token.into();
    }

    fn current(&self) -> String {
        self.token
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerToken")
            .field("token", &"<redacted>")
            .field("refresh", &self.refresher.is_some())
            .finish()
    }
}

#[async_trait]
impl AuthProvider for BearerToken {
    async fn headers(&self) -> Result<Headers, BoxError> {
        let token = self.current();
        Ok(vec![
            ("Authorization".to_owned(), format!("Bearer {token}")),
            (X_ZUMO_AUTH.to_owned(), token),
        ])
    }

    async fn refresh(&self) -> Result<bool, BoxError> {
        let Some(refresher) = &self.refresher else {
            return Ok(false);
        };
        let token = refresher().await?;
        self.set_token(token);
        Ok(true)
    }
}

type HeaderSource = Arc<dyn Fn() -> BoxFuture<Result<Headers, BoxError>> + Send + Sync>;
type RefreshHook = Arc<dyn Fn() -> BoxFuture<Result<bool, BoxError>> + Send + Sync>;

/// A provider made of closures: one that yields the headers for each request and an
/// optional refresh hook.
///
/// ```
/// use tidesync_transport_http::FnAuth;
///
/// let auth = FnAuth::new(|| async {
///     Ok(vec![("X-ZUMO-AUTH".to_owned(), "session-token".to_owned())])
/// })
/// .on_refresh(|| async { Ok(false) });
/// # let _ = auth;
/// ```
#[derive(Clone)]
pub struct FnAuth {
    headers: HeaderSource,
    refresh: Option<RefreshHook>,
}

impl FnAuth {
    /// A provider that asks `headers` before every request.
    pub fn new<F, Fut>(headers: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Headers, BoxError>> + Send + 'static,
    {
        Self {
            headers: Arc::new(move || Box::pin(headers())),
            refresh: None,
        }
    }

    /// Runs `hook` after a 401; it returns `true` when the request should be sent again.
    #[must_use]
    pub fn on_refresh<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<bool, BoxError>> + Send + 'static,
    {
        self.refresh = Some(Arc::new(move || Box::pin(hook())));
        self
    }
}

impl fmt::Debug for FnAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnAuth")
            .field("refresh", &self.refresh.is_some())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl AuthProvider for FnAuth {
    async fn headers(&self) -> Result<Headers, BoxError> {
        (self.headers)().await
    }

    async fn refresh(&self) -> Result<bool, BoxError> {
        match &self.refresh {
            Some(hook) => hook().await,
            None => Ok(false),
        }
    }
}
