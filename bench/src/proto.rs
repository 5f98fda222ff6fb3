//! The two application protocols the scenarios speak over the same WebSocket client: the hub's
//! native JSON frames and Socket.IO 4 (Engine.IO 4 framing), which both the socket.io baseline
//! and the hub's `/socket.io/` endpoint speak.
//!
//! Every benchmark message carries a marker `@bt=<send time in us>@bs=<sequence>@` inside a
//! JSON string (a notification's `message`, a chat message's text), so that one substring
//! search finds it in either protocol without parsing JSON on the hot path.

use std::fmt::Write as _;

use serde_json::Value;

/// Which wire protocol a server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// The hub: `/ws`, one JSON object per frame.
    Native,
    /// socket.io 4: `/socket.io/?EIO=4&transport=websocket`, `42["event",data]` frames; the
    /// namespace CONNECT carries the dev-mode identity as its auth payload.
    SocketIo,
}

impl std::str::FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Proto, String> {
        match s {
            "native" => Ok(Proto::Native),
            "socketio" => Ok(Proto::SocketIo),
            _ => Err(format!("unknown protocol `{s}` (native or socketio)")),
        }
    }
}

/// What a received text frame means to the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A benchmark message: its send time (us, monotonic) and sequence number.
    Bench {
        /// Send time.
        bt: u64,
        /// Sequence number.
        bs: u64,
    },
    /// The server confirmed the session: native `connected`; Socket.IO the namespace CONNECT
    /// ack `40{"sid":..}` (the hub sends it once the session is registered, the baseline just
    /// before its connection handler joins the user's room, in the same tick) or a
    /// `connected` event.
    Connected,
    /// The server confirmed a room join (`joined`).
    Joined,
    /// Engine.IO open packet: the client must connect to the namespace
    /// ([`Proto::connect_packet`]).
    EioOpen,
    /// Engine.IO ping: the client must answer `3`.
    EioPing,
    /// An error frame (kept for the report).
    Error,
    /// Anything else (presence, namespace ack, ...).
    Other,
}

/// The marker's prefix.
const MARK: &[u8] = b"@bt=";

