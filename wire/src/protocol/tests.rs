//! Unit tests of the three contracts.
use super::*;
use crate::limits::Limits;

fn parse(text: &str) -> Result<ClientFrame, ClientError> {
    parse_client_frame(text, &Limits::default())
}

#[test]
fn ping_with_id() {
    let f = parse(r#"{"type":"ping","id":7}"#).unwrap();
    assert_eq!(f.request, Request::Ping);
    assert_eq!(f.id, Some(json!(7)));
}

#[test]
fn errors_carry_codes_and_ids() {
    assert_eq!(parse("nope").unwrap_err().code, ErrorCode::BadRequest);
    assert_eq!(parse("[1]").unwrap_err().code, ErrorCode::BadRequest);
    let e = parse(r#"{"type":"dance","id":"a"}"#).unwrap_err();
    assert_eq!((e.code, e.id), (ErrorCode::UnknownType, Some(json!("a"))));
    let e = parse(r#"{"type":"join-room","id":1}"#).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.message.contains("room"));
    let e = parse(r#"{"type":"ping","extra":1}"#).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    let e = parse(r#"{"type":"join-room","room":"bad room"}"#).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidRoom);
    let long = "x".repeat(4001);
    let e = parse(&format!(
        r#"{{"type":"chat-message","room":"r","message":"{long}"}}"#
    ))
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::TooLarge);
    let e = parse(r#"{"type":"subscribe","topic":"weather"}"#).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
}

#[test]
fn chat_ignores_identity_fields() {
    let f = parse(
        r#"{"type":"chat-message","room":"r1","message":"hi","userId":"666","username":"evil"}"#,
    )
    .unwrap();
    assert_eq!(
        f.request,
        Request::ChatMessage {
            room: "r1".into(),
            message: "hi".into()
        }
    );
}

#[test]
fn room_id_names_the_room_as_well_as_room() {
    let chat = |frame: &str| parse(frame).map(|f| f.request);
    let expected = Request::ChatMessage {
        room: "r1".into(),
        message: "hi".into(),
    };
    for frame in [
        r#"{"type":"chat-message","roomId":"r1","message":"hi"}"#,
        r#"{"type":"chat-message","room":"r1","roomId":"r1","message":"hi"}"#,
    ] {
        assert_eq!(chat(frame), Ok(expected.clone()), "{frame}");
    }
    assert_eq!(
        chat(r#"{"type":"join-room","roomId":"r1","since":"5-0"}"#),
        Ok(Request::JoinRoom {
            room: "r1".into(),
            since: MessageId::parse("5-0"),
            token: None,
        })
    );
    assert_eq!(
        chat(r#"{"type":"leave-room","roomId":"r1"}"#),
        Ok(Request::LeaveRoom { room: "r1".into() })
    );
    let e =
        parse(r#"{"type":"chat-message","room":"r1","roomId":"r2","message":"hi"}"#).unwrap_err();
    assert!(e.message.contains("different rooms"), "{}", e.message);
    let e = parse(r#"{"type":"leave-room","roomId":"bad room"}"#).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidRoom);
    let e = parse(r#"{"type":"leave-room","roomId":7}"#).unwrap_err();
    assert_eq!(e.message, "`roomId` must be a string");
}

#[test]
fn message_limit_counts_characters_not_bytes() {
    let ok = "é".repeat(4000);
    assert!(check_message(&ok, &Limits::default()).is_ok());
}

#[test]
fn deep_nesting_is_a_bad_request() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(parse(&deep).unwrap_err().code, ErrorCode::BadRequest);
}

#[test]
fn rooms_and_user_ids() {
    assert!(is_valid_room("room-123:a_b.c"));
    assert!(!is_valid_room(""));
    assert!(!is_valid_room(&"a".repeat(65)));
    assert!(!is_valid_room("é"));
    assert_eq!(user_id_json("123"), json!(123));
    assert_eq!(user_id_json("0123"), json!("0123"));
    assert_eq!(user_id_json("alice"), json!("alice"));
}

#[test]
fn notification_payloads() {
    let ok = br#"{"userId":12,"type":"info","title":"t","message":"m","extra":{"k":1}}"#;
    match parse_inbound("user:notifications:12", ok).unwrap() {
        Inbound::Notification { user, frame, .. } => {
            assert_eq!(&*user, "12");
            let v: Value = serde_json::from_slice(&frame).unwrap();
            assert_eq!(v["type"], "notification");
            assert_eq!(v["data"]["extra"]["k"], 1);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(parse_inbound("user:notifications:13", ok).is_err());
    assert!(parse_inbound("user:notifications:12", b"not json").is_err());
    assert!(parse_inbound("user:notifications:12", br#"{"userId":12}"#).is_err());
    assert!(parse_inbound("user:notifications:12", br#"[12,"a","b","c"]"#).is_err());
    // Unknown fields are forwarded verbatim, so they must be strictly valid too.
    let lone_surrogate = br#"{"userId":12,"type":"i","title":"t","message":"m","x":"\ud800"}"#;
    assert!(parse_inbound("user:notifications:12", lone_surrogate).is_err());
    let mut bad_utf8 = br#"{"userId":12,"type":"i","title":"t","message":"m","x":""#.to_vec();
    bad_utf8.extend_from_slice(b"\xff\"}");
    assert!(parse_inbound("user:notifications:12", &bad_utf8).is_err());
}

#[test]
fn other_payloads() {
    let ai = br#"{"jobId":"j1","userId":"u1","status":"success","result":{"a":1}}"#;
    assert!(matches!(
        parse_inbound(AI_RESULTS, ai),
        Ok(Inbound::AiResult { .. })
    ));
    let cancelled = br#"{"jobId":"j1","userId":"u1","type":"t","status":"cancelled"}"#;
    assert!(parse_inbound(AI_RESULTS, cancelled).is_ok());
    let bad_status = br#"{"jobId":"j1","userId":"u1","status":"maybe"}"#;
    assert!(parse_inbound(AI_RESULTS, bad_status).is_err());
    let chat = br#"{"roomId":"r","userId":1,"username":"a","message":"m","timestamp":1}"#;
    assert!(matches!(
        parse_inbound("chat:room:r", chat),
        Ok(Inbound::Chat { .. })
    ));
    assert!(parse_inbound("chat:room:other", chat).is_err());
    let cache = br#"{"pattern":"user:*","reason":"update"}"#;
    assert!(matches!(
        parse_inbound(CACHE_INVALIDATE, cache),
        Ok(Inbound::CacheInvalidate { .. })
    ));
    let ev = br#"{"event":"ai_query","data":{"model":"m","latencyMs":12}}"#;
    assert!(matches!(
        parse_inbound(ANALYTICS_EVENTS, ev),
        Ok(Inbound::Analytics(_))
    ));
    assert!(parse_inbound(ANALYTICS_EVENTS, br#"{"event":"x"}"#).is_err());
}

#[test]
fn message_ids_parse_order_and_splice() {
    let a = MessageId::parse("1764520000123-0").unwrap();
    let b = MessageId::parse("1764520000123-7").unwrap();
    assert!(a < b);
    assert_eq!(b.to_string(), "1764520000123-7");
    assert_eq!(MessageId::parse("17"), Some(MessageId { ms: 17, seq: 0 }));
    for bad in [
        "",
        "-",
        "1-",
        "-1",
        "a-1",
        "1-2-3",
        "1 -2",
        "99999999999999999999999-0",
    ] {
        assert_eq!(MessageId::parse(bad), None, "{bad}");
    }
    assert_eq!(
        with_message_id(br#" {"a":1}"#, "5-0"),
        br#"{"id":"5-0","a":1}"#.to_vec()
    );
}

#[test]
fn join_since_must_be_a_message_id() {
    let f = parse(r#"{"type":"join-room","room":"r","since":"12-3"}"#).unwrap();
    assert_eq!(
        f.request,
        Request::JoinRoom {
            room: "r".into(),
            since: Some(MessageId { ms: 12, seq: 3 }),
            token: None,
        }
    );
    let e = parse(r#"{"type":"join-room","room":"r","since":"yesterday"}"#).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    let f = parse(r#"{"type":"join-room","room":"r","token":"a.b.c"}"#).unwrap();
    assert!(matches!(f.request, Request::JoinRoom { token: Some(t), .. } if t == "a.b.c"));
    let e = parse(r#"{"type":"join-room","room":"r","token":7}"#).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
}

#[test]
fn only_the_inbox_s_own_inbox_ids_count() {
    let note =
        |first: &str| format!(r#"{{{first}"userId":"42","type":"t","title":"a","message":"m"}}"#);
    let parse = |payload: String| match parse_inbound("user:notifications:42", payload.as_bytes()) {
        Ok(Inbound::Notification { id, frame, .. }) => Ok((id, frame)),
        other => Err(format!("{other:?}")),
    };
    let (id, frame) = parse(note(r#""$inboxId":"5-1","#)).unwrap();
    assert_eq!(id, Some(MessageId { ms: 5, seq: 1 }));
    assert!(frame.ends_with(
        br#""data":{"inboxId":"5-1","userId":"42","type":"t","title":"a","message":"m"}}"#
    ));
    let (id, frame) = parse(note(r#""inboxId":"5-1","#)).unwrap();
    assert_eq!(id, None, "a service's own inboxId is delivered, never used");
    assert!(frame.ends_with(
        br#""data":{"inboxId":"5-1","userId":"42","type":"t","title":"a","message":"m"}}"#
    ));
    let later = r#"{"userId":"42","$inboxId":"5-1","type":"t","title":"a","message":"m"}"#;
    assert!(parse(later.into()).is_err(), "the mark only counts first");
}

#[test]
fn chat_ids_and_presence_events() {
    // As the history script publishes it: its id first, marked; clients get it as `id`.
    let chat =
        br#"{"$id":"7-1","roomId":"r","userId":1,"username":"a","message":"m","timestamp":1}"#;
    match parse_inbound("chat:room:r", chat).unwrap() {
        Inbound::Chat { id, frame, .. } => {
            assert_eq!(id, Some(MessageId { ms: 7, seq: 1 }));
            assert!(frame.ends_with(br#""data":{"id":"7-1","roomId":"r","userId":1,"username":"a","message":"m","timestamp":1}}"#));
        }
        other => panic!("unexpected {other:?}"),
    }
    let marked_later =
        br#"{"roomId":"r","$id":"7-1","userId":1,"username":"a","message":"m","timestamp":1}"#;
    assert!(parse_inbound("chat:room:r", marked_later).is_err());
    // Stream-shaped ids a service published itself are its own.
    for foreign in [
        r#"42"#,
        r#""42""#,
        r#""99999999999999999""#,
        r#""x-1""#,
        r#""7-1""#,
    ] {
        let chat = format!(
            r#"{{"id":{foreign},"roomId":"r","userId":1,"username":"a","message":"m","timestamp":1}}"#
        );
        assert!(
            matches!(
                parse_inbound("chat:room:r", chat.as_bytes()),
                Ok(Inbound::Chat {
                    id: None,
                    foreign_id: true,
                    ..
                })
            ),
            "{foreign}"
        );
    }
    let ann = Member {
        user_id: "12".into(),
        username: "Ann \"A\"".into(),
    };
    let built = format!(
        "{}{}}}",
        presence_prefix("r", true, "12"),
        Value::from("Ann \"A\"")
    );
    let a: Value = serde_json::from_str(&built).unwrap();
    let b: Value = serde_json::from_slice(&presence_frame("r", true, &ann)).unwrap();
    assert_eq!(a, b);
    match parse_inbound(PRESENCE_EVENTS, built.as_bytes()).unwrap() {
        Inbound::Presence { room, frame } => {
            assert_eq!(&*room, "r");
            assert_eq!(frame, built.as_bytes());
        }
        other => panic!("unexpected {other:?}"),
    }
    let bad = br#"{"type":"presence","room":"r","event":"dance","userId":1,"username":"a"}"#;
    assert!(parse_inbound(PRESENCE_EVENTS, bad).is_err());
}

#[test]
fn joined_frames_carry_raw_history() {
    let info = JoinInfo {
        history: vec![
            RawValue::from_string(r#"{"id":"1-0","n":12345678901234567890123}"#.into()).unwrap(),
        ],
        members: vec![],
        member_count: Some(0),
        recovered: Some(true),
        offset: Some(9),
    };
    let text = String::from_utf8(joined_frame("r", &info, &Some(json!(4)))).unwrap();
    assert!(
        text.contains(r#""history":[{"id":"1-0","n":12345678901234567890123}]"#),
        "{text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (v["recovered"].clone(), v["id"].clone(), v["offset"].clone()),
        (json!(true), json!(4), json!(9))
    );
    assert!(
        text.ends_with(r#","offset":9}"#),
        "the offset is the last key: {text}"
    );
    let plain = joined_frame("r", &JoinInfo::default(), &None);
    let v: Value = serde_json::from_slice(&plain).unwrap();
    assert!(v.get("recovered").is_none() && v.get("id").is_none() && v.get("offset").is_none());
}

#[test]
fn cache_patterns_must_parse() {
    for bad in [
        r#"{"pattern":""}"#,
        r#"{"pattern":"user:["}"#,
        r#"{"pattern":"a\\"}"#,
    ] {
        assert!(
            parse_inbound(CACHE_INVALIDATE, bad.as_bytes()).is_err(),
            "{bad}"
        );
    }
    let ok = br#"{"pattern":"user:[0-9]*","timestamp":5}"#;
    let (_, ts) = parse_inbound_timed(CACHE_INVALIDATE, ok).unwrap();
    assert_eq!(ts, Some(5.0));
}

#[test]
fn analytics_fields_are_typed() {
    for bad in [
        r#"{"event":"","data":{}}"#,
        r#"{"event":"q","data":{"model":7}}"#,
        r#"{"event":"q","data":{"model":""}}"#,
        r#"{"event":"q","data":{"latencyMs":"fast"}}"#,
        r#"{"event":"q","data":{"latencyMs":-1}}"#,
        r#"{"event":"q","data":{"tokens":1.5}}"#,
        r#"{"event":"q","data":{"cost":-0.1}}"#,
        r#"{"event":"q","data":[]}"#,
    ] {
        assert!(
            parse_inbound(ANALYTICS_EVENTS, bad.as_bytes()).is_err(),
            "{bad}"
        );
    }
    let ok = br#"{"event":"ai_query","data":{"model":"m","latencyMs":1.5,"tokens":3,"cost":0.25,"x":[1]}}"#;
    let Ok(Inbound::Analytics(ev)) = parse_inbound(ANALYTICS_EVENTS, ok) else {
        panic!("valid event refused");
    };
    assert_eq!(ev.model(), Some("m"));
    assert_eq!(ev.number(analytics_fields::COST), Some(0.25));
}

#[test]
fn timestamps_are_read_leniently() {
    let n = br#"{"userId":1,"type":"t","title":"t","message":"m","timestamp":1700000000000}"#;
    let (_, ts) = parse_inbound_timed("user:notifications:1", n).unwrap();
    assert_eq!(ts, Some(1.7e12));
    let iso = br#"{"userId":1,"type":"t","title":"t","message":"m","timestamp":"2024-01-01"}"#;
    let (_, ts) = parse_inbound_timed("user:notifications:1", iso).unwrap();
    assert_eq!(ts, None, "a non-numeric timestamp is not an error");
}

#[test]
fn auth_asks_for_resume_with_true_or_a_token() {
    let resume = |text: &str| match parse(text).map(|f| f.request) {
        Ok(Request::Auth { resume, .. }) => Ok(resume),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e.code),
    };
    assert_eq!(resume(r#"{"type":"auth","token":"t"}"#), Ok(None));
    assert_eq!(
        resume(r#"{"type":"auth","token":"t","resume":true}"#),
        Ok(Some(ResumeAsk::Start))
    );
    assert_eq!(
        resume(r#"{"type":"auth","token":"t","resume":"ab","offset":7}"#),
        Ok(Some(ResumeAsk::Continue {
            token: "ab".into(),
            offset: 7
        }))
    );
    assert_eq!(
        resume(r#"{"type":"auth","token":"t","resume":"ab"}"#),
        Ok(Some(ResumeAsk::Continue {
            token: "ab".into(),
            offset: 0
        }))
    );
    for bad in [
        r#"{"type":"auth","token":"t","resume":1}"#,
        r#"{"type":"auth","token":"t","resume":"ab","offset":-1}"#,
        r#"{"type":"auth","token":"t","resume":"ab","offset":"7"}"#,
        r#"{"type":"auth","token":"t","resume":true,"offset":7}"#,
        r#"{"type":"auth","token":"t","offset":7}"#,
    ] {
        assert_eq!(resume(bad), Err(ErrorCode::BadRequest), "{bad}");
    }
}

#[test]
fn connected_says_how_the_session_resumes() {
    let frame = |r: &Resumption| -> Value {
        serde_json::from_slice(&connected_frame("i-1", "7", r)).unwrap()
    };
    assert_eq!(
        frame(&Resumption::default()),
        json!({"type":"connected","sessionId":"i-1","userId":7})
    );
    let r = Resumption {
        recovered: None,
        token: Some("ab".into()),
        resumed: Some(true),
        unread: Some(3),
    };
    assert_eq!(
        frame(&r),
        json!({"type":"connected","sessionId":"i-1","userId":7,"resume":"ab","resumed":true,"unread":3})
    );
}

#[test]
fn mark_read_takes_ids_or_up_to_and_inbox_page_a_bounded_limit() {
    let parse = |text: &str| parse_client_frame(text, &Limits::default()).map(|f| f.request);
    let id = |s: &str| MessageId::parse(s).unwrap();
    assert_eq!(
        parse(r#"{"type":"mark-read","ids":["5-0","6-1"]}"#),
        Ok(Request::MarkRead(Marks::Ids(vec![id("5-0"), id("6-1")])))
    );
    assert_eq!(
        parse(r#"{"type":"mark-read","upTo":"6-1"}"#),
        Ok(Request::MarkRead(Marks::UpTo(id("6-1"))))
    );
    let too_many = json!({"type": "mark-read", "ids": vec!["1-0"; MARK_READ_MAX_IDS + 1]});
    for bad in [
        r#"{"type":"mark-read"}"#.to_string(),
        r#"{"type":"mark-read","ids":[]}"#.into(),
        r#"{"type":"mark-read","ids":["x"]}"#.into(),
        r#"{"type":"mark-read","ids":["1-0"],"upTo":"1-0"}"#.into(),
        r#"{"type":"mark-read","upTo":5}"#.into(),
        too_many.to_string(),
        r#"{"type":"inbox-page","limit":0}"#.into(),
        format!(r#"{{"type":"inbox-page","limit":{}}}"#, INBOX_PAGE_MAX + 1),
        r#"{"type":"inbox-page","before":"soon"}"#.into(),
    ] {
        assert_eq!(
            parse(&bad).unwrap_err().code,
            ErrorCode::BadRequest,
            "{bad}"
        );
    }
    assert_eq!(
        parse(r#"{"type":"inbox-page"}"#),
        Ok(Request::InboxPage {
            before: None,
            limit: INBOX_PAGE_DEFAULT
        })
    );
    assert_eq!(
        parse(r#"{"type":"inbox-page","before":"9-0","limit":5}"#),
        Ok(Request::InboxPage {
            before: Some(id("9-0")),
            limit: 5
        })
    );
}

#[test]
fn job_events_become_chunk_and_state_frames_for_their_user() {
    let chunk = br#"{"jobId":"j1","userId":7,"event":"chunk","seq":2,"delta":"lo"}"#;
    match parse_inbound(AI_JOBS, chunk) {
        Ok(Inbound::JobEvent {
            user,
            frame,
            chunk: true,
            job,
            seq: 2,
            running: None,
        }) => {
            assert_eq!((&*user, &*job), ("7", "j1"));
            let v: Value = serde_json::from_slice(&frame).unwrap();
            assert_eq!(
                v,
                json!({"type": "ai-chunk", "data": {"jobId": "j1", "seq": 2, "delta": "lo"}})
            );
        }
        other => panic!("{other:?}"),
    }
    let state = br#"{"jobId":"j1","userId":"u","event":"state","state":"running","attempt":1}"#;
    assert!(matches!(
        parse_inbound(AI_JOBS, state),
        Ok(Inbound::JobEvent {
            chunk: false,
            running: Some(1),
            ..
        })
    ));
    for bad in [
        &br#"{"jobId":"j1","userId":7,"event":"chunk","seq":2}"#[..],
        br#"{"jobId":"j1","event":"chunk","seq":2,"delta":"x"}"#,
        br#"{"jobId":"j1","userId":7,"event":"other"}"#,
        br#"[1]"#,
    ] {
        assert!(parse_inbound(AI_JOBS, bad).is_err());
    }
}

#[test]
fn job_requests_are_validated() {
    let parse = |s: &str| parse(s).map(|f| f.request);
    assert_eq!(
        parse(r#"{"type":"watch-job","jobId":"j-1","after":3}"#),
        Ok(Request::WatchJob {
            job: "j-1".into(),
            after: 3
        })
    );
    assert_eq!(
        parse(r#"{"type":"cancel-job","jobId":42}"#),
        Ok(Request::CancelJob { job: "42".into() })
    );
    for bad in [
        r#"{"type":"cancel-job"}"#,
        r#"{"type":"cancel-job","jobId":"a b"}"#,
        r#"{"type":"watch-job","jobId":"j","after":-1}"#,
        r#"{"type":"watch-job","jobId":"j","extra":1}"#,
    ] {
        assert_eq!(parse(bad).unwrap_err().code, ErrorCode::BadRequest, "{bad}");
    }
}
