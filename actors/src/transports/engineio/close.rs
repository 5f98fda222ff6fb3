//! Why an Engine.IO session closed: a metric label, and the WebSocket close frame each
//! reason sends.

use crate::transports::transport::close;

/// Why a session closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent a close packet.
    ClientClose,
    /// The client did not answer a ping within `pingTimeout`.
    PingTimeout,
    /// The connection went away (socket closed or failed, WebSocket closed by the client).
    TransportClose,
    /// The client sent a packet that could not be decoded or is not allowed.
    ParseError,
    /// A payload or message over `maxPayload`.
    PayloadTooLarge,
    /// Two long-polling `GET`s (or `POST`s) at once.
    Overlap,
    /// The client did not keep up with what was sent to it.
    SlowConsumer,
    /// The client's WebSocket took nothing for the write timeout while packets waited.
    WriteTimeout,
    /// The layer above found a protocol violation (e.g. a malformed Socket.IO packet).
    ProtocolError,
    /// The layer above gave up waiting (e.g. no Socket.IO namespace connected in time).
    ConnectTimeout,
    /// The server closed the session (the layer above, or shutdown).
    ServerClose,
}

impl CloseReason {
    /// Every reason.
    pub const ALL: [CloseReason; 11] = [
        CloseReason::ClientClose,
        CloseReason::PingTimeout,
        CloseReason::TransportClose,
        CloseReason::ParseError,
        CloseReason::PayloadTooLarge,
        CloseReason::Overlap,
        CloseReason::SlowConsumer,
        CloseReason::WriteTimeout,
        CloseReason::ProtocolError,
        CloseReason::ConnectTimeout,
        CloseReason::ServerClose,
    ];

    /// A metric label.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::ClientClose => "client_close",
            CloseReason::PingTimeout => "ping_timeout",
            CloseReason::TransportClose => "transport_close",
            CloseReason::ParseError => "parse_error",
            CloseReason::PayloadTooLarge => "payload_too_large",
            CloseReason::Overlap => "overlap",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::WriteTimeout => "write_timeout",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::ConnectTimeout => "connect_timeout",
            CloseReason::ServerClose => "server_close",
        }
    }

    /// The WebSocket close code and reason for a closing WebSocket.
    pub(crate) fn ws_close(self) -> (u16, &'static str) {
        match self {
            CloseReason::ClientClose | CloseReason::TransportClose => (close::NORMAL, ""),
            CloseReason::PingTimeout => (close::NORMAL, "ping timeout"),
            CloseReason::ConnectTimeout => (close::NORMAL, "connect timeout"),
            CloseReason::ParseError => (close::POLICY, "invalid packet"),
            CloseReason::ProtocolError => (close::POLICY, "protocol error"),
            CloseReason::PayloadTooLarge => (close::TOO_BIG, "payload too large"),
            CloseReason::Overlap => (close::POLICY, "overlapping requests"),
            CloseReason::SlowConsumer => (close::TRY_AGAIN_LATER, "slow consumer"),
            CloseReason::WriteTimeout => (close::TRY_AGAIN_LATER, "write timeout"),
            CloseReason::ServerClose => (close::GOING_AWAY, "server closed the session"),
        }
    }
}
