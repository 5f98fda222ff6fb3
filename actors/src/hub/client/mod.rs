//! The protocol-independent part of a client session, shared by the native WebSocket session
//! ([`crate::transports::session`]) and the Socket.IO session ([`crate::transports::socketio::hub`]): identity, rate
//! and error budgets, rooms and topics, and the requests themselves (join with history and
//! recovery, leave, chat, subscribe, ping).
//!
//! It is written "sans I/O": requests come in as [`ClientFrame`]s, replies go out through
//! the host's [`ClientIo`] (which encodes them for its wire protocol), and asynchronous steps
//! (registering, joining, publishing) are handed to the host as a [`Step`] to run in its
//! actor context and feed back with [`ClientCore::resume`].
//!
//! Registering and joining never hold the session's mailbox: while one is in flight, the
//! client's next requests wait in order in the core, and the events it must not see yet
//! (anything before `connected`, the room's messages before `joined`) are held in the core,
//! counted against the session's queue bound. So a slow Redis delays a reply, never the
//! session's other events, and never costs the session its connection. A chat append is in
//! flight the same way (without holding events), so a client's messages keep its order.
//!
//! Session resume ([`ClientCore::connect`], `resume.rs`) lives here too, so both hosts resume
//! alike: the core numbers the events it writes (the host encodes the number), paces what a
//! resumable session sends by its client's proofs (`pacing.rs`; the host carries them in its
//! pings), takes and restores records, and takes a live session over from its token. Hub
//! commands (`disconnect`, `takeover`) act at once; only the client's events wait.

use std::{borrow::Cow, collections::VecDeque, ops::ControlFlow, sync::Arc, time::Instant};

use actix::Addr;
use futures_util::future::LocalBoxFuture;
use hub_wire::websocket::close;
use log::{debug, warn};
use serde_json::Value;

use crate::{
    common::auth::{Authenticator, Identity},
    common::error::HubError,
    common::limits::{Limits, TokenBucket},
    common::metrics::{Metrics, OutKind},
    common::outbound::Outbound,
    common::queued::{KickReason, QueuedBytes},
    connections::publisher::Publisher,
    features::history::{History, Recent},
    features::inbox::Inbox,
    features::roster::{MemberList, RoomMembers},
    features::session_resume::{Cursor, Proof},
    hub::registry::Registry,
    messages::{
        Deliver, Delivery, Item, Join, Leave, Register, Scope, SessionAddr, SessionId, SetTopic,
        Unregister,
    },
};

use hub_wire::protocol::{
    self, ClientError, ClientFrame, ErrorCode, HubCommand, InboxPage, JoinInfo, MessageId, Request,
    Resumption, RoomId, Topic, UserId,
};

mod chunks;
mod host;
mod inbox;
mod jobs;
mod pacing;
mod resume;
mod rooms;
mod tokens;

pub use host::{ClientIo, Reply, Resumed, SessionEnv, Step, JOIN_READS_IN_FLIGHT};
use host::{JoinFailure, Outcome};
pub use resume::{Ask, HANDOVER_LIMIT, HANDOVER_WAIT};
use rooms::JoinKind;

/// Most requests that may wait while a registration or join is in flight; more are refused
/// as rate limited (the rate limit lets a burst of 40 through by default).
const DEFERRED_MAX: usize = 64;

/// What the core keeps while a registration, join or chat append is in flight.
#[derive(Default)]
struct InFlight {
    /// The room of the join in flight: its events wait in `held` until `joined`.
    joining: Option<RoomId>,
    /// The application removed the session from `joining` meanwhile (`room-remove`).
    join_removed: bool,
    /// Requests that arrived meanwhile, in order.
    deferred: VecDeque<Deferred>,
    /// Events the client must not see yet (before `connected`, or its joining room's before
    /// `joined`), in order; counted in `queued`.
    held: Vec<Delivery>,
}

/// What waits for a request in flight to finish.
enum Deferred {
    /// A client request (or the parser's refusal of it).
    Request(Result<ClientFrame, ClientError>),
    /// A join the application granted (`room-add`).
    Granted(RoomId),
}

/// A room the session is in.
struct JoinedRoom {
    room: RoomId,
    /// The history ids the `joined` reply carried, ascending: live copies of these may still
    /// arrive and are dropped as duplicates. Emptied once a newer message arrives live (every
    /// copy of these came before it). Exact ids, not "everything up to": an `id` that a
    /// service put into its own payload never makes the session drop other messages.
    delivered: Vec<MessageId>,
}

