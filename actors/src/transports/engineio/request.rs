//! Engine.IO HTTP requests: what a request asks for (open a session, poll, post, upgrade),
//! the protocol's error responses (HTTP 400/403 with `{code, message}`), and the reply type
//! the HTTP layer turns into a response. Pure functions; no HTTP framework here.

use bytes::Bytes;

/// The request method, as far as Engine.IO cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`: handshake, poll or WebSocket upgrade.
    Get,
    /// `POST`: a payload of client packets.
    Post,
    /// Anything else.
    Other,
}

/// The Engine.IO query parameters of a request (already percent-decoded).
#[derive(Clone, Debug, Default)]
pub struct EngineQuery {
    /// `EIO`: the protocol version, `4`.
    pub eio: Option<String>,
    /// `transport`: `polling` or `websocket`.
    pub transport: Option<String>,
    /// `sid`: the session, absent on a handshake.
    pub sid: Option<String>,
}

/// The two transports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// HTTP long-polling.
    Polling,
    /// WebSocket.
    WebSocket,
}

impl TransportKind {
    /// The transport's name in queries and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Polling => "polling",
            TransportKind::WebSocket => "websocket",
        }
    }
}

/// What a valid request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// A handshake: open a new session on this transport.
    Open(TransportKind),
    /// A long-polling `GET` of a session.
    Poll(String),
    /// A long-polling `POST` to a session.
    Post(String),
    /// A WebSocket upgrade of a (long-polling) session.
    Upgrade(String),
}

/// The protocol's error codes (the `code` of an error response).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// 0: `transport` is missing or unknown.
    UnknownTransport = 0,
    /// 1: `sid` names no session (or a closed one).
    UnknownSid = 1,
    /// 2: a handshake that is not a `GET`.
    BadHandshakeMethod = 2,
    /// 3: anything else wrong with the request (transport mismatch, overlapping polls, bad
    /// packets, too large).
    BadRequest = 3,
    /// 4: refused by policy (origin).
    Forbidden = 4,
    /// 5: `EIO` is missing or not `4`.
    UnsupportedProtocolVersion = 5,
}

impl ErrorCode {
    /// Every code, in order.
    pub const ALL: [ErrorCode; 6] = [
        ErrorCode::UnknownTransport,
        ErrorCode::UnknownSid,
        ErrorCode::BadHandshakeMethod,
        ErrorCode::BadRequest,
        ErrorCode::Forbidden,
        ErrorCode::UnsupportedProtocolVersion,
    ];

    /// The protocol's message for the code.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::UnknownTransport => "Transport unknown",
            ErrorCode::UnknownSid => "Session ID unknown",
            ErrorCode::BadHandshakeMethod => "Bad handshake method",
            ErrorCode::BadRequest => "Bad request",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// A metric label.
    pub fn label(self) -> &'static str {
        match self {
            ErrorCode::UnknownTransport => "unknown_transport",
            ErrorCode::UnknownSid => "unknown_sid",
            ErrorCode::BadHandshakeMethod => "bad_handshake_method",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::UnsupportedProtocolVersion => "unsupported_protocol_version",
        }
    }

    /// 403 for [`ErrorCode::Forbidden`], 400 otherwise.
    pub fn status(self) -> u16 {
        if self == ErrorCode::Forbidden {
            403
        } else {
            400
        }
    }
}

/// Classifies a request, checking it in the reference server's order: transport, protocol
/// version, then session and method. `upgrade` is true for a WebSocket upgrade request.
pub fn route(method: Method, query: &EngineQuery, upgrade: bool) -> Result<Route, ErrorCode> {
    let transport = match query.transport.as_deref() {
        Some("polling") => TransportKind::Polling,
        Some("websocket") => TransportKind::WebSocket,
        _ => return Err(ErrorCode::UnknownTransport),
    };
    if query.eio.as_deref() != Some("4") {
        return Err(ErrorCode::UnsupportedProtocolVersion);
    }
    match query.sid.clone() {
        Some(sid) => match (upgrade, transport, method) {
            (true, TransportKind::WebSocket, Method::Get) => Ok(Route::Upgrade(sid)),
            (false, TransportKind::Polling, Method::Get) => Ok(Route::Poll(sid)),
            (false, TransportKind::Polling, Method::Post) => Ok(Route::Post(sid)),
            _ => Err(ErrorCode::BadRequest),
        },
        None if method != Method::Get => Err(ErrorCode::BadHandshakeMethod),
        None => match (upgrade, transport) {
            (false, TransportKind::Polling) => Ok(Route::Open(TransportKind::Polling)),
            (true, TransportKind::WebSocket) => Ok(Route::Open(TransportKind::WebSocket)),
            _ => Err(ErrorCode::BadRequest),
        },
    }
}

