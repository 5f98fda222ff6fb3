//! Native `/ws` session resume against real hubs and Redis: a client that asked for a
//! resumable session (`resume=true`) loses its TCP connection without a close frame,
//! notifications and chat messages are sent meanwhile, and it comes back with its `resume`
//! token and the last `offset` it saw, to the same instance or another one: `resumed` true,
//! its room back without `join-room`, everything it missed once and in order, then live
//! events. Past the window, with a bad token or another user's, `resumed` is false; a token
//! presented again while its session lives takes the session over, and is spent by a goodbye.

mod common;

use common::{
    eventually, hub,
    resume::{
        chat, kept, marked_live, notify, record_exists, resume_key, rita, saves_counted, Loss,
    },
    Client, Hub, Redis,
};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

/// A resuming client: what it saw (notification titles and chat messages, in order) and the
/// offsets of its events.
#[derive(Default)]
struct Seen {
    events: Vec<String>,
    offsets: Vec<u64>,
}

impl Seen {
    /// The next notification or chat message; checks that every event frame carries a
    /// growing offset (the client skips presence frames).
    async fn next(&mut self, client: &mut Client) -> String {
        let frame = client.recv().await;
        let offset = frame["offset"]
            .as_u64()
            .unwrap_or_else(|| panic!("an offset in {frame}"));
        if let Some(last) = self.offsets.last() {
            assert!(offset > *last, "offsets grow: {last} then {frame}");
        }
        self.offsets.push(offset);
        let event = match frame["type"].as_str().unwrap() {
            "notification" => format!("n:{}", frame["data"]["title"].as_str().unwrap()),
            "chat-message" => format!("c:{}", frame["data"]["message"].as_str().unwrap()),
            other => panic!("unexpected {other}: {frame}"),
        };
        self.events.push(event.clone());
        event
    }

    /// Reads until `event`.
    async fn until(&mut self, client: &mut Client, event: &str) {
        while self.next(client).await != event {}
    }

    fn last_offset(&self) -> u64 {
        *self.offsets.last().expect("an event seen")
    }
}

