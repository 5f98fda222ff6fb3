//! Prometheus metrics of one hub instance. Hot paths use handles resolved once at start
//! (plain atomic increments), never label lookups per message.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::common::queued::KickReason;

use hub_wire::protocol::{ChannelKind, ErrorCode, Topic};

/// The `reason` labels of `hub_slow_consumer_kicks_total`.
const KICK_REASONS: [&str; 4] = [
    KickReason::QueueFull.label(),
    KickReason::WriteTimeout.label(),
    KickReason::MailboxFull.label(),
    "socketio_queue",
];

/// Kinds of server frames, the label of `hub_frames_out_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutKind {
    /// `notification`.
    Notification,
    /// `ai-result`.
    AiResult,
    /// `ai-chunk`.
    AiChunk,
    /// `job-state`.
    JobState,
    /// `chat-message`.
    Chat,
    /// `cache-invalidate`.
    Cache,
    /// `analytics`.
    Analytics,
    /// `presence`.
    Presence,
    /// `inbox-state`.
    InboxState,
    /// Replies: `connected`, `pong`, `joined`, `left`, `subscribed`, `unsubscribed`.
    Reply,
    /// `error`.
    Error,
}

impl OutKind {
    const ALL: [OutKind; 11] = [
        OutKind::Notification,
        OutKind::AiResult,
        OutKind::AiChunk,
        OutKind::JobState,
        OutKind::Chat,
        OutKind::Cache,
        OutKind::Analytics,
        OutKind::Presence,
        OutKind::InboxState,
        OutKind::Reply,
        OutKind::Error,
    ];

    /// The metrics label; for events, also their name on the wire (native `type`, Socket.IO
    /// event name).
    pub fn label(self) -> &'static str {
        match self {
            OutKind::Notification => "notification",
            OutKind::AiResult => "ai-result",
            OutKind::AiChunk => "ai-chunk",
            OutKind::JobState => "job-state",
            OutKind::Chat => "chat-message",
            OutKind::Cache => "cache-invalidate",
            OutKind::Analytics => "analytics",
            OutKind::Presence => "presence",
            OutKind::InboxState => "inbox-state",
            OutKind::Reply => "reply",
            OutKind::Error => "error",
        }
    }
}

/// Labels of `hub_frames_in_total`: the client frame types plus `invalid`.
pub const IN_KINDS: [&str; 13] = [
    "auth",
    "ping",
    "join-room",
    "leave-room",
    "chat-message",
    "subscribe",
    "unsubscribe",
    "cancel-job",
    "watch-job",
    "mark-read",
    "inbox-page",
    "invalid",
    "binary",
];

/// Reasons a WebSocket upgrade is refused.
pub const REJECT_REASONS: [&str; 8] = [
    "unauthorized",
    "expired_token",
    "forbidden_origin",
    "not_found",
    "bad_handshake",
    "connection_limit",
    "ip_limit",
    "shutting_down",
];

fn topic_index(topic: Topic) -> usize {
    Topic::ALL
        .iter()
        .position(|t| *t == topic)
        .expect("every topic is listed")
}