/// The protocol-independent state of one client session.
pub struct ClientCore {
    id: SessionId,
    env: Arc<SessionEnv>,
    /// `None` until authenticated.
    identity: Option<Arc<Identity>>,
    rooms: Vec<JoinedRoom>,
    topics: u8,
    rate: TokenBucket,
    errors: TokenBucket,
    /// True while the registry knows this session (pending auth or registered).
    tracked: bool,
    /// `connected` was sent: events flow.
    registered: bool,
    /// What a registration or join in flight keeps (`None` while idle: a session pays for
    /// it only while one is in flight).
    busy: Option<Box<InFlight>>,
    /// Bytes held for the client (shared with the registry and the host's writer).
    queued: Arc<QueuedBytes>,
    /// The last `inboxId` the client saw (`?since=`, `auth`): replayed from after it.
    inbox_since: Option<MessageId>,
    /// What was replayed at `connected` whose live copies may still come (`None`: nothing;
    /// an idle session pays one pointer for it).
    replayed: Option<Box<Replayed>>,
    /// The expiry timer is running (there is at most one per session).
    expiry_armed: bool,
    /// The client's address (behind trusted proxies), for the per-address cap of resume
    /// records.
    peer: Option<std::net::IpAddr>,
    /// A resumable session's tracker and paced events (`None`: not resumable).
    resume: Option<Box<pacing::Resumable>>,
    /// The session is being restored from a resume record (taken, `connected` not sent).
    restoring: bool,
    /// The session ended (it left the registry): outcomes that come back are dropped.
    ended: bool,
    /// A resume waiting for the live session holding its token to hand it over.
    handover: Option<Box<resume::Handover>>,
    /// What the client asked of session resume, until it connects.
    resume_ask: Option<Ask>,
    /// The client asked to resume a session: `connected` says whether it did.
    resume_asked: bool,
    /// `ai-chunk`s held while the client is behind (`None`: none).
    chunks: Option<Box<chunks::HeldChunks>>,
}

impl ClientCore {
    /// Frees what was kept of a replay once no live copy of it can come any more.
    fn forget_replayed_when_done(&mut self) {
        if self
            .replayed
            .as_ref()
            .is_some_and(|r| r.inbox.is_empty() && r.chunks.is_empty())
        {
            self.replayed = None;
        }
    }
}

/// What a session replayed at `connected` whose live copies are dropped when they come.
#[derive(Default)]
struct Replayed {
    /// The inbox ids, ascending (see [`JoinedRoom::delivered`]).
    inbox: Vec<MessageId>,
    /// Per job, the last chunk seq a resume replayed ([`ClientCore::chunk_replayed`]).
    chunks: Vec<(String, u64)>,
}

/// True when a live message with id `order` is a copy of one of the `delivered` ids
/// (ascending) a reply already carried; forgets them once a newer message arrives.
fn replayed(delivered: &mut Vec<MessageId>, order: Option<MessageId>) -> bool {
    let Some(order) = order else {
        return false;
    };
    if delivered.binary_search(&order).is_ok() {
        return true;
    }
    if delivered.last().is_some_and(|last| order > *last) {
        *delivered = Vec::new();
    }
    false
}

/// Writes the messages a read returned (oldest first) as `kind` events addressed to `scope`.
fn replay(
    core: &mut ClientCore,
    kind: OutKind,
    scope: &Scope,
    read: &Recent,
    io: &mut impl ClientIo,
) {
    for (raw, id) in read.messages.iter().zip(&read.ids) {
        let event = Outbound::envelope(kind, raw.get().as_bytes());
        core.env.metrics.frames_out(kind, 1, event.native().len());
        core.write_replay(Arc::new(event), scope.clone(), Some(*id), io);
    }
}

/// An error answering the request with `id`.
pub fn error_with_id(
    code: ErrorCode,
    message: impl Into<Cow<'static, str>>,
    id: Option<Value>,
) -> ClientError {
    let mut err = ClientError::new(code, message);
    err.id = id;
    err
}

fn not_in_room(room: &str, id: Option<Value>) -> ClientError {
    error_with_id(
        ErrorCode::NotInRoom,
        format!("not in room `{room}`; join it first"),
        id,
    )
}

