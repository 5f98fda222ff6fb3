//! Client authentication: JWTs (HS256 secret, PEM public key or JWKS; `alg` pinned per key,
//! `exp` required) and the trusted dev mode.

use std::{collections::HashSet, fmt, sync::Arc, time::Duration};

use jsonwebtoken::{decode, decode_header, errors::ErrorKind, Algorithm, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::{common::auth_budget::AuthFailureBudget, common::keys::KeyStore};

use hub_wire::protocol::{is_valid_room, is_valid_user_id, RoomId, RoomPatterns, UserId};

/// Who a session is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user id (canonical string form).
    pub user_id: UserId,
    /// Display name: the token's `name`, dev mode's `name`, or the user id.
    pub name: Arc<str>,
    /// True for tokens with `"role": "admin"` and for every dev-mode user.
    pub admin: bool,
    /// When the token expires (Unix seconds, leeway included); `None` in dev mode. The
    /// session is closed then unless the client sent a fresh token.
    pub expires_at: Option<u64>,
    /// When the token was issued (`iat`, Unix seconds), if it says; revocation compares it.
    pub issued_at: Option<u64>,
    /// The rooms the token's `rooms` claim lets the user join (`None`: no claim).
    pub rooms: Option<RoomPatterns>,
}

impl Identity {
    /// True for a dev-mode identity (no token: nothing to expire or revoke).
    pub fn is_dev(&self) -> bool {
        self.expires_at.is_none()
    }
}

/// A verified room token: who may join which room, and when it was issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomGrant {
    /// The user (`sub`).
    pub user_id: UserId,
    /// The room (`room`).
    pub room: RoomId,
    /// `iat`, if the token has one.
    pub issued_at: Option<u64>,
}

/// Why authentication failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No credentials were given.
    Missing,
    /// A token signed by the hub's keys that has expired: once good, so not counted against
    /// the address's failure budget (a client waking up with an old token is no attacker).
    Expired,
    /// Credentials were given and refused.
    Invalid(String),
}

impl AuthError {
    /// True when the failure counts against the client address's budget.
    pub fn counts_as_failure(&self) -> bool {
        !matches!(self, AuthError::Expired)
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Missing => f.write_str("missing credentials"),
            AuthError::Expired => f.write_str("invalid credentials: token expired"),
            AuthError::Invalid(why) => write!(f, "invalid credentials: {why}"),
        }
    }
}

/// The auth modes an instance accepts.
#[derive(Clone)]
pub struct Authenticator {
    keys: Arc<KeyStore>,
    /// The claim checks; the algorithm is the selected key's.
    validation: Validation,
    dev: bool,
    failures: Arc<AuthFailureBudget>,
    max_lifetime: Duration,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("jwt", &self.keys.enabled())
            .field("dev", &self.dev)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Subject {
    Str(String),
    Num(u64),
}

#[derive(Deserialize)]
struct Claims {
    sub: Subject,
    /// Required by the validation; optional here so that its absence gets its own reason.
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    role: Option<Value>,
    /// Connection tokens: the rooms the user may join.
    #[serde(default)]
    rooms: Option<Value>,
    /// Room tokens: the one room they grant.
    #[serde(default)]
    room: Option<Value>,
}

impl Subject {
    fn into_user(self) -> Result<String, AuthError> {
        let user_id = match self {
            Subject::Str(s) => s,
            Subject::Num(n) => n.to_string(),
        };
        if !is_valid_user_id(&user_id) {
            return Err(AuthError::Invalid("`sub` is not a valid user id".into()));
        }
        Ok(user_id)
    }
}

/// The `rooms` claim: an array of room names and `prefix*` patterns.
fn rooms_claim(value: Option<Value>) -> Result<Option<RoomPatterns>, AuthError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let bad = |why: String| AuthError::Invalid(format!("bad `rooms` claim: {why}"));
    let Value::Array(entries) = value else {
        return Err(bad(
            "an array of room names and prefix* patterns expected".into()
        ));
    };
    let names = entries
        .iter()
        .map(|e| {
            e.as_str()
                .ok_or_else(|| bad("its entries must be strings".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    RoomPatterns::parse(names).map(Some).map_err(bad)
}

/// Failed authentications allowed per client address and minute by default.
pub const DEFAULT_AUTH_FAILURES_PER_MINUTE: u32 = 20;

/// Longest display name kept (longer names are cut).
const MAX_NAME_CHARS: usize = 64;

/// Cleans a display name: control characters removed, length capped, empty -> `fallback`.
pub fn clean_name(name: Option<&str>, fallback: &str) -> Arc<str> {
    let cleaned: String = name
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        fallback.into()
    } else {
        cleaned.into()
    }
}

/// Seconds a token's `exp` and `nbf` may be off (clock skew between the issuer and the hub).
pub const LEEWAY_SECS: u64 = 5;

/// The longest token lifetime accepted by default (`HUB_MAX_TOKEN_LIFETIME_SECS`): a revocation
/// is kept this long, so no token issued before it can outlive it.
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

fn now_secs() -> u64 {
    hub_wire::protocol::now_ms() / 1000
}

impl Authenticator {
    /// An authenticator for tokens verified by `keys` (none: tokens are refused), an
    /// optional required audience, and dev mode.
    pub fn new(keys: Arc<KeyStore>, audience: Option<&str>, dev: bool) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims = HashSet::from(["exp".to_string(), "sub".to_string()]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        match audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                // jsonwebtoken checks `aud` only when present unless it is required.
                validation.required_spec_claims.insert("aud".to_string());
            }
            None => validation.validate_aud = false,
        }
        Authenticator {
            keys,
            validation,
            dev,
            failures: Arc::new(AuthFailureBudget::new(
                DEFAULT_AUTH_FAILURES_PER_MINUTE,
                Duration::from_secs(60),
            )),
            max_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
        }
    }

    /// Refuses tokens that live longer than `max` (`exp - iat`, or `exp - now` without `iat`).
    pub fn with_max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = max;
        self
    }