/// All metrics of one instance.
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// Open WebSocket sessions.
    pub connections: IntGauge,
    /// Distinct users with a session on this instance.
    pub users: IntGauge,
    /// Rooms with a member on this instance.
    pub rooms: IntGauge,
    /// Upgrades refused, by reason.
    pub rejected: IntCounterVec,
    frames_in: IntCounterVec,
    frames_out: Vec<IntCounter>,
    /// Bytes received in client messages.
    pub bytes_in: IntCounter,
    /// Bytes of frames queued to clients.
    pub bytes_out: IntCounter,
    /// 1 while the pub/sub connection to Redis is up.
    pub redis_connected: IntGauge,
    /// Pub/sub connections lost (each one is followed by a reconnect attempt).
    pub redis_reconnects: IntCounter,
    /// Masters of a cluster whose pub/sub link is down now, summed over the ingest
    /// connections.
    pub redis_nodes_down: IntGauge,
    /// Pub/sub links taken for dead because they stopped answering.
    pub redis_unresponsive: IntCounter,
    /// Cluster commands retried while their slot had no reachable master (a failover).
    pub redis_failover_waits: IntCounter,
    /// Cluster command connections replaced after a command ran past its deadline.
    pub redis_connections_replaced: IntCounter,
    /// Times the subscriber stopped reading Redis until the shards caught up.
    pub redis_read_pauses: IntCounter,
    /// Bytes of frames handed to the shards and not yet fanned out.
    pub dispatch_backlog_bytes: IntGauge,
    redis_messages: Vec<IntCounter>,
    invalid_payloads: Vec<IntCounter>,
    /// Sessions dropped because they could not keep up, by [`KickReason`] (and
    /// `socketio_queue` for Socket.IO sessions whose Engine.IO queue overflowed).
    slow_consumer_kicks: IntCounterVec,
    /// Client frames refused by the rate limit.
    pub rate_limited: IntCounter,
    client_errors: IntCounterVec,
    /// Session resumes asked for (Socket.IO CONNECTs with a pid, native `auth` with a
    /// `resume` token), by result.
    pub sio_recoveries: IntCounterVec,
    /// Resumable sessions (both ways in) written to Redis when their transport dropped.
    pub sio_recovery_saves: IntCounterVec,
    /// Sessions closed for too many bad or rate-limited frames (1008).
    pub policy_closes: IntCounter,
    /// Publishes to Redis that failed.
    pub publish_errors: IntCounter,
    /// Deliveries dropped because the session was gone or closing.
    pub dropped_deliveries: IntCounter,
    /// Redis-publish-to-socket latency in ms, for payloads that carry a `timestamp`.
    pub deliver_latency_ms: Histogram,
    /// Live chat messages dropped because the session's `joined` history already had them.
    pub chat_duplicates: IntCounter,
    /// `ai-chunk`s that reached a slow client merged with others of their job (each chunk of
    /// a merged frame counts).
    pub ai_chunks_merged: IntCounter,
    /// Chat messages delivered from history after a pub/sub reconnect (missed live).
    pub chat_gap_filled: IntCounter,
    /// Chat payloads whose `id` is not a history id (delivered, never used for ordering).
    pub chat_foreign_ids: IntCounter,
    /// Notifications delivered from the inbox after a pub/sub reconnect (missed live).
    pub notifications_gap_filled: IntCounter,
    /// Gap reads after a pub/sub reconnect that failed (retried, up to a limit).
    pub gap_read_errors: IntCounter,
    /// Live notifications dropped because a gap fill or a session's replay already had them.
    pub notification_duplicates: IntCounter,
    /// Notifications replayed from the inbox to sessions that reconnected with `since`.
    pub notifications_replayed: IntCounter,
    /// Job chunks replayed to resumed sessions (each counted, merged or not).
    pub chunks_replayed: IntCounter,
    /// Live job chunks dropped because a resume's replay or a pub/sub gap fill already
    /// carried them.
    pub chunk_duplicates: IntCounter,
    /// Job chunks read from their job's stream after a pub/sub reconnect (missed live).
    pub job_chunks_gap_filled: IntCounter,
    /// Reconnecting sessions whose inbox could not be read (they got `recovered: false`).
    pub inbox_read_errors: IntCounter,
    /// Low-priority notifications kept in the inbox but not pushed live (over the user's cap),
    /// counted by each instance holding the user.
    pub notifications_held: IntCounter,
    /// Inbox requests (`mark-read`, `inbox-page`, the unread count) Redis could not answer.
    pub inbox_errors: IntCounter,
    /// Presence entries of dead instances removed by this instance.
    pub presence_reaped: IntCounter,
    /// Presence updates to Redis that failed (followed by a full resync).
    pub presence_sync_errors: IntCounter,
    /// JWKS fetches by result (`ok`, `error`).
    pub jwks_fetches: IntCounterVec,
    /// Keys from the JWKS in force.
    pub jwks_keys: IntGauge,
    /// Sessions closed because their token expired.
    pub token_expiries: IntCounter,
    /// Fresh tokens accepted on live sessions.
    pub token_refreshes: IntCounter,
    /// Sessions closed by a `disconnect` hub message (`POST /api/users/{id}/disconnect`).
    pub user_disconnects: IntCounter,
    /// Sessions taken out of a room by the application (`room-remove`).
    pub room_removals: IntCounter,
    /// Room access, the room hook, revocation and per-user limits.
    access: AccessMetrics,
    /// Sessions closed because a new connection presented their resume token (`takeover`).
    pub takeovers: IntCounter,
    by_type: BytesByType,
    topic_subscribers: Vec<IntGauge>,
}