impl Proto {
    /// Label used in reports.
    pub fn label(self) -> &'static str {
        match self {
            Proto::Native => "native",
            Proto::SocketIo => "socketio",
        }
    }

    /// The upgrade path for a dev-mode user. For Socket.IO the query's `userId` is the
    /// baseline's identity (it reads `handshake.query`); the hub ignores it and reads the
    /// CONNECT packet's auth ([`Proto::connect_packet`]).
    pub fn path(self, user: &str) -> String {
        match self {
            Proto::Native => format!("/ws?userId={user}"),
            Proto::SocketIo => format!("/socket.io/?EIO=4&transport=websocket&userId={user}"),
        }
    }

    /// The Socket.IO namespace CONNECT for a dev-mode user: `40{"userId":"<user>"}`, the
    /// `auth` payload of `io(url, {auth: {userId}})` (the hub's dev-mode identity; the baseline
    /// ignores it).
    pub fn connect_packet(user: &str) -> String {
        format!(r#"40{{"userId":{}}}"#, Value::String(user.to_string()))
    }

    /// A join-room request.
    pub fn join(self, room: &str) -> String {
        match self {
            Proto::Native => format!(r#"{{"type":"join-room","room":"{room}"}}"#),
            Proto::SocketIo => format!(r#"42["join-room",{{"room":"{room}"}}]"#),
        }
    }

    /// A chat message carrying the benchmark marker.
    pub fn chat(self, room: &str, bt: u64, bs: u64) -> String {
        match self {
            Proto::Native => format!(
                r#"{{"type":"chat-message","room":"{room}","message":"@bt={bt}@bs={bs}@"}}"#
            ),
            Proto::SocketIo => {
                format!(r#"42["chat-message",{{"room":"{room}","message":"@bt={bt}@bs={bs}@"}}]"#)
            }
        }
    }

    /// Classifies a text frame from the server.
    pub fn classify(self, payload: &[u8]) -> Incoming {
        // A `joined` reply may carry benchmark messages in its history: it is still a reply.
        if self == Proto::Native && payload.starts_with(br#"{"type":"joined""#) {
            return Incoming::Joined;
        }
        if let Some(at) = memchr::memmem::find(payload, MARK) {
            if let Some((bt, bs)) = parse_marker(&payload[at + MARK.len()..]) {
                return Incoming::Bench { bt, bs };
            }
        }
        match self {
            Proto::Native => {
                if has_type(payload, b"connected") {
                    Incoming::Connected
                } else if has_type(payload, b"joined") {
                    Incoming::Joined
                } else if has_type(payload, b"error") {
                    Incoming::Error
                } else {
                    Incoming::Other
                }
            }
            Proto::SocketIo => match payload {
                b"2" => Incoming::EioPing,
                [b'0', ..] => Incoming::EioOpen,
                [b'4', b'4', ..] => Incoming::Error,
                [b'4', b'0', b'{', ..] => Incoming::Connected,
                _ if payload.starts_with(br#"42["connected""#) => Incoming::Connected,
                _ if payload.starts_with(br#"42["joined""#) => Incoming::Joined,
                _ if payload.starts_with(br#"42["error""#) => Incoming::Error,
                _ => Incoming::Other,
            },
        }
    }
}

/// `"type":"<kind>"` at the top level of a native frame. The hub's control frames are small
/// and flat, so a substring search suffices (their key order is not fixed).
fn has_type(payload: &[u8], kind: &[u8]) -> bool {
    let mut pattern = Vec::with_capacity(kind.len() + 9);
    pattern.extend_from_slice(br#""type":""#);
    pattern.extend_from_slice(kind);
    pattern.push(b'"');
    memchr::memmem::find(payload, &pattern).is_some()
}

/// Parses `<bt>@bs=<bs>@` after the `@bt=` prefix.
fn parse_marker(s: &[u8]) -> Option<(u64, u64)> {
    let (bt, used) = digits(s)?;
    let s = s[used..].strip_prefix(b"@bs=")?;
    let (bs, _) = digits(s)?;
    Some((bt, bs))
}

fn digits(s: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut n = 0;
    for &b in s.iter().take(20) {
        if !b.is_ascii_digit() {
            break;
        }
        v = v.wrapping_mul(10).wrapping_add((b - b'0') as u64);
        n += 1;
    }
    (n > 0).then_some((v, n))
}

/// The notification payload the publisher sends for `user` (plain JSON, as a service would).
pub fn notification_payload(out: &mut String, user: u64, bt: u64, bs: u64) {
    let _ = write!(
        out,
        r#"{{"userId":{user},"type":"bench","title":"Benchmark","message":"@bt={bt}@bs={bs}@"}}"#
    );
}

/// The chat payload the publisher sends to `chat:room:{room}`.
pub fn chat_payload(out: &mut String, room: &str, bt: u64, bs: u64) {
    let _ = write!(
        out,
        r#"{{"roomId":"{room}","userId":"0","username":"bench","message":"@bt={bt}@bs={bs}@","timestamp":0}}"#
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_marker_in_either_protocol() {
        let native = br#"{"type":"notification","data":{"userId":1,"message":"@bt=123@bs=45@"}}"#;
        let sio = br#"42["chat-message",{"message":"@bt=9@bs=0@"}]"#;
        assert_eq!(
            Proto::Native.classify(native),
            Incoming::Bench { bt: 123, bs: 45 }
        );
        assert_eq!(
            Proto::SocketIo.classify(sio),
            Incoming::Bench { bt: 9, bs: 0 }
        );
    }

    #[test]
    fn classifies_control_frames() {
        let p = Proto::Native;
        assert_eq!(
            p.classify(br#"{"type":"connected","sessionId":"a"}"#),
            Incoming::Connected
        );
        assert_eq!(
            p.classify(br#"{"type":"joined","room":"r"}"#),
            Incoming::Joined
        );
        assert_eq!(
            p.classify(br#"{"sessionId":"x-1","type":"connected","userId":5}"#),
            Incoming::Connected
        );
        assert_eq!(
            p.classify(br#"{"type":"presence","room":"r"}"#),
            Incoming::Other
        );
        assert_eq!(
            p.classify(br#"{"type":"joined","room":"r","history":[{"message":"@bt=1@bs=2@"}]}"#),
            Incoming::Joined,
            "a join reply whose history holds benchmark messages"
        );
        let s = Proto::SocketIo;
        assert_eq!(s.classify(b"2"), Incoming::EioPing);
        assert_eq!(s.classify(br#"0{"sid":"x"}"#), Incoming::EioOpen);
        assert_eq!(s.classify(br#"40{"sid":"y"}"#), Incoming::Connected);
        assert_eq!(
            s.classify(br#"44{"message":"no","data":{"code":"unauthorized"}}"#),
            Incoming::Error
        );
        assert_eq!(
            s.classify(br#"42["connected",{"userId":"1"}]"#),
            Incoming::Connected
        );
    }

    #[test]
    fn socketio_connect_carries_the_user_as_auth() {
        assert_eq!(Proto::connect_packet("u1"), r#"40{"userId":"u1"}"#);
        assert_eq!(Proto::connect_packet(r#"a"b"#), r#"40{"userId":"a\"b"}"#);
    }

    #[test]
    fn payloads_carry_the_marker() {
        let mut s = String::new();
        notification_payload(&mut s, 7, 11, 12);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["userId"], 7);
        assert_eq!(
            Proto::Native.classify(s.as_bytes()),
            Incoming::Bench { bt: 11, bs: 12 }
        );
    }
}