    /// The longest token lifetime accepted (how long a revocation must be kept).
    pub fn max_lifetime(&self) -> Duration {
        self.max_lifetime
    }

    /// Allows `per_minute` failed authentications per client address (0 = unlimited).
    pub fn with_failure_budget(mut self, per_minute: u32) -> Self {
        self.failures = Arc::new(AuthFailureBudget::new(per_minute, Duration::from_secs(60)));
        self
    }

    /// Requires `iss` to equal `issuer` in every token (`HUB_JWT_ISSUER`).
    pub fn with_issuer(mut self, issuer: Option<&str>) -> Self {
        if let Some(issuer) = issuer {
            self.validation.set_issuer(&[issuer]);
            self.validation
                .required_spec_claims
                .insert("iss".to_string());
        }
        self
    }

    /// The per-address budget of failed authentications.
    pub fn failures(&self) -> &AuthFailureBudget {
        &self.failures
    }

    /// True when JWTs are accepted.
    pub fn jwt_enabled(&self) -> bool {
        self.keys.enabled()
    }

    /// True when dev mode (`?userId=`) is on.
    pub fn dev_enabled(&self) -> bool {
        self.dev
    }

    /// Verifies a connection token (a JWT, with the key its header names and only that key's
    /// algorithm). A room token (with a `room` claim) is not a connection token.
    pub fn verify_token(&self, token: &str) -> Result<Identity, AuthError> {
        let claims = self.verified_claims(token)?;
        if claims.room.is_some() {
            return Err(AuthError::Invalid(
                "a room token (with a `room` claim) is not a connection token".into(),
            ));
        }
        let user_id = claims.sub.into_user()?;
        let admin = match &claims.role {
            Some(Value::String(r)) => r == "admin",
            Some(Value::Array(roles)) => roles.iter().any(|r| r == "admin"),
            _ => false,
        };
        Ok(Identity {
            name: clean_name(claims.name.as_deref(), &user_id),
            user_id: user_id.into(),
            admin,
            expires_at: claims.exp.map(|exp| exp.saturating_add(LEEWAY_SECS)),
            issued_at: claims.iat,
            rooms: rooms_claim(claims.rooms)?,
        })
    }

    /// Verifies a room token: signed like connection tokens, with `sub` and `room` (a room
    /// name) claims.
    pub fn verify_room_token(&self, token: &str) -> Result<RoomGrant, AuthError> {
        let claims = self.verified_claims(token)?;
        let room = match claims.room {
            Some(Value::String(room)) if is_valid_room(&room) => room,
            Some(_) => return Err(AuthError::Invalid("`room` is not a room name".into())),
            None => return Err(AuthError::Invalid("missing claim `room`".into())),
        };
        Ok(RoomGrant {
            user_id: claims.sub.into_user()?.into(),
            room: room.into(),
            issued_at: claims.iat,
        })
    }