impl ClientCore {
    /// A session's core; `identity` is set when the connection carried valid credentials.
    pub fn new(id: SessionId, env: Arc<SessionEnv>, identity: Option<Identity>) -> Self {
        let limits = &env.limits;
        ClientCore {
            id,
            rate: TokenBucket::full(limits.rate_burst),
            errors: TokenBucket::full(limits.error_burst),
            identity: identity.map(Arc::new),
            rooms: Vec::new(),
            topics: 0,
            tracked: false,
            registered: false,
            busy: None,
            queued: Arc::new(QueuedBytes::new(limits.queue_bytes)),
            inbox_since: None,
            replayed: None,
            expiry_armed: false,
            peer: None,
            resume: None,
            restoring: false,
            ended: false,
            handover: None,
            resume_ask: None,
            resume_asked: false,
            chunks: None,
            env,
        }
    }

    /// Replays the notifications sent after `since` (an `inboxId`) when the session
    /// registers.
    pub fn set_inbox_since(&mut self, since: Option<MessageId>) {
        self.inbox_since = since;
    }

    /// The client's address (behind trusted proxies).
    pub fn set_peer(&mut self, peer: Option<std::net::IpAddr>) {
        self.peer = peer;
    }

    /// The bytes held for the client; the host's writer adds to and takes from the same
    /// count.
    pub fn queued(&self) -> &Arc<QueuedBytes> {
        &self.queued
    }

