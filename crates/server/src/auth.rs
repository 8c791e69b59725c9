//! Who is calling and what they may do: bearer tokens with roles ([`Role`]: viewer <
//! operator < admin), checked by a route layer that puts the caller's [`Principal`] into the
//! request for handlers that record who did what.
//!
//! The presented token is compared in constant time against every configured token, with no
//! early exit, so timing reveals neither whether nor which token matched. Secrets are never
//! logged or printed (`Debug` shows the name and role only).

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{ApiError, ApiState};

pub use opsloop_core::config::ApiRole as Role;

/// The name the single legacy `token` acts under (with the admin role).
pub const LEGACY_TOKEN_NAME: &str = "api.token";
/// The caller's name when the API has no token at all (everything is open).
pub const ANONYMOUS: &str = "anonymous";

/// A configured bearer token.
#[derive(Clone)]
pub struct ApiToken {
    name: String,
    role: Role,
    secret: Arc<str>,
}

impl ApiToken {
    /// A token called `name` with `role`, presented as `secret`.
    pub fn new(name: impl Into<String>, role: Role, secret: impl Into<Arc<str>>) -> ApiToken {
        ApiToken {
            name: name.into(),
            role,
            secret: secret.into(),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its role.
    pub fn role(&self) -> Role {
        self.role
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The authenticated caller, available to handlers as `Extension<Principal>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The token's name ([`ANONYMOUS`] on an open API).
    pub name: String,
    /// The token's role.
    pub role: Role,
}

/// Compares in time that depends only on the length of `secret`, never on where or whether
/// `given` differs: no early return on a length mismatch or a differing byte.
pub(crate) fn same_secret(given: &[u8], secret: &[u8]) -> bool {
    let mut diff = given.len() ^ secret.len();
    for (i, s) in secret.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(0);
        diff |= usize::from(g ^ s);
    }
    std::hint::black_box(diff) == 0
}

fn unauthorized() -> ApiError {
    ApiError(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid bearer token is required".into(),
    )
}

/// The caller presenting `headers`: every configured token is compared, whatever matched
/// before, and the first match wins.
pub(crate) fn authenticate(s: &ApiState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    if s.token.is_none() && s.tokens.is_empty() {
        return Ok(Principal {
            name: ANONYMOUS.into(),
            role: Role::Admin,
        });
    }
    // The scheme is case-insensitive (RFC 9110 §11.1).
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or_else(unauthorized)?;
    let mut found: Option<(&str, Role)> = None;
    if let Some(legacy) = &s.token {
        let hit = same_secret(given.as_bytes(), legacy.as_bytes());
        found = if hit && found.is_none() {
            Some((LEGACY_TOKEN_NAME, Role::Admin))
        } else {
            found
        };
    }
    for t in s.tokens.iter() {
        let hit = same_secret(given.as_bytes(), t.secret.as_bytes());
        found = if hit && found.is_none() {
            Some((t.name.as_str(), t.role))
        } else {
            found
        };
    }
    let (name, role) = found.ok_or_else(unauthorized)?;
    Ok(Principal {
        name: name.to_string(),
        role,
    })
}

/// Route layer: 401 without a valid token, 403 with one whose role is below `required`;
/// otherwise the request goes on with its [`Principal`].
pub(crate) async fn require_role(
    State((s, required)): State<(ApiState, Role)>,
    mut request: Request,
    next: Next,
) -> Response {
    let principal = match authenticate(&s, request.headers()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if principal.role < required {
        return ApiError(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this endpoint needs the {} role; token {:?} has {}",
                required.as_str(),
                principal.name,
                principal.role.as_str()
            ),
        )
        .into_response();
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}
