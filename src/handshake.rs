//! What both WebSocket endpoints (`/ws` in `upgrade.rs`, `/socket.io/` in
//! `socketio_routes.rs`) share at the HTTP upgrade: the error of an upgrade that could not be
//! answered.

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