/// Connects to `first`, loses the connection, sends while the client is away, resumes on
/// `then`; checks everything missed came once and in order, and the room is back.
async fn resumes_everything(redis: &Redis, first: &Hub, then: &Hub, loss: Loss) {
    let mut chatter = Client::connect(&then.ws_url("userId=chatter")).await;
    chatter.recv_type("connected").await;
    chatter.join("room-r").await;

    let (mut client, connected) = rita(first, "resume=true").await;
    let token = connected["resume"]
        .as_str()
        .expect("a resume token")
        .to_owned();
    assert_eq!(token.len(), 32, "{connected}");
    assert!(connected.get("resumed").is_none(), "{connected}");
    client.join("room-r").await;
    let mut seen = Seen::default();
    notify(redis, "rita", "n1").await;
    seen.until(&mut client, "n:n1").await;
    chat(&mut chatter, "c1").await;
    seen.until(&mut client, "c:c1").await;

    match loss {
        Loss::Drop => drop(client),
        Loss::Shutdown => {
            first.signal(libc::SIGTERM);
            assert_eq!(client.expect_close().await, common::Ending::Close(1001));
        }
    }
    kept(redis, &token).await;
    if loss == Loss::Drop {
        saves_counted(first, 1.0).await;
    }
    notify(redis, "rita", "n2").await;
    chat(&mut chatter, "c2").await;
    notify(redis, "rita", "n3").await;

    let query = format!("resume={token}&offset={}", seen.last_offset());
    let (mut client, connected) = rita(then, &query).await;
    assert_eq!(connected["resumed"], true, "{connected}");
    assert_eq!(connected["resume"], token, "the same token: {connected}");
    assert!(
        marked_live(redis, &token).await,
        "the record was taken: the key marks the live session"
    );
    // In the room again without joining it: live messages arrive, and it may speak.
    chat(&mut chatter, "c4").await;
    notify(redis, "rita", "end").await;
    seen.until(&mut client, "n:end").await;
    client
        .send(json!({"type": "chat-message", "room": "room-r", "message": "back"}))
        .await;
    seen.until(&mut client, "c:back").await;

    let events = |prefix: &str| -> Vec<&str> {
        seen.events
            .iter()
            .filter_map(|e| e.strip_prefix(prefix))
            .collect()
    };
    assert_eq!(events("n:"), ["n1", "n2", "n3", "end"]);
    assert_eq!(events("c:"), ["c1", "c2", "c4", "back"]);
    assert_eq!(
        then.metric("hub_sio_recoveries_total{result=\"recovered\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_dropped_client_resumes_everything_on_the_same_instance() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    resumes_everything(&redis, &hub, &hub, Loss::Drop).await;
}

#[tokio::test]
async fn a_dropped_client_resumes_everything_on_another_instance() {
    let redis = Redis::start().await;
    let first = hub(&redis, &[]).await;
    let second = hub(&redis, &[]).await;
    resumes_everything(&redis, &first, &second, Loss::Drop).await;
}

#[tokio::test]
async fn a_client_of_an_instance_that_shuts_down_resumes_on_another() {
    let redis = Redis::start().await;
    let first = hub(&redis, &[]).await;
    let second = hub(&redis, &[]).await;
    resumes_everything(&redis, &first, &second, Loss::Shutdown).await;
}

#[tokio::test]
async fn an_earlier_offset_gets_what_followed_it_again() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut chatter = Client::connect(&hub.ws_url("userId=chatter")).await;
    chatter.recv_type("connected").await;
    chatter.join("room-r").await;
    let (mut client, connected) = rita(&hub, "resume=true").await;
    let token = connected["resume"].as_str().unwrap().to_owned();
    client.join("room-r").await;
    let mut seen = Seen::default();
    notify(&redis, "rita", "n1").await;
    seen.until(&mut client, "n:n1").await;
    let after_n1 = seen.last_offset();
    chat(&mut chatter, "c1").await;
    seen.until(&mut client, "c:c1").await;
    notify(&redis, "rita", "n2").await;
    seen.until(&mut client, "n:n2").await;
    drop(client);
    kept(&redis, &token).await;

    // As if the client had read nothing after n1: c1 and n2 come again, n1 does not.
    let (mut client, connected) = rita(&hub, &format!("resume={token}&offset={after_n1}")).await;
    assert_eq!(connected["resumed"], true, "{connected}");
    let mut again = Seen::default();
    notify(&redis, "rita", "end").await;
    again.until(&mut client, "n:end").await;
    assert_eq!(again.events, ["n:n2", "c:c1", "n:end"]);
}

#[tokio::test]
async fn a_token_resumes_only_its_own_users_session_takes_a_live_one_over_and_is_spent_by_a_goodbye(
) {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let (client, connected) = rita(&hub, "resume=true").await;
    let token = connected["resume"].as_str().unwrap().to_owned();
    drop(client);
    kept(&redis, &token).await;

    let mut mallory = Client::connect(&hub.ws_url(&format!("userId=mallory&resume={token}"))).await;
    let connected = mallory.recv_type("connected").await;
    assert_eq!(connected["resumed"], false, "{connected}");
    assert_ne!(connected["resume"], token, "a fresh token: {connected}");
    assert!(
        record_exists(&redis, &token).await,
        "nor does it spend the record"
    );

    let (mut first, connected) = rita(&hub, &format!("resume={token}&offset=0")).await;
    assert_eq!(connected["resumed"], true, "{connected}");
    let (late, connected) = rita(&hub, &format!("resume={token}&offset=0")).await;
    assert_eq!(
        connected["resumed"], true,
        "presented again while its session lives, it takes the session over: {connected}"
    );
    assert_eq!(first.expect_close().await, common::Ending::Close(4004));
    late.close().await;
    eventually("the goodbye to spend the token", || async {
        resume_key(&redis, &token).await.is_none().then_some(())
    })
    .await;
    let (_spent, connected) = rita(&hub, &format!("resume={token}&offset=0")).await;
    assert_eq!(connected["resumed"], false, "{connected}");
    assert_eq!(
        hub.metric("hub_sio_recoveries_total{result=\"expired\"}")
            .await,
        1.0
    );

    let (_bad, connected) = rita(&hub, "resume=not-a-token").await;
    assert_eq!(connected["resumed"], false, "{connected}");
    assert_eq!(
        hub.metric("hub_sio_recoveries_total{result=\"refused\"}")
            .await,
        2.0,
        "another user's token and a bad one"
    );
}

#[tokio::test]
async fn after_the_window_the_client_connects_anew() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_SIO_RECOVERY_SECS", "1")]).await;
    let (mut client, connected) = rita(&hub, "resume=true").await;
    let token = connected["resume"].as_str().unwrap().to_owned();
    client.join("room-r").await;
    drop(client);
    kept(&redis, &token).await;
    eventually("the record to expire", || async {
        (!record_exists(&redis, &token).await).then_some(())
    })
    .await;

    let (mut client, connected) = rita(&hub, &format!("resume={token}&offset=0")).await;
    assert_eq!(connected["resumed"], false, "{connected}");
    assert_ne!(connected["resume"], token, "{connected}");
    client
        .send(json!({"type": "chat-message", "room": "room-r", "message": "hi"}))
        .await;
    client.expect_error("not_in_room").await;
}

