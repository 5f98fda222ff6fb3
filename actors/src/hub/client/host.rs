//! What a transport that hosts a [`ClientCore`] deals with: what its sessions share
//! ([`SessionEnv`]), what it must provide ([`ClientIo`]), the replies it encodes ([`Reply`])
//! and the asynchronous steps it runs for the core ([`Step`], fed back as [`Resumed`]).

use super::*;

/// Joins of an instance whose Redis reads may be in flight at once (see
/// [`SessionEnv::join_reads`]).
pub const JOIN_READS_IN_FLIGHT: usize = 32;

/// What every session of a shard shares.
pub struct SessionEnv {
    /// The registry shard of this worker thread.
    pub registry: Addr<Registry>,
    /// The command connection.
    pub publisher: Publisher,
    /// Room members across instances, for `joined`.
    pub members: RoomMembers,
    /// Chat history: appends (with the publish) and reads for `joined`.
    pub history: History,
    /// Notification inboxes: replays for sessions that reconnect with `since`, the unread
    /// count, marks and pages.
    pub inbox: Inbox,
    /// Turns for the Redis reads of a join (history and members), shared by the instance's
    /// sessions: a join storm queues in the hub instead of timing out at Redis.
    pub join_reads: Arc<tokio::sync::Semaphore>,
    /// For first-frame `auth`.
    pub auth: Arc<Authenticator>,
    /// Limits to enforce.
    pub limits: Arc<Limits>,
    /// Metrics to count into.
    pub metrics: Arc<Metrics>,
    /// This instance's id, the prefix of session ids.
    pub instance_id: Arc<str>,
    /// Session ids, unique within the instance (shared by every shard and both protocols).
    pub session_ids: Arc<std::sync::atomic::AtomicU64>,
    /// Where sessions are kept for resume, both ways in (`None`: off).
    pub resume: Option<crate::features::session_resume::ResumeStore>,
    /// Who may join and post in which room.
    pub rooms: Arc<crate::features::room_access::RoomAccess>,
    /// Token revocations, checked when a token-authenticated session connects or refreshes.
    pub revocations: crate::features::revocation::Revocations,
    /// Chat messages and joins per user across every session.
    pub user_limits: crate::features::user_limits::UserLimits,
}

