//! Session resume (Socket.IO connection state recovery and the native protocol's `resume`,
//! both driven by the client core: [`crate::hub::client::ClientCore::connect`]): what a session
//! sent, kept small while it lives ([`Tracker`]), written to Redis when its transport drops
//! ([`Record`] under `sio:recovery:{pid}` for both ways in, with a TTL of the recovery
//! window), and turned back into per-stream cursors when the client comes back with its
//! private id (the native `resume` token) and last offset ([`plan`]).
//!
//! Streams are the user's notification inbox and the rooms' chat histories (Redis streams, ids
//! `<ms>-<seq>`), and the chunks of the user's jobs (by chunk seq, [`job_cursors`]). Every event the session sends gets the next offset (`seq`); the ones that
//! come from a stream also get a ring entry (offset, stream, the stream's cursor before it),
//! and so does a `joined` for a room the session was already in (its history moves the room's
//! cursor). A client that read up to offset `o` saw, per stream, everything up to the `prev`
//! of that stream's first ring entry after `o` (or the stream's current cursor when there is
//! none).
//!
//! The ring is trimmed by proofs: a ping carries the offset and the bytes sent when it was
//! sent ([`Proof`]), and its pong proves the client read everything before it. The session
//! never has more than [`RING_MAX`] ring entries, nor more than a window of bytes, that the
//! client has not proven ([`Tracker::has_room`]): what comes beyond waits in the session until
//! a pong, so the offset a client comes back with can always be placed, however much was
//! written into a connection that died silently.

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
    features::job_cursors::{self, ChunkSent, JobCursors},
    features::resume_records::{self, Listed, RecordCaps},
};

use hub_wire::protocol::{HubCommand, HubMessage, MessageId, RoomId};

/// Most ring entries (stream events the client has not proven it read) a session keeps.
pub const RING_MAX: usize = 256;

/// How long the mark of a live resumable session stays in Redis (it is replaced by the
/// session's record when the session is kept, deleted when it ends otherwise; a mark left by
/// a killed instance goes after this).
pub const LIVE_TTL: Duration = Duration::from_secs(24 * 3600);

/// What a pong proves: the offset and the bytes a session had sent when it sent the ping the
/// pong answers. A native ping carries it as its payload ([`Proof::to_bytes`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Proof {
    /// The last offset given before the ping.
    pub seq: u64,
    /// Bytes of events sent before the ping.
    pub bytes: u64,
}

impl Proof {
    /// The 16-byte ping payload.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..].copy_from_slice(&self.bytes.to_be_bytes());
        out
    }

    /// Reads a pong's payload; `None` for anything but a 16-byte payload (an unsolicited pong
    /// proves nothing).
    pub fn parse(payload: &[u8]) -> Option<Proof> {
        let payload: &[u8; 16] = payload.try_into().ok()?;
        let (seq, bytes) = payload.split_at(8);
        Some(Proof {
            seq: u64::from_be_bytes(seq.try_into().ok()?),
            bytes: u64::from_be_bytes(bytes.try_into().ok()?),
        })
    }
}

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
/// its ring allocates only while events wait for a proof.
#[derive(Debug)]
pub struct Tracker {
    /// The private id (`pid`) the client holds.
    pub pid: Pid,
    /// The last offset given.
    pub seq: u64,
    /// Offsets below this can no longer be recovered.
    pub floor: u64,
    /// Bytes of events sent so far.
    sent: u64,
    /// What the client proved it read.
    proved: Proof,
    /// A proof was asked for and has not come yet.
    asking: bool,
    /// The inbox cursor.
    pub inbox: Cursor,
    /// The rooms the session is in, with their cursors.
    pub rooms: Vec<(RoomId, Cursor)>,
    ring: VecDeque<Sent>,
    /// The jobs that streamed to the session, with their cursors and ring entries.
    jobs: JobCursors,
}

impl Tracker {
    /// A fresh session's tracker: a new `pid`, its inbox read from `inbox`.
    pub fn new(inbox: Cursor) -> Tracker {
        Tracker::at(new_pid(), 0, 0, inbox, Vec::new())
    }

    fn at(pid: Pid, seq: u64, floor: u64, inbox: Cursor, rooms: Vec<(RoomId, Cursor)>) -> Tracker {
        Tracker {
            pid,
            seq,
            floor,
            sent: 0,
            proved: Proof {
                seq: floor,
                bytes: 0,
            },
            asking: false,
            inbox,
            rooms,
            ring: VecDeque::new(),
            jobs: JobCursors::default(),
        }
    }

