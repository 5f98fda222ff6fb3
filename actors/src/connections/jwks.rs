//! Fetches the identity provider's JWKS (`HUB_JWKS_URL`) into the [`KeyStore`]: at start,
//! every refresh interval, and at once when a token names a key id the hub does not know
//! (such fetches at most once per [`MIN_GAP`], so made-up ids cannot make the hub hammer the
//! provider).
//! A failed fetch keeps the keys in force and is retried after [`MIN_GAP`]. Redirects are not
//! followed.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::future::{select, Either};
use log::{info, warn};

use crate::{
    common::keys::{jwks_keys, KeyStore},
    common::metrics::Metrics,
};

/// Least time between two fetches.
pub const MIN_GAP: Duration = Duration::from_secs(10);
/// Largest JWKS document read.
pub const MAX_BYTES: u64 = 256 * 1024;
/// Time allowed for one fetch.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where the keys come from and how often they are fetched again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksSource {
    /// `https://...`, or `http://` to a loopback address.
    pub url: String,
    /// Fetched again after this long (`HUB_JWKS_REFRESH_SECS`).
    pub refresh: Duration,
}

/// Refuses URLs that would let a network attacker hand the hub its keys: plain HTTP is only
/// accepted to a loopback address (a sidecar, or tests).
pub fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!("`{url}` is not an https:// URL"));
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "`{url}`: plain http:// is accepted only to a loopback address; use https://"
        ))
    }
}

/// Fetches the JWKS once and installs its keys; logs and counts the outcome.
pub async fn load(store: &KeyStore, url: &str, metrics: &Metrics) -> bool {
    let owned = url.to_string();
    let fetched = tokio::task::spawn_blocking(move || fetch(&owned))
        .await
        .map_err(|e| format!("fetch task: {e}"))
        .and_then(|r| r);
    let document = match fetched {
        Ok(document) => document,
        Err(e) => {
            metrics.jwks_fetches.with_label_values(&["error"]).inc();
            warn!(
                "JWKS {url}: {e}; keeping the {} keys in force",
                store.fetched_count()
            );
            return false;
        }
    };
    match jwks_keys(&document) {
        Ok((keys, skipped)) => {
            for why in &skipped {
                warn!("JWKS {url}: skipped {why}");
            }
            let kids: Vec<&str> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
            info!(
                "JWKS {url}: {} keys in force ({})",
                keys.len(),
                kids.join(", ")
            );
            metrics.jwks_keys.set(keys.len() as i64);
            metrics.jwks_fetches.with_label_values(&["ok"]).inc();
            store.replace_fetched(keys);
            true
        }
        Err(e) => {
            metrics.jwks_fetches.with_label_values(&["error"]).inc();
            warn!(
                "JWKS {url}: {e}; keeping the {} keys in force",
                store.fetched_count()
            );
            false
        }
    }
}

/// Fetches the document. Redirects are not followed: one could lead from `https://` to plain
/// `http://` or to another host, past [`check_url`].
fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .max_redirects(0)
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    if response.status().is_redirection() {
        let to = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or("?");
        return Err(format!(
            "redirects are not followed ({} to {to}); configure the final URL",
            response.status().as_u16()
        ));
    }
    response
        .body_mut()
        .with_config()
        .limit(MAX_BYTES)
        .read_to_vec()
        .map_err(|e| e.to_string())
}

/// Keeps the keys fresh for the life of the process (spawn it after the first [`load`]).
pub async fn refresh_forever(
    store: Arc<KeyStore>,
    source: JwksSource,
    metrics: Arc<Metrics>,
    mut ok: bool,
) {
    // The last fetch a token asked for: those come at most once per MIN_GAP.
    let mut last_asked: Option<Instant> = None;
    loop {
        let wait = if ok { source.refresh } else { MIN_GAP };
        let timer = Box::pin(tokio::time::sleep(wait));
        let unknown_kid = Box::pin(store.refresh_wanted());
        if let Either::Right(_) = select(timer, unknown_kid).await {
            if let Some(last) = last_asked {
                tokio::time::sleep_until((last + MIN_GAP).into()).await;
            }
            last_asked = Some(Instant::now());
        }
        ok = load(&store, &source.url, &metrics).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(check_url("https://id.example.com/.well-known/jwks.json").is_ok());
        assert!(check_url("http://127.0.0.1:8081/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        assert!(check_url("http://[::1]:9/jwks").is_ok());
        assert!(check_url("http://id.example.com/jwks").is_err());
        assert!(check_url("http://127.0.0.1.evil.com/jwks").is_err());
        assert!(check_url("ftp://x").is_err());
    }
}