    /// The user, once authenticated (for logs).
    pub fn user(&self) -> &str {
        self.identity.as_ref().map_or("-", |i| &i.user_id)
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// What the session shares with the others of its shard.
    pub fn env(&self) -> &Arc<SessionEnv> {
        &self.env
    }

    /// True once `connected` was sent (events flow).
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// True once authenticated.
    pub fn is_authenticated(&self) -> bool {
        self.identity.is_some()
    }

    /// Sets the identity (authentication that happened outside the core).
    pub fn set_identity(&mut self, identity: Identity) {
        self.identity = Some(Arc::new(identity));
    }

    /// Tells the registry about a session that still has to authenticate (so that shutdown
    /// can close it).
    pub fn track_pending(&mut self, addr: SessionAddr) {
        self.tracked = true;
        self.env
            .registry
            .do_send(crate::messages::Pending { id: self.id, addr });
    }

    /// Leaves the registry (idempotent): the session ended.
    pub fn unregister(&mut self) {
        self.ended = true;
        self.forget_mark();
        if self.tracked {
            self.tracked = false;
            self.env.registry.do_send(Unregister { id: self.id });
        }
    }

    /// The registry already removed this session (it was kicked).
    pub fn forget_registration(&mut self) {
        self.ended = true;
        self.forget_mark();
        self.tracked = false;
    }

    /// Refuses a request: error reply, and a close with 1008 once the error budget is spent.
    pub fn reject(&mut self, err: ClientError, io: &mut impl ClientIo) {
        self.env.metrics.client_error(err.code);
        io.error(err);
        if !self
            .errors
            .take(Instant::now(), 1.0, self.env.limits.error_burst)
        {
            self.env.metrics.policy_closes.inc();
            io.close(close::POLICY, "too many bad or rate-limited frames");
        }
    }

    /// Handles one client request (already parsed, or refused by the parser), after the rate
    /// limit. `label` and `bytes` are for metrics.
    pub fn on_frame(
        &mut self,
        parsed: Result<ClientFrame, ClientError>,
        bytes: usize,
        io: &mut impl ClientIo,
    ) {
        // Its reply comes after the chunks held for the client.
        self.release_chunks(io);
        let limits = self.env.limits.clone();
        let label = parsed.as_ref().map_or("invalid", |f| f.request.label());
        self.env.metrics.frame_in(label, bytes);
        if !self
            .rate
            .take(Instant::now(), limits.rate_per_sec, limits.rate_burst)
        {
            self.env.metrics.rate_limited.inc();
            let message = format!(
                "too many frames: {} per second, burst {}",
                limits.rate_per_sec, limits.rate_burst
            );
            let id = parsed.ok().and_then(|f| f.id);
            return self.reject(error_with_id(ErrorCode::RateLimited, message, id), io);
        }
        if let Some(flight) = self.busy.as_mut() {
            if flight.deferred.len() >= DEFERRED_MAX {
                let id = parsed.ok().and_then(|f| f.id);
                let message = "too many requests waiting for an earlier one to finish";
                return self.reject(error_with_id(ErrorCode::RateLimited, message, id), io);
            }
            flight.deferred.push_back(Deferred::Request(parsed));
            return;
        }
        self.handle(parsed, io);
    }

    fn handle(&mut self, parsed: Result<ClientFrame, ClientError>, io: &mut impl ClientIo) {
        match parsed {
            Ok(frame) => self.on_request(frame, io),
            Err(err) => self.reject(err, io),
        }
    }

    /// Handles events the registry delivered: writes the wanted ones, holds those the client
    /// must not see yet, drops the rest (counted).
    pub fn on_deliver(&mut self, msg: Deliver, io: &mut impl ClientIo) {
        self.queued.sub(msg.bytes);
        for delivery in msg {
            // Commands act at once, even before `connected` (a resume waiting for a handover
            // acts on `takeover`): only the client's events wait.
            let command = matches!(delivery.item, Item::Command(_));
            if !command && self.must_hold(&delivery.scope) {
                if !self.queued.try_add(delivery.cost()) {
                    return io.kick(KickReason::QueueFull);
                }
                self.busy.get_or_insert_default().held.push(delivery);
            } else if self.take(delivery, io).is_break() {
                return;
            }
        }
    }

    /// Writes a delivered event the client still wants, or acts on a hub command; `Break`
    /// once the session is closing (nothing after it is for the client).
    fn take(&mut self, delivery: Delivery, io: &mut impl ClientIo) -> ControlFlow<()> {
        match &delivery.item {
            Item::Event(event) => {
                if self.chunk_replayed(event) {
                    return ControlFlow::Continue(());
                }
                if self.wants(&delivery.scope, delivery.order) {
                    self.write(delivery, io);
                }
                ControlFlow::Continue(())
            }
            Item::Command(command) => {
                let command = command.clone();
                self.on_command(&command, io)
            }
        }
    }

    /// Acts on a hub command (`docs/protocol.md#hub-messages`).
    fn on_command(&mut self, command: &HubCommand, io: &mut impl ClientIo) -> ControlFlow<()> {
        match command {
            HubCommand::Disconnect => {
                self.env.metrics.user_disconnects.inc();
                io.close(close::DISCONNECTED, "disconnected by the server");
                return ControlFlow::Break(());
            }
            HubCommand::RoomRemove { room } => self.removed_from(room.clone(), io),
            HubCommand::RoomAdd { room } => self.added_to(room.clone(), io),
            HubCommand::Takeover { pid, kept } => return self.on_takeover(pid, *kept, io),
        }
        ControlFlow::Continue(())
    }

    fn must_hold(&self, scope: &Scope) -> bool {
        let joining = self.busy.as_ref().and_then(|f| f.joining.as_ref());
        !self.registered || matches!((scope, joining), (Scope::Room(r), Some(j)) if r == j)
    }

    /// A registration or join finished: the events held meanwhile go out (minus copies of
    /// what the reply carried), then the requests that waited run, until one starts another
    /// registration or join (the rest wait for that one).
    fn unbusy(&mut self, io: &mut impl ClientIo) {
        let Some(flight) = self.busy.take() else {
            return;
        };
        let InFlight {
            held, mut deferred, ..
        } = *flight;
        for delivery in held {
            self.queued.sub(delivery.cost());
            if self.take(delivery, io).is_break() {
                return;
            }
        }
        while let Some(waiting) = deferred.pop_front() {
            match waiting {
                Deferred::Request(parsed) => self.handle(parsed, io),
                Deferred::Granted(room) => self.added_to(room, io),
            }
            if let Some(flight) = self.busy.as_mut() {
                flight.deferred = deferred;
                return;
            }
        }
    }

    fn on_request(&mut self, frame: ClientFrame, io: &mut impl ClientIo) {
        let ClientFrame { id, request } = frame;
        let Some(identity) = self.identity.clone() else {
            return self.authenticate(request, id, io);
        };
        match request {
            Request::Auth { token, .. } => self.refresh_token(&identity, &token, id, io),
            Request::Ping => io.reply(Reply::Pong, id),
            Request::JoinRoom { room, since, token } => {
                self.join((room, since, token), JoinKind::Asked, id, io)
            }
            Request::LeaveRoom { room } => {
                if !self.in_room(&room) {
                    return self.reject(not_in_room(&room, id), io);
                }
                self.leave(&room);
                io.reply(Reply::Left { room, reason: None }, id);
            }
            Request::ChatMessage { room, message } => {
                self.publish((room, message), &identity, id, io)
            }
            Request::Subscribe(topic) => {
                if topic == Topic::Analytics && !identity.admin {
                    let message = "the analytics topic needs a token with role admin";
                    return self.reject(error_with_id(ErrorCode::Forbidden, message, id), io);
                }
                self.set_topic(topic, true, id, io);
            }
            Request::Unsubscribe(topic) => self.set_topic(topic, false, id, io),
            job @ (Request::CancelJob { .. } | Request::WatchJob { .. }) => {
                self.job_request(job, &identity, id, io)
            }
            Request::MarkRead(marks) => self.mark_read(marks, id, io),
            Request::InboxPage { before, limit } => self.inbox_page(before, limit, id, io),
        }
    }

    /// Handles a request before authentication: only `auth` is accepted.
    fn authenticate(&mut self, request: Request, id: Option<Value>, io: &mut impl ClientIo) {
        let Request::Auth {
            token,
            since,
            resume,
        } = request
        else {
            let message = "authenticate first with {\"type\":\"auth\",\"token\":...}";
            return self.reject(error_with_id(ErrorCode::Unauthorized, message, id), io);
        };
        match self.env.auth.verify_token(&token) {
            Ok(identity) => {
                self.identity = Some(Arc::new(identity));
                self.inbox_since = since.or(self.inbox_since);
                if let Some(ask) = resume {
                    self.resume_ask = Some(ask.into());
                }
                self.connect(io);
            }
            Err(e) => {
                self.env.metrics.client_error(ErrorCode::Unauthorized);
                io.error(error_with_id(ErrorCode::Unauthorized, e.to_string(), id));
                io.close(close::UNAUTHORIZED, "invalid token");
            }
        }
    }

    /// Registers with the registry, then replies `Connected` (hosts call
    /// [`ClientCore::connect`], which resumes instead when asked). Events and requests that
    /// arrive meanwhile wait in the core, so that `Connected` comes first and means "your
    /// events reach you".
    fn register(&mut self, io: &mut impl ClientIo) {
        let Some(request) = self.registration(io) else {
            return;
        };
        let finish = self.registered_step();
        io.spawn(Step::new(
            async move { finish(request.await.is_ok()).await },
        ));
    }

    /// Asks the registry for the session's events; `None` before authentication.
    fn registration(
        &mut self,
        io: &mut impl ClientIo,
    ) -> Option<actix::dev::Request<Registry, Register>> {
        let identity = self.identity.clone()?;
        self.busy.get_or_insert_default();
        Some(self.env.registry.send(Register {
            id: self.id,
            identity,
            addr: io.address(),
            queued: self.queued.clone(),
        }))
    }

    /// What follows the registration (`true`: it succeeded): a resumable session is marked
    /// live (see [`ClientCore::connect`]), the unread count is read, and with `since` the
    /// inbox after it (once subscribed: every notification is in the read or arrives live).
    fn registered_step(&self) -> impl FnOnce(bool) -> LocalBoxFuture<'static, Resumed> {
        let (inbox, since, user) = (
            self.env.inbox.clone(),
            self.inbox_since,
            self.user().to_owned(),
        );
        let mark = self.live_mark();
        move |ok| {
            Box::pin(async move {
                let missed = async {
                    match (ok, since) {
                        (true, Some(since)) => Some(inbox.after(&user, since).await),
                        _ => None,
                    }
                };
                let unread = async {
                    match ok {
                        true => Some(inbox.unread(&user).await),
                        false => None,
                    }
                };
                let (missed, unread, ()) = futures_util::future::join3(missed, unread, mark).await;
                Resumed(Outcome::Registered { ok, missed, unread })
            })
        }
    }

