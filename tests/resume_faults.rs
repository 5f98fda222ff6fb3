//! Session resume under the failures it exists for (docs/delivery.md, "Resume under
//! failure"), native `/ws` and Socket.IO alike: a client the hub dropped for not reading (write
//! timeout, queue bound), more events written into a dead socket than the resume ring holds, a
//! replay bigger than the queue bound, a drop in the middle of a restore, a room joined again,
//! Pongs nobody asked for, and a second resume after one that replayed nothing.

mod common;
mod sio_common;

use common::{
    eventually, hub,
    resume::{
        chat, expect_chat, expect_notification, kept, notify, notify_with, reset, resumable_rita,
        resume_native, silent_rita, silent_sio_rita,
    },
    Client, Hub, RawClient, Redis,
};
use serde_json::{json, Value};
use sio_common::{resume_sio, Ws};
use tokio_tungstenite::tungstenite::Message;

/// The inbox keeps more than the tests send (the default keeps 100).
const INBOX: (&str, &str) = ("HUB_INBOX_MAXLEN", "1000");

/// Reads `n` notifications and checks they are titled `0..n`, in order, with growing offsets.
async fn notifications_in_order(client: &mut Client, n: usize) {
    let mut last = 0;
    for i in 0..n {
        let frame = client.recv_type("notification").await;
        assert_eq!(frame["data"]["title"], i.to_string(), "in order, none lost");
        let offset = frame["offset"].as_u64().expect("an offset");
        assert!(offset > last, "offsets grow: {last} then {frame}");
        last = offset;
    }
}

/// Reads `n` Socket.IO notifications and checks they are titled `0..n`, in order, each with
/// an offset.
async fn sio_notifications_in_order(ws: &mut Ws, n: usize) {
    for i in 0..n {
        let text = ws.text_skipping_pings().await;
        let event: Value =
            serde_json::from_str(text.strip_prefix("42").expect("an event")).unwrap();
        assert_eq!(event[0], "notification", "{event}");
        assert_eq!(event[1]["title"], i.to_string(), "in order, none lost");
        assert!(event[2].as_str().is_some(), "an offset: {event}");
    }
}

/// Sends `n` notifications with `message` of `size` characters to `rita` through the inbox,
/// titled `0..n`.
async fn notify_many(redis: &Redis, n: usize, size: usize) {
    let message = "x".repeat(size);
    for i in 0..n {
        notify_with(redis, "rita", &i.to_string(), &message).await;
    }
}

/// How a client that stops reading is dropped by the hub.
#[derive(Clone, Copy)]
enum Kick {
    /// Its socket takes nothing for the write timeout.
    WriteTimeout,
    /// More than the queue bound waits for it.
    QueueBound,
}

impl Kick {
    fn env(self) -> [(&'static str, &'static str); 4] {
        let small_sndbuf = ("HUB_SOCKET_SNDBUF", "4096");
        match self {
            Kick::WriteTimeout => [
                INBOX,
                small_sndbuf,
                ("HUB_WRITE_TIMEOUT_MS", "300"),
                ("HUB_SESSION_QUEUE_BYTES", "16777216"),
            ],
            Kick::QueueBound => [
                INBOX,
                small_sndbuf,
                ("HUB_WRITE_TIMEOUT_MS", "60000"),
                ("HUB_SESSION_QUEUE_BYTES", "65536"),
            ],
        }
    }

    /// Sends what gets a client that reads nothing dropped; returns how many notifications
    /// (titled `0..n`) the inbox keeps of it. For the write timeout, 150 notifications of
    /// ~700 bytes: more than the kernel buffers of a socket whose reader stopped hold (so
    /// frames wait), within what an inbox replay sends (128 KiB). For the queue bound, 20
    /// notifications (within the replay budget of half the bound), then 100 AI results of
    /// 1 KB, which no stream keeps.
    async fn flood(self, redis: &Redis) -> usize {
        match self {
            Kick::WriteTimeout => {
                notify_many(redis, 150, 600).await;
                150
            }
            Kick::QueueBound => {
                notify_many(redis, 20, 600).await;
                let result = "r".repeat(1000);
                for job in 0..100 {
                    let payload = json!({"jobId": job, "userId": "rita", "status": "success",
                                         "result": result});
                    redis.publish("ai:results", &payload.to_string()).await;
                }
                20
            }
        }
    }
}