    /// A token's claims, once its signature, algorithm, `exp`, `nbf`, `aud`, `iss` and
    /// lifetime are checked.
    fn verified_claims(&self, token: &str) -> Result<Claims, AuthError> {
        if !self.keys.enabled() {
            return Err(AuthError::Invalid("tokens are not enabled".into()));
        }
        let header = decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::Json(_) if names_an_unknown_alg(token) => {
                AuthError::Invalid("algorithm not allowed".into())
            }
            kind => refused(kind),
        })?;
        let key = self
            .keys
            .select(&header)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let mut validation = self.validation.clone();
        validation.algorithms = vec![key.alg];
        let claims = decode::<Claims>(token, &key.key, &validation)
            .map_err(|e| refused(e.kind()))?
            .claims;
        let exp = claims.exp.unwrap_or_default();
        let lifetime = exp.saturating_sub(claims.iat.unwrap_or_else(now_secs));
        if lifetime > self.max_lifetime.as_secs() + LEEWAY_SECS {
            return Err(AuthError::Invalid(format!(
                "token lifetime over {} s (HUB_MAX_TOKEN_LIFETIME_SECS)",
                self.max_lifetime.as_secs()
            )));
        }
        Ok(claims)
    }

    /// Trusts a `userId` (and optional `name`) from the query string, in dev mode only.
    pub fn dev_identity(&self, user_id: &str, name: Option<&str>) -> Result<Identity, AuthError> {
        if !self.dev {
            return Err(AuthError::Invalid("dev mode is off".into()));
        }
        if !is_valid_user_id(user_id) {
            return Err(AuthError::Invalid(
                "userId must be 1-128 characters of A-Z a-z 0-9 : _ . - @".into(),
            ));
        }
        Ok(Identity {
            user_id: user_id.into(),
            name: clean_name(name, user_id),
            admin: true,
            expires_at: None,
            issued_at: None,
            rooms: None,
        })
    }
}

/// True when the token's header parses but names an algorithm no key takes (`none`).
fn names_an_unknown_alg(token: &str) -> bool {
    // base64url without padding, as the standard alphabet with padding.
    let mut header: Vec<u8> = token
        .split('.')
        .next()
        .unwrap_or("")
        .bytes()
        .map(|b| match b {
            b'-' => b'+',
            b'_' => b'/',
            b => b,
        })
        .collect();
    header.resize(header.len().div_ceil(4) * 4, b'=');
    hub_wire::engineio::base64::decode(&header)
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .is_some_and(|h| {
            h["alg"]
                .as_str()
                .is_some_and(|a| a.parse::<Algorithm>().is_err())
        })
}

