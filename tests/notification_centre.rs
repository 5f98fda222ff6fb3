//! Notifications as users know them (docs/delivery.md#read-state): read marks that reach every
//! session of the user on every instance (`inbox-state`), the unread count in `connected` and
//! the Socket.IO CONNECT reply, pages of the inbox with read flags, and the HTTP API, against
//! two hub instances on one Redis.

mod common;
mod sio_common;

use common::*;
use serde_json::{json, Value};

const KEY: &str = "k3y";

/// A Notification for `user` titled `title`, with `extra` keys.
fn note(user: &str, title: &str, extra: Value) -> String {
    let mut n = json!({"userId": user, "type": "info", "title": title, "message": "m"});
    n.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    n.to_string()
}

/// `FCALL relay_notify` as a service calls it; the inbox id.
async fn fcall(redis: &Redis, user: &str, payload: &str) -> String {
    redis
        .relay_notify(user, payload)
        .await
        .expect("relay_notify")
        .0
}

/// A native session of `user` that sees `inbox-state` frames, and its `connected` frame.
async fn session(hub: &Hub, user: &str) -> (Client, Value) {
    let mut c = Client::connect(&hub.ws_url(&format!("userId={user}")))
        .await
        .with_inbox_state();
    let connected = c.recv_type("connected").await;
    (c, connected)
}

/// The next `inbox-state`'s data.
async fn state(c: &mut Client) -> Value {
    c.recv_type("inbox-state").await["data"].clone()
}

/// The next notification's inbox id, then the `inbox-state` that follows it.
async fn noted(c: &mut Client) -> (String, Value) {
    let n = c.recv_type("notification").await;
    let id = n["data"]["inboxId"]
        .as_str()
        .expect("an inboxId")
        .to_owned();
    (id, state(c).await)
}

/// Two instances on one Redis.
async fn two_hubs(redis: &Redis) -> (Hub, Hub) {
    let env = [("HUB_API_KEY", KEY)];
    (hub(redis, &env).await, hub(redis, &env).await)
}

#[tokio::test]
async fn a_read_mark_reaches_every_session_of_the_user_on_every_instance() {
    let redis = Redis::start().await;
    let (a, b) = two_hubs(&redis).await;
    let (mut on_a, hello) = session(&a, "ann").await;
    assert_eq!(hello["unread"], 0, "{hello}");
    let (mut on_b, _) = session(&b, "ann").await;

    let mut ids = Vec::new();
    for (i, title) in ["one", "two", "three"].into_iter().enumerate() {
        let id = fcall(&redis, "ann", &note("ann", title, json!({}))).await;
        for c in [&mut on_a, &mut on_b] {
            let (got, state) = noted(c).await;
            assert_eq!(got, id);
            assert_eq!(
                state["unread"],
                i + 1,
                "every notification pushes the count"
            );
        }
        ids.push(id);
    }

    // A mark on one instance reaches the session on the other, and the marking one.
    on_a.send(json!({"type": "mark-read", "ids": [ids[0]]}))
        .await;
    for c in [&mut on_b, &mut on_a] {
        assert_eq!(state(c).await, json!({"unread": 2, "read": [ids[0]]}));
    }
    on_b.send(json!({"type": "mark-read", "upTo": ids[1]}))
        .await;
    for c in [&mut on_a, &mut on_b] {
        assert_eq!(state(c).await, json!({"unread": 1, "upTo": ids[1]}));
    }
    // Marking what is read already changes nothing: no inbox-state; the next one is about
    // the mark after it.
    on_a.send(json!({"type": "mark-read", "ids": [ids[0], ids[1]]}))
        .await;
    on_a.send(json!({"type": "mark-read", "upTo": "99999999999999-0"}))
        .await;
    for c in [&mut on_a, &mut on_b] {
        assert_eq!(
            state(c).await,
            json!({"unread": 0, "upTo": ids[2]}),
            "upTo past the newest marks up to the newest, no further"
        );
    }
    let later = fcall(&redis, "ann", &note("ann", "later", json!({}))).await;
    for c in [&mut on_a, &mut on_b] {
        assert_eq!(noted(c).await, (later.clone(), json!({"unread": 1})));
    }

    // A new session anywhere starts from the count.
    let (_third, hello) = session(&b, "ann").await;
    assert_eq!(hello["unread"], 1, "{hello}");

    // Bad marks are refused with a clear error; nothing changes.
    on_a.send(json!({"type": "mark-read", "ids": ["nope"], "id": 7}))
        .await;
    let err = on_a.expect_error("bad_request").await;
    assert_eq!(err["id"], 7);
    on_a.send(json!({"type": "mark-read"})).await;
    on_a.expect_error("bad_request").await;
}