impl SessionEnv {
    /// A new session id.
    pub fn next_session_id(&self) -> SessionId {
        self.session_ids
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

/// A successful answer to a client request.
#[derive(Debug)]
pub enum Reply {
    /// Authenticated and registered.
    Connected {
        /// `{instanceId}-{session}`.
        session_id: String,
        /// The user.
        user_id: UserId,
        /// `recovered` (with `since`: whether every notification sent since follows;
        /// `false`: some were trimmed from the inbox, or it could not be read), and the
        /// session's resume token and whether it resumed.
        resumption: Resumption,
    },
    /// Answer to `ping`.
    Pong,
    /// Answer to `join-room`.
    Joined {
        /// The room.
        room: RoomId,
        /// History and members.
        info: JoinInfo,
        /// The newest history id the client now has (the last of `history`, or the `since`
        /// it recovered from); `None` when the history is empty.
        last: Option<MessageId>,
    },
    /// Answer to `leave-room`, or the hub took the session out of the room (`reason`).
    Left {
        /// The room.
        room: RoomId,
        /// Why the hub took the session out (`removed`); `None` for an answer.
        reason: Option<&'static str>,
    },
    /// Answer to `subscribe` (`on`) or `unsubscribe`.
    Topic {
        /// The topic.
        topic: Topic,
        /// Subscribed or unsubscribed.
        on: bool,
    },
    /// Answer to an `auth` with a fresh token on a live session.
    TokenRefreshed {
        /// When the fresh token expires (Unix seconds, leeway included).
        expires_at: u64,
    },
    /// `mark-read` was done (the native protocol sends no frame for it: every session of the
    /// user gets `inbox-state` when it changed anything; Socket.IO acknowledges it when asked).
    Marked {
        /// Unread notifications now.
        unread: u64,
    },
    /// Answer to `inbox-page`.
    InboxPage(InboxPage),
    /// A chat message was appended and published (the native protocol sends no frame for it;
    /// Socket.IO acknowledges it when asked).
    Published {
        /// The room.
        room: RoomId,
        /// Its history id.
        id: MessageId,
    },
    /// Answer to `cancel-job`.
    JobCancel {
        /// The job.
        job: String,
        /// `cancelled`, or `finished` (it had ended).
        status: &'static str,
    },
    /// Answer to `watch-job`.
    JobWatched {
        /// The job.
        job: String,
        /// Its state.
        state: String,
        /// Its last seq.
        last: u64,
        /// The kept chunks after the asked seq.
        chunks: Vec<(u64, String)>,
    },
}

impl Reply {
    /// The reply's native frame JSON, with `id` echoed when given; `None` for replies the
    /// native protocol does not send.
    pub fn to_json(&self, id: &Option<Value>) -> Option<Vec<u8>> {
        Some(match self {
            Reply::Connected {
                session_id,
                user_id,
                resumption,
            } => protocol::connected_frame(session_id, user_id, resumption),
            Reply::Pong => protocol::pong_frame(id),
            Reply::Joined { room, info, .. } => protocol::joined_frame(room, info, id),
            Reply::Left { room, reason } => protocol::left_frame(room, *reason, id),
            Reply::Topic { topic, on } => protocol::topic_frame(*on, *topic, id),
            Reply::TokenRefreshed { expires_at } => {
                protocol::token_refreshed_frame(*expires_at, id)
            }
            Reply::InboxPage(page) => protocol::inbox_page_frame(page, id),
            Reply::Published { .. } | Reply::Marked { .. } => return None,
            Reply::JobCancel { job, status } => protocol::job_cancel_frame(job, status, id),
            Reply::JobWatched {
                job,
                state,
                last,
                chunks,
            } => protocol::job_watched_frame(job, state, *last, chunks, id),
        })
    }

    /// The native frame `type`, also the Socket.IO event name for the reply.
    pub fn name(&self) -> &'static str {
        match self {
            Reply::Connected { .. } => "connected",
            Reply::Pong => "pong",
            Reply::Joined { .. } => "joined",
            Reply::Left { .. } => "left",
            Reply::Topic { on: true, .. } => "subscribed",
            Reply::Topic { on: false, .. } => "unsubscribed",
            Reply::TokenRefreshed { .. } => "token-refreshed",
            Reply::Published { .. } => "published",
            Reply::JobCancel { .. } => "job-cancel",
            Reply::JobWatched { .. } => "job-watched",
            Reply::Marked { .. } => "marked",
            Reply::InboxPage(_) => "inbox-page",
        }
    }
}

/// What the core needs from the connection that hosts it.
pub trait ClientIo {
    /// Sends a reply to the request whose `id` (native) or ack id (Socket.IO) is `to`.
    fn reply(&mut self, reply: Reply, to: Option<Value>);
    /// Sends an error (its `id` says which request it answers).
    fn error(&mut self, err: ClientError);
    /// Refuses the session's credentials after they were read (a revoked token), before
    /// `connected`: the native protocol sends `err` and closes with 4001, Socket.IO answers the
    /// CONNECT with `CONNECT_ERROR`.
    fn refuse(&mut self, err: ClientError);
    /// Ends the connection with a WebSocket close code.
    fn close(&mut self, code: u16, reason: &'static str);
    /// Writes an event (already counted in metrics); `offset` is its number in a resumable
    /// session, for the host to add to its copy of the shared encoding.
    fn deliver(&mut self, event: &Arc<Outbound>, offset: Option<u64>);
    /// Drops the session as a slow consumer.
    fn kick(&mut self, reason: KickReason);
    /// True while the connection takes nothing of what waits for the client (its socket is
    /// full, or a long-polling client has not come for its packets): `ai-chunk`s are held
    /// and merged meanwhile (`chunks.rs`); call [`ClientCore::drained`] once it takes again.
    fn behind(&self) -> bool {
        false
    }
    /// Sends a ping whose pong proves `proof` (a resumable session waits for it): a native
    /// WebSocket Ping carrying it, or an Engine.IO ping now (when none is on its way).
    fn ping(&mut self, proof: Proof);
    /// Runs `step` alongside other events, then calls [`ClientCore::resume`].
    fn spawn(&mut self, step: Step);
    /// The connection's address, for the registry.
    fn address(&mut self) -> SessionAddr;
}

/// An asynchronous step for the host to run; its output goes to [`ClientCore::resume`].
pub struct Step(LocalBoxFuture<'static, Resumed>);

impl Step {
    pub(super) fn new(fut: impl std::future::Future<Output = Resumed> + 'static) -> Step {
        Step(Box::pin(fut))
    }

    /// The future to run.
    pub fn into_future(self) -> LocalBoxFuture<'static, Resumed> {
        self.0
    }
}

/// The outcome of a [`Step`].
pub struct Resumed(pub(super) Outcome);

/// Why a join did not happen.
pub(super) enum JoinFailure {
    /// The registry was gone (shutting down).
    Registry,
    /// Redis could not read the history or members.
    Redis(HubError),
    /// Refused: not allowed (`forbidden`, `unavailable` for a hook without an answer) or over
    /// the user's join rate.
    Refused(ClientError),
}

pub(super) enum Outcome {
    Registered {
        ok: bool,
        /// With `since`: the inbox after it.
        missed: Option<Result<Recent, HubError>>,
        /// The user's unread count (`None` when not registered).
        unread: Option<Result<u64, HubError>>,
    },
    /// A `mark-read` was done.
    Marked {
        id: Option<Value>,
        result: Result<u64, HubError>,
    },
    /// An `inbox-page` was read.
    Paged {
        id: Option<Value>,
        result: Result<InboxPage, HubError>,
    },
    Joined {
        room: RoomId,
        id: Option<Value>,
        since: Option<MessageId>,
        already: bool,
        result: Result<(Recent, MemberList), JoinFailure>,
    },
    /// The expiry timer went off (the token may have been refreshed meanwhile).
    Expired,
    /// The revocation check of a connecting session's token.
    Admitted {
        revoked_at: Result<Option<u64>, HubError>,
    },
    /// The revocation check of a fresh token.
    Refreshed {
        fresh: Box<Identity>,
        id: Option<Value>,
        revoked_at: Result<Option<u64>, HubError>,
    },
    Published {
        room: RoomId,
        id: Option<Value>,
        result: Result<MessageId, ClientError>,
    },
    /// A `cancel-job` or `watch-job` was answered.
    Job {
        job: String,
        id: Option<Value>,
        result: Result<super::jobs::JobAnswer, ClientError>,
    },
    /// The record a resume names was taken (`registered`: the session already registered,
    /// waiting for a live session to hand it over).
    Taken {
        pid: crate::features::session_resume::Pid,
        offset: Option<u64>,
        taken: Result<crate::features::session_resume::Taken, HubError>,
        registered: bool,
    },
    /// The live session asked to hand over `pid` did not say it was kept in time.
    HandoverTimeout {
        pid: crate::features::session_resume::Pid,
    },
    Restored {
        ok: bool,
        /// The inbox after its cursor.
        inbox: Result<Recent, HubError>,
        /// Each room rejoined, with what followed its cursor (`None`: the join failed).
        rooms: Vec<(RoomId, Option<Result<Recent, HubError>>)>,
        /// Each job that streamed to the session, with its kept chunks after its cursor.
        jobs: Vec<super::jobs::ChunkRead>,
        /// The user's unread count (`None` when not registered).
        unread: Option<Result<u64, HubError>>,
    },
}