#[tokio::test]
async fn clients_that_do_not_ask_get_plain_frames() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut plain = Client::connect(&hub.ws_url("userId=plain")).await;
    let connected = plain.recv_type("connected").await;
    assert!(connected.get("resume").is_none(), "{connected}");
    notify(&redis, "plain", "hello").await;
    let frame = plain.recv_type("notification").await;
    assert!(frame.get("offset").is_none(), "{frame}");

    let off = common::hub(&redis, &[("HUB_SIO_RECOVERY_SECS", "0")]).await;
    let mut asked = Client::connect(&off.ws_url("userId=plain&resume=true")).await;
    let connected = asked.recv_type("connected").await;
    assert!(
        connected.get("resume").is_none(),
        "resume is off: {connected}"
    );
    let token = "0".repeat(32);
    let mut back = Client::connect(&off.ws_url(&format!("userId=plain&resume={token}"))).await;
    let connected = back.recv_type("connected").await;
    assert_eq!(connected["resumed"], false, "{connected}");
    notify(&redis, "plain", "again").await;
    let frame = back.recv_type("notification").await;
    assert!(frame.get("offset").is_none(), "{frame}");
}

const SECRET: &str = "test-secret-of-at-least-32-bytes";

fn jwt(sub: &str) -> String {
    let claims = json!({"sub": sub, "exp": common::unix_now() + 600});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_auth_frame_asks_for_and_resumes_a_session() {
    let redis = Redis::start().await;
    // With tokens, rooms are closed unless something grants them: room-r is public here.
    let env = [("HUB_JWT_SECRET", SECRET), ("HUB_PUBLIC_ROOMS", "room-r")];
    let hub = hub(&redis, &env).await;
    let mut client = Client::connect(&hub.ws_url("")).await;
    client
        .send(json!({"type": "auth", "token": jwt("tess"), "resume": true}))
        .await;
    let token = client.recv_type("connected").await["resume"]
        .as_str()
        .expect("a resume token")
        .to_owned();
    client.join("room-r").await;
    notify(&redis, "tess", "n1").await;
    let offset = client.recv_type("notification").await["offset"]
        .as_u64()
        .expect("an offset");
    drop(client);
    kept(&redis, &token).await;
    notify(&redis, "tess", "n2").await;

    let mut client = Client::connect(&hub.ws_url("")).await;
    client
        .send(json!({"type": "auth", "token": jwt("tess"), "resume": token, "offset": offset}))
        .await;
    let connected = client.recv_type("connected").await;
    assert_eq!(connected["resumed"], true, "{connected}");
    let missed = client.recv_type("notification").await;
    assert_eq!(missed["data"]["title"], "n2");
    assert!(missed["offset"].as_u64().unwrap() > offset, "{missed}");
    client
        .send(json!({"type": "leave-room", "room": "room-r", "id": 1}))
        .await;
    assert_eq!(client.recv_type("left").await["id"], 1, "the room was back");
}
