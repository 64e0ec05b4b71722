//! Tokens and API keys (spec 9): the session token travels in `X-ZUMO-AUTH` or
//! `Authorization: Bearer`, is a JWT signed with the HS256 secret (or verified with a public
//! key) and must carry the configured audience and issuer; the user id is its `sub`.
//!
//! The rules a token must pass: a valid signature, `aud` and `iss` as configured, `exp` in
//! the future and `nbf` (when present) in the past (both with a 60 s leeway for clock skew),
//! a non-empty `sub`, and a lifetime (`exp - iat`, or `exp - now` without `iat`) of at most
//! [`AuthConfig::max_token_lifetime_secs`]. The server refuses to start with an empty API key
//! or an HS256 secret shorter than [`MIN_SECRET_BYTES`]. Tokens and keys are never logged.

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;
use tidesync_protocol::wire::X_ZUMO_AUTH;

use crate::config::AuthConfig;
use crate::error::ServerError;

/// The fewest bytes an HS256 secret may have (the size of the HMAC-SHA256 key block's
/// security level: a shorter secret can be brute-forced from one captured token).
pub const MIN_SECRET_BYTES: usize = 32;

/// The signed-in user of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The token's `sub` claim (never empty).
    pub id: String,
    /// The token's `exp` claim, seconds since the Unix epoch: an open change feed ends then.
    pub expires_at: i64,
}

/// Verifies tokens and API keys.
#[derive(Clone)]
pub struct Authenticator {
    keys: Vec<(DecodingKey, Validation)>,
    api_key: Option<String>,
    max_lifetime_secs: i64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
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
}

/// The headers an API key may arrive in.
pub const API_KEY_HEADERS: [&str; 2] = ["x-api-key", "zumo-api-key"];

impl Authenticator {
    /// Builds the verifier from the configuration.
    ///
    /// # Errors
    ///
    /// A message when the API key is empty, the HS256 secret is shorter than
    /// [`MIN_SECRET_BYTES`], or the public key cannot be read or parsed.
    pub fn new(config: &AuthConfig) -> Result<Authenticator, String> {
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
        Ok(Authenticator {
            keys,
            api_key: config.api_key.clone(),
            max_lifetime_secs: i64::try_from(config.max_token_lifetime_secs).unwrap_or(i64::MAX),
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
        Ok(User {
            id: claims.sub,
            expires_at: claims.exp,
        })
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