    /// A tracker continuing a recovered session whose client read up to `offset`: same pid,
    /// offsets go on from the record's. Any offset from `offset` on places the client at the
    /// plan's cursors (the events after it were never seen on the new connection), so a
    /// client whose missed events were all outside the streams (not replayed: its offset
    /// stays) can resume again.
    pub fn resumed(pid: Pid, record: &Record, plan: &Plan, offset: u64) -> Tracker {
        let mut t = Tracker::at(pid, record.seq, offset, plan.inbox, plan.rooms.clone());
        t.jobs = JobCursors::resumed(plan.jobs.clone());
        t
    }

    /// The offset of the next event of `bytes`; `from` is its stream (room or inbox) and id,
    /// when it has one: the ring remembers it and the stream's cursor moves.
    pub fn next(&mut self, from: Option<(Option<&RoomId>, MessageId)>, bytes: usize) -> u64 {
        self.seq += 1;
        self.sent += bytes as u64;
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
        self.remember(room.cloned(), prev);
        self.seq
    }

    /// The offset of a `joined` reply of `bytes` that gives the client `room`'s history up to
    /// `cursor`. Joining a room the session is already in moves the room's cursor like an
    /// event: a client that did not read this `joined` resumes from the cursor before it.
    pub fn joined(&mut self, room: &RoomId, cursor: Cursor, bytes: usize) -> u64 {
        self.seq += 1;
        self.sent += bytes as u64;
        match self.rooms.iter_mut().find(|(r, _)| r == room) {
            Some((_, c)) => {
                let prev = std::mem::replace(c, cursor);
                self.remember(Some(room.clone()), prev);
            }
            None => self.rooms.push((room.clone(), cursor)),
        }
        self.seq
    }

    /// The offset of an `ai-chunk` of `bytes`: chunk `seq` (the last one, for a merged
    /// frame) of `job`. It takes a ring entry and moves the job's cursor.
    pub fn chunk(&mut self, job: &str, seq: u64, bytes: usize) -> u64 {
        self.seq += 1;
        self.sent += bytes as u64;
        self.make_room();
        self.jobs.sent(self.seq, job, seq);
        self.seq
    }

    fn remember(&mut self, room: Option<RoomId>, prev: Cursor) {
        self.make_room();
        self.ring.push_back(Sent {
            seq: self.seq,
            room,
            prev,
        });
    }

    /// Ring entries of every stream.
    fn ring_len(&self) -> usize {
        self.ring.len() + self.jobs.ring_len()
    }

    /// Drops the oldest ring entry when the ring is full. Not reached while the session waits
    /// for proofs at `RING_MAX` ([`Tracker::has_room`]).
    fn make_room(&mut self) {
        if self.ring_len() < RING_MAX {
            return;
        }
        let stream = self.ring.front().map(|e| e.seq);
        let dropped = match (stream, self.jobs.oldest()) {
            (Some(s), Some(j)) if j < s => self.jobs.drop_oldest(),
            (None, Some(_)) => self.jobs.drop_oldest(),
            _ => self.ring.pop_front().map(|e| e.seq),
        };
        self.floor = self.floor.max(dropped.unwrap_or(0));
    }

    /// Whether an event of `bytes` (`stream`: one that takes a ring entry) may be sent now: at
    /// most [`RING_MAX`] ring entries and `window` bytes unproven (a single larger event goes
    /// when everything before it is proven).
    pub fn has_room(&self, bytes: usize, stream: bool, window: usize) -> bool {
        if stream && self.ring_len() >= RING_MAX {
            return false;
        }
        let unproven = self.sent - self.proved.bytes;
        unproven == 0 || unproven + bytes as u64 <= window as u64
    }

    /// Whether to ask the client for a proof now (a ping): none is on its way, and the
    /// session is `blocked` or half of its ring or of `window` is unproven.
    pub fn should_ask(&self, blocked: bool, window: usize) -> bool {
        let unproven = self.sent - self.proved.bytes;
        !self.asking
            && self.seq > self.proved.seq
            && (blocked || self.ring_len() >= RING_MAX / 2 || unproven >= window as u64 / 2)
    }

