//! Events fanned out to many sessions, encoded at most once per wire protocol: the native
//! WebSocket frame when the event is built, the Socket.IO packet the first time a Socket.IO
//! session needs it. Every recipient shares the same bytes.

use std::{ops::Range, sync::OnceLock};

use bytes::Bytes;

use hub_wire::{
    engineio::packet::Outgoing,
    protocol::{envelope, envelope_data},
    socketio::packet::event_raw,
    websocket as transport,
};

use crate::common::metrics::OutKind;

/// One event for many sessions.
#[derive(Debug)]
pub struct Outbound {
    kind: OutKind,
    /// The complete native WebSocket text frame.
    native: Bytes,
    /// Where the event's payload (the native `data`) sits in `native`.
    data: Range<usize>,
    /// Where the frame's JSON starts in `native` (the WebSocket header's length).
    json: u8,
    socketio: OnceLock<Outgoing>,
}

impl Outbound {
    /// `{"type":<kind>,"data":<raw>}` around a validated JSON payload.
    pub fn envelope(kind: OutKind, raw: &[u8]) -> Outbound {
        Outbound::from_envelope(kind, &envelope(kind.label(), raw))
    }

    /// An event from a frame [`envelope`] already built for `kind`.
    pub fn from_envelope(kind: OutKind, frame: &[u8]) -> Outbound {
        Outbound::framed(kind, frame, envelope_data(kind.label(), frame))
    }

    /// An event whose native frame is also its payload (e.g. `presence`).
    pub fn whole(kind: OutKind, frame: &[u8]) -> Outbound {
        Outbound::framed(kind, frame, 0..frame.len())
    }

    fn framed(kind: OutKind, json: &[u8], data: Range<usize>) -> Outbound {
        let native = transport::text_frame(json);
        let offset = native.len() - json.len();
        Outbound {
            kind,
            native,
            data: data.start + offset..data.end + offset,
            json: offset as u8,
            socketio: OnceLock::new(),
        }
    }

    /// What kind of event this is (metrics, Socket.IO event name).
    pub fn kind(&self) -> OutKind {
        self.kind
    }

    /// The native WebSocket frame.
    pub fn native(&self) -> &Bytes {
        &self.native
    }

    /// The native frame with `"offset":<offset>` as its last key, for a session that resumes
    /// (see [`crate::features::session_resume`]): one copy of the shared frame, no re-encoding.
    pub fn native_with_offset(&self, offset: u64) -> Bytes {
        let json = &self.native[self.json as usize..];
        let open = &json[..json.len() - 1];
        let key = format!(",\"offset\":{offset}}}");
        transport::data_frame(false, &[open, key.as_bytes()])
    }

    /// The event's payload JSON.
    pub fn data(&self) -> &[u8] {
        &self.native[self.data.clone()]
    }

    /// The Socket.IO packet `42["<event>",<data>]` on namespace `/`, encoded on first use.
    pub fn socketio(&self) -> &Outgoing {
        self.socketio.get_or_init(|| {
            let data = std::str::from_utf8(self.data()).expect("payloads are validated JSON");
            Outgoing::message(&event_raw("/", self.kind.label(), &[data]))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn payload_is_found_in_both_encodings() {
        let raw = br#" {"userId":1,"title":"t"} "#;
        let ev = Outbound::envelope(OutKind::Notification, raw);
        assert_eq!(ev.data(), br#"{"userId":1,"title":"t"}"#);
        let native: Value = serde_json::from_slice(&ev.native()[2..]).unwrap();
        assert_eq!(
            native,
            json!({"type": "notification", "data": {"userId": 1, "title": "t"}})
        );
        let long = format!(r#"{{"pad":"{}"}}"#, "x".repeat(300));
        let ev = Outbound::envelope(OutKind::Chat, long.as_bytes());
        assert_eq!(
            ev.data(),
            long.as_bytes(),
            "works past the 2-byte frame header"
        );
        let with = ev.native_with_offset(42);
        let native: Value = serde_json::from_slice(&with[4..]).unwrap();
        assert_eq!(native["offset"], 42, "past the 2-byte header too");
        assert_eq!(&native["data"]["pad"].as_str().unwrap().len(), &300);
        let presence = br#"{"type":"presence","room":"r"}"#;
        assert_eq!(
            Outbound::whole(OutKind::Presence, presence).data(),
            presence
        );
        let with = Outbound::whole(OutKind::Presence, presence).native_with_offset(7);
        assert_eq!(&with[2..], br#"{"type":"presence","room":"r","offset":7}"#);
        assert_eq!(
            usize::from(with[1]),
            with.len() - 2,
            "the header has the new length"
        );
    }
}