/// Both ways in.
#[derive(Clone, Copy)]
enum Way {
    Native,
    SocketIo,
}

impl Way {
    /// A resumable `rita` that reads nothing after connecting, with a receive buffer of
    /// `rcvbuf` bytes; the client and its resume token (`pid`).
    async fn silent(self, hub: &Hub, rcvbuf: u32) -> (RawClient, String) {
        match self {
            Way::Native => silent_rita(hub, rcvbuf).await,
            Way::SocketIo => silent_sio_rita(hub, rcvbuf).await,
        }
    }

    /// Resumes `token` from offset 0; checks that `n` notifications titled `0..n` follow, in
    /// order.
    async fn resumes_with(self, hub: &Hub, token: &str, n: usize) {
        match self {
            Way::Native => {
                let mut client = resume_native(hub, token, 0).await;
                notifications_in_order(&mut client, n).await;
            }
            Way::SocketIo => {
                let mut ws = resume_sio(hub, token, "0").await;
                sio_notifications_in_order(&mut ws, n).await;
            }
        }
    }
}

/// A client whose network dies silently stops reading; the hub drops it as a slow consumer:
/// it is kept all the same, and resumes with everything, once and in order.
async fn a_client_dropped_for_not_reading_resumes(way: Way, kick: Kick) {
    let redis = Redis::start().await;
    let hub = hub(&redis, &kick.env()).await;
    let (_silent, token) = way.silent(&hub, 4096).await;
    let kept_in_the_inbox = kick.flood(&redis).await;
    eventually("the silent client to be dropped", || async {
        (hub.kicks().await == 1.0).then_some(())
    })
    .await;
    kept(&redis, &token).await;
    way.resumes_with(&hub, &token, kept_in_the_inbox).await;
    assert_eq!(hub.kicks().await, 1.0, "the replay kicks nobody");
}

#[tokio::test]
async fn a_native_client_dropped_for_the_write_timeout_resumes() {
    a_client_dropped_for_not_reading_resumes(Way::Native, Kick::WriteTimeout).await;
}

#[tokio::test]
async fn a_native_client_dropped_for_the_queue_bound_resumes() {
    a_client_dropped_for_not_reading_resumes(Way::Native, Kick::QueueBound).await;
}

#[tokio::test]
async fn a_socketio_client_dropped_for_the_write_timeout_recovers() {
    a_client_dropped_for_not_reading_resumes(Way::SocketIo, Kick::WriteTimeout).await;
}

#[tokio::test]
async fn a_socketio_client_dropped_for_the_queue_bound_recovers() {
    a_client_dropped_for_not_reading_resumes(Way::SocketIo, Kick::QueueBound).await;
}

/// More stream events than the resume ring holds (256) are written for a client whose network
/// died: the hub never hands it more than the ring can place, so the offset it comes back
/// with is placed, and the inbox fills the whole gap.
async fn more_than_the_ring_into_a_dead_socket(way: Way) {
    const EVENTS: usize = 300;
    let redis = Redis::start().await;
    let hub = hub(&redis, &[INBOX]).await;
    let (silent, token) = way.silent(&hub, 1 << 20).await;
    notify_many(&redis, EVENTS, 1).await;
    eventually("every notification fanned out to the session", || async {
        let out = hub
            .metric("hub_frames_out_total{type=\"notification\"}")
            .await;
        (out >= EVENTS as f64).then_some(())
    })
    .await;
    reset(silent);
    kept(&redis, &token).await;
    way.resumes_with(&hub, &token, EVENTS).await;
}

#[tokio::test]
async fn a_native_client_resumes_after_more_events_than_the_ring_holds() {
    more_than_the_ring_into_a_dead_socket(Way::Native).await;
}

#[tokio::test]
async fn a_socketio_client_recovers_after_more_events_than_the_ring_holds() {
    more_than_the_ring_into_a_dead_socket(Way::SocketIo).await;
}