/// The documented reason for a refused token (docs/security.md lists them).
fn refused(kind: &ErrorKind) -> AuthError {
    let why = match kind {
        ErrorKind::ExpiredSignature => return AuthError::Expired,
        ErrorKind::ImmatureSignature => "token not valid yet (nbf)".to_string(),
        ErrorKind::InvalidSignature => "bad signature".to_string(),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "algorithm not allowed".to_string()
        }
        ErrorKind::InvalidAudience => "wrong audience (aud)".to_string(),
        ErrorKind::InvalidIssuer => "wrong issuer (iss)".to_string(),
        ErrorKind::MissingRequiredClaim(claim) => format!("missing claim `{claim}`"),
        ErrorKind::InvalidSubject => "bad subject (sub)".to_string(),
        _ => "malformed token".to_string(),
    };
    AuthError::Invalid(why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::keys::hs256_key;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn hs(secret: &str, audience: Option<&str>) -> Authenticator {
        let keys = KeyStore::new(vec![hs256_key(secret).unwrap()], false);
        Authenticator::new(Arc::new(keys), audience, false)
    }

    fn token(alg: Algorithm, claims: Value, secret: &str) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn exp(offset: i64) -> i64 {
        hub_wire::protocol::now_ms() as i64 / 1000 + offset
    }

    #[test]
    fn a_configured_issuer_is_required() {
        let auth = hs("k", None).with_issuer(Some("https://id.example.com/"));
        let with = |iss: Option<&str>| {
            let mut claims = json!({"sub": "1", "exp": exp(60)});
            if let Some(iss) = iss {
                claims["iss"] = json!(iss);
            }
            auth.verify_token(&token(Algorithm::HS256, claims, "k"))
        };
        assert!(with(Some("https://id.example.com/")).is_ok());
        assert!(with(Some("https://evil.example.com/")).is_err());
        assert!(with(None).is_err(), "iss must be present");
    }

    #[test]
    fn jwt_rules() {
        let auth = hs("s3cret", None);
        let ok = token(
            Algorithm::HS256,
            json!({"sub":"42","exp":exp(60),"name":"Ann","role":"admin"}),
            "s3cret",
        );
        let id = auth.verify_token(&ok).unwrap();
        assert_eq!((&*id.user_id, &*id.name, id.admin), ("42", "Ann", true));
        let expired = token(
            Algorithm::HS256,
            json!({"sub":"42","exp":exp(-3600)}),
            "s3cret",
        );
        assert!(auth.verify_token(&expired).is_err());
        let no_exp = token(Algorithm::HS256, json!({"sub":"42"}), "s3cret");
        assert!(auth.verify_token(&no_exp).is_err());
        let wrong = token(Algorithm::HS256, json!({"sub":"42","exp":exp(60)}), "other");
        assert!(auth.verify_token(&wrong).is_err());
        let hs512 = token(
            Algorithm::HS512,
            json!({"sub":"42","exp":exp(60)}),
            "s3cret",
        );
        assert!(auth.verify_token(&hs512).is_err());
        let nbf = token(
            Algorithm::HS256,
            json!({"sub":"42","exp":exp(600),"nbf":exp(300)}),
            "s3cret",
        );
        assert!(auth.verify_token(&nbf).is_err());
        // alg "none": header {"alg":"none"}, no signature.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiI0MiIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert!(auth.verify_token(none).is_err());
    }

    #[test]
    fn audience_when_configured() {
        let auth = hs("k", Some("hub"));
        let good = token(
            Algorithm::HS256,
            json!({"sub":"1","exp":exp(60),"aud":"hub"}),
            "k",
        );
        let bad = token(
            Algorithm::HS256,
            json!({"sub":"1","exp":exp(60),"aud":"other"}),
            "k",
        );
        let missing = token(Algorithm::HS256, json!({"sub":"1","exp":exp(60)}), "k");
        assert!(auth.verify_token(&good).is_ok());
        assert!(auth.verify_token(&bad).is_err());
        assert!(
            auth.verify_token(&missing).is_err(),
            "aud is required once configured"
        );
    }

    #[test]
    fn room_claims_room_tokens_and_the_longest_lifetime() {
        let auth = hs("k", None).with_max_lifetime(Duration::from_secs(3600));
        let now = exp(0);
        let with = |claims: Value| auth.verify_token(&token(Algorithm::HS256, claims, "k"));
        let id = with(json!({"sub": "1", "exp": now + 60, "rooms": ["a", "t-*"]})).unwrap();
        let rooms = id.rooms.unwrap();
        assert!(rooms.matches("a") && rooms.matches("t-9") && !rooms.matches("b"));
        let bad = with(json!({"sub": "1", "exp": now + 60, "rooms": "a"})).unwrap_err();
        assert!(bad.to_string().contains("bad `rooms` claim"), "{bad}");
        assert!(with(json!({"sub": "1", "exp": now + 60, "rooms": ["a b"]})).is_err());
        // Longer than the lifetime: by `exp - iat`, or `exp - now` without `iat`.
        let long = with(json!({"sub": "1", "exp": now + 60, "iat": now - 7200})).unwrap_err();
        assert!(
            long.to_string().contains("HUB_MAX_TOKEN_LIFETIME_SECS"),
            "{long}"
        );
        assert!(with(json!({"sub": "1", "exp": now + 7200})).is_err());
        assert_eq!(
            with(json!({"sub": "1", "exp": now + 60, "iat": now}))
                .unwrap()
                .issued_at,
            Some(now as u64)
        );
        // A room token grants one room, and is no connection token.
        let room_token = token(
            Algorithm::HS256,
            json!({"sub": "7", "exp": now + 60, "room": "r"}),
            "k",
        );
        let grant = auth.verify_room_token(&room_token).unwrap();
        assert_eq!((&*grant.user_id, &*grant.room), ("7", "r"));
        assert!(auth.verify_token(&room_token).is_err());
        let plain = token(Algorithm::HS256, json!({"sub": "7", "exp": now + 60}), "k");
        assert!(auth.verify_room_token(&plain).is_err(), "no `room` claim");
        let expired = token(Algorithm::HS256, json!({"sub": "7", "exp": now - 60}), "k");
        assert_eq!(auth.verify_token(&expired), Err(AuthError::Expired));
        assert!(!AuthError::Expired.counts_as_failure());
    }

    #[test]
    fn dev_mode_validates_ids() {
        let no_keys = || Arc::new(KeyStore::new(Vec::new(), false));
        let auth = Authenticator::new(no_keys(), None, true);
        assert!(auth.dev_enabled());
        assert!(auth.dev_identity("123", Some("Alice")).is_ok());
        assert!(auth.dev_identity("a b", None).is_err());
        assert_eq!(&*auth.dev_identity("7", Some("\u{7}  ")).unwrap().name, "7");
        assert!(Authenticator::new(no_keys(), None, false)
            .dev_identity("1", None)
            .is_err());
    }
}
