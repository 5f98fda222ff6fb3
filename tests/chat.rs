//! Chat rooms: history, recovery, presence across instances, and the HTTP routes, against
//! real redis-servers and real hub processes.
//!
//! "No presence event" is checked with a barrier: after the change that must not produce
//! one, another user joins or leaves through the same instance; the observer's next
//! presence frame must be that one (an instance publishes its presence changes in order).

mod common;

use common::{eventually, hub, Client, Hub, Redis};
use hub_actors::features::roster;
use serde_json::{json, Value};

const KEY: &str = "k3y";

async fn named(hub: &Hub, user: &str, name: &str) -> Client {
    let mut c = Client::connect(&hub.ws_url(&format!("userId={user}&name={name}"))).await;
    c.recv_type("connected").await;
    c
}

/// Joins with `since` and returns the `joined` frame.
async fn join_since(c: &mut Client, room: &str, since: &str) -> Value {
    c.send(json!({"type": "join-room", "room": room, "since": since}))
        .await;
    let joined = c.recv_type("joined").await;
    assert_eq!(joined["room"], room);
    joined
}

async fn say(c: &mut Client, room: &str, text: &str) {
    c.send(json!({"type": "chat-message", "room": room, "message": text}))
        .await;
}

/// Says `m1` to `m8` in room `r`, each once the previous came back; their (id, text).
async fn say_m1_to_m8(c: &mut Client) -> Vec<(String, String)> {
    let mut said = Vec::new();
    for i in 1..=8 {
        say(c, "r", &format!("m{i}")).await;
        said.push(next_chat(c).await);
    }
    said
}

/// User 1 joins `r` and says `m1` to `m8`: their ids.
async fn history_of_eight(hub: &Hub) -> Vec<String> {
    let mut ann = hub.user("1").await;
    ann.join("r").await;
    let said = say_m1_to_m8(&mut ann).await;
    said.into_iter().map(|(id, _)| id).collect()
}

/// The next chat message's (id, text).
async fn next_chat(c: &mut Client) -> (String, String) {
    let data = c.recv_type("chat-message").await["data"].clone();
    (
        data["id"].as_str().unwrap_or_default().to_string(),
        data["message"].as_str().unwrap().to_string(),
    )
}

fn texts(history: &Value) -> Vec<String> {
    history
        .as_array()
        .expect("history is an array")
        .iter()
        .map(|m| m["message"].as_str().unwrap().to_string())
        .collect()
}

fn member_ids(joined_or_info: &Value) -> Vec<String> {
    let mut ids: Vec<String> = joined_or_info["members"]
        .as_array()
        .expect("members is an array")
        .iter()
        .map(|m| m["userId"].to_string().trim_matches('"').to_string())
        .collect();
    ids.sort();
    ids
}