/// A replay several times the queue bound (four rooms' missed messages) is paced to what the
/// client reads: it never kicks the client, and every message arrives once, in order.
#[tokio::test]
async fn a_replay_bigger_than_the_queue_bound_does_not_kick_the_client() {
    const ROOMS: [&str; 4] = ["a", "b", "c", "d"];
    const MISSED: usize = 25;
    let redis = Redis::start().await;
    let env = [
        ("HUB_SESSION_QUEUE_BYTES", "65536"),
        ("HUB_RATE_PER_SEC", "1000"),
        ("HUB_RATE_BURST", "1000"),
        ("HUB_USER_MESSAGES_PER_SEC", "0"),
    ];
    let hub = hub(&redis, &env).await;
    let mut chatter = hub.user("chatter").await;
    let (mut client, token) = resumable_rita(&hub).await;
    for room in ROOMS {
        chatter.join(room).await;
        client.join(room).await;
    }
    drop(client);
    kept(&redis, &token).await;

    // About 110 KiB missed, against a bound of 64 KiB.
    let text = "y".repeat(1000);
    for room in ROOMS {
        for i in 0..MISSED {
            let message = format!("{room}{i}{text}");
            chatter
                .send(json!({"type": "chat-message", "room": room, "message": message}))
                .await;
            let own = chatter.recv_type("chat-message").await;
            assert_eq!(own["data"]["message"], message);
        }
    }

    let mut client = resume_native(&hub, &token, 0).await;
    for room in ROOMS {
        for i in 0..MISSED {
            let frame = client.recv_type("chat-message").await;
            let message = frame["data"]["message"].as_str().unwrap();
            assert!(
                message.starts_with(&format!("{room}{i}y")),
                "room by room, in order: expected {room}{i}, got {}",
                &message[..4]
            );
        }
    }
    assert_eq!(hub.kicks().await, 0.0);
}

/// Watches a resume key in Redis: its keyspace events (`set` when the record is taken, which
/// marks the key for the session that took it, and when a record is written).
async fn watch_record(redis: &Redis, token: &str) -> impl futures_util::Stream<Item = String> {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("Kg$")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(format!("__keyspace@0__:sio:recovery:{token}"))
        .await
        .unwrap();
    futures_util::StreamExt::map(pubsub.into_on_message(), |m| {
        m.get_payload::<String>().unwrap()
    })
}

/// A connection that drops while its resume is being restored (the record taken, `connected`
/// not sent yet) does not lose the session: it is written back, and the next attempt resumes.
#[tokio::test]
async fn a_drop_during_a_restore_keeps_the_session() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let (mut client, token) = resumable_rita(&hub).await;
    client.join("room-r").await;
    drop(client);
    kept(&redis, &token).await;
    redis.await_numsub("chat:room:room-r", 0).await;

    // The connection resets as soon as the record is taken: the restore still has to
    // subscribe rita's channel and the room's, and read the inbox and the history.
    let mut events = Box::pin(watch_record(&redis, &token).await);
    let query = format!("userId=rita&resume={token}&offset=0");
    let restoring = RawClient::connect(hub.port, &query).await;
    let taken = tokio::time::timeout(common::WAIT, futures_util::StreamExt::next(&mut events));
    let taken = taken.await.expect("a keyspace event in time");
    // `set`: the key now marks the restoring session (`del` before live marks existed).
    assert!(
        matches!(taken.as_deref(), Some("set" | "del")),
        "the record taken: {taken:?}"
    );
    reset(restoring);
    kept(&redis, &token).await;

    let mut chatter = hub.user("chatter").await;
    chatter.join("room-r").await;
    chat(&mut chatter, "missed").await;
    let mut client = resume_native(&hub, &token, 0).await;
    expect_chat(&mut client, "missed").await; // in the room again
}

/// Joining a room the session is already in keeps what the resume ring knows of the room: a
/// client that did not read what came before the second `joined` gets it again.
#[tokio::test]
async fn a_room_joined_again_keeps_its_place() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_WORKERS", "1")]).await;
    let mut chatter = hub.user("chatter").await;
    chatter.join("room-r").await;
    let (mut client, token) = resumable_rita(&hub).await;
    client.join("room-r").await;
    chat(&mut chatter, "c1").await;
    let c1 = client.recv_type("chat-message").await;
    assert_eq!(c1["data"]["message"], "c1");
    let after_c1 = c1["offset"].as_u64().unwrap();
    chat(&mut chatter, "c2").await;
    // Joined again without reading c2 (nor the `joined` that follows it).
    client
        .send(json!({"type": "join-room", "room": "room-r"}))
        .await;
    client.send(json!({"type": "ping", "id": 1})).await;
    while client.recv().await["type"] != "pong" {}
    drop(client);
    kept(&redis, &token).await;

    let mut client = resume_native(&hub, &token, after_c1).await;
    chat(&mut chatter, "c3").await;
    expect_chat(&mut client, "c2").await;
    expect_chat(&mut client, "c3").await;
}

