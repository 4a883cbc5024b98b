//! Host identity: end users by the host's JWT, the host back end by API key or an admin claim.
//!
//! The provider's own credentials never play a part here.

use std::fmt;
use std::time::Duration;

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use base64::Engine;
use futures::future::{ready, Ready};
use imgate_domain::UserId;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::rate_limit::UserRateLimit;

/// The header the host back end sends its API key in.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Where the verifier gets its key, and which algorithm that key implies.
#[derive(Clone)]
pub enum JwtKey {
    /// HS256 with a shared secret.
    Hs256(Vec<u8>),
    /// RS256 with an RSA public key in PEM.
    Rs256(Vec<u8>),
    /// ES256 with a P-256 public key in PEM.
    Es256(Vec<u8>),
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Hs256(_) => "Hs256(<redacted>)",
            Self::Rs256(_) => "Rs256(<pem>)",
            Self::Es256(_) => "Es256(<pem>)",
        })
    }
}

/// How host identities are checked.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Key material; decides the accepted algorithm.
    pub key: JwtKey,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// The claim holding the host user id.
    pub user_claim: String,
    /// The claim that marks the host back end when it contains `admin_value`.
    pub admin_claim: String,
    /// See `admin_claim`.
    pub admin_value: String,
    /// The host back end's API key, when one is configured.
    pub api_key: Option<String>,
}

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// An authenticated end user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndUser {
    /// The host user id from the configured claim.
    pub id: UserId,
    /// Display name, from the `name` claim when present.
    pub name: Option<String>,
    /// E-mail, from the `email` claim when present.
    pub email: Option<String>,
    /// Whether the token also carries the admin claim.
    pub admin: bool,
    /// The token's `exp`.
    pub expires_at: Option<std::time::SystemTime>,
}

/// The host back end, authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostBackend {
    /// By the configured API key.
    ApiKey,
    /// By a JWT carrying the admin claim.
    AdminToken(UserId),
}

/// Checks JWTs and API keys against the configured settings.
pub struct Authenticator {
    settings: AuthSettings,
    key: DecodingKey,
    validation: Validation,
    api_key_digest: Option<[u8; 32]>,
}

impl Authenticator {
    /// Loads the key material; a key that does not parse is a start-up error.
    pub fn new(settings: AuthSettings) -> Result<Self, KeyError> {
        let (key, algorithm) = match &settings.key {
            JwtKey::Hs256(secret) => (DecodingKey::from_secret(secret), Algorithm::HS256),
            JwtKey::Rs256(pem) => (
                DecodingKey::from_rsa_pem(pem)
                    .map_err(|e| KeyError(format!("not an RSA public key in PEM: {e}")))?,
                Algorithm::RS256,
            ),
            JwtKey::Es256(pem) => (
                DecodingKey::from_ec_pem(pem)
                    .map_err(|e| KeyError(format!("not an EC public key in PEM: {e}")))?,
                Algorithm::ES256,
            ),
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = settings.leeway.as_secs();
        validation.validate_nbf = true;
        validation.validate_exp = true;
        let mut required = vec!["exp"];
        match &settings.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &settings.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // Without a configured audience a token's `aud` is not ours to judge.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let api_key_digest = settings.api_key.as_deref().map(digest);
        Ok(Self {
            settings,
            key,
            validation,
            api_key_digest,
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// Verifies a JWT and reads the end user from it.
    pub fn verify(&self, token: &str) -> Result<EndUser, ApiError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(unauthorized("empty bearer token"));
        }
        refuse_alg_none(token)?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|err| unauthorized(describe_jwt_error(&err)))?;
        let claims = data.claims;
        let claim = &self.settings.user_claim;
        let id = match claims.get(claim) {
            Some(Value::String(s)) => UserId::parse(s.as_str()),
            Some(Value::Number(n)) => UserId::parse(n.to_string()),
            _ => return Err(unauthorized(format!("token has no user claim `{claim}`"))),
        }
        .map_err(|err| unauthorized(format!("user claim `{claim}` {err}")))?;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        Ok(EndUser {
            id,
            name: text("name"),
            email: text("email"),
            admin: claim_contains(
                claims.get(&self.settings.admin_claim),
                &self.settings.admin_value,
            ),
            expires_at: claims
                .get("exp")
                .and_then(Value::as_u64)
                .map(|exp| std::time::UNIX_EPOCH + std::time::Duration::from_secs(exp)),
        })
    }

    /// Whether `key` is the configured API key (compared by digest, so timing says nothing).
    pub fn api_key_matches(&self, key: &str) -> bool {
        self.api_key_digest
            .is_some_and(|expected| digest(key.trim()) == expected)
    }

    /// The end user of a request: `Authorization: Bearer`, or `access_token` in the query on
    /// hub paths, where browsers cannot set headers. A wrong `X-Api-Key` beside it is refused.
    pub fn end_user(&self, req: &HttpRequest) -> Result<EndUser, ApiError> {
        self.api_key(req)?;
        self.verify(&bearer_token(req)?)
    }

    /// The host back end: `X-Api-Key`, or a JWT with the admin claim. A wrong token beside a
    /// right key is refused: a request is trusted only when every credential on it holds.
    pub fn host_backend(&self, req: &HttpRequest) -> Result<HostBackend, ApiError> {
        let key = self.api_key(req)?;
        let user = if req.headers().contains_key(header::AUTHORIZATION) {
            Some(self.verify(&bearer_token(req)?)?)
        } else {
            None
        };
        match (key, user) {
            (true, _) => Ok(HostBackend::ApiKey),
            (false, Some(user)) if user.admin => Ok(HostBackend::AdminToken(user.id)),
            (false, Some(_)) => Err(ApiError::Forbidden(format!(
                "this call is for the host back end: the token's `{}` claim must contain `{}`",
                self.settings.admin_claim, self.settings.admin_value
            ))),
            (false, None) => Err(unauthorized(
                "missing X-Api-Key header or Authorization: Bearer token",
            )),
        }
    }

    /// Whether the request carries the right `X-Api-Key`; a wrong one, or one where keys are
    /// not enabled, is an error rather than ignored.
    fn api_key(&self, req: &HttpRequest) -> Result<bool, ApiError> {
        let Some(key) = req.headers().get(API_KEY_HEADER) else {
            return Ok(false);
        };
        if self.api_key_matches(key.to_str().unwrap_or_default()) {
            Ok(true)
        } else if self.api_key_digest.is_none() {
            Err(unauthorized("API keys are not enabled on this gateway"))
        } else {
            Err(unauthorized("wrong API key"))
        }
    }
}

/// Mints an HS256 token for `user`, valid for `ttl`: the demo key's `imgate token` command.
pub fn mint_hs256(secret: &[u8], user_claim: &str, user: &str, ttl: Duration) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut claims = Map::new();
    claims.insert(user_claim.to_owned(), Value::from(user));
    claims.insert("name".into(), Value::from(user));
    claims.insert("iat".into(), Value::from(now));
    claims.insert(
        "exp".into(),
        Value::from(now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2)),
    );
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing of a JSON map cannot fail")
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::Unauthorized(message.into())
}