/// Room access (`docs/security.md#room-access`), token revocation and per-user limits.
struct AccessMetrics {
    joins_allowed: IntCounterVec,
    joins_refused: IntCounterVec,
    posts_refused: IntCounterVec,
    hook_answers: IntCounterVec,
    user_rate_limited: IntCounterVec,
    revocations: IntCounterVec,
    resume_evictions: IntCounterVec,
}

impl AccessMetrics {
    fn new(r: &Registry) -> Self {
        AccessMetrics {
            joins_allowed: counter_vec(
                r,
                "hub_room_joins_allowed_total",
                "Joins allowed by the room rules, by what allowed them",
                "by",
                &["dev", "public", "claim", "room_token", "hook"],
            ),
            joins_refused: counter_vec(
                r,
                "hub_room_joins_refused_total",
                "Joins refused by the room rules, by reason",
                "reason",
                &[
                    "not_granted",
                    "bad_room_token",
                    "revoked",
                    "hook_denied",
                    "hook_unavailable",
                    "redis_unavailable",
                ],
            ),
            posts_refused: counter_vec(
                r,
                "hub_room_posts_refused_total",
                "Chat messages refused by the room hook, by reason",
                "reason",
                &["hook_denied", "hook_unavailable"],
            ),
            hook_answers: counter_vec(
                r,
                "hub_room_hook_answers_total",
                "Answers of the room hook: cached, allow, deny (from the backend), timeout, error",
                "result",
                &["cached", "allow", "deny", "timeout", "error"],
            ),
            user_rate_limited: counter_vec(
                r,
                "hub_user_rate_limited_total",
                "Chat messages and joins refused by the per-user limits, by action",
                "action",
                &["chat", "join"],
            ),
            revocations: counter_vec(
                r,
                "hub_token_revocation_checks_total",
                "Tokens refused as revoked, and checks Redis could not answer (let through)",
                "result",
                &["refused", "unchecked"],
            ),
            resume_evictions: counter_vec(
                r,
                "hub_resume_records_evicted_total",
                "Resume records deleted to keep the per-user or per-address cap",
                "cap",
                &["user", "address"],
            ),
        }
    }
}

/// Bytes in and out per frame type, parallel to `hub_frames_in_total`/`hub_frames_out_total`.
struct BytesByType {
    /// Indexed like [`IN_KINDS`].
    bytes_in: Vec<IntCounter>,
    /// Indexed like `OutKind::ALL`.
    bytes_out: Vec<IntCounter>,
}

impl BytesByType {
    fn new(r: &Registry) -> Self {
        let out_labels: Vec<&str> = OutKind::ALL.iter().map(|k| k.label()).collect();
        let in_vec = counter_vec(
            r,
            "hub_bytes_in_by_type_total",
            "Bytes of client messages, by frame type",
            "type",
            &IN_KINDS,
        );
        let out_vec = counter_vec(
            r,
            "hub_bytes_out_by_type_total",
            "Bytes of frames queued to clients, by frame type",
            "type",
            &out_labels,
        );
        BytesByType {
            bytes_in: IN_KINDS
                .iter()
                .map(|k| in_vec.with_label_values(&[k]))
                .collect(),
            bytes_out: out_labels
                .iter()
                .map(|k| out_vec.with_label_values(&[k]))
                .collect(),
        }
    }
}

/// A gauge per topic of the sessions subscribed to it, indexed like [`Topic::ALL`].
fn topic_gauges(r: &Registry) -> Vec<IntGauge> {
    let vec = prometheus::IntGaugeVec::new(
        Opts::new(
            "hub_topic_subscribers",
            "Sessions subscribed to a topic on this instance",
        ),
        &["topic"],
    )
    .expect("valid metric");
    r.register(Box::new(vec.clone())).expect("unique metric");
    Topic::ALL
        .iter()
        .map(|t| vec.with_label_values(&[t.as_str()]))
        .collect()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    values: &[&str],
) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    for v in values {
        c.with_label_values(&[v]);
    }
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

