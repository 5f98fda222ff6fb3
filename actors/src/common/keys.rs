//! The keys that verify client tokens: an HS256 secret, a PEM public key, and the keys of an
//! identity provider's JWKS (fetched and refreshed by [`crate::connections::jwks`]).
//!
//! Each key pins its algorithm: a token is checked with the key its `kid` names (or the one
//! key without a `kid`), and only with that key's algorithm, so a token whose header claims
//! another algorithm (`HS256` signed with an RSA public key as the secret, `none`) is refused
//! before any signature check.

use std::sync::{Arc, RwLock};

use jsonwebtoken::{
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse},
    Algorithm, DecodingKey, Header,
};
use serde_json::Value;
use tokio::sync::Notify;

/// Most keys kept from one JWKS document; more are ignored (and logged).
pub const MAX_JWKS_KEYS: usize = 64;

/// A key that verifies tokens of one algorithm.
#[derive(Clone)]
pub struct VerifyKey {
    /// The key id a token names in its header (`None`: a configured secret or PEM key).
    pub kid: Option<String>,
    /// The only algorithm this key accepts.
    pub alg: Algorithm,
    /// The key itself.
    pub key: DecodingKey,
}

/// Why no key verifies a token.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyError {
    /// The token names a key id this hub does not know (yet).
    UnknownKid(String),
    /// The key the token names takes another algorithm.
    WrongAlgorithm {
        /// The token header's `alg`.
        token: Algorithm,
        /// The key's.
        key: Algorithm,
    },
    /// The token names no key id and there is no single key to use.
    NoKey,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::UnknownKid(kid) => write!(f, "unknown key id `{kid}`"),
            KeyError::WrongAlgorithm { token, key } => {
                write!(
                    f,
                    "algorithm {token:?} is not allowed (the key takes {key:?})"
                )
            }
            KeyError::NoKey => write!(f, "no key for this token (it names no key id)"),
        }
    }
}

/// The keys in force: the configured ones plus the latest JWKS. Cheap to read from every
/// worker; replaced as a whole when the JWKS is refreshed.
pub struct KeyStore {
    fixed: Vec<VerifyKey>,
    fetched: RwLock<Arc<Vec<VerifyKey>>>,
    /// Set when keys come from a JWKS: an unknown `kid` asks the fetcher for a refresh.
    refresh: Option<Notify>,
}

impl KeyStore {
    /// The configured keys, and whether a JWKS will add its keys.
    pub fn new(fixed: Vec<VerifyKey>, jwks: bool) -> Self {
        KeyStore {
            fixed,
            fetched: RwLock::new(Arc::new(Vec::new())),
            refresh: jwks.then(Notify::new),
        }
    }

    /// True when there is any key or a JWKS to fetch them from.
    pub fn enabled(&self) -> bool {
        !self.fixed.is_empty() || self.refresh.is_some()
    }

    /// Installs the keys of a freshly fetched JWKS.
    pub fn replace_fetched(&self, keys: Vec<VerifyKey>) {
        *self.fetched.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }

    /// How many JWKS keys are in force.
    pub fn fetched_count(&self) -> usize {
        self.fetched.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Waits until an unknown `kid` asks for a refresh (never returns without a JWKS).
    pub async fn refresh_wanted(&self) {
        match &self.refresh {
            Some(notify) => notify.notified().await,
            None => std::future::pending().await,
        }
    }

    /// The key that may verify a token with `header`: the JWKS key its `kid` names, else
    /// the configured key of its algorithm, else (no `kid`) a JWKS of one key.
    pub fn select(&self, header: &Header) -> Result<VerifyKey, KeyError> {
        let fetched = self
            .fetched
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let named = header
            .kid
            .as_deref()
            .and_then(|kid| fetched.iter().find(|k| k.kid.as_deref() == Some(kid)));
        let key = named
            .or_else(|| self.fixed.iter().find(|k| k.alg == header.alg))
            .or_else(|| match (&header.kid, fetched.as_slice()) {
                (None, [only]) => Some(only),
                _ => None,
            });
        let key = match key {
            Some(key) => key,
            None => {
                return Err(match (&header.kid, &self.refresh, self.fixed.first()) {
                    (Some(kid), Some(notify), _) => {
                        notify.notify_one();
                        KeyError::UnknownKid(kid.clone())
                    }
                    (_, _, Some(fixed)) => KeyError::WrongAlgorithm {
                        token: header.alg,
                        key: fixed.alg,
                    },
                    (Some(kid), None, None) => KeyError::UnknownKid(kid.clone()),
                    (None, _, None) => KeyError::NoKey,
                })
            }
        };
        if key.alg != header.alg {
            return Err(KeyError::WrongAlgorithm {
                token: header.alg,
                key: key.alg,
            });
        }
        Ok(key.clone())
    }
}

/// The HS256 secret (`HUB_JWT_SECRET`).
pub fn hs256_key(secret: &str) -> Result<VerifyKey, String> {
    Ok(VerifyKey {
        kid: None,
        alg: Algorithm::HS256,
        key: DecodingKey::from_secret(secret.as_bytes()).map_err(|e| e.to_string())?,
    })
}

/// A PEM public key (`HUB_JWT_PUBLIC_KEY_FILE`): RSA (RS256), EC P-256 (ES256) or Ed25519
/// (EdDSA), told apart by the key itself.
pub fn pem_key(pem: &[u8]) -> Result<VerifyKey, String> {
    let (key, alg) = DecodingKey::from_rsa_pem(pem)
        .map(|k| (k, Algorithm::RS256))
        .or_else(|_| DecodingKey::from_ec_pem(pem).map(|k| (k, Algorithm::ES256)))
        .or_else(|_| DecodingKey::from_ed_pem(pem).map(|k| (k, Algorithm::EdDSA)))
        .map_err(|_| "not a PEM public key of RSA, EC P-256 or Ed25519".to_string())?;
    Ok(VerifyKey {
        kid: None,
        alg,
        key,
    })
}

/// The signing keys of a JWKS document, each with its algorithm (its `alg`, or the one its
/// type implies: RSA -> RS256, EC P-256 -> ES256, Ed25519 -> EdDSA). Keys for encryption,
/// without a `kid`, of other types, or beyond [`MAX_JWKS_KEYS`] are skipped and described
/// in the second list.
pub fn jwks_keys(document: &[u8]) -> Result<(Vec<VerifyKey>, Vec<String>), String> {
    let doc: Value =
        serde_json::from_slice(document).map_err(|e| format!("not a JWKS document: {e}"))?;
    let entries = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("not a JWKS document: no `keys` array")?;
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if keys.len() == MAX_JWKS_KEYS {
            skipped.push(format!(
                "{} keys beyond the first {MAX_JWKS_KEYS}",
                entries.len() - i
            ));
            break;
        }
        match jwk_key(entry) {
            Ok(key) => keys.push(key),
            Err(why) => skipped.push(format!("key {i}: {why}")),
        }
    }
    Ok((keys, skipped))
}