fn claim_contains(claim: Option<&Value>, wanted: &str) -> bool {
    match claim {
        Some(Value::String(s)) => s == wanted || s.split_whitespace().any(|part| part == wanted),
        Some(Value::Array(items)) => items.iter().any(|item| item.as_str() == Some(wanted)),
        _ => false,
    }
}

/// Names `alg: none` explicitly: such a token is refused on principle, not as "malformed".
fn refuse_alg_none(token: &str) -> Result<(), ApiError> {
    let header = token.split('.').next().unwrap_or_default();
    let alg = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|header| header.get("alg").and_then(Value::as_str).map(str::to_owned));
    match alg {
        Some(alg) if alg.eq_ignore_ascii_case("none") => {
            Err(unauthorized("unsigned tokens (alg: none) are not accepted"))
        }
        _ => Ok(()),
    }
}

fn describe_jwt_error(err: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::ExpiredSignature => "token expired".into(),
        ErrorKind::ImmatureSignature => "token not valid yet (nbf)".into(),
        ErrorKind::InvalidSignature => "bad token signature".into(),
        ErrorKind::InvalidAudience => "wrong token audience".into(),
        ErrorKind::InvalidIssuer => "wrong token issuer".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("token has no `{claim}` claim"),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "token algorithm not accepted".into()
        }
        ErrorKind::InvalidKeyFormat => "token does not fit the configured key".into(),
        _ => "malformed token".into(),
    }
}

fn is_hub_path(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    path.ends_with("/hub") || path.ends_with("/hub/negotiate")
}

fn bearer_token(req: &HttpRequest) -> Result<String, ApiError> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| unauthorized("malformed Authorization header"))?;
        let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(unauthorized(
                "Authorization header must be `Bearer <token>`",
            ));
        }
        return Ok(token.trim().to_owned());
    }
    let query_token = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .ok()
        .and_then(|q| {
            q.iter()
                .find(|(name, _)| name == "access_token")
                .map(|(_, value)| value.clone())
        });
    match query_token {
        Some(token) if is_hub_path(req.path()) => Ok(token),
        Some(_) => Err(unauthorized(
            "the access_token query parameter is accepted on hub paths only; send Authorization: Bearer",
        )),
        None => Err(unauthorized("missing Authorization: Bearer token")),
    }
}

fn authenticator(req: &HttpRequest) -> Result<&Authenticator, ApiError> {
    req.app_data::<web::Data<Authenticator>>()
        .map(|data| data.get_ref())
        .ok_or_else(|| ApiError::Internal("authenticator not configured".into()))
}

impl FromRequest for EndUser {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            authenticator(req)
                .and_then(|auth| auth.end_user(req))
                .and_then(|user| {
                    if let Some(limit) = req.app_data::<web::Data<UserRateLimit>>() {
                        limit.check(&user.id)?;
                    }
                    Ok(user)
                }),
        )
    }
}

impl FromRequest for HostBackend {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticator(req).and_then(|auth| auth.host_backend(req)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_claim_may_be_a_list_or_a_space_separated_string() {
        let check = |claim: Value, expected: bool| {
            assert_eq!(
                claim_contains(Some(&claim), "im-admin"),
                expected,
                "{claim}"
            );
        };
        check(serde_json::json!(["user", "im-admin"]), true);
        check(serde_json::json!("im-admin"), true);
        check(serde_json::json!("user im-admin"), true);
        check(serde_json::json!("im-administrator"), false);
        check(serde_json::json!([1, 2]), false);
        assert!(!claim_contains(None, "im-admin"));
    }

    #[test]
    fn hub_paths_are_recognised_under_any_base_path() {
        for path in [
            "/hub",
            "/hub/negotiate",
            "/chat/hub",
            "/chat/hub/negotiate/",
        ] {
            assert!(is_hub_path(path), "{path}");
        }
        for path in ["/api/v1/rooms", "/hubs", "/hub/other"] {
            assert!(!is_hub_path(path), "{path}");
        }
    }
}
