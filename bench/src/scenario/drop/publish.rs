//! The drop test's senders: notifications through the inbox (`POST /api/notify`) and chat
//! messages through the history (`POST /api/chat/{room}`), the two paths a service uses and
//! the two streams a resume replays. Each sender task owns the users and rooms whose index is
//! its own modulo the task count and posts one request at a time, so a stream's order in Redis
//! is the order of its sequence numbers. A request is sent once (never retried): one without
//! an answer may or may not have run, and is reported apart.

use std::{
    cell::{Cell, RefCell},
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant},
};

use crate::{http::HttpConn, sys};

use super::CHAT_MARK;

/// One message sent: its sequence (chat ones with [`CHAT_MARK`]), its user or room index
/// and the answer's status (0: no answer).
#[derive(Clone, Copy)]
pub struct Sent {
    /// Marker `bs`.
    pub seq: u64,
    /// User index (notification) or room index (chat).
    pub to: u32,
    /// HTTP status, 0 when none came.
    pub status: u16,
}

/// What the senders share.
pub struct Senders {
    /// The hub's HTTP address.
    pub hub: SocketAddr,
    /// Its `HUB_API_KEY`.
    pub key: String,
    /// Users (notification targets).
    pub users: usize,
    /// Rooms.
    pub rooms: usize,
    /// Notifications per second, all tasks together.
    pub notify_rate: f64,
    /// Chat messages per second, all tasks together.
    pub chat_rate: f64,
    /// Set to stop.
    pub stop: Cell<bool>,
    /// Next notification sequence.
    pub next_notification: Cell<u64>,
    /// Next chat sequence.
    pub next_chat: Cell<u64>,
    /// Everything sent.
    pub sent: RefCell<Vec<Sent>>,
    /// The first failures (status and body, or the error).
    pub failures: RefCell<Vec<String>>,
}

/// Sender task `h` of `tasks`, until [`Senders::stop`].
pub async fn sender(s: Rc<Senders>, h: usize, tasks: usize) {
    let users: Vec<usize> = (h..s.users).step_by(tasks).collect();
    let rooms: Vec<usize> = (h..s.rooms).step_by(tasks).collect();
    let (notify_rate, chat_rate) = (
        if users.is_empty() {
            0.0
        } else {
            s.notify_rate / tasks as f64
        },
        if rooms.is_empty() {
            0.0
        } else {
            s.chat_rate / tasks as f64
        },
    );
    let mut http = HttpConn::new(s.hub);
    let start = Instant::now();
    let (mut notified, mut chatted) = (0u64, 0u64);
    while !s.stop.get() {
        let elapsed = start.elapsed().as_secs_f64();
        let notify_due = (elapsed * notify_rate) as u64;
        let chat_due = (elapsed * chat_rate) as u64;
        let notify_behind = notify_due.saturating_sub(notified) as f64 / notify_rate.max(1e-9);
        let chat_behind = chat_due.saturating_sub(chatted) as f64 / chat_rate.max(1e-9);
        if notify_due <= notified && chat_due <= chatted {
            let next = |done: u64, rate: f64| {
                if rate > 0.0 {
                    (done + 1) as f64 / rate
                } else {
                    f64::INFINITY
                }
            };
            let at = next(notified, notify_rate).min(next(chatted, chat_rate));
            let wait = (at - elapsed).clamp(0.0, 0.05);
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            continue;
        }
        let bt = sys::now_us();
        let (seq, to, path, body) = if notify_behind >= chat_behind {
            let seq = s.next_notification.get();
            s.next_notification.set(seq + 1);
            let user = users[notified as usize % users.len()];
            notified += 1;
            let body = format!(
                r#"{{"userId":"d{user}","type":"drop","title":"Drop","message":"@bt={bt}@bs={seq}@"}}"#
            );
            (seq, user, "/api/notify".to_string(), body)
        } else {
            let seq = CHAT_MARK | s.next_chat.get();
            s.next_chat.set(s.next_chat.get() + 1);
            let room = rooms[chatted as usize % rooms.len()];
            chatted += 1;
            let body =
                format!(r#"{{"userId":"0","username":"bench","message":"@bt={bt}@bs={seq}@"}}"#);
            (seq, room, format!("/api/chat/dr-{room}"), body)
        };
        let status = match http.post_once(&path, &body, Some(&s.key)).await {
            Ok(r) => {
                if r.status != 202 {
                    note(
                        &s,
                        format!("{path}: {} {}", r.status, String::from_utf8_lossy(&r.body)),
                    );
                }
                r.status
            }
            Err(e) => {
                note(&s, format!("{path}: {e}"));
                0
            }
        };
        s.sent.borrow_mut().push(Sent {
            seq,
            to: to as u32,
            status,
        });
    }
}

fn note(s: &Senders, text: String) {
    let mut f = s.failures.borrow_mut();
    if f.len() < 5 {
        f.push(text);
    }
}
