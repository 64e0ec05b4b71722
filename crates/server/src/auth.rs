//! Tokens and API keys (spec 9): the session token travels in `X-ZUMO-AUTH` or
//! `Authorization: Bearer`, is a JWT signed with the HS256 secret (or verified with a public
//! key) and must carry the configured audience and issuer; the user id is its `sub`.
//!
//! The rules a token must pass: a valid signature, `aud` and `iss` as configured, `exp` in
//! the future and `nbf` (when present) in the past (both with a 60 s leeway for clock skew),
//! a non-empty `sub`, and a lifetime (`exp - iat`, or `exp - now` without `iat`) of at most
//! [`AuthConfig::max_token_lifetime_secs`]. The server refuses to start with an empty API key
//! or an HS256 secret shorter than [`MIN_SECRET_BYTES`]. Tokens and keys are never logged.
//!
//! [`Authenticator`] is the seam: [`JwtAuthenticator`] (the above) is the built-in one, and an
//! app that embeds the server can register its own identity provider with
//! [`crate::ServerBuilder::authenticator`].

use async_trait::async_trait;
use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;
use serde_json::{Map, Value};
use tidesync_protocol::wire::X_ZUMO_AUTH;

use crate::config::AuthConfig;
use crate::error::ServerError;

/// The fewest bytes an HS256 secret may have (the size of the HMAC-SHA256 key block's
/// security level: a shorter secret can be brute-forced from one captured token).
pub const MIN_SECRET_BYTES: usize = 32;

/// The signed-in user of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct User {
    /// The token's `sub` claim (never empty).
    pub id: String,
    /// The token's `exp` claim, seconds since the Unix epoch: an open change feed ends then.
    pub expires_at: i64,
    /// The user's roles (the `[auth] roles_claim` claim), for `role:NAME` rules.
    pub roles: Vec<String>,
    /// Every claim of the token (tenant scopes read theirs from here).
    pub claims: Map<String, Value>,
}

impl User {
    /// A user with `id`, no roles, no claims and no expiry (for custom authenticators).
    pub fn new(id: impl Into<String>) -> User {
        User {
            id: id.into(),
            expires_at: i64::MAX,
            roles: Vec::new(),
            claims: Map::new(),
        }
    }

    /// Sets when the credentials expire (seconds since the Unix epoch): an open change feed
    /// ends then.
    #[must_use]
    pub fn expires_at(mut self, unix_secs: i64) -> User {
        self.expires_at = unix_secs;
        self
    }

    /// Adds a role.
    #[must_use]
    pub fn role(mut self, role: impl Into<String>) -> User {
        self.roles.push(role.into());
        self
    }

    /// Sets a claim (e.g. the one a tenant scope reads).
    #[must_use]
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> User {
        self.claims.insert(name.into(), value.into());
        self
    }

    /// Whether the user has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// The text of a claim: a string, or a number's decimal form; `None` otherwise.
    pub fn claim_text(&self, name: &str) -> Option<String> {
        match self.claims.get(name)? {
            Value::String(text) if !text.is_empty() => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        }
    }
}

/// Who is calling: works out the user of a request (and refuses bad credentials). The
/// server asks it once per request, before anything else.
///
/// The built-in [`JwtAuthenticator`] checks the API key and verifies JWTs; an app plugs its
/// own identity provider in with [`crate::ServerBuilder::authenticator`].
#[async_trait]
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// The user of a request, `None` for an anonymous one.
    ///
    /// # Errors
    ///
    /// The refusal to answer with: [`ServerError::InvalidToken`] or
    /// [`ServerError::InvalidApiKey`] (401) for credentials that do not verify.
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<User>, ServerError>;

    /// Whether this authenticator can sign users in at all (a server that cannot refuses
    /// to start with tables that need users). Default: yes.
    fn verifies_tokens(&self) -> bool {
        true
    }

    /// Whether every request needs an API key (told to clients by the capabilities
    /// document). Default: no.
    fn requires_api_key(&self) -> bool {
        false
    }
}

