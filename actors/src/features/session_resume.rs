//! Session resume (Socket.IO connection state recovery and the native protocol's `resume`,
//! both driven by the client core: [`crate::hub::client::ClientCore::connect`]): what a session
//! sent, kept small while it lives ([`Tracker`]), written to Redis when its transport drops
//! ([`Record`] under `sio:recovery:{pid}` for both ways in, with a TTL of the recovery
//! window), and turned back into per-stream cursors when the client comes back with its
//! private id (the native `resume` token) and last offset ([`plan`]).
//!
//! Streams are the user's notification inbox and the rooms' chat histories (Redis streams, ids
//! `<ms>-<seq>`). Every event the session sends gets the next offset (`seq`); the ones that
//! come from a stream also get a ring entry (offset, stream, the stream's cursor before it).
//! A client that read up to offset `o` saw, per stream, everything up to the `prev` of that
//! stream's first ring entry after `o` (or the stream's current cursor when there is none).
//! A pong proves the client read everything sent before the ping, so the ring is trimmed at
//! each pong; past [`RING_MAX`] entries the oldest are dropped and offsets before them can no
//! longer be recovered.

use std::{
    collections::VecDeque,
    fmt,
    net::IpAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, LazyLock,
    },
    time::Duration,
};

use redis::Script;
use serde::{Deserialize, Serialize};

use crate::{
    common::error::HubError,
    common::metrics::Metrics,
    connections::publisher::{retry_on_dead_connection, Publisher},
    features::resume_records::{self, Listed, RecordCaps},
};

use hub_wire::protocol::{MessageId, RoomId};

/// Most ring entries a session keeps between two pongs.
pub const RING_MAX: usize = 256;

/// What a client saw of one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Cursor {
    /// Everything up to this entry (an id that is in the stream).
    Seen(MessageId),
    /// Nothing of the stream yet: everything after this point (not an entry: the moment the
    /// session started reading it) is new to the client.
    After(MessageId),
}

impl From<Cursor> for String {
    fn from(c: Cursor) -> String {
        match c {
            Cursor::Seen(id) => id.to_string(),
            Cursor::After(id) => format!(">{id}"),
        }
    }
}

impl TryFrom<String> for Cursor {
    type Error = String;

    fn try_from(s: String) -> Result<Cursor, String> {
        let (after, id) = match s.strip_prefix('>') {
            Some(rest) => (true, rest),
            None => (false, s.as_str()),
        };
        let id = MessageId::parse(id).ok_or_else(|| format!("bad cursor `{s}`"))?;
        Ok(if after {
            Cursor::After(id)
        } else {
            Cursor::Seen(id)
        })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from(*self))
    }
}

/// One event sent from a stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// Its offset.
    pub seq: u64,
    /// Its room; `None` for the inbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<RoomId>,
    /// The stream's cursor before it.
    pub prev: Cursor,
}

/// What a live session keeps to be resumable. Allocated once per session when recovery is on;
/// its ring allocates only while events wait for a pong.
#[derive(Debug)]
pub struct Tracker {
    /// The private id (`pid`) the client holds.
    pub pid: Pid,
    /// The last offset given.
    pub seq: u64,
    /// Offsets below this can no longer be recovered.
    pub floor: u64,
    /// The offset at the previous pong: what was sent up to it has been read.
    mark: u64,
    /// The inbox cursor.
    pub inbox: Cursor,
    /// The rooms the session is in, with their cursors.
    pub rooms: Vec<(RoomId, Cursor)>,
    ring: VecDeque<Sent>,
}

impl Tracker {
    /// A fresh session's tracker: a new `pid`, its inbox read from `inbox`.
    pub fn new(inbox: Cursor) -> Tracker {
        Tracker {
            pid: new_pid(),
            seq: 0,
            floor: 0,
            mark: 0,
            inbox,
            rooms: Vec::new(),
            ring: VecDeque::new(),
        }
    }

    /// A tracker continuing a recovered session: same pid, offsets go on from the record's.
    pub fn resumed(pid: Pid, record: &Record, plan: &Plan) -> Tracker {
        Tracker {
            pid,
            seq: record.seq,
            floor: record.seq,
            mark: record.seq,
            inbox: plan.inbox,
            rooms: plan.rooms.clone(),
            ring: VecDeque::new(),
        }
    }

