//! What the session resume tests share (native `/ws` and Socket.IO): notifications through
//! the inbox, chat that is surely in the history, and the resume records in Redis.

use serde_json::json;

use super::{eventually, notification, Client, Redis};

/// `FCALL relay_notify`, as a service sends a notification through the inbox.
pub async fn notify(redis: &Redis, user: &str, title: &str) {
    let _: (String, i64) = redis::cmd("FCALL")
        .arg("relay_notify")
        .arg(1)
        .arg(format!("inbox:{{user:notifications:{user}}}"))
        .arg(notification(user, title))
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

/// The `resume` token of a client that asked for a resumable session (its `connected`).
pub async fn resume_token(client: &mut Client) -> String {
    client.recv_type("connected").await["resume"]
        .as_str()
        .expect("a resume token")
        .to_owned()
}

/// Whether the resume record of `token` (a `pid`) is in Redis.
pub async fn record_exists(redis: &Redis, token: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(format!("sio:recovery:{token}"))
        .query_async::<i64>(&mut redis.conn().await)
        .await
        .unwrap()
        == 1
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
