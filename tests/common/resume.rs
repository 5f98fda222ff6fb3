//! What the session resume tests share (native `/ws` and Socket.IO): notifications through
//! the inbox, chat that is surely in the history, and the resume records in Redis.

use serde_json::{json, Value};

use super::{eventually, notification, Client, Hub, RawClient, Redis};

/// `FCALL relay_notify`, as a service sends a notification through the inbox.
pub async fn notify(redis: &Redis, user: &str, title: &str) {
    relay_notify(redis, user, notification(user, title)).await;
}

/// [`notify`] with a `message` of the caller's choice.
pub async fn notify_with(redis: &Redis, user: &str, title: &str, message: &str) {
    let payload = json!({"userId": user, "type": "info", "title": title, "message": message});
    relay_notify(redis, user, payload.to_string()).await;
}

async fn relay_notify(redis: &Redis, user: &str, payload: String) {
    redis
        .relay_notify(user, &payload)
        .await
        .expect("relay_notify");
}

/// A chat message from `sender` in `room-r`, once it is in the history (its copy came back).
pub async fn chat(sender: &mut Client, message: &str) {
    sender
        .send(json!({"type": "chat-message", "room": "room-r", "message": message}))
        .await;
    loop {
        if sender.recv_type("chat-message").await["data"]["message"] == message {
            return;
        }
    }
}

/// The `resume` token of a client that asked for a resumable session (its `connected`).
pub async fn resume_token(client: &mut Client) -> String {
    client.recv_type("connected").await["resume"]
        .as_str()
        .expect("a resume token")
        .to_owned()
}

/// What Redis holds under the resume key of `token` (a `pid`), as JSON.
pub async fn resume_key(redis: &Redis, token: &str) -> Option<serde_json::Value> {
    let raw: Option<String> = redis::cmd("GET")
        .arg(format!("sio:recovery:{token}"))
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    raw.map(|raw| serde_json::from_str(&raw).expect("resume keys hold JSON"))
}

/// Whether the session of `token` is kept in Redis (a record, not the mark of a live session).
pub async fn record_exists(redis: &Redis, token: &str) -> bool {
    resume_key(redis, token)
        .await
        .is_some_and(|v| v.get("live").is_none())
}

/// Whether the key of `token` marks a live session (its record was taken, or it never dropped).
pub async fn marked_live(redis: &Redis, token: &str) -> bool {
    resume_key(redis, token)
        .await
        .is_some_and(|v| v["live"] == true)
}

/// Waits until `hub` counted `n` sessions kept (once Redis answered the write and the
/// announcement: the record may be visible a little before).
pub async fn saves_counted(hub: &Hub, n: f64) {
    eventually("the saves counted", || async {
        let saved = hub
            .metric("hub_sio_recovery_saves_total{result=\"saved\"}")
            .await;
        (saved == n).then_some(())
    })
    .await;
}

/// Waits until the session of `token` is kept in Redis.
pub async fn kept(redis: &Redis, token: &str) {
    eventually("the session kept in Redis", || async {
        record_exists(redis, token).await.then_some(())
    })
    .await;
}

/// How a resuming client loses its connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Its TCP connection ends without a close frame.
    Drop,
    /// The hub it is connected to shuts down (SIGTERM).
    Shutdown,
}

/// Connects `rita` with `query` after `userId=rita&`; the client and its `connected`.
pub async fn rita(hub: &Hub, query: &str) -> (Client, Value) {
    let mut client = Client::connect(&hub.ws_url(&format!("userId=rita&{query}"))).await;
    let connected = client.recv_type("connected").await;
    (client, connected)
}

/// A resumable `rita` on a bare socket with a receive buffer of `rcvbuf` bytes, which reads
/// nothing after `connected` (nor answers pings); the client and its resume token.
pub async fn silent_rita(hub: &Hub, rcvbuf: u32) -> (RawClient, String) {
    let mut raw = RawClient::connect_with_rcvbuf(hub.port, "userId=rita&resume=true", rcvbuf).await;
    let connected: Value = serde_json::from_str(&raw.read_frames_until_text().await).unwrap();
    assert_eq!(connected["type"], "connected", "{connected}");
    let token = connected["resume"].as_str().expect("a resume token");
    (raw, token.to_owned())
}

/// A Socket.IO `rita` on a bare WebSocket with a receive buffer of `rcvbuf` bytes, which reads
/// nothing after the CONNECT reply; the client and its `pid`.
pub async fn silent_sio_rita(hub: &Hub, rcvbuf: u32) -> (RawClient, String) {
    let path = "/socket.io/?EIO=4&transport=websocket";
    let mut raw = RawClient::connect_to_with_rcvbuf(hub.port, path, rcvbuf).await;
    assert!(raw.read_frames_until_text().await.starts_with('0'), "open");
    raw.send_text(r#"40{"userId":"rita"}"#).await;
    let reply = raw.read_frames_until_text().await;
    let reply: Value =
        serde_json::from_str(reply.strip_prefix("40").expect("CONNECT reply")).unwrap();
    (raw, reply["pid"].as_str().expect("a pid").to_owned())
}

/// Ends a connection with a reset, as a dead network's connection ends for the hub.
pub fn reset(raw: RawClient) {
    raw.stream.set_zero_linger().unwrap();
    drop(raw);
}

/// Resumes `rita`'s native session `token` from `offset`; asserts it resumed.
pub async fn resume_native(hub: &Hub, token: &str, offset: u64) -> Client {
    let (client, connected) = rita(hub, &format!("resume={token}&offset={offset}")).await;
    assert_eq!(connected["resumed"], true, "{connected}");
    assert_eq!(connected["resume"], token, "{connected}");
    client
}

/// A resumable `rita` on `hub`; the client and its resume token.
pub async fn resumable_rita(hub: &Hub) -> (Client, String) {
    let (client, connected) = rita(hub, "resume=true").await;
    let token = connected["resume"].as_str().expect("a resume token");
    (client, token.to_owned())
}

/// The next frame of `client` is the notification titled `title`.
pub async fn expect_notification(client: &mut Client, title: &str) {
    let frame = client.recv_type("notification").await;
    assert_eq!(frame["data"]["title"], title, "{frame}");
}

/// The next frame of `client` is the chat message `message`.
pub async fn expect_chat(client: &mut Client, message: &str) {
    let frame = client.recv_type("chat-message").await;
    assert_eq!(frame["data"]["message"], message, "{frame}");
}