    /// The offset of the next event; `from` is its stream (room or inbox) and id, when it has
    /// one: the ring remembers it and the stream's cursor moves.
    pub fn next(&mut self, from: Option<(Option<&RoomId>, MessageId)>) -> u64 {
        self.seq += 1;
        let Some((room, id)) = from else {
            return self.seq;
        };
        let cursor = match room {
            None => Some(&mut self.inbox),
            Some(room) => self
                .rooms
                .iter_mut()
                .find(|(r, _)| r == room)
                .map(|(_, c)| c),
        };
        let Some(cursor) = cursor else {
            return self.seq;
        };
        let prev = std::mem::replace(cursor, Cursor::Seen(id));
        if self.ring.len() == RING_MAX {
            let dropped = self.ring.pop_front().expect("full");
            self.floor = self.floor.max(dropped.seq);
        }
        self.ring.push_back(Sent {
            seq: self.seq,
            room: room.cloned(),
            prev,
        });
        self.seq
    }

    /// A pong: everything sent before the previous pong has been read (the ping came after
    /// it); those entries are no longer needed.
    pub fn pong(&mut self) {
        let read = self.mark;
        while self.ring.front().is_some_and(|e| e.seq <= read) {
            self.ring.pop_front();
        }
        self.floor = self.floor.max(read);
        if self.ring.is_empty() {
            self.ring = VecDeque::new();
        }
        self.mark = self.seq;
    }

    /// The session joined `room`: the client has its history up to `cursor` (entries of an
    /// earlier membership no longer count).
    pub fn joined(&mut self, room: &RoomId, cursor: Cursor) {
        self.ring.retain(|e| e.room.as_ref() != Some(room));
        match self.rooms.iter_mut().find(|(r, _)| r == room) {
            Some((_, c)) => *c = cursor,
            None => self.rooms.push((room.clone(), cursor)),
        }
    }

    /// The session left `room`.
    pub fn left(&mut self, room: &RoomId) {
        self.ring.retain(|e| e.room.as_ref() != Some(room));
        self.rooms.retain(|(r, _)| r != room);
    }

    /// A resume that could not recover: the session starts over in no room.
    pub fn restart(&mut self) {
        self.pid = new_pid();
        self.rooms.clear();
        self.ring = VecDeque::new();
        self.floor = self.seq;
        self.mark = self.seq;
    }

    /// What to write to Redis for `user` when the transport drops.
    pub fn record(&self, user: &str) -> Record {
        Record {
            user: user.to_owned(),
            seq: self.seq,
            floor: self.floor,
            inbox: self.inbox,
            rooms: self.rooms.clone(),
            ring: self.ring.iter().cloned().collect(),
        }
    }
}

/// A dropped session, as kept in Redis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The user it was authenticated as.
    pub user: String,
    /// The last offset given.
    pub seq: u64,
    /// Offsets below this cannot be recovered.
    pub floor: u64,
    /// The inbox cursor after everything sent.
    pub inbox: Cursor,
    /// The rooms, with their cursors after everything sent.
    pub rooms: Vec<(RoomId, Cursor)>,
    /// What was sent from streams since the last pong, oldest first.
    pub ring: Vec<Sent>,
}

/// What a resumed session reads again: per stream, what the client saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The inbox cursor.
    pub inbox: Cursor,
    /// Each room with its cursor.
    pub rooms: Vec<(RoomId, Cursor)>,
}

/// The cursors of a client that read up to `offset` (0: no event yet), or `None` when that
/// cannot be known (the entries after it were dropped, or the offset was never given).
pub fn plan(record: &Record, offset: u64) -> Option<Plan> {
    if offset < record.floor || offset > record.seq {
        return None;
    }
    let first_after = |room: Option<&RoomId>| {
        record
            .ring
            .iter()
            .find(|e| e.seq > offset && e.room.as_ref() == room)
            .map(|e| e.prev)
    };
    Some(Plan {
        inbox: first_after(None).unwrap_or(record.inbox),
        rooms: record
            .rooms
            .iter()
            .map(|(room, cursor)| (room.clone(), first_after(Some(room)).unwrap_or(*cursor)))
            .collect(),
    })
}

/// A new private id: 128 random bits ([`crate::common::random::random_bits`]). Not a credential: a
/// resume also needs the same user's credentials.
pub fn new_pid() -> Pid {
    Pid(crate::common::random::random_bits())
}

/// A session's private id: 128 bits, written as 32 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pid(u128);