#[tokio::test]
async fn inbox_pages_list_newest_first_with_read_flags_and_are_bounded() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(fcall(&redis, "bo", &note("bo", &format!("n{i}"), json!({}))).await);
    }
    let (mut bo, hello) = session(&hub, "bo").await;
    assert_eq!(hello["unread"], 5);
    bo.send(json!({"type": "mark-read", "ids": [ids[1], ids[4]]}))
        .await;
    assert_eq!(state(&mut bo).await["unread"], 3);

    bo.send(json!({"type": "inbox-page", "limit": 2, "id": "p1"}))
        .await;
    let page = bo.recv_type("inbox-page").await;
    assert_eq!(page["id"], "p1");
    assert_eq!(
        (page["unread"].clone(), page["more"].clone()),
        (json!(3), json!(true))
    );
    let listed = |page: &Value| -> Vec<(String, bool)> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["data"]["inboxId"].as_str().unwrap().to_owned(),
                    i["read"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        listed(&page),
        vec![(ids[4].clone(), true), (ids[3].clone(), false)]
    );
    assert_eq!(page["items"][1]["data"]["title"], "n3");

    bo.send(json!({"type": "inbox-page", "before": ids[3], "limit": 100}))
        .await;
    let page = bo.recv_type("inbox-page").await;
    assert_eq!(page["more"], false);
    assert_eq!(
        listed(&page),
        vec![
            (ids[2].clone(), false),
            (ids[1].clone(), true),
            (ids[0].clone(), false)
        ]
    );

    bo.send(json!({"type": "inbox-page", "limit": 101})).await;
    bo.expect_error("bad_request").await;
}