/// In a resumable session `joined` has an offset: a client that read it (its history has
/// what was sent before) resumes after it and gets nothing twice.
#[tokio::test]
async fn joined_has_an_offset_and_a_client_that_read_it_gets_nothing_twice() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_WORKERS", "1")]).await;
    let mut chatter = hub.user("chatter").await;
    chatter.join("room-r").await;
    let (mut client, token) = resumable_rita(&hub).await;
    let first = client.join("room-r").await;
    let joined_at = first["offset"].as_u64().expect("`joined` has an offset");
    chat(&mut chatter, "c1").await;
    let c1 = client.recv_type("chat-message").await;
    assert!(c1["offset"].as_u64().unwrap() > joined_at, "{c1}");
    let again = client.join("room-r").await;
    assert_eq!(again["history"][0]["message"], "c1");
    let rejoined_at = again["offset"].as_u64().expect("`joined` has an offset");
    drop(client);
    kept(&redis, &token).await;

    let mut client = resume_native(&hub, &token, rejoined_at).await;
    chat(&mut chatter, "c2").await;
    expect_chat(&mut client, "c2").await;
}

/// A Pong the hub did not ask for proves nothing: the hub keeps what it needs to place an
/// offset the client has not confirmed.
#[tokio::test]
async fn pongs_nobody_asked_for_do_not_trim_the_resume_ring() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let (mut client, token) = resumable_rita(&hub).await;
    notify(&redis, "rita", "n1").await;
    expect_notification(&mut client, "n1").await;
    for _ in 0..2 {
        client.send_message(Message::Pong(Vec::new().into())).await;
    }
    client.send(json!({"type": "ping", "id": 1})).await;
    assert_eq!(
        client.recv_type("pong").await["id"],
        1,
        "the Pongs were handled"
    );
    drop(client);
    kept(&redis, &token).await;

    // As if n1 had not been read: it comes again.
    let mut client = resume_native(&hub, &token, 0).await;
    notify(&redis, "rita", "n2").await;
    expect_notification(&mut client, "n1").await;
    expect_notification(&mut client, "n2").await;
}

/// A client whose missed events were all outside the streams (an AI result) gets no replay on
/// its first resume, so its offset stays where it was: it can resume again from there.
#[tokio::test]
async fn a_client_can_resume_twice_from_an_offset_before_an_ai_result() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let (mut client, token) = resumable_rita(&hub).await;
    notify(&redis, "rita", "n1").await;
    let n1 = client.recv_type("notification").await;
    let offset = n1["offset"].as_u64().unwrap();
    let result = json!({"jobId": "j1", "userId": "rita", "status": "success", "result": "r"});
    redis.publish("ai:results", &result.to_string()).await;
    // Written to the old connection, never read by the client.
    client.recv_type("ai-result").await;
    drop(client);
    kept(&redis, &token).await;

    let client = resume_native(&hub, &token, offset).await;
    drop(client);
    kept(&redis, &token).await;
    let mut client = resume_native(&hub, &token, offset).await;
    notify(&redis, "rita", "n2").await;
    expect_notification(&mut client, "n2").await;
}

/// On Socket.IO, a `joined` emitted as an event carries its offset as its last argument, like
/// the other events (socket.io-client tracks it), and in its reply object.
#[tokio::test]
async fn a_socketio_joined_event_carries_its_offset_last() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let (mut ws, _) = sio_common::connect_with(hub.port, &json!({"userId": "rita"})).await;
    ws.send(r#"42["join-room","room-r"]"#).await;
    let joined = loop {
        let text = ws.text_skipping_pings().await;
        let event: Value = serde_json::from_str(text.strip_prefix("42").unwrap()).unwrap();
        if event[0] == "joined" {
            break event;
        }
    };
    let offset = joined[2].as_str().expect("the offset, last");
    assert_eq!(joined[1]["offset"].to_string(), offset, "{joined}");
}