    /// Feeds the outcome of a [`Step`] back.
    pub fn resume(&mut self, resumed: Resumed, io: &mut impl ClientIo) {
        if self.ended {
            // The session is gone; only a record it took matters: it goes back.
            if let Outcome::Taken { pid, taken, .. } = resumed.0 {
                self.give_back(pid, taken);
            }
            return;
        }
        // What it answers comes after the chunks held for the client.
        self.release_chunks(io);
        match resumed.0 {
            Outcome::Registered { ok: false, .. } => {
                io.close(close::INTERNAL, "registry unavailable")
            }
            Outcome::Registered {
                ok: true,
                missed,
                unread,
            } => self.connected(missed, unread, io),
            Outcome::Restored { ok: false, .. } => {
                io.close(close::INTERNAL, "registry unavailable")
            }
            Outcome::Restored {
                ok: true,
                inbox,
                rooms,
                jobs,
                unread,
            } => self.restored(inbox, rooms, jobs, unread, io),
            Outcome::Marked { id, result } => {
                self.marked(id, result, io);
                self.unbusy(io);
            }
            Outcome::Paged { id, result } => {
                self.paged(id, result, io);
                self.unbusy(io);
            }
            Outcome::Taken {
                pid,
                offset,
                taken,
                registered,
            } => self.recover(pid, offset, taken, registered, io),
            Outcome::HandoverTimeout { pid } => self.handover_timeout(pid, io),
            Outcome::Joined {
                room,
                id,
                since,
                already,
                result,
            } => {
                self.joined(room, id, since, already, result, io);
                self.unbusy(io);
            }
            Outcome::Expired => self.expiry_due(io),
            Outcome::Admitted { revoked_at } => self.admitted(revoked_at, io),
            Outcome::Refreshed {
                fresh,
                id,
                revoked_at,
            } => {
                self.refreshed(*fresh, id, revoked_at, io);
                self.unbusy(io);
            }
            Outcome::Job { job, id, result } => self.job_answered(job, id, result, io),
            Outcome::Published { room, id, result } => {
                match result {
                    Ok(message_id) => io.reply(
                        Reply::Published {
                            room,
                            id: message_id,
                        },
                        id,
                    ),
                    Err(mut err) => {
                        err.id = id;
                        self.reject(err, io);
                    }
                }
                self.unbusy(io);
            }
        }
    }

