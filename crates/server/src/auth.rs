//! Tokens and API keys (spec 9): the session token travels in `X-ZUMO-AUTH` or
//! `Authorization: Bearer`, is a JWT signed with the HS256 secret (or verified with a public
//! key) and must carry the configured audience and issuer; the user id is its `sub`.

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;
use tidesync_protocol::wire::X_ZUMO_AUTH;

use crate::config::AuthConfig;
use crate::error::ServerError;

/// The signed-in user of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The token's `sub` claim.
    pub id: String,
}

/// Verifies tokens and API keys.
#[derive(Clone)]
pub struct Authenticator {
    keys: Vec<(DecodingKey, Validation)>,
    api_key: Option<String>,
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
}

/// The headers an API key may arrive in.
pub const API_KEY_HEADERS: [&str; 2] = ["x-api-key", "zumo-api-key"];

impl Authenticator {
    /// Builds the verifier from the configuration.
    ///
    /// # Errors
    ///
    /// A message when the public key cannot be read or parsed.
    pub fn new(config: &AuthConfig) -> Result<Authenticator, String> {
        let mut keys = Vec::new();
        let validation = |algorithms: &[Algorithm]| {
            let mut validation = Validation::new(Algorithm::HS256);
            validation.algorithms = algorithms.to_vec();
            validation.set_audience(&[&config.audience]);
            validation.set_issuer(&[&config.issuer]);
            validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
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
            api_key: config.api_key.clone().filter(|k| !k.is_empty()),
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
                Ok(data) => {
                    return Ok(Some(User {
                        id: data.claims.sub,
                    }));
                }
                Err(error) => last_error = error.to_string(),
            }
        }
        Err(ServerError::InvalidToken {
            message: last_error,
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