/// `GET /api/rooms/{room}` (with the test API key, which hubs without one ignore).
async fn room_info(hub: &Hub, room: &str) -> Value {
    let auth = format!("Bearer {KEY}");
    let (status, body) = hub
        .http(
            "GET",
            &format!("/api/rooms/{room}"),
            &[("authorization", &auth)],
            "",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn post_chat(hub: &Hub, room: &str, body: &Value) -> (u16, Value) {
    let auth = format!("Bearer {KEY}");
    let (status, text) = hub
        .http(
            "POST",
            &format!("/api/chat/{room}"),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            &body.to_string(),
        )
        .await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A history id as (ms, seq), for ordering.
fn parse_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').expect("ids look like 123-0");
    (ms.parse().unwrap(), seq.parse().unwrap())
}

/// Waits until instance `instance` has (or no longer has) user `user` of `room` in Redis,
/// i.e. its roster processed the change (and published any event it made).
async fn await_held(redis: &Redis, instance: &str, room: &str, user: &str, held: bool) {
    let key = roster::instance_key(instance);
    let pair = format!("{room} {user}");
    eventually(&format!("{key} to hold `{pair}`: {held}"), || async {
        let is: bool = redis::cmd("SISMEMBER")
            .arg(&key)
            .arg(&pair)
            .query_async(&mut redis.conn().await)
            .await
            .unwrap();
        (is == held).then_some(())
    })
    .await
}

/// The next presence frame as (event, userId).
async fn next_presence(c: &mut Client) -> (String, String) {
    let p = c.recv_type("presence").await;
    (
        p["event"].as_str().unwrap().to_string(),
        p["userId"].to_string().trim_matches('"').to_string(),
    )
}

#[tokio::test]
async fn history_is_ordered_capped_and_counted() {
    let redis = Redis::start().await;
    let env = [("HUB_HISTORY_MAXLEN", "5"), ("HUB_HISTORY_LIMIT", "3")];
    let hub = hub(&redis, &env).await;
    let mut ann = named(&hub, "1", "Ann").await;
    let joined = ann.join("r").await;
    assert_eq!(joined["history"], json!([]), "a new room has no history");
    let live = say_m1_to_m8(&mut ann).await;
    assert!(
        live.windows(2)
            .all(|w| parse_id(&w[0].0) < parse_id(&w[1].0)),
        "ids grow: {live:?}"
    );
    let len: u64 = redis::cmd("XLEN")
        .arg("chat:history:r")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert_eq!(len, 5, "the stream is capped at HUB_HISTORY_MAXLEN");

    let mut bob = named(&hub, "2", "Bob").await;
    let joined = bob.join("r").await;
    assert_eq!(
        texts(&joined["history"]),
        ["m6", "m7", "m8"],
        "last N, oldest first"
    );
    let ids: Vec<&str> = joined["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    let live_ids: Vec<&str> = live[5..].iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids, live_ids,
        "history ids are the ids the live copies carried"
    );
    let first = &joined["history"][0];
    assert_eq!(
        (
            first["roomId"].clone(),
            first["userId"].clone(),
            first["username"].clone()
        ),
        (json!("r"), json!(1), json!("Ann"))
    );
    assert!(
        joined.get("recovered").is_none(),
        "only a join with since says recovered"
    );

    let info = room_info(&hub, "r").await;
    assert_eq!(info["messageCount"], 5);
    assert_eq!(info["lastMessageId"], json!(live[7].0));
    assert_eq!(member_ids(&info), ["1", "2"]);
}

#[tokio::test]
async fn since_returns_only_newer_messages_and_flags_gaps() {
    let redis = Redis::start().await;
    let env = [("HUB_HISTORY_MAXLEN", "5"), ("HUB_HISTORY_LIMIT", "3")];
    let hub = hub(&redis, &env).await;
    let ids = history_of_eight(&hub).await;
    let mut bob = hub.user("2").await;
    let joined = join_since(&mut bob, "r", &ids[5]).await;
    assert_eq!(texts(&joined["history"]), ["m7", "m8"]);
    assert_eq!(joined["recovered"], true);
    let joined = join_since(&mut bob, "r", &ids[7]).await;
    assert_eq!(
        joined["history"],
        json!([]),
        "nothing newer than the last message"
    );
    assert_eq!(joined["recovered"], true);

    // m1 was trimmed: the gap cannot be filled, the client is told to reload.
    let joined = join_since(&mut bob, "r", &ids[0]).await;
    assert_eq!(joined["recovered"], false);
    assert_eq!(
        texts(&joined["history"]),
        ["m6", "m7", "m8"],
        "the latest, for a reload"
    );

    bob.send(json!({"type": "join-room", "room": "r", "since": "yesterday", "id": 9}))
        .await;
    let err = bob.expect_error("bad_request").await;
    assert_eq!(err["id"], 9);
}

#[tokio::test]
async fn a_clients_messages_keep_the_order_it_sent_them_in() {
    let redis = Redis::start().await;
    // One user's 60 messages at once: above the per-session burst and the per-user budget.
    let limits = [("HUB_RATE_BURST", "100"), ("HUB_USER_MESSAGE_BURST", "100")];
    let hub = hub(&redis, &limits).await;
    let mut ann = hub.user("1").await;
    ann.join("r").await;
    // Read by the hub in one go: each becomes a Redis call of its own. 60 fit in what a
    // session lets wait behind a request in flight.
    let sent: Vec<String> = (0..60).map(|i| format!("m{i}")).collect();
    let frames: Vec<Value> = sent
        .iter()
        .map(|text| json!({"type": "chat-message", "room": "r", "message": text}))
        .collect();
    ann.send_together(&frames).await;
    let mut live = Vec::new();
    for _ in &sent {
        live.push(next_chat(&mut ann).await.1);
    }
    let first_out_of_order = live.iter().zip(&sent).position(|(got, want)| got != want);
    assert_eq!(
        first_out_of_order, None,
        "delivered in the order sent: {live:?}"
    );
    let mut bob = hub.user("2").await;
    let joined = bob.join("r").await;
    assert_eq!(
        texts(&joined["history"]),
        sent[10..],
        "stored in the order sent"
    );
}

#[tokio::test]
async fn a_gap_longer_than_the_recovery_limit_is_a_reload() {
    let redis = Redis::start().await;
    let env = [
        ("HUB_HISTORY_MAXLEN", "20"),
        ("HUB_HISTORY_LIMIT", "2"),
        ("HUB_HISTORY_RECOVERY_LIMIT", "3"),
    ];
    let hub = hub(&redis, &env).await;
    let ids = history_of_eight(&hub).await;
    let mut bob = hub.user("2").await;
    let joined = join_since(&mut bob, "r", &ids[4]).await;
    assert_eq!(texts(&joined["history"]), ["m6", "m7", "m8"]);
    assert_eq!(
        joined["recovered"], true,
        "3 newer messages: within the limit"
    );
    let joined = join_since(&mut bob, "r", &ids[3]).await;
    assert_eq!(joined["recovered"], false, "4 newer messages: a reload");
    assert_eq!(texts(&joined["history"]), ["m7", "m8"], "the latest");
}

#[tokio::test]
async fn recovery_across_instances_is_exactly_once_and_in_order() {
    let redis = Redis::start().await;
    let hub_a = hub(&redis, &[("HUB_API_KEY", KEY)]).await;
    let hub_b = hub(&redis, &[("HUB_API_KEY", KEY)]).await;
    let mut ann = named(&hub_a, "1", "Ann").await;
    let mut bob = named(&hub_b, "2", "Bob").await;
    ann.join("lobby").await;
    bob.join("lobby").await;
    say(&mut bob, "lobby", "before").await;
    let (last_seen, text) = next_chat(&mut ann).await;
    assert_eq!(text, "before");
    ann.close().await;

    for i in 0..3 {
        say(&mut bob, "lobby", &format!("missed {i}")).await;
    }
    for _ in 0..3 {
        next_chat(&mut bob).await;
    }
    // Ann comes back on the other instance.
    let mut ann = named(&hub_b, "1", "Ann").await;
    let joined = join_since(&mut ann, "lobby", &last_seen).await;
    assert_eq!(joined["recovered"], true);
    assert_eq!(
        texts(&joined["history"]),
        ["missed 0", "missed 1", "missed 2"]
    );
    let resume_from = joined["history"][2]["id"].as_str().unwrap().to_string();
    ann.close().await;

    // Messages keep coming, from four posters at once, while Ann rejoins: she must get each
    // exactly once and in the history's order, whether it lands in her `joined` history or
    // reaches her live (both happen when a message is appended between her room subscription
    // and her history read; the hub drops the live copy then).
    for i in 0..3 {
        say(&mut bob, "lobby", &format!("gap {i}")).await;
    }
    for _ in 0..3 {
        next_chat(&mut bob).await;
    }
    let hub_a = std::sync::Arc::new(hub_a);
    let posters: Vec<_> = (0..4)
        .map(|p| {
            let hub_a = hub_a.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    let text = format!("p{p}-{i}");
                    let body = json!({"userId": 2, "username": "Bob", "message": text});
                    let (status, _) = post_chat(&hub_a, "lobby", &body).await;
                    assert_eq!(status, 202);
                }
            })
        })
        .collect();
    let mut ann = named(&hub_b, "1", "Ann").await;
    let joined = join_since(&mut ann, "lobby", &resume_from).await;
    assert_eq!(joined["recovered"], true);
    let mut got: Vec<(String, String)> = joined["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let id = m["id"].as_str().unwrap().to_string();
            (id, m["message"].as_str().unwrap().to_string())
        })
        .collect();
    while got.len() < 83 {
        got.push(next_chat(&mut ann).await);
    }
    for poster in posters {
        poster.await.unwrap();
    }
    let truth: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("chat:history:lobby")
        .arg(format!("({resume_from}"))
        .arg("+")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    let truth: Vec<(String, String)> = truth
        .into_iter()
        .map(|(id, fields)| {
            let m: Value = serde_json::from_str(&fields[0].1).unwrap();
            (id, m["message"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(truth.len(), 83);
    assert_eq!(got, truth, "every message once, in the history's order");
    // Nothing more is pending: a marker is the next frame.
    say(&mut ann, "lobby", "marker").await;
    assert_eq!(next_chat(&mut ann).await.1, "marker");
}

#[tokio::test]
async fn presence_events_come_once_per_user_not_per_session() {
    let redis = Redis::start().await;
    let hub_a = hub(&redis, &[("HUB_INSTANCE_ID", "a")]).await;
    let hub_b = hub(&redis, &[("HUB_INSTANCE_ID", "b")]).await;
    let mut obs = named(&hub_a, "9", "Obs").await.with_presence();
    obs.join("r").await;
    assert_eq!(next_presence(&mut obs).await, ("join".into(), "9".into()));

    let mut ann_a1 = named(&hub_a, "1", "Ann").await;
    ann_a1.join("r").await;
    assert_eq!(next_presence(&mut obs).await, ("join".into(), "1".into()));

    // More tabs of Ann, on the same and on the other instance: no new event.
    let mut ann_a2 = named(&hub_a, "1", "Ann").await;
    ann_a2.join("r").await;
    let mut ann_b = named(&hub_b, "1", "Ann").await;
    let joined = ann_b.join("r").await;
    assert_eq!(member_ids(&joined), ["1", "9"], "each user listed once");
    await_held(&redis, "b", "r", "1", true).await;
    let mut carl_b = named(&hub_b, "3", "Carl").await;
    carl_b.join("r").await;
    assert_eq!(
        next_presence(&mut obs).await,
        ("join".into(), "3".into()),
        "Ann's extra tabs made no presence event"
    );
    let mut dan_a = named(&hub_a, "4", "Dan").await;
    dan_a.join("r").await;
    assert_eq!(next_presence(&mut obs).await, ("join".into(), "4".into()));

    // Ann's tabs on instance A leave: she still has one on B, so no leave event.
    ann_a1
        .send(json!({"type": "leave-room", "room": "r"}))
        .await;
    ann_a1.recv_type("left").await;
    ann_a2.close().await;
    await_held(&redis, "a", "r", "1", false).await;
    dan_a.close().await;
    assert_eq!(
        next_presence(&mut obs).await,
        ("leave".into(), "4".into()),
        "Ann's first tabs leaving made no presence event"
    );
    assert_eq!(member_ids(&room_info(&hub_a, "r").await), ["1", "3", "9"]);

    // Her last tab leaves: one leave event, with her name.
    ann_b.close().await;
    let leave = obs.recv_type("presence").await;
    assert_eq!(
        (
            leave["event"].clone(),
            leave["userId"].clone(),
            leave["username"].clone()
        ),
        (json!("leave"), json!(1), json!("Ann"))
    );
    assert_eq!(member_ids(&room_info(&hub_b, "r").await), ["3", "9"]);
    carl_b.close().await;
    assert_eq!(next_presence(&mut obs).await, ("leave".into(), "3".into()));
}

#[tokio::test]
async fn a_killed_instance_leaves_its_rooms_within_the_ttl() {
    let redis = Redis::start().await;
    let ttl = [("HUB_PRESENCE_TTL_MS", "1000")];
    let doomed = hub(&redis, &[ttl[0], ("HUB_INSTANCE_ID", "doomed")]).await;
    let survivor = hub(&redis, &[ttl[0], ("HUB_INSTANCE_ID", "survivor")]).await;
    let mut ann = named(&doomed, "1", "Ann").await;
    ann.join("r").await;
    eventually("Ann to be listed by the other instance", || async {
        (member_ids(&room_info(&survivor, "r").await) == ["1"]).then_some(())
    })
    .await;
    let mut obs = named(&survivor, "9", "Obs").await.with_presence();
    let joined = obs.join("r").await;
    assert_eq!(member_ids(&joined), ["1", "9"]);
    assert_eq!(next_presence(&mut obs).await, ("join".into(), "9".into()));

    doomed.signal(libc::SIGKILL);
    assert_eq!(
        next_presence(&mut obs).await,
        ("leave".into(), "1".into()),
        "the dead instance's member left"
    );
    assert_eq!(member_ids(&room_info(&survivor, "r").await), ["9"]);
    assert_eq!(survivor.metric("hub_presence_reaped_total").await, 1.0);
    let instances: Vec<String> = redis::cmd("SMEMBERS")
        .arg(roster::INSTANCES_KEY)
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert_eq!(instances, ["survivor"], "the dead instance is forgotten");
    drop(ann);
}

#[tokio::test]
async fn a_stopped_instance_leaves_its_rooms_at_once() {
    let redis = Redis::start().await;
    // A TTL far beyond the test's wait: the leave can only come from the shutdown.
    let ttl = ("HUB_PRESENCE_TTL_MS", "600000");
    let mut leaving = hub(&redis, &[ttl]).await;
    let staying = hub(&redis, &[ttl]).await;
    let mut ann = named(&leaving, "1", "Ann").await;
    ann.join("r").await;
    eventually("Ann to be listed by the other instance", || async {
        (member_ids(&room_info(&staying, "r").await) == ["1"]).then_some(())
    })
    .await;
    let mut obs = named(&staying, "9", "Obs").await.with_presence();
    obs.join("r").await;
    assert_eq!(next_presence(&mut obs).await, ("join".into(), "9".into()));
    leaving.signal(libc::SIGTERM);
    assert_eq!(leaving.wait_exit().await, Some(0));
    assert_eq!(next_presence(&mut obs).await, ("leave".into(), "1".into()));
    drop(ann);
}

#[tokio::test]
async fn http_and_plain_publish_reach_members() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_API_KEY", KEY)]).await;
    let mut ann = hub.user("1").await;
    ann.join("r").await;

    let body = json!({"userId": "bot", "username": "Bot", "message": "via http", "extra": [1]});
    let (status, reply) = post_chat(&hub, "r", &body).await;
    assert_eq!(status, 202, "{reply}");
    let data = ann.recv_type("chat-message").await["data"].clone();
    assert_eq!(
        (
            data["message"].clone(),
            data["userId"].clone(),
            data["extra"].clone()
        ),
        (json!("via http"), json!("bot"), json!([1]))
    );
    assert_eq!(data["roomId"], "r");
    assert_eq!(data["id"], reply["id"], "the reply names the history id");
    assert!(
        data["timestamp"].as_u64().is_some(),
        "the hub fills timestamp"
    );

    let plain = json!({"roomId": "r", "userId": 7, "username": "svc", "message": "plain",
                       "timestamp": 1});
    assert_eq!(redis.publish("chat:room:r", &plain.to_string()).await, 1);
    let data = ann.recv_type("chat-message").await["data"].clone();
    assert_eq!(
        data, plain,
        "a plain PUBLISH arrives unchanged, without an id"
    );
    assert_eq!(
        room_info(&hub, "r").await["messageCount"],
        1,
        "and is not in the history"
    );

    for (room, bad, code) in [
        ("r", json!({"userId": 1, "username": "a"}), "bad_request"),
        (
            "r",
            json!({"userId": 1, "message": "no name"}),
            "bad_request",
        ),
        (
            "r",
            json!({"username": "a", "message": "no user"}),
            "bad_request",
        ),
        (
            "r",
            json!({"roomId": "s", "userId": 1, "username": "a", "message": "m"}),
            "bad_request",
        ),
        (
            "r",
            json!({"userId": 1, "username": "a", "message": ""}),
            "bad_request",
        ),
        (
            "r",
            json!({"userId": 1, "username": "a", "message": "x".repeat(4001)}),
            "too_large",
        ),
        (
            "bad%20room",
            json!({"userId": 1, "username": "a", "message": "m"}),
            "invalid_room",
        ),
    ] {
        let (status, reply) = post_chat(&hub, room, &bad).await;
        assert_eq!(
            (status, reply["error"]["code"].clone()),
            (400, json!(code)),
            "{bad}"
        );
    }
    let (status, _) = hub.http("POST", "/api/chat/r", &[], "{}").await;
    assert_eq!(status, 401, "the API key is required");
    let auth = format!("Bearer {KEY}");
    let (status, _) = hub
        .http(
            "GET",
            "/api/rooms/bad%20room",
            &[("authorization", &auth)],
            "",
        )
        .await;
    assert_eq!(status, 400);
    // Nothing was published by the refused requests: the next frame is the marker.
    say(&mut ann, "r", "marker").await;
    assert_eq!(next_chat(&mut ann).await.1, "marker");
    assert_eq!(room_info(&hub, "r").await["messageCount"], 2);
}

#[tokio::test]
async fn rooms_over_the_presence_limit_list_a_sample_and_send_no_events() {
    let redis = Redis::start().await;
    let hub = hub(
        &redis,
        &[("HUB_ROOM_PRESENCE_LIMIT", "2"), ("HUB_INSTANCE_ID", "a")],
    )
    .await;
    let mut obs = named(&hub, "1", "Obs").await.with_presence();
    obs.join("big").await;
    assert_eq!(next_presence(&mut obs).await, ("join".into(), "1".into()));
    let mut ann = named(&hub, "2", "Ann").await;
    ann.join("big").await;
    assert_eq!(next_presence(&mut obs).await, ("join".into(), "2".into()));
    let mut bob = named(&hub, "3", "Bob").await;
    let joined = bob.join("big").await;
    assert_eq!(joined["memberCount"], 3);
    assert_eq!(
        joined["members"].as_array().unwrap().len(),
        2,
        "a sample of the limit"
    );
    await_held(&redis, "a", "big", "3", true).await;
    redis
        .publish("user:notifications:1", &common::notification("1", "marker"))
        .await;
    let next = obs.recv().await;
    assert_eq!(
        (next["type"].clone(), next["data"]["title"].clone()),
        (json!("notification"), json!("marker")),
        "no presence event for the third user: {next}"
    );
    let info = room_info(&hub, "big").await;
    assert_eq!(
        (
            info["memberCount"].clone(),
            info["members"].as_array().unwrap().len()
        ),
        (json!(3), 2)
    );
}

/// Chat messages appended while the hub's pub/sub connection is down (the command connection
/// still works) reach members once it is back, from history, in order and exactly once,
/// without the client re-joining.
#[tokio::test]
async fn chat_missed_during_a_pubsub_outage_is_delivered_from_history() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_API_KEY", KEY)]).await;
    let mut ann = hub.user("1").await;
    ann.join("r").await;
    let say = |text: &str| json!({"userId": "bot", "username": "Bot", "message": text});
    assert_eq!(post_chat(&hub, "r", &say("before")).await.0, 202);
    assert_eq!(
        ann.recv_type("chat-message").await["data"]["message"],
        "before"
    );

    // Cut the subscription: no SUBSCRIBE allowed, the current pub/sub connection killed.
    redis.cut_pubsub().await;
    eventually("the hub to notice", || async {
        (hub.health().await.0 == 503).then_some(())
    })
    .await;
    for i in 1..=3 {
        let (status, reply) = post_chat(&hub, "r", &say(&format!("gap-{i}"))).await;
        assert_eq!(status, 202, "{reply}");
    }
    redis.allow_subscribe().await;

    for i in 1..=3 {
        let msg = ann.recv_type("chat-message").await;
        assert_eq!(msg["data"]["message"], format!("gap-{i}"));
    }
    assert_eq!(post_chat(&hub, "r", &say("after")).await.0, 202);
    assert_eq!(
        ann.recv_type("chat-message").await["data"]["message"],
        "after",
        "no message twice"
    );
    assert_eq!(hub.metric("hub_chat_gap_filled_total").await, 3.0);
}

#[tokio::test]
async fn room_id_names_the_room_in_client_frames_as_room_does() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut a = named(&hub, "1", "Ann").await;
    let mut b = named(&hub, "2", "Bob").await;
    b.join("r-alias").await;
    a.send(json!({"type": "join-room", "roomId": "r-alias"}))
        .await;
    assert_eq!(a.recv_type("joined").await["room"], "r-alias");
    a.send(json!({"type": "chat-message", "roomId": "r-alias", "message": "seed shape"}))
        .await;
    let data = b.recv_type("chat-message").await["data"].clone();
    assert_eq!(
        (data["roomId"].clone(), data["message"].clone()),
        (json!("r-alias"), json!("seed shape"))
    );
    assert_eq!(
        a.recv_type("chat-message").await["data"]["message"],
        "seed shape",
        "the sender gets its own message too"
    );
    a.send(
        json!({"type": "chat-message", "room": "r-alias", "roomId": "elsewhere",
                  "message": "which room?"}),
    )
    .await;
    a.expect_error("bad_request").await;
    a.send(json!({"type": "leave-room", "roomId": "r-alias"}))
        .await;
    assert_eq!(a.recv_type("left").await["room"], "r-alias");
}