impl Pid {
    /// Parses 32 hex digits.
    pub fn parse(s: &str) -> Option<Pid> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(Pid)
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// The Redis key of a record.
pub fn key(pid: Pid) -> String {
    format!("sio:recovery:{pid}")
}

/// Records in Redis, kept for the recovery window.
#[derive(Clone)]
pub struct ResumeStore {
    publisher: Publisher,
    window: Duration,
    saving: Arc<AtomicUsize>,
    caps: RecordCaps,
    metrics: Option<Arc<Metrics>>,
}

impl ResumeStore {
    /// A store keeping records for `window` (not zero).
    pub fn new(publisher: Publisher, window: Duration) -> ResumeStore {
        ResumeStore {
            publisher,
            window,
            saving: Arc::default(),
            caps: RecordCaps::default(),
            metrics: None,
        }
    }

    /// Keeps at most `caps` records per user and per address (evictions counted in
    /// `metrics`).
    pub fn with_caps(mut self, caps: RecordCaps, metrics: Arc<Metrics>) -> ResumeStore {
        self.caps = caps;
        self.metrics = Some(metrics);
        self
    }

    /// Saves in flight (shutdown waits for them).
    pub fn saving(&self) -> usize {
        self.saving.load(Ordering::Relaxed)
    }

    /// Writes `record` under `pid` with the window as TTL, listed under its user and the
    /// client's address (`addr`); the oldest records past either cap are deleted
    /// ([`resume_records`]).
    pub async fn save(
        &self,
        pid: Pid,
        record: &Record,
        addr: Option<IpAddr>,
    ) -> Result<(), HubError> {
        self.saving.fetch_add(1, Ordering::Relaxed);
        let result = self.write(pid, record, addr).await;
        self.saving.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// Lists the record first, then writes it: a record that exists is always listed (so
    /// that deleting a user's records, or a room from them, finds it).
    async fn write(&self, pid: Pid, record: &Record, addr: Option<IpAddr>) -> Result<(), HubError> {
        let listed = Listed {
            user: &record.user,
            addr,
            window: self.window,
        };
        resume_records::list(
            &self.publisher,
            pid,
            listed,
            self.caps,
            self.metrics.as_deref(),
        )
        .await?;
        let json = serde_json::to_vec(record).expect("a record serializes");
        let mut cmd = redis::cmd("SET");
        cmd.arg(key(pid))
            .arg(json)
            .arg("PX")
            .arg(self.window.as_millis() as u64);
        let result: redis::RedisResult<()> = retry_on_dead_connection(|| {
            let mut conn = self.publisher.connection();
            let cmd = &cmd;
            async move { cmd.query_async(&mut conn).await }
        })
        .await;
        result.map_err(|e| HubError::Redis(format!("SET {}: {e}", key(pid))))
    }

    /// Deletes every record of `user` (`POST /api/users/{userId}/disconnect`); returns how
    /// many there were.
    pub async fn forget_user(&self, user: &str) -> Result<usize, HubError> {
        resume_records::forget_user(&self.publisher, user).await
    }

    /// Takes `room` out of every record of `user`; returns how many had it.
    pub async fn forget_room(&self, user: &str, room: &str) -> Result<usize, HubError> {
        resume_records::forget_room(&self.publisher, user, room).await
    }

    /// Takes the record of `pid` for `user`: deleted when it is that user's (one recovery
    /// per record), left in place when it is another user's (a `pid` is not a credential: a
    /// stranger cannot spend someone else's record).
    pub async fn take(&self, pid: Pid, user: &str) -> Result<Taken, HubError> {
        let mut invocation = TAKE.key(key(pid));
        invocation.arg(user);
        let taken: redis::Value = retry_on_dead_connection(|| {
            let mut conn = self.publisher.connection();
            let invocation = &invocation;
            async move { invocation.invoke_async(&mut conn).await }
        })
        .await
        .map_err(|e| HubError::Redis(format!("take {}: {e}", key(pid))))?;
        match taken {
            redis::Value::Nil => Ok(Taken::Nothing),
            redis::Value::Int(0) => Ok(Taken::OtherUser),
            redis::Value::BulkString(raw) => serde_json::from_slice(&raw)
                .map(Taken::Record)
                .map_err(|e| HubError::Redis(format!("{}: bad record: {e}", key(pid)))),
            other => Err(HubError::Redis(format!(
                "take {}: unexpected answer {other:?}",
                key(pid)
            ))),
        }
    }
}

/// What [`ResumeStore::take`] found.
#[derive(Debug)]
pub enum Taken {
    /// No record: never written, expired, or already used.
    Nothing,
    /// The record of another user (left in place).
    OtherUser,
    /// The user's record (now deleted).
    Record(Record),
}

/// KEYS[1] the record. ARGV[1] the user asking. The record if it is that user's (and deletes
/// it), 0 if it is another user's, nil if there is none.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local ok, record = pcall(cjson.decode, raw)
if ok and type(record) == 'table' and record.user ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return raw
"#,
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64) -> MessageId {
        MessageId { ms, seq: 0 }
    }