/// The built-in authenticator: the API key, and JWTs (HS256 secret or RS/ES public key).
#[derive(Clone)]
pub struct JwtAuthenticator {
    keys: Vec<(DecodingKey, Validation)>,
    api_key: Option<String>,
    max_lifetime_secs: i64,
    roles_claim: String,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("n_keys", &self.keys.len())
            .field("api_key", &self.api_key.as_ref().map(|_| "…"))
            .finish()
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    iat: Option<i64>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// The headers an API key may arrive in.
pub const API_KEY_HEADERS: [&str; 2] = ["x-api-key", "zumo-api-key"];

impl JwtAuthenticator {
    /// Builds the verifier from the configuration.
    ///
    /// # Errors
    ///
    /// A message when the API key is empty, the HS256 secret is shorter than
    /// [`MIN_SECRET_BYTES`], or the public key cannot be read or parsed.
    pub fn new(config: &AuthConfig) -> Result<JwtAuthenticator, String> {
        if config.api_key.as_deref() == Some("") {
            return Err(
                "the API key is empty: set a non-empty key, or leave it out to require none"
                    .to_owned(),
            );
        }
        if let Some(secret) = &config.jwt_secret {
            if secret.len() < MIN_SECRET_BYTES {
                return Err(format!(
                    "the HS256 secret has {} bytes; it needs at least {MIN_SECRET_BYTES} \
                     (e.g. the output of `openssl rand -base64 32`)",
                    secret.len()
                ));
            }
        }
        let mut keys = Vec::new();
        let validation = |algorithms: &[Algorithm]| {
            let mut validation = Validation::new(Algorithm::HS256);
            validation.algorithms = algorithms.to_vec();
            validation.set_audience(&[&config.audience]);
            validation.set_issuer(&[&config.issuer]);
            validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
            validation.validate_nbf = true;
            validation
        };
        if let Some(secret) = &config.jwt_secret {
            keys.push((
                DecodingKey::from_secret(secret.as_bytes()),
                validation(&[Algorithm::HS256]),
            ));
        }
        let pem = match (&config.jwt_public_key, &config.jwt_public_key_file) {
            (Some(text), _) => Some(text.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read the public key {path}: {e}"))?,
            ),
            (None, None) => None,
        };
        if let Some(pem) = pem {
            if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
                keys.push((
                    key,
                    validation(&[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512]),
                ));
            } else {
                let key = DecodingKey::from_ec_pem(pem.as_bytes())
                    .map_err(|e| format!("the public key is neither RSA nor EC PEM: {e}"))?;
                keys.push((key, validation(&[Algorithm::ES256, Algorithm::ES384])));
            }
        }
        Ok(JwtAuthenticator {
            keys,
            api_key: config.api_key.clone(),
            max_lifetime_secs: i64::try_from(config.max_token_lifetime_secs).unwrap_or(i64::MAX),
            roles_claim: config.roles_claim.clone(),
        })
    }

    /// Whether tokens can be verified at all.
    pub fn verifies_tokens(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Whether an API key is required.
    pub fn requires_api_key(&self) -> bool {
        self.api_key.is_some()
    }

    /// Checks the API key, when one is configured.
    ///
    /// # Errors
    ///
    /// [`ServerError::InvalidApiKey`] when it is missing or wrong.
    pub fn check_api_key(&self, headers: &HeaderMap) -> Result<(), ServerError> {
        let Some(expected) = &self.api_key else {
            return Ok(());
        };
        let given = API_KEY_HEADERS
            .iter()
            .find_map(|name| headers.get(*name))
            .and_then(|v| v.to_str().ok());
        match given {
            Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => Ok(()),
            _ => Err(ServerError::InvalidApiKey),
        }
    }

    /// The user of a request: `None` without a token (or when no key is configured, in
    /// which case tokens are not inspected).
    ///
    /// # Errors
    ///
    /// [`ServerError::InvalidToken`] for a token that does not verify.
    pub fn user(&self, headers: &HeaderMap) -> Result<Option<User>, ServerError> {
        let Some(token) = token(headers) else {
            return Ok(None);
        };
        if self.keys.is_empty() {
            return Ok(None);
        }
        let mut last_error = String::from("no key");
        for (key, validation) in &self.keys {
            match decode::<Claims>(token, key, validation) {
                Ok(data) => return self.check_claims(data.claims).map(Some),
                Err(error) => last_error = error.to_string(),
            }
        }
        Err(ServerError::InvalidToken {
            message: last_error,
        })
    }

    /// The rules the signature check does not cover: a `sub`, and a bounded lifetime.
    fn check_claims(&self, claims: Claims) -> Result<User, ServerError> {
        let refuse = |message: String| Err(ServerError::InvalidToken { message });
        if claims.sub.trim().is_empty() {
            return refuse("the token's sub claim is empty".to_owned());
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let issued = claims.iat.map_or(now, |iat| iat.min(now));
        if claims.exp.saturating_sub(issued) > self.max_lifetime_secs {
            return refuse(format!(
                "the token is valid for longer than the accepted {} s (auth.max_token_lifetime_secs)",
                self.max_lifetime_secs
            ));
        }
        let roles = match claims.rest.get(&self.roles_claim) {
            Some(Value::String(role)) => vec![role.clone()],
            Some(Value::Array(roles)) => roles
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        let mut all = claims.rest;
        all.insert("sub".to_owned(), Value::String(claims.sub.clone()));
        all.insert("exp".to_owned(), Value::from(claims.exp));
        Ok(User {
            id: claims.sub,
            expires_at: claims.exp,
            roles,
            claims: all,
        })
    }
}

#[async_trait]
impl Authenticator for JwtAuthenticator {
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<User>, ServerError> {
        self.check_api_key(headers)?;
        self.user(headers)
    }

    fn verifies_tokens(&self) -> bool {
        JwtAuthenticator::verifies_tokens(self)
    }

    fn requires_api_key(&self) -> bool {
        JwtAuthenticator::requires_api_key(self)
    }
}

/// The token of a request: `X-ZUMO-AUTH`, else `Authorization: Bearer`.
fn token(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(X_ZUMO_AUTH).and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        if !value.is_empty() {
            return Some(value);
        }
    }
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(rest.trim())
        .filter(|t| !t.is_empty())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