    /// A proof was asked for (a ping is on its way).
    pub fn asked(&mut self) {
        self.asking = true;
    }

    /// What a ping sent now asks the client to prove.
    pub fn proof_point(&self) -> Proof {
        Proof {
            seq: self.seq,
            bytes: self.sent,
        }
    }

    /// A pong answering a ping that carried `proof`: the client read everything sent before
    /// the ping; those ring entries are no longer needed.
    pub fn prove(&mut self, proof: Proof) {
        self.asking = false;
        let seq = proof.seq.min(self.seq);
        self.proved.bytes = self.proved.bytes.max(proof.bytes.min(self.sent));
        if seq <= self.proved.seq {
            return;
        }
        self.proved.seq = seq;
        while self.ring.front().is_some_and(|e| e.seq <= seq) {
            self.ring.pop_front();
        }
        self.jobs.proved(seq);
        self.floor = self.floor.max(seq);
        if self.ring.is_empty() {
            self.ring = VecDeque::new();
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
        self.jobs.clear_ring();
        self.floor = self.seq;
        self.proved = self.proof_point();
    }

    /// What to write to Redis for `user` when the transport drops.
    pub fn record(&self, user: &str) -> Record {
        let (jobs, chunks) = self.jobs.record();
        Record {
            user: user.to_owned(),
            seq: self.seq,
            floor: self.floor,
            inbox: self.inbox,
            rooms: self.rooms.clone(),
            ring: self.ring.iter().cloned().collect(),
            jobs,
            chunks,
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
    /// The jobs that streamed to the session, with their cursors (the last chunk seq sent),
    /// least recently streamed first. Absent in records of hubs before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<(String, u64)>,
    /// The chunks sent since the last pong, oldest first (apart from `ring`, which a hub
    /// before it reads).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkSent>,
}

/// What a resumed session reads again: per stream, what the client saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The inbox cursor.
    pub inbox: Cursor,
    /// Each room with its cursor.
    pub rooms: Vec<(RoomId, Cursor)>,
    /// Each job with the last chunk seq the client read.
    pub jobs: Vec<(String, u64)>,
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
        jobs: job_cursors::plan(&record.jobs, &record.chunks, offset),
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

    /// Writes `record` under `pid` with the window as TTL (replacing the session's live
    /// mark), listed under its user and the client's address (`addr`; the oldest records past
    /// either cap are deleted, [`resume_records`]), then tells the user's channel it was kept
    /// (`takeover` with `kept`): a connection waiting to resume it takes it now.
    pub async fn save(
        &self,
        pid: Pid,
        record: &Record,
        addr: Option<IpAddr>,
    ) -> Result<(), HubError> {
        self.saving.fetch_add(1, Ordering::Relaxed);
        let result = self.write(pid, record, addr).await;
        if result.is_ok() {
            let kept = HubMessage::Command(HubCommand::Takeover {
                pid: pid.to_string(),
                kept: true,
            });
            if let Err(e) = self.publisher.publish_hub(&record.user, &kept).await {
                log::warn!("{}: kept, but not announced: {e}", key(pid));
            }
        }
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
        self.set(pid, json, self.window).await
    }

    /// Marks the session `pid` of `user` live: a connection presenting its token while it
    /// lives asks it to hand over (`takeover`) instead of finding nothing.
    pub async fn mark_live(&self, pid: Pid, user: &str) -> Result<(), HubError> {
        self.set(pid, live_mark(user), LIVE_TTL).await
    }

    /// Deletes the live mark of `pid` (the session ended without being kept); a record is
    /// left alone.
    pub async fn forget(&self, pid: Pid) -> Result<(), HubError> {
        let invocation = FORGET.key(key(pid));
        retry_on_dead_connection(|| {
            let mut conn = self.publisher.connection();
            let invocation = &invocation;
            async move { invocation.invoke_async::<()>(&mut conn).await }
        })
        .await
        .map_err(|e| HubError::Redis(format!("forget {}: {e}", key(pid))))
    }

    async fn set(&self, pid: Pid, value: Vec<u8>, ttl: Duration) -> Result<(), HubError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key(pid))
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis() as u64);
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