#[tokio::test]
async fn socketio_sessions_mark_read_and_hear_the_inbox_state() {
    let redis = Redis::start().await;
    let (a, b) = two_hubs(&redis).await;
    let first = fcall(&redis, "7", &note("7", "first", json!({}))).await;
    let second = fcall(&redis, "7", &note("7", "second", json!({}))).await;
    let (mut native, _) = session(&a, "7").await;

    let (ws, _) = sio_common::Ws::open(b.port, "/socket.io/").await;
    let mut sio = ws.with_inbox_state();
    sio.send(r#"40{"userId":"7"}"#).await;
    let connect = sio.text().await;
    let reply: Value = serde_json::from_str(&connect[2..]).unwrap();
    assert_eq!(
        reply["unread"], 2,
        "the CONNECT reply carries the count: {connect}"
    );

    sio.send(&format!(r#"42["mark-read",{{"ids":["{first}"]}}]"#))
        .await;
    assert_eq!(
        state(&mut native).await,
        json!({"unread": 1, "read": [first]})
    );
    let event: Value = serde_json::from_str(&sio.text_skipping_pings().await[2..]).unwrap();
    assert_eq!(
        event,
        json!(["inbox-state", {"unread": 1, "read": [first]}])
    );

    // With an ack: acknowledged with the count; the event every session gets comes too (in
    // either order: one travels on the command connection, the other through pub/sub).
    sio.send(&format!(r#"421["mark-read",{{"upTo":"{second}"}}]"#))
        .await;
    let mut got = [
        sio.text_skipping_pings().await,
        sio.text_skipping_pings().await,
    ];
    got.sort();
    assert_eq!(got[1], r#"431[{"type":"marked","unread":0}]"#);
    let event: Value = serde_json::from_str(&got[0][2..]).unwrap();
    assert_eq!(event, json!(["inbox-state", {"unread": 0, "upTo": second}]));
    assert_eq!(state(&mut native).await["unread"], 0);

    sio.send(r#"422["inbox-page",{"limit":1}]"#).await;
    let ack: Value = serde_json::from_str(&sio.text_skipping_pings().await[3..]).unwrap();
    assert_eq!(ack[0]["type"], "inbox-page");
    assert_eq!(ack[0]["items"][0]["data"]["inboxId"], second);
    assert_eq!(ack[0]["items"][0]["read"], true);
    assert_eq!(ack[0]["more"], true);
}

#[tokio::test]
async fn the_http_api_lists_marks_and_deletes() {
    let redis = Redis::start().await;
    let (a, b) = two_hubs(&redis).await;
    let ids = [
        fcall(&redis, "cy", &note("cy", "a", json!({}))).await,
        fcall(&redis, "cy", &note("cy", "b", json!({}))).await,
    ];
    let (mut cy, _) = session(&b, "cy").await;
    let auth = [
        ("authorization", "Bearer k3y"),
        ("content-type", "application/json"),
    ];
    let api = |method: &'static str, path: String, body: String| {
        let a = &a;
        async move {
            let (status, body) = a.http(method, &path, &auth, &body).await;
            (
                status,
                serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
            )
        }
    };

    let (status, list) = api("GET", "/api/users/cy/inbox?limit=1".into(), String::new()).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["unread"], 2);
    assert_eq!(list["more"], true);
    assert_eq!(list["items"][0]["data"]["inboxId"], ids[1]);
    assert_eq!(list["items"][0]["read"], false);

    let (status, read) = api(
        "POST",
        "/api/users/cy/inbox/read".into(),
        json!({"ids": [ids[0]]}).to_string(),
    )
    .await;
    assert_eq!((status, read), (200, json!({"unread": 1})));
    assert_eq!(state(&mut cy).await, json!({"unread": 1, "read": [ids[0]]}));

    let path = format!("/api/users/cy/inbox/{}", ids[1]);
    let (status, deleted) = api("DELETE", path.clone(), String::new()).await;
    assert_eq!((status, deleted), (200, json!({"unread": 0})));
    assert_eq!(
        state(&mut cy).await,
        json!({"unread": 0, "removed": [ids[1]]})
    );
    let (status, again) = api("DELETE", path, String::new()).await;
    assert_eq!(status, 404, "{again}");

    let (_, list) = api("GET", "/api/users/cy/inbox".into(), String::new()).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["read"], true);

    for (method, path, body) in [
        ("POST", "/api/users/cy/inbox/read", r#"{"upTo":"x"}"#),
        (
            "POST",
            "/api/users/cy/inbox/read",
            r#"{"ids":["1-0"],"upTo":"1-0"}"#,
        ),
        (
            "POST",
            "/api/users/cy/inbox/read",
            r#"{"upTo":"1-0","more":1}"#,
        ),
        ("GET", "/api/users/cy/inbox?limit=0", ""),
        ("GET", "/api/users/cy/inbox?before=soon", ""),
        ("DELETE", "/api/users/cy/inbox/soon", ""),
        ("GET", "/api/users/bad%20id/inbox", ""),
    ] {
        let (status, body) = api(method, path.into(), body.into()).await;
        assert_eq!(status, 400, "{method} {path} {body}");
        assert_eq!(
            body["error"]["code"], "bad_request",
            "{method} {path}: {body}"
        );
    }
}

/// Redis's clock, in milliseconds (the inbox's functions read it).
async fn redis_ms(redis: &Redis) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    secs * 1000 + micros / 1000
}

#[tokio::test]
async fn a_collapse_key_replaces_the_unread_notification_and_keeps_since_placeable() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let (mut dee, _) = session(&hub, "dee").await;
    let comments = |n: u32| {
        note(
            "dee",
            &format!("{n} new comments"),
            json!({"collapseKey": "post-9"}),
        )
    };

    let first = fcall(&redis, "dee", &comments(1)).await;
    assert_eq!(noted(&mut dee).await, (first.clone(), json!({"unread": 1})));
    let second = fcall(&redis, "dee", &comments(2)).await;
    let (got, replaced) = noted(&mut dee).await;
    assert_eq!(got, second);
    assert_eq!(
        replaced,
        json!({"unread": 1, "removed": [first]}),
        "the new one replaces the unread one: the count stays"
    );
    // Once read, the next one with the key stacks.
    dee.send(json!({"type": "mark-read", "ids": [second]}))
        .await;
    assert_eq!(state(&mut dee).await["unread"], 0);
    let third = fcall(&redis, "dee", &comments(3)).await;
    assert_eq!(noted(&mut dee).await, (third.clone(), json!({"unread": 1})));

    dee.send(json!({"type": "inbox-page"})).await;
    let page = dee.recv_type("inbox-page").await;
    let titles: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["data"]["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["3 new comments", "2 new comments"]);

    // A client whose last notification was replaced reconnects without losing anything.
    let mut back = Client::connect(&hub.ws_url(&format!("userId=dee&since={first}"))).await;
    let hello = back.recv_type("connected").await;
    assert_eq!(hello["recovered"], true, "{hello}");
    assert_eq!(
        back.recv_type("notification").await["data"]["inboxId"],
        second
    );
    assert_eq!(
        back.recv_type("notification").await["data"]["inboxId"],
        third
    );
}

#[tokio::test]
async fn an_expired_notification_is_not_replayed_listed_or_counted() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_API_KEY", KEY)]).await;
    let (mut eve, _) = session(&hub, "eve").await;
    let seen = fcall(&redis, "eve", &note("eve", "kept", json!({}))).await;
    noted(&mut eve).await;
    let soon = redis_ms(&redis).await + 1500;
    let brief = note("eve", "brief", json!({"expiresAt": soon}));
    fcall(&redis, "eve", &brief).await;
    let (_, live) = noted(&mut eve).await;
    assert_eq!(
        live["unread"], 2,
        "delivered live and counted before it expires"
    );
    let gone = fcall(&redis, "eve", &note("eve", "gone", json!({"expiresAt": 1}))).await;
    assert_eq!(
        state(&mut eve).await["unread"],
        2,
        "one expired already is stored but neither pushed nor counted"
    );

    // Await the expiry on Redis's clock, through the API's listing.
    let auth = [("authorization", "Bearer k3y")];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, body) = hub.http("GET", "/api/users/eve/inbox", &auth, "").await;
        let list: Value = serde_json::from_str(&body).unwrap();
        if list["items"].as_array().unwrap().len() == 1 {
            assert_eq!(list["items"][0]["data"]["inboxId"], seen);
            assert_eq!(list["unread"], 1);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expired in time: {list}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut back = Client::connect(&hub.ws_url(&format!("userId=eve&since={seen}"))).await;
    let hello = back.recv_type("connected").await;
    assert_eq!(
        (hello["recovered"].clone(), hello["unread"].clone()),
        (json!(true), json!(1))
    );
    let after = fcall(&redis, "eve", &note("eve", "after", json!({}))).await;
    let next = back.recv_type("notification").await;
    assert_eq!(
        next["data"]["inboxId"], after,
        "neither the expired nor {gone} is replayed"
    );
}

#[tokio::test]
async fn low_priority_over_the_cap_is_kept_not_pushed_and_high_is_never_held() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_INBOX_LOW_PER_MINUTE", "2")]).await;
    // The cap counts per minute of Redis's clock: start early in one.
    while redis_ms(&redis).await % 60_000 > 50_000 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (mut fay, _) = session(&hub, "fay").await;
    let low = |n: u32| note("fay", &format!("low {n}"), json!({"priority": "low"}));
    for n in 1..=2 {
        let id = fcall(&redis, "fay", &low(n)).await;
        assert_eq!(noted(&mut fay).await.0, id);
    }
    let held = fcall(&redis, "fay", &low(3)).await;
    assert_eq!(
        state(&mut fay).await,
        json!({"unread": 3, "held": held}),
        "kept and counted, not pushed"
    );
    let urgent = note("fay", "urgent", json!({"priority": "high"}));
    let high = fcall(&redis, "fay", &urgent).await;
    assert_eq!(noted(&mut fay).await, (high, json!({"unread": 4})));
    let normal = fcall(&redis, "fay", &note("fay", "normal", json!({}))).await;
    assert_eq!(noted(&mut fay).await.0, normal);
    // Counted when the instance routed the `inbox-state` the session already got.
    assert_eq!(hub.metric("hub_notifications_held_total").await, 1.0);

    fay.send(json!({"type": "inbox-page", "limit": 5})).await;
    let page = fay.recv_type("inbox-page").await;
    assert_eq!(page["items"][2]["data"]["inboxId"], held, "listed");

    // Bad priorities and keys are refused, by the function and the subscriber alike.
    for bad in [
        json!({"priority": "urgent"}),
        json!({"collapseKey": ""}),
        json!({"expiresAt": "tomorrow"}),
    ] {
        let err = redis::cmd("FCALL")
            .arg("relay_notify")
            .arg(1)
            .arg("inbox:{user:notifications:fay}")
            .arg(note("fay", "bad", bad.clone()))
            .query_async::<(String, i64)>(&mut redis.conn().await)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("relay_notify"), "{bad}: {err}");
    }
}
