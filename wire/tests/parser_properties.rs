//! Property tests (fuzzing) of the two parsers that take untrusted input: client frames and
//! Redis payloads. Each property runs thousands of generated cases per run, plus the seed
//! corpus in `tests/corpus/` and mutations of it. Invariants: no panic; every input is either
//! a valid request/event or an error with a code and a message; what is accepted satisfies
//! the limits.

use std::fs;

use hub_wire::{
    limits::Limits,
    protocol::{
        is_valid_room, is_valid_user_id, parse_client_frame, parse_inbound, ErrorCode, Inbound,
        Marks, Request, INBOX_PAGE_MAX, MARK_READ_MAX_IDS,
    },
};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn corpus(dir: &str) -> Vec<Vec<u8>> {
    let path = format!("{}/tests/corpus/{dir}", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.into_iter().map(|p| fs::read(p).unwrap()).collect()
}

/// Checks everything `parse_client_frame` promises for one input.
fn check_client_frame(text: &str) {
    let limits = Limits::default();
    match parse_client_frame(text, &limits) {
        Ok(frame) => {
            if let Some(id) = &frame.id {
                assert!(id.is_number() || id.is_string(), "id {id}");
            }
            match frame.request {
                Request::JoinRoom { room, .. } | Request::LeaveRoom { room } => {
                    assert!(is_valid_room(&room))
                }
                Request::ChatMessage { room, message } => {
                    assert!(is_valid_room(&room));
                    assert!(!message.is_empty());
                    assert!(message.chars().count() <= limits.max_message_chars);
                }
                Request::CancelJob { job } | Request::WatchJob { job, .. } => {
                    assert!((1..=128).contains(&job.len()))
                }
                Request::MarkRead(Marks::Ids(ids)) => {
                    assert!(!ids.is_empty() && ids.len() <= MARK_READ_MAX_IDS)
                }
                Request::InboxPage { limit, .. } => assert!((1..=INBOX_PAGE_MAX).contains(&limit)),
                Request::MarkRead(Marks::UpTo(_))
                | Request::Auth { .. }
                | Request::Ping
                | Request::Subscribe(_)
                | Request::Unsubscribe(_) => {}
            }
        }
        Err(err) => {
            assert!(ErrorCode::ALL.contains(&err.code));
            assert!(!err.message.is_empty());
            if let Some(id) = &err.id {
                assert!(id.is_number() || id.is_string());
            }
        }
    }
}

/// Checks everything `parse_inbound` promises for one payload.
fn check_inbound(channel: &str, payload: &[u8]) {
    let Ok(inbound) = parse_inbound(channel, payload) else {
        return;
    };
    let original: Value = serde_json::from_slice(payload).expect("accepted payloads are JSON");
    assert!(original.is_object());
    let frame = match &inbound {
        Inbound::Notification { user, frame, .. } => {
            assert_eq!(channel, format!("user:notifications:{user}"));
            assert!(is_valid_user_id(user));
            frame
        }
        Inbound::AiResult { user, frame } => {
            assert!(is_valid_user_id(user));
            frame
        }
        Inbound::JobEvent {
            user,
            frame,
            chunk,
            job,
            seq,
            ..
        } => {
            assert!(is_valid_user_id(user));
            let sent: Value = serde_json::from_slice(frame).expect("frames are JSON");
            assert_eq!(sent["type"], if *chunk { "ai-chunk" } else { "job-state" });
            assert_eq!(sent["data"]["jobId"], original["jobId"]);
            let id = &original["jobId"];
            assert_eq!(
                *job,
                id.as_str().map_or_else(|| id.to_string(), str::to_owned)
            );
            if *chunk {
                assert_eq!(Some(*seq), original["seq"].as_u64());
            }
            assert!(sent["data"].get("userId").is_none());
            return;
        }
        Inbound::Chat { room, frame, .. } => {
            assert_eq!(channel, format!("chat:room:{room}"));
            frame
        }
        Inbound::Presence { frame, .. } => {
            let forwarded: Value = serde_json::from_slice(frame).expect("frames are JSON");
            assert_eq!(
                forwarded, original,
                "presence frames are forwarded as published"
            );
            assert_eq!(forwarded["type"], "presence");
            return;
        }
        Inbound::CacheInvalidate { pattern, frame } => {
            assert!(!pattern.is_empty());
            frame
        }
        Inbound::Analytics(event) => {
            assert_eq!(original["event"], event.event.as_str());
            return;
        }
        Inbound::RoomAccess { user, room } => {
            assert!(is_valid_user_id(user) && is_valid_room(room));
            return;
        }
        Inbound::Hub { user, message } => {
            assert_eq!(channel, format!("user:notifications:{user}"));
            assert_eq!(original["$hub"], message.kind());
            return;
        }
    };
    let frame: Value = serde_json::from_slice(frame).expect("frames are JSON");
    assert!(frame["type"].is_string());
    assert_eq!(frame["data"], original, "payload forwarded unchanged");
}

const TYPES: [&str; 9] = [
    "ping",
    "auth",
    "join-room",
    "leave-room",
    "chat-message",
    "subscribe",
    "unsubscribe",
    "bogus",
    "",
];
const KEYS: [&str; 11] = [
    "room", "message", "since", "topic", "token", "id", "userId", "username", "extra", "type",
    "roomId",
];
const CHANNELS: [&str; 10] = [
    "hub:presence",
    "hub:room-access",
    "user:notifications:12",
    "user:notifications:alice",
    "ai:results",
    "chat:room:r",
    "chat:room:room-1",
    "cache:invalidate",
    "analytics:events",
    "somewhere:else",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-z0-9 :_.-]{0,12}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        prop_oneof![
            Just("r"),
            Just("room-1"),
            Just("12"),
            Just("alice"),
            Just("cache"),
            Just("disconnect")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON objects built from the protocol's vocabulary, so that many cases get deep into the
/// validation instead of failing at the first key.
fn frame_like() -> impl Strategy<Value = String> {
    (
        prop::sample::select(TYPES.to_vec()),
        prop::collection::vec((prop::sample::select(KEYS.to_vec()), json_value()), 0..6),
    )
        .prop_map(|(kind, fields)| {
            let mut map = Map::new();
            map.insert("type".into(), Value::from(kind));
            for (k, v) in fields {
                map.insert(k.into(), v);
            }
            Value::Object(map).to_string()
        })
}

fn payload_like() -> impl Strategy<Value = Vec<u8>> {
    let keys = prop::sample::select(vec![
        "userId",
        "type",
        "title",
        "message",
        "jobId",
        "status",
        "roomId",
        "username",
        "timestamp",
        "pattern",
        "reason",
        "event",
        "data",
        "result",
        "error",
        "$hub",
    ]);
    prop::collection::vec((keys, json_value()), 0..10).prop_map(|fields| {
        let map: Map<String, Value> = fields.into_iter().map(|(k, v)| (k.into(), v)).collect();
        Value::Object(map).to_string().into_bytes()
    })
}

fn mutate(seed: &[u8], edits: &[(usize, u8)]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for (pos, byte) in edits {
        if out.is_empty() {
            out.push(*byte);
        } else {
            let at = pos % (out.len() + 1);
            match byte % 3 {
                0 if at < out.len() => out[at] = *byte,
                1 => out.insert(at, *byte),
                _ if at < out.len() => {
                    out.remove(at);
                }
                _ => out.push(*byte),
            }
        }
    }
    out
}

#[test]
fn client_frame_corpus() {
    let seeds = corpus("client_frames");
    assert!(seeds.len() >= 20);
    for seed in seeds {
        check_client_frame(&String::from_utf8_lossy(&seed));
    }
}

#[test]
fn redis_payload_corpus() {
    let seeds = corpus("redis_payloads");
    assert!(seeds.len() >= 10);
    for seed in seeds {
        let text = String::from_utf8_lossy(&seed).to_string();
        let (channel, payload) = text
            .split_once('|')
            .expect("corpus lines are channel|payload");
        check_inbound(channel, payload.as_bytes());
    }
}

/// Cases per property: `FUZZ_CASES` (set by `make fuzz`), 4000 in `make test`.
fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000)
}