fn jwk_key(entry: &Value) -> Result<VerifyKey, String> {
    let jwk: Jwk = serde_json::from_value(entry.clone()).map_err(|e| e.to_string())?;
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return Err("not a signing key (`use` is not `sig`)".into());
    }
    let kid = jwk.common.key_id.clone().ok_or("no `kid`")?;
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            Some(Algorithm::ES256)
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => {
            Some(Algorithm::ES384)
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Some(Algorithm::EdDSA)
        }
        // Symmetric keys in a published JWKS would be secrets in public: never accepted.
        _ => None,
    };
    let implied = implied.ok_or("unsupported key type (RSA, EC P-256/P-384, Ed25519 only)")?;
    let alg = match jwk.common.key_algorithm {
        None => implied,
        Some(declared) => {
            let alg =
                key_algorithm(declared).ok_or(format!("`alg` {declared} is not for signing"))?;
            if alg.family() != implied.family() {
                return Err(format!("`alg` {declared} does not fit the key type"));
            }
            alg
        }
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    Ok(VerifyKey {
        kid: Some(kid),
        alg,
        key,
    })
}

fn key_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    alg.to_string().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_JWK: &str = r#"{"kty":"RSA","kid":"r1","use":"sig","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}"#;

    fn header(alg: Algorithm, kid: Option<&str>) -> Header {
        let mut h = Header::new(alg);
        h.kid = kid.map(str::to_string);
        h
    }

    fn jwks(keys: &[&str]) -> Vec<u8> {
        format!(r#"{{"keys":[{}]}}"#, keys.join(",")).into_bytes()
    }

    #[test]
    fn jwks_keys_take_their_algorithm_from_the_key_type_and_skip_the_rest() {
        let enc = RSA_JWK.replace(r#""use":"sig""#, r#""use":"enc""#);
        let no_kid = RSA_JWK.replace(r#""kid":"r1","#, "");
        let oct = r#"{"kty":"oct","kid":"s","k":"c2VjcmV0"}"#;
        let (keys, skipped) = jwks_keys(&jwks(&[RSA_JWK, &enc, &no_kid, oct])).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(
            (keys[0].kid.as_deref(), keys[0].alg),
            (Some("r1"), Algorithm::RS256)
        );
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(jwks_keys(b"{}").is_err());
        assert!(jwks_keys(b"[").is_err());
    }

    #[test]
    fn a_declared_alg_must_fit_the_key() {
        let es = RSA_JWK.replace(r#""use":"sig""#, r#""use":"sig","alg":"ES256""#);
        let (keys, skipped) = jwks_keys(&jwks(&[&es])).unwrap();
        assert!(keys.is_empty(), "{skipped:?}");
        let ps = RSA_JWK.replace(r#""use":"sig""#, r#""use":"sig","alg":"PS256""#);
        let (keys, _) = jwks_keys(&jwks(&[&ps])).unwrap();
        assert_eq!(keys[0].alg, Algorithm::PS256);
    }

    #[test]
    fn a_token_gets_the_key_it_names_and_only_that_keys_algorithm() {
        let store = KeyStore::new(Vec::new(), true);
        store.replace_fetched(jwks_keys(&jwks(&[RSA_JWK])).unwrap().0);
        assert!(store.select(&header(Algorithm::RS256, Some("r1"))).is_ok());
        assert_eq!(
            store.select(&header(Algorithm::HS256, Some("r1"))).err(),
            Some(KeyError::WrongAlgorithm {
                token: Algorithm::HS256,
                key: Algorithm::RS256
            })
        );
        assert_eq!(
            store.select(&header(Algorithm::RS256, Some("r2"))).err(),
            Some(KeyError::UnknownKid("r2".into()))
        );
        assert!(
            store.select(&header(Algorithm::RS256, None)).is_ok(),
            "a JWKS of one key serves tokens without kid"
        );
    }

    #[test]
    fn a_configured_key_serves_tokens_with_or_without_kid() {
        let store = KeyStore::new(
            vec![hs256_key("0123456789abcdef0123456789abcdef").unwrap()],
            false,
        );
        assert!(store.select(&header(Algorithm::HS256, None)).is_ok());
        assert!(store.select(&header(Algorithm::HS256, Some("any"))).is_ok());
        assert!(store.select(&header(Algorithm::RS256, None)).is_err());
    }
}
