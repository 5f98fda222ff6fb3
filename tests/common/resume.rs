//! What the session resume tests share (native `/ws` and Socket.IO): notifications through
//! the inbox, chat that is surely in the history, and the resume records in Redis.

use serde_json::json;

use super::{eventually, notification, Client, Redis};

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
    let _: (String, i64) = redis::cmd("FCALL")
        .arg("relay_notify")
        .arg(1)
        .arg(format!("inbox:{{user:notifications:{user}}}"))
        .arg(payload)
        .query_async(&mut redis.conn().await)
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
