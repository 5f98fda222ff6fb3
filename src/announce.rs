//! What the hub says when it starts: where to go (demo page, dashboard, `/health`), the auth
//! and API modes, and one warning per open door.

use std::net::SocketAddr;

use crate::{config::Config, pages::Pages};

/// The lines to log at startup: `(is_warning, text)`.
pub fn startup_lines(config: &Config, local: SocketAddr) -> Vec<(bool, String)> {
    let host = if local.ip().is_unspecified() {
        "localhost".to_string()
    } else if local.is_ipv6() {
        format!("[{}]", local.ip())
    } else {
        local.ip().to_string()
    };
    let base = format!("http://{host}:{}", local.port());
    let mut lines = vec![
        (
            false,
            format!(
                "relay-hub {} listening on {local} (instance {})",
                env!("CARGO_PKG_VERSION"),
                config.instance_id
            ),
        ),
        (
            false,
            match &config.pages {
                Pages::Embedded => format!("  demo page:  {base}/"),
                Pages::Dir(dir) => {
                    format!("  demo page:  {base}/   (pages from {})", dir.display())
                }
            },
        ),
        (false, format!("  client:     {base}/client/relay-hub.js")),
        (false, format!("  dashboard:  {base}/dashboard.html")),
        (
            false,
            format!("  health:     {base}/health   metrics: {base}/metrics"),
        ),
        (
            false,
            format!(
                "  WebSocket:  ws://{host}:{}/ws   Socket.IO: {base}/socket.io/",
                local.port()
            ),
        ),
        (
            false,
            format!(
                "  auth:       {}",
                if config.dev_auth {
                    "DEV (?userId= trusted, no tokens)".to_string()
                } else {
                    format!(
                        "tokens from {}{}{}",
                        token_sources(config),
                        config
                            .jwt_audience
                            .as_deref()
                            .map(|a| format!(", aud = {a}"))
                            .unwrap_or_default(),
                        config
                            .jwt_issuer
                            .as_deref()
                            .map(|i| format!(", iss = {i}"))
                            .unwrap_or_default()
                    )
                }
            ),
        ),
        (false, format!("  {}", rooms_mode(config))),
        (
            false,
            format!(
                "  proxies:    {}",
                if config.trusted_proxies.is_empty() {
                    "none trusted (clients are counted by their socket's address)".to_string()
                } else {
                    let blocks: Vec<String> = config
                        .trusted_proxies
                        .blocks()
                        .iter()
                        .map(|b| b.to_string())
                        .collect();
                    format!(
                        "X-Forwarded-For / Forwarded read from {}",
                        blocks.join(", ")
                    )
                }
            ),
        ),
        (false, format!("  redis:      {}", config.redis)),
        (false, format!("  {}", config.api_mode())),
        (
            false,
            format!(
                "  browsers:   {}",
                if config.allowed_origins.is_empty() {
                    "only this hub's own page on a loopback address (set WEBAPP_URL / HUB_ALLOWED_ORIGINS)".to_string()
                } else {
                    config.allowed_origins.join(", ")
                }
            ),
        ),
    ];
    lines.extend(
        config
            .open_doors()
            .into_iter()
            .map(|d| (true, format!("!!! {d}"))),
    );
    lines
}

/// Who may join which room, in one line for the startup log.
pub fn rooms_mode(config: &Config) -> String {
    if config.dev_auth {
        return "rooms:      open to everyone (dev mode)".into();
    }
    let mut ways = vec!["`rooms` claims and room tokens".to_string()];
    if !config.public_rooms.is_empty() {
        ways.push(format!("public: {}", config.public_rooms));
    }
    if let Some(hook) = &config.room_hook {
        ways.push(format!("hook: {}", hook.url));
    }
    format!("rooms:      {}", ways.join("; "))
}

/// Where token keys come from, for the startup banner.
fn token_sources(config: &Config) -> String {
    let mut sources = Vec::new();
    if config.jwt_secret.is_some() {
        sources.push("HS256 secret".to_string());
    }
    if let Some(path) = &config.jwt_public_key_file {
        sources.push(format!("PEM key {path}"));
    }
    if let Some(jwks) = &config.jwks {
        sources.push(format!("JWKS {}", jwks.url));
    }
    sources.join(" + ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_where_to_go_and_warns_per_open_door() {
        let vars = |n: &str| (n == "HUB_AUTH").then(|| "dev".to_string());
        let config = Config::from_vars(&vars).unwrap();
        let lines = startup_lines(&config, "127.0.0.1:8080".parse().unwrap());
        let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
        let all = text.join("\n");
        for want in [
            "http://127.0.0.1:8080/",
            "http://127.0.0.1:8080/dashboard.html",
            "http://127.0.0.1:8080/client/relay-hub.js",
            "http://127.0.0.1:8080/health",
            "auth:       DEV",
        ] {
            assert!(all.contains(want), "{want} missing from:\n{all}");
        }
        let warnings: Vec<&str> = lines
            .iter()
            .filter(|(w, _)| *w)
            .map(|(_, l)| l.as_str())
            .collect();
        assert_eq!(
            warnings.len(),
            3,
            "dev mode, the open API and the open rooms: {warnings:?}"
        );
        let anywhere = startup_lines(&config, "0.0.0.0:9000".parse().unwrap());
        assert!(anywhere[1].1.contains("http://localhost:9000/"));
    }
}