/// An HTTP response to an Engine.IO request, for the HTTP layer to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Bytes,
}

/// `Content-Type` of long-polling payloads.
pub const TEXT: &str = "text/plain; charset=UTF-8";
/// `Content-Type` of error responses.
pub const JSON: &str = "application/json";

impl HttpReply {
    /// A long-polling payload (or `ok`).
    pub fn text(body: Bytes) -> HttpReply {
        HttpReply {
            status: 200,
            content_type: TEXT,
            body,
        }
    }

    /// The answer to an accepted POST.
    pub fn ok() -> HttpReply {
        HttpReply::text(Bytes::from_static(b"ok"))
    }

    /// The protocol's error response for `code`.
    pub fn error(code: ErrorCode) -> HttpReply {
        HttpReply::error_with(code.status(), code, code.message())
    }

    /// An error response with its own status and message (e.g. 413 for a payload over
    /// `maxPayload`, 503 at the connection limit).
    pub fn error_with(status: u16, code: ErrorCode, message: &str) -> HttpReply {
        let body = serde_json::json!({"code": code as u8, "message": message}).to_string();
        HttpReply {
            status,
            content_type: JSON,
            body: Bytes::from(body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(eio: Option<&str>, transport: Option<&str>, sid: Option<&str>) -> EngineQuery {
        EngineQuery {
            eio: eio.map(Into::into),
            transport: transport.map(Into::into),
            sid: sid.map(Into::into),
        }
    }

    #[test]
    fn routes_valid_requests() {
        let get = Method::Get;
        assert_eq!(
            route(get, &q(Some("4"), Some("polling"), None), false),
            Ok(Route::Open(TransportKind::Polling))
        );
        assert_eq!(
            route(get, &q(Some("4"), Some("websocket"), None), true),
            Ok(Route::Open(TransportKind::WebSocket))
        );
        assert_eq!(
            route(get, &q(Some("4"), Some("polling"), Some("s")), false),
            Ok(Route::Poll("s".into()))
        );
        assert_eq!(
            route(
                Method::Post,
                &q(Some("4"), Some("polling"), Some("s")),
                false
            ),
            Ok(Route::Post("s".into()))
        );
        assert_eq!(
            route(get, &q(Some("4"), Some("websocket"), Some("s")), true),
            Ok(Route::Upgrade("s".into()))
        );
    }

    #[test]
    fn refuses_with_the_protocol_codes() {
        use ErrorCode::*;
        let get = Method::Get;
        assert_eq!(
            route(get, &q(Some("4"), None, None), false),
            Err(UnknownTransport)
        );
        assert_eq!(
            route(get, &q(Some("4"), Some("abc"), None), false),
            Err(UnknownTransport)
        );
        for eio in [None, Some("abc"), Some("3")] {
            assert_eq!(
                route(get, &q(eio, Some("polling"), None), false),
                Err(UnsupportedProtocolVersion)
            );
        }
        for method in [Method::Post, Method::Other] {
            assert_eq!(
                route(method, &q(Some("4"), Some("polling"), None), false),
                Err(BadHandshakeMethod)
            );
        }
        // websocket without an upgrade, polling with one, transport mismatches
        assert_eq!(
            route(get, &q(Some("4"), Some("websocket"), None), false),
            Err(BadRequest)
        );
        assert_eq!(
            route(get, &q(Some("4"), Some("polling"), None), true),
            Err(BadRequest)
        );
        assert_eq!(
            route(get, &q(Some("4"), Some("websocket"), Some("s")), false),
            Err(BadRequest)
        );
        assert_eq!(
            route(
                Method::Other,
                &q(Some("4"), Some("polling"), Some("s")),
                false
            ),
            Err(BadRequest)
        );
    }

    #[test]
    fn error_replies_carry_code_and_message() {
        let r = HttpReply::error(ErrorCode::Forbidden);
        assert_eq!(r.status, 403);
        assert_eq!(&r.body[..], br#"{"code":4,"message":"Forbidden"}"#);
        assert_eq!(HttpReply::error(ErrorCode::UnknownSid).status, 400);
    }
}