    fn room(name: &str) -> RoomId {
        name.into()
    }

    /// A tracker in room `a` (history up to 10) with inbox cursor after 1, having sent:
    /// 1 inbox 100, 2 room a 11, 3 no stream, 4 room a 12, 5 inbox 101.
    fn busy_tracker() -> Tracker {
        let mut t = Tracker::new(Cursor::After(id(1)));
        t.joined(&room("a"), Cursor::Seen(id(10)));
        assert_eq!(t.next(Some((None, id(100)))), 1);
        assert_eq!(t.next(Some((Some(&room("a")), id(11)))), 2);
        assert_eq!(t.next(None), 3);
        assert_eq!(t.next(Some((Some(&room("a")), id(12)))), 4);
        assert_eq!(t.next(Some((None, id(101)))), 5);
        t
    }

    #[test]
    fn cursors_are_the_stream_ids_before_the_first_unread_offset() {
        let record = busy_tracker().record("u");
        let at = |offset| plan(&record, offset).expect("recoverable");
        assert_eq!(at(0).inbox, Cursor::After(id(1)));
        assert_eq!(at(0).rooms, vec![(room("a"), Cursor::Seen(id(10)))]);
        assert_eq!(at(1).inbox, Cursor::Seen(id(100)));
        assert_eq!(at(1).rooms, vec![(room("a"), Cursor::Seen(id(10)))]);
        assert_eq!(at(3).rooms, vec![(room("a"), Cursor::Seen(id(11)))]);
        assert_eq!(at(4).inbox, Cursor::Seen(id(100)));
        assert_eq!(at(4).rooms, vec![(room("a"), Cursor::Seen(id(12)))]);
        assert_eq!(at(5).inbox, Cursor::Seen(id(101)));
        assert_eq!(plan(&record, 6), None, "an offset never given");
    }

    #[test]
    fn a_pong_trims_what_the_previous_pong_proved_read() {
        let mut t = busy_tracker();
        t.pong(); // proves nothing yet (mark was 0); marks 5
        assert_eq!(plan(&t.record("u"), 0).unwrap().inbox, Cursor::After(id(1)));
        t.next(Some((Some(&room("a")), id(13))));
        t.pong(); // everything up to 5 was read
        let record = t.record("u");
        assert_eq!(record.ring.len(), 1);
        assert_eq!(plan(&record, 4), None, "before the floor");
        let at5 = plan(&record, 5).unwrap();
        assert_eq!(at5.inbox, Cursor::Seen(id(101)));
        assert_eq!(at5.rooms, vec![(room("a"), Cursor::Seen(id(12)))]);
        t.pong();
        assert!(t.record("u").ring.is_empty());
        assert_eq!(t.ring.capacity(), 0, "an empty ring holds no memory");
    }

    #[test]
    fn an_overflowing_ring_makes_older_offsets_unrecoverable() {
        let mut t = Tracker::new(Cursor::After(id(1)));
        for i in 0..RING_MAX as u64 + 2 {
            t.next(Some((None, id(100 + i))));
        }
        let record = t.record("u");
        assert_eq!(record.ring.len(), RING_MAX);
        assert_eq!(plan(&record, 1), None);
        assert_eq!(plan(&record, 2).unwrap().inbox, Cursor::Seen(id(101)));
    }

    #[test]
    fn joining_again_or_leaving_forgets_the_rooms_entries() {
        let mut t = busy_tracker();
        t.joined(&room("a"), Cursor::Seen(id(12)));
        let record = t.record("u");
        assert_eq!(
            plan(&record, 0).unwrap().rooms,
            vec![(room("a"), Cursor::Seen(id(12)))]
        );
        t.left(&room("a"));
        assert!(plan(&t.record("u"), 0).unwrap().rooms.is_empty());
        // Events of a room the session is not in move nothing.
        t.next(Some((Some(&room("b")), id(50))));
        assert!(t.record("u").rooms.is_empty());
    }

    #[test]
    fn records_and_cursors_round_trip_through_json() {
        let record = busy_tracker().record("u");
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains(r#""inbox":"101-0""#), "{json}");
        assert!(json.contains(r#""prev":">1-0""#), "{json}");
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), record);
        let pid = new_pid();
        assert_eq!(Pid::parse(&pid.to_string()), Some(pid));
        assert_ne!(new_pid(), pid);
        assert_eq!(Pid::parse("../etc"), None);
        assert_eq!(Pid::parse(&"g".repeat(32)), None);
    }
}