    /// Answers `connected`, replays the notifications the client missed (with `since`), then
    /// lets events and requests flow.
    fn connected(
        &mut self,
        missed: Option<Result<Recent, HubError>>,
        unread: Option<Result<u64, HubError>>,
        io: &mut impl ClientIo,
    ) {
        self.tracked = true;
        let Some(identity) = &self.identity else {
            return;
        };
        let missed = missed.and_then(|read| {
            read.map_err(|e| {
                self.env.metrics.inbox_read_errors.inc();
                warn!(
                    "session {:x}: the inbox could not be replayed: {e}",
                    self.id
                )
            })
            .ok()
        });
        let recovered = self
            .inbox_since
            .map(|_| missed.as_ref().is_some_and(|m| m.recovered == Some(true)));
        let reply = Reply::Connected {
            session_id: format!("{}-{:x}", self.env.instance_id, self.id),
            user_id: identity.user_id.clone(),
            resumption: Resumption {
                unread: self.unread_of(unread),
                ..self.resumption(recovered, false)
            },
        };
        io.reply(reply, None);
        if let Some(missed) = missed {
            self.env
                .metrics
                .notifications_replayed
                .inc_by(missed.messages.len() as u64);
            replay(self, OutKind::Notification, &Scope::User, &missed, io);
            self.replayed.get_or_insert_default().inbox = missed.ids;
        }
        self.registered = true;
        self.watch_expiry(io);
        self.pump(io);
        self.unbusy(io);
    }

    fn set_topic(&mut self, topic: Topic, on: bool, id: Option<Value>, io: &mut impl ClientIo) {
        if on {
            self.topics |= topic.bit();
        } else {
            self.topics &= !topic.bit();
        }
        self.env.registry.do_send(SetTopic {
            id: self.id,
            topic,
            on,
        });
        io.reply(Reply::Topic { topic, on }, id);
    }

    /// True when a delivery addressed to `scope` is still wanted (the session may have left
    /// the room or topic meanwhile, or already received the message in `joined`); counts
    /// what it drops.
    fn wants(&mut self, scope: &Scope, order: Option<MessageId>) -> bool {
        let metrics = &self.env.metrics;
        let wanted = match scope {
            Scope::User => {
                let inbox = self.replayed.as_mut().map(|r| &mut r.inbox);
                let copy = inbox.is_some_and(|inbox| replayed(inbox, order));
                self.forget_replayed_when_done();
                if copy {
                    self.env.metrics.notification_duplicates.inc();
                    return false;
                }
                true
            }
            Scope::Room(room) => match self.rooms.iter_mut().find(|r| r.room == *room) {
                None => false,
                Some(joined) => {
                    if replayed(&mut joined.delivered, order) {
                        metrics.chat_duplicates.inc();
                        return false;
                    }
                    true
                }
            },
            Scope::Topic(topic) => self.topics & topic.bit() != 0,
        };
        if !wanted {
            self.env.metrics.dropped_deliveries.inc();
        }
        wanted
    }

    /// Counts a reply or error frame sent to the client.
    pub fn count_out(&self, kind: OutKind, bytes: usize) {
        self.env.metrics.frames_out(kind, 1, bytes);
    }
}
