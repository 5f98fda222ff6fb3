//! What both WebSocket endpoints (`/ws` in `upgrade.rs`, `/socket.io/` in
//! `socketio_routes.rs`) share at the HTTP upgrade.

use std::fmt;

/// An upgrade that could not be answered (the connection is dropped).
#[derive(Debug)]
pub struct UpgradeError(pub std::io::Error);

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "websocket upgrade: {}", self.0)
    }
}

impl From<UpgradeError> for actix_http::Response<actix_http::body::BoxBody> {
    fn from(_: UpgradeError) -> Self {
        actix_http::Response::internal_server_error().map_into_boxed_body()
    }
}

/// True when a browser origin is the hub's own (the demo page served by the hub).
pub(crate) fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.trim_end_matches('/').eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::same_origin;

    #[test]
    fn same_origin_compares_host_and_port() {
        assert!(same_origin("http://localhost:8080", Some("localhost:8080")));
        assert!(!same_origin(
            "http://localhost:8081",
            Some("localhost:8080")
        ));
        assert!(!same_origin("http://evil.com", None));
    }
}