    /// Takes the record of `pid` for `user`: replaced by the taker's live mark when it is
    /// that user's (one recovery per record), left in place when it is another user's (a
    /// `pid` is not a credential: a stranger cannot spend someone else's record), and
    /// [`Taken::Live`] while the session still lives (marked, not kept yet).
    pub async fn take(&self, pid: Pid, user: &str) -> Result<Taken, HubError> {
        let mut invocation = TAKE.key(key(pid));
        invocation
            .arg(user)
            .arg(live_mark(user))
            .arg(LIVE_TTL.as_millis() as u64);
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
            redis::Value::Int(1) => Ok(Taken::Live),
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
    /// Nothing: never written, expired, or the session ended without being kept.
    Nothing,
    /// The record or mark of another user (left in place).
    OtherUser,
    /// The session still lives (or its instance died before keeping it): it was not kept.
    Live,
    /// The user's record (now the taker's live mark).
    Record(Record),
}

/// What a live session's key holds until the session is kept or ends.
fn live_mark(user: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"user": user, "live": true})).expect("JSON")
}

/// KEYS[1] the record. ARGV[1] the user asking, ARGV[2] its live mark, ARGV[3] the mark's TTL
/// in ms. The record if it is that user's (replaced by the mark), 0 if it is another user's,
/// 1 if it is a live mark, nil if there is none.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local ok, record = pcall(cjson.decode, raw)
if ok and type(record) == 'table' and record.user ~= ARGV[1] then return 0 end
if ok and type(record) == 'table' and record.live then return 1 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return raw
"#,
    )
});