/// Engine.IO text packets, payloads (polling bodies) and Socket.IO packets: each decodes or
/// gives an error, never panics; what decodes from a Socket.IO packet respects the limit.
fn check_engineio(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = hub_wire::engineio::packet::decode_text(&text);
    let _ = hub_wire::engineio::packet::decode_payload(bytes);
    let _ = hub_wire::socketio::packet::decode(&text, 4);
}

/// Engine.IO / Socket.IO packets built from their vocabulary (types, namespaces, ids, JSON).
fn engineio_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just("4".to_string()),
        Just("40".to_string()),
        Just("42".to_string()),
        Just("43".to_string()),
        Just("45-".to_string()),
        Just("46-".to_string()),
        Just("/chat,".to_string()),
        Just("\u{1e}".to_string()),
        Just("b".to_string()),
        "[0-9]{1,20}",
        json_value().prop_map(|v| v.to_string()),
        any::<String>(),
    ];
    prop::collection::vec(piece, 1..6).prop_map(|parts| parts.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn engineio_and_socketio_packets_from_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        check_engineio(&bytes);
    }

    #[test]
    fn engineio_and_socketio_packets_from_their_vocabulary(bytes in engineio_like()) {
        check_engineio(&bytes);
    }

    #[test]
    fn client_frames_from_arbitrary_text(text in any::<String>()) {
        check_client_frame(&text);
    }

    #[test]
    fn client_frames_from_protocol_vocabulary(text in frame_like()) {
        check_client_frame(&text);
    }

    #[test]
    fn client_frames_from_mutated_corpus(
        seed in prop::sample::select(corpus("client_frames")),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        check_client_frame(&String::from_utf8_lossy(&mutate(&seed, &edits)));
    }

    #[test]
    fn redis_payloads_from_arbitrary_bytes(
        channel in prop::sample::select(CHANNELS.to_vec()),
        payload in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        check_inbound(channel, &payload);
    }

    #[test]
    fn redis_payloads_from_protocol_vocabulary(
        channel in prop::sample::select(CHANNELS.to_vec()),
        payload in payload_like(),
    ) {
        check_inbound(channel, &payload);
    }

    #[test]
    fn redis_payloads_from_mutated_corpus(
        seed in prop::sample::select(corpus("redis_payloads")),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let text = String::from_utf8_lossy(&seed).to_string();
        let (channel, payload) = text.split_once('|').unwrap();
        check_inbound(channel, &mutate(payload.as_bytes(), &edits));
    }
}