/// A counter per channel kind, indexed by [`ChannelKind::index`].
fn per_channel(registry: &Registry, name: &str, help: &str) -> Vec<IntCounter> {
    let vec = counter_vec(registry, name, help, "channel", &ChannelKind::LABELS);
    ChannelKind::LABELS
        .iter()
        .map(|l| vec.with_label_values(&[l]))
        .collect()
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let r = Registry::new();
        let out_labels: Vec<&str> = OutKind::ALL.iter().map(|k| k.label()).collect();
        let frames_out_vec = counter_vec(
            &r,
            "hub_frames_out_total",
            "Frames queued to WebSocket clients, by type",
            "type",
            &out_labels,
        );
        let frames_out = OutKind::ALL
            .iter()
            .map(|k| frames_out_vec.with_label_values(&[k.label()]))
            .collect();
        let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        let deliver_latency_ms = Histogram::with_opts(
            HistogramOpts::new(
                "hub_deliver_latency_ms",
                "Time from the payload's timestamp to the frame being queued, in ms",
            )
            .buckets(vec![
                0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 5000.0,
            ]),
        )
        .expect("valid metric");
        r.register(Box::new(deliver_latency_ms.clone()))
            .expect("unique metric");
        Metrics {
            connections: gauge(&r, "hub_connections", "Open WebSocket sessions"),
            users: gauge(&r, "hub_users", "Distinct users connected to this instance"),
            rooms: gauge(&r, "hub_rooms", "Rooms with a member on this instance"),
            rejected: counter_vec(
                &r,
                "hub_connections_rejected_total",
                "WebSocket upgrades refused, by reason",
                "reason",
                &REJECT_REASONS,
            ),
            frames_in: counter_vec(
                &r,
                "hub_frames_in_total",
                "Client frames received, by type",
                "type",
                &IN_KINDS,
            ),
            frames_out,
            bytes_in: counter(&r, "hub_bytes_in_total", "Bytes of client messages"),
            bytes_out: counter(
                &r,
                "hub_bytes_out_total",
                "Bytes of frames queued to clients",
            ),
            redis_connected: gauge(
                &r,
                "hub_redis_connected",
                "1 while the Redis pub/sub connection is up",
            ),
            redis_reconnects: counter(
                &r,
                "hub_redis_reconnects_total",
                "Redis pub/sub connections lost and re-established",
            ),
            redis_nodes_down: gauge(
                &r,
                "hub_redis_nodes_down",
                "Cluster masters whose pub/sub link is down, summed over the ingest connections",
            ),
            redis_unresponsive: counter(
                &r,
                "hub_redis_unresponsive_total",
                "Redis pub/sub links taken for dead because they stopped answering",
            ),
            redis_failover_waits: counter(
                &r,
                "hub_redis_failover_waits_total",
                "Cluster commands retried while their slot had no reachable master (a failover)",
            ),
            redis_connections_replaced: counter(
                &r,
                "hub_redis_connections_replaced_total",
                "Cluster command connections replaced after a command ran past its deadline",
            ),
            redis_read_pauses: counter(
                &r,
                "hub_redis_read_pauses_total",
                "Times the subscriber stopped reading Redis because the fan-out backlog was full",
            ),
            dispatch_backlog_bytes: gauge(
                &r,
                "hub_dispatch_backlog_bytes",
                "Bytes of events handed to the fan-out and not yet delivered to session queues",
            ),
            redis_messages: per_channel(
                &r,
                "hub_redis_messages_total",
                "Pub/sub messages received from Redis, by channel kind",
            ),
            invalid_payloads: per_channel(
                &r,
                "hub_invalid_payloads_total",
                "Redis payloads dropped as invalid, by channel kind",
            ),
            slow_consumer_kicks: counter_vec(
                &r,
                "hub_slow_consumer_kicks_total",
                "Sessions dropped as slow consumers, by reason",
                "reason",
                &KICK_REASONS,
            ),
            sio_recoveries: counter_vec(
                &r,
                "hub_sio_recoveries_total",
                "Session resumes asked for (Socket.IO CONNECTs with a pid, native auth with a \
                 resume token): recovered, incomplete (a gap longer than the history or inbox \
                 keeps), expired (no record), refused (another user, a bad token, or an \
                 offset that cannot be placed), error (Redis)",
                "result",
                &["recovered", "incomplete", "expired", "refused", "error"],
            ),
            sio_recovery_saves: counter_vec(
                &r,
                "hub_sio_recovery_saves_total",
                "Dropped resumable sessions (both ways in) written to Redis, by result",
                "result",
                &["saved", "failed"],
            ),
            rate_limited: counter(
                &r,
                "hub_rate_limited_total",
                "Client frames refused by the rate limit",
            ),
            client_errors: counter_vec(
                &r,
                "hub_client_errors_total",
                "Error frames sent to clients, by code",
                "code",
                &codes,
            ),
            policy_closes: counter(
                &r,
                "hub_policy_closes_total",
                "Sessions closed with 1008 for repeated bad or rate-limited frames",
            ),
            publish_errors: counter(
                &r,
                "hub_publish_errors_total",
                "Publishes to Redis that failed",
            ),
            dropped_deliveries: counter(
                &r,
                "hub_dropped_deliveries_total",
                "Deliveries dropped because the session was gone or closing",
            ),
            deliver_latency_ms,
            chat_gap_filled: counter(
                &r,
                "hub_chat_gap_filled_total",
                "Chat messages delivered from history after a Redis pub/sub reconnect",
            ),
            notifications_gap_filled: counter(
                &r,
                "hub_notifications_gap_filled_total",
                "Notifications delivered from the inbox after a Redis pub/sub reconnect",
            ),
            gap_read_errors: counter(
                &r,
                "hub_gap_read_errors_total",
                "Gap reads after a Redis pub/sub reconnect that failed (each retried, up to 5 tries)",
            ),
            notification_duplicates: counter(
                &r,
                "hub_notification_duplicates_dropped_total",
                "Live notifications dropped because an inbox replay already delivered them",
            ),
            notifications_replayed: counter(
                &r,
                "hub_notifications_replayed_total",
                "Notifications replayed from the inbox to sessions that reconnected with since",
            ),
            chunks_replayed: counter(
                &r,
                "hub_chunks_replayed_total",
                "Job chunks replayed from Redis to resumed sessions",
            ),
            chunk_duplicates: counter(
                &r,
                "hub_chunk_duplicates_dropped_total",
                "Live job chunks dropped because a resumed session's replay or a pub/sub gap fill already carried them",
            ),
            job_chunks_gap_filled: counter(
                &r,
                "hub_job_chunks_gap_filled_total",
                "Job chunks delivered from their job's stream after a Redis pub/sub reconnect",
            ),
            notifications_held: counter(
                &r,
                "hub_notifications_held_total",
                "Low-priority notifications kept in the inbox but not pushed live (over the cap)",
            ),
            inbox_errors: counter(
                &r,
                "hub_inbox_errors_total",
                "Inbox requests (mark-read, inbox-page, unread count) Redis could not answer",
            ),
            inbox_read_errors: counter(
                &r,
                "hub_inbox_read_errors_total",
                "Reconnecting sessions whose inbox could not be read (recovered: false)",
            ),
            chat_foreign_ids: counter(
                &r,
                "hub_chat_foreign_ids_total",
                "Chat payloads whose id is not a hub history id (delivered, not de-duplicated)",
            ),
            chat_duplicates: counter(
                &r,
                "hub_chat_duplicates_dropped_total",
                "Live chat messages dropped because the joined history already carried them",
            ),
            ai_chunks_merged: counter(
                &r,
                "hub_ai_chunks_merged_total",
                "ai-chunk events written to a slow client merged with others of their job",
            ),
            presence_reaped: counter(
                &r,
                "hub_presence_reaped_total",
                "Room presence entries of dead hub instances removed by this instance",
            ),
            presence_sync_errors: counter(
                &r,
                "hub_presence_sync_errors_total",
                "Presence updates to Redis that failed (a full resync follows)",
            ),
            jwks_fetches: counter_vec(
                &r,
                "hub_jwks_fetches_total",
                "Fetches of the identity provider's JWKS (HUB_JWKS_URL), by result",
                "result",
                &["ok", "error"],
            ),
            jwks_keys: gauge(&r, "hub_jwks_keys", "Keys from the JWKS in force"),
            token_expiries: counter(
                &r,
                "hub_token_expiries_total",
                "Sessions closed because their token expired without a fresh one",
            ),
            token_refreshes: counter(
                &r,
                "hub_token_refreshes_total",
                "Fresh tokens accepted on live sessions",
            ),
            user_disconnects: counter(
                &r,
                "hub_user_disconnects_total",
                "Sessions closed by POST /api/users/{userId}/disconnect (a disconnect hub message)",
            ),
            room_removals: counter(
                &r,
                "hub_room_removals_total",
                "Sessions taken out of a room by DELETE /api/rooms/{room}/members/{userId}",
            ),
            access: AccessMetrics::new(&r),
            takeovers: counter(
                &r,
                "hub_sio_takeovers_total",
                "Sessions closed as replaced: a new connection presented their resume token",
            ),
            by_type: BytesByType::new(&r),
            topic_subscribers: topic_gauges(&r),
            registry: r,
        }
    }

    /// Counts a frame received from a client.
    pub fn frame_in(&self, kind: &str, bytes: usize) {
        self.frames_in.with_label_values(&[kind]).inc();
        self.bytes_in.inc_by(bytes as u64);
        self.bytes_in_by_type(kind, bytes);
    }

    /// Counts `n` copies of a frame of `bytes` bytes queued to clients.
    pub fn frames_out(&self, kind: OutKind, n: usize, bytes: usize) {
        let i = OutKind::ALL
            .iter()
            .position(|k| *k == kind)
            .expect("every kind is listed");
        self.frames_out[i].inc_by(n as u64);
        self.bytes_out.inc_by((n * bytes) as u64);
        self.by_type.bytes_out[i].inc_by((n * bytes) as u64);
    }

    fn bytes_in_by_type(&self, kind: &str, bytes: usize) {
        if let Some(i) = IN_KINDS.iter().position(|k| *k == kind) {
            self.by_type.bytes_in[i].inc_by(bytes as u64);
        }
    }

    /// A session subscribed to (`delta` 1) or left (-1) a topic.
    pub fn topic_subscriber(&self, topic: Topic, delta: i64) {
        self.topic_subscribers[topic_index(topic)].add(delta);
    }

    /// Sessions subscribed to `topic` on this instance.
    pub fn topic_subscribers(&self, topic: Topic) -> i64 {
        self.topic_subscribers[topic_index(topic)].get()
    }

    /// Records the latency from a payload's `timestamp` (ms since the epoch, publisher's
    /// clock) to now. Values more than a second in the future or an hour in the past are not
    /// publish times (clock skew, replayed events) and are skipped.
    pub fn observe_deliver_latency(&self, timestamp_ms: f64) {
        let latency = hub_wire::protocol::now_ms() as f64 - timestamp_ms;
        if (-1000.0..=3_600_000.0).contains(&latency) {
            self.deliver_latency_ms.observe(latency.max(0.0));
        }
    }

    /// Counts a session dropped as a slow consumer.
    pub fn slow_consumer(&self, reason: KickReason) {
        self.slow_consumer_kicks
            .with_label_values(&[reason.label()])
            .inc();
    }

    /// The counter of Socket.IO sessions dropped because their Engine.IO queue overflowed.
    pub fn socketio_slow_consumers(&self) -> IntCounter {
        self.slow_consumer_kicks
            .with_label_values(&["socketio_queue"])
    }

    /// Counts an error frame sent to a client.
    pub fn client_error(&self, code: ErrorCode) {
        self.client_errors.with_label_values(&[code.as_str()]).inc();
    }

    /// Counts a pub/sub message received on a channel.
    pub fn redis_message(&self, kind: &ChannelKind) {
        self.redis_messages[kind.index()].inc();
    }

    /// Counts a dropped invalid payload.
    pub fn invalid_payload(&self, kind: &ChannelKind) {
        self.invalid_payloads[kind.index()].inc();
    }

    /// Counts a refused upgrade.
    pub fn reject(&self, reason: &str) {
        self.rejected.with_label_values(&[reason]).inc();
    }

    /// Counts a join the room rules allowed, by what allowed it.
    pub fn room_join_allowed(&self, by: &str) {
        self.access.joins_allowed.with_label_values(&[by]).inc();
    }

    /// Counts a join the room rules refused.
    pub fn room_join_refused(&self, reason: &str) {
        self.access.joins_refused.with_label_values(&[reason]).inc();
    }

    /// Counts a chat message the room hook refused.
    pub fn room_post_refused(&self, reason: &str) {
        self.access.posts_refused.with_label_values(&[reason]).inc();
    }

    /// Counts an answer of the room hook.
    pub fn room_hook(&self, result: &str) {
        self.access.hook_answers.with_label_values(&[result]).inc();
    }

    /// Counts an action refused by the per-user limits.
    pub fn user_rate_limited(&self, action: &str) {
        self.access
            .user_rate_limited
            .with_label_values(&[action])
            .inc();
    }

    /// Counts a revocation check's outcome (`refused`, `unchecked`).
    pub fn revocations(&self, result: &str) {
        self.access.revocations.with_label_values(&[result]).inc();
    }

    /// Counts resume records evicted to keep a cap (`user`, `address`).
    pub fn resume_evicted(&self, cap: &str, n: usize) {
        self.access
            .resume_evictions
            .with_label_values(&[cap])
            .inc_by(n as u64);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding of gathered metrics cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}