/// KEYS[1] the record. Deletes it when it is a live mark.
static FORGET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local ok, record = pcall(cjson.decode, raw)
if ok and type(record) == 'table' and record.live then return redis.call('DEL', KEYS[1]) end
return 0
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

    /// A tracker in room `a` (history up to 10) with inbox cursor after 1, having sent (10
    /// bytes each): 1 inbox 100, 2 room a 11, 3 no stream, 4 room a 12, 5 inbox 101.
    fn busy_tracker() -> Tracker {
        let mut t = Tracker::new(Cursor::After(id(1)));
        t.rooms.push((room("a"), Cursor::Seen(id(10))));
        assert_eq!(t.next(Some((None, id(100))), 10), 1);
        assert_eq!(t.next(Some((Some(&room("a")), id(11))), 10), 2);
        assert_eq!(t.next(None, 10), 3);
        assert_eq!(t.next(Some((Some(&room("a")), id(12))), 10), 4);
        assert_eq!(t.next(Some((None, id(101))), 10), 5);
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
    fn a_proof_trims_what_was_sent_before_its_ping() {
        let mut t = busy_tracker();
        let ping = t.proof_point();
        t.next(Some((Some(&room("a")), id(13))), 10);
        t.prove(ping);
        let record = t.record("u");
        assert_eq!(record.ring.len(), 1, "the event after the ping is kept");
        assert_eq!(plan(&record, 4), None, "before the proof");
        let at5 = plan(&record, 5).unwrap();
        assert_eq!(at5.inbox, Cursor::Seen(id(101)));
        assert_eq!(at5.rooms, vec![(room("a"), Cursor::Seen(id(12)))]);
        t.prove(t.proof_point());
        assert!(t.record("u").ring.is_empty());
        assert_eq!(t.ring.capacity(), 0, "an empty ring holds no memory");
    }

    #[test]
    fn a_late_or_forged_proof_proves_no_more_than_was_sent() {
        let mut t = busy_tracker();
        let early = Proof { seq: 2, bytes: 20 };
        t.prove(t.proof_point());
        t.next(Some((None, id(102))), 10);
        t.prove(early);
        assert_eq!(
            t.record("u").ring.len(),
            1,
            "a late pong trims nothing more"
        );
        t.prove(Proof {
            seq: 99,
            bytes: 9999,
        });
        assert!(t.record("u").ring.is_empty());
        assert_eq!(t.floor, 6, "never beyond what was sent");
        assert_eq!(Proof::parse(&early.to_bytes()), Some(early));
        assert_eq!(
            Proof::parse(b""),
            None,
            "an unsolicited pong proves nothing"
        );
    }

    #[test]
    fn the_ring_and_the_window_wait_for_proofs() {
        let mut t = Tracker::new(Cursor::After(id(1)));
        for i in 0..RING_MAX as u64 {
            assert!(t.has_room(1, true, 1000));
            t.next(Some((None, id(100 + i))), 1);
            if i + 1 == RING_MAX as u64 / 2 {
                assert!(t.should_ask(false, 1000), "half the ring unproven: ask");
                t.asked();
            }
        }
        assert!(!t.has_room(1, true, 1000), "the ring is full");
        assert!(
            t.has_room(1, false, 1000),
            "events outside the streams take no entry"
        );
        assert!(!t.should_ask(true, 1000), "a proof is already on its way");
        t.prove(t.proof_point());
        assert!(t.has_room(1, true, 1000));
        assert_eq!(
            plan(&t.record("u"), RING_MAX as u64).unwrap().inbox,
            Cursor::Seen(id(355))
        );

        assert!(
            t.has_room(600, false, 1000),
            "nothing unproven: any size goes"
        );
        t.next(None, 600);
        assert!(!t.has_room(500, false, 1000), "past the window");
        assert!(t.should_ask(false, 1000), "half the window unproven: ask");
    }

    #[test]
    fn joining_again_moves_the_room_like_an_event_and_leaving_forgets_it() {
        let mut t = busy_tracker();
        assert_eq!(t.joined(&room("a"), Cursor::Seen(id(14)), 50), 6);
        let record = t.record("u");
        assert_eq!(
            plan(&record, 4).unwrap().rooms,
            vec![(room("a"), Cursor::Seen(id(12)))],
            "not read: from before the second `joined`"
        );
        assert_eq!(
            plan(&record, 6).unwrap().rooms,
            vec![(room("a"), Cursor::Seen(id(14)))]
        );
        assert_eq!(t.joined(&room("b"), Cursor::Seen(id(7)), 50), 7);
        assert_eq!(t.record("u").ring.len(), 5, "a first join takes no entry");
        t.left(&room("a"));
        assert_eq!(
            plan(&t.record("u"), 0).unwrap().rooms,
            vec![(room("b"), Cursor::Seen(id(7)))]
        );
        // Events of a room the session is not in move nothing.
        t.next(Some((Some(&room("c")), id(50))), 1);
        assert_eq!(t.record("u").rooms.len(), 1);
    }

    #[test]
    fn a_resumed_tracker_places_every_offset_from_the_clients() {
        let record = busy_tracker().record("u");
        let plan3 = plan(&record, 3).unwrap();
        let t = Tracker::resumed(new_pid(), &record, &plan3, 3);
        let again = t.record("u");
        assert_eq!(again.seq, 5, "offsets go on");
        for offset in 3..=5 {
            let p = plan(&again, offset).expect("placed");
            assert_eq!(p.rooms, plan3.rooms);
            assert_eq!(p.inbox, plan3.inbox);
        }
        assert_eq!(plan(&again, 2), None);
    }

    #[test]
    fn chunks_take_ring_entries_and_records_carry_job_cursors() {
        let mut t = busy_tracker();
        assert_eq!(t.chunk("j", 1, 10), 6);
        assert_eq!(t.next(None, 10), 7);
        assert_eq!(t.chunk("j", 3, 10), 8, "a merged frame: its last seq");
        let record = t.record("u");
        let jobs = |offset| plan(&record, offset).unwrap().jobs;
        assert_eq!(jobs(5), vec![("j".to_string(), 0)]);
        assert_eq!(jobs(7), vec![("j".to_string(), 1)]);
        assert_eq!(jobs(8), vec![("j".to_string(), 3)]);
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), record);
        let resumed = Tracker::resumed(new_pid(), &record, &plan(&record, 6).unwrap(), 6);
        assert_eq!(plan(&resumed.record("u"), 8).unwrap().jobs, jobs(6));
        t.prove(t.proof_point());
        assert!(t.record("u").chunks.is_empty());
        assert_eq!(t.record("u").jobs, vec![("j".to_string(), 3)]);

        let mut full = Tracker::new(Cursor::After(id(1)));
        for i in 0..RING_MAX as u64 {
            assert!(full.has_room(1, true, 1000));
            full.chunk("j", i + 1, 1);
        }
        assert!(!full.has_room(1, true, 1000), "chunks fill the ring too");
    }

    #[test]
    fn a_record_of_a_hub_without_job_cursors_still_resumes() {
        let old = r#"{"user":"u","seq":2,"floor":0,"inbox":">1-0","rooms":[],
            "ring":[{"seq":1,"prev":">1-0"}]}"#;
        let record: Record = serde_json::from_str(old).unwrap();
        assert_eq!(plan(&record, 1).unwrap().jobs, vec![]);
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
