//! The keys that verify client tokens, as configured: the HS256 secret, the PEM key file and
//! the identity provider's JWKS (fetched once before the hub listens, then kept fresh in the
//! background; `docs/security.md`).

use std::sync::Arc;

use hub_actors::{
    common::keys::{hs256_key, pem_key, KeyStore},
    common::metrics::Metrics,
    connections::jwks,
};
use log::warn;

use crate::config::Config;

/// Builds the key store; with a JWKS, fetches it and starts its refresher.
pub async fn token_keys(config: &Config, metrics: &Arc<Metrics>) -> Result<Arc<KeyStore>, String> {
    let mut fixed = Vec::new();
    if let Some(secret) = &config.jwt_secret {
        fixed.push(hs256_key(secret).map_err(|e| format!("HUB_JWT_SECRET: {e}"))?);
    }
    if let Some(path) = &config.jwt_public_key_file {
        let pem =
            std::fs::read(path).map_err(|e| format!("HUB_JWT_PUBLIC_KEY_FILE {path}: {e}"))?;
        fixed.push(pem_key(&pem).map_err(|e| format!("HUB_JWT_PUBLIC_KEY_FILE {path}: {e}"))?);
    }
    let store = Arc::new(KeyStore::new(fixed, config.jwks.is_some()));
    if let Some(source) = &config.jwks {
        let ok = jwks::load(&store, &source.url, metrics).await;
        if !ok {
            warn!(
                "no keys from HUB_JWKS_URL yet: tokens it signs are refused until a fetch works \
                 (retried every {:?})",
                jwks::MIN_GAP
            );
        }
        actix_rt::spawn(jwks::refresh_forever(
            store.clone(),
            source.clone(),
            metrics.clone(),
            ok,
        ));
    }
    Ok(store)
}
