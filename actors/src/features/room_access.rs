//! Who may join and post in a room (`docs/security.md#room-access`). A join is allowed by, in
//! this order: dev mode (every room open), `HUB_PUBLIC_ROOMS`, the connection token's `rooms`
//! claim, a room token sent with `join-room`, or the application's hook
//! ([`crate::features::room_hook`]). With none of them, a join is refused, with a message
//! saying how to allow it. Posting needs membership, and, when a hook is configured, its
//! `publish` answer (read-only rooms).
//!
//! Every check runs before the session touches the room: a refused session never subscribes
//! to it, never reads its history or members, never shows up in its presence.

use std::sync::Arc;

use crate::{
    common::auth::{AuthError, Authenticator, Identity},
    common::metrics::Metrics,
    features::revocation::{self, Revocations},
    features::room_hook::{Action, HookError, RoomHook},
};

use hub_wire::protocol::{ClientError, ErrorCode, RoomId, RoomPatterns};

/// What allowed a join (the label of `hub_room_joins_allowed_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Dev mode.
    Dev,
    /// `HUB_PUBLIC_ROOMS`.
    Public,
    /// The token's `rooms` claim.
    Claim,
    /// A room token.
    RoomToken,
    /// The hook.
    Hook,
}

impl Grant {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Grant::Dev => "dev",
            Grant::Public => "public",
            Grant::Claim => "claim",
            Grant::RoomToken => "room_token",
            Grant::Hook => "hook",
        }
    }
}

/// Why a join or a post was refused (the label of `hub_room_joins_refused_total` and
/// `hub_room_posts_refused_total`, whose labels `common/metrics.rs` lists), with the error for
/// the client.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    /// The label.
    pub reason: &'static str,
    /// `forbidden` (or `unavailable` when the hook gave no answer), with the room.
    pub error: ClientError,
}

fn refusal(reason: &'static str, code: ErrorCode, room: &RoomId, message: String) -> Refusal {
    Refusal {
        reason,
        error: ClientError::new(code, message).in_room(room.clone()),
    }
}

/// The instance's room rules.
pub struct RoomAccess {
    /// Dev mode: every room is open.
    pub open: bool,
    /// `HUB_PUBLIC_ROOMS`.
    pub public: RoomPatterns,
    /// The application's hook, if one is configured.
    pub hook: Option<RoomHook>,
    /// Verifies room tokens.
    pub auth: Arc<Authenticator>,
    /// Refuses room tokens issued before a revocation.
    pub revocations: Revocations,
    /// Where the outcomes are counted.
    pub metrics: Arc<Metrics>,
}

impl RoomAccess {
    /// Decides a join; counts the outcome.
    pub async fn may_join(
        &self,
        identity: &Identity,
        room: &RoomId,
        token: Option<&str>,
    ) -> Result<Grant, Refusal> {
        let decided = self.decide_join(identity, room, token).await;
        match &decided {
            Ok(grant) => self.metrics.room_join_allowed(grant.label()),
            Err(refused) => self.metrics.room_join_refused(refused.reason),
        }
        decided
    }

    async fn decide_join(
        &self,
        identity: &Identity,
        room: &RoomId,
        token: Option<&str>,
    ) -> Result<Grant, Refusal> {
        if self.open {
            return Ok(Grant::Dev);
        }
        if self.public.matches(room) {
            return Ok(Grant::Public);
        }
        if identity.rooms.as_ref().is_some_and(|r| r.matches(room)) {
            return Ok(Grant::Claim);
        }
        if let Some(token) = token {
            return self.room_token(identity, room, token).await;
        }
        if let Some(hook) = &self.hook {
            return match hook.allows(&identity.user_id, room, Action::Join).await {
                Ok(true) => Ok(Grant::Hook),
                Ok(false) => Err(hook_denied(room, "join")),
                Err(e) => Err(unavailable(room, "join", &e)),
            };
        }
        Err(refusal(
            "not_granted",
            ErrorCode::Forbidden,
            room,
            format!(
                "not allowed to join `{room}`: nothing grants it (a `rooms` claim in the \
                 connection token, a room token sent with join-room as `token`, \
                 HUB_ROOM_AUTH_URL or HUB_PUBLIC_ROOMS; see docs/security.md#room-access)"
            ),
        ))
    }

    /// A room token: valid, for this user and this room, and not revoked.
    async fn room_token(
        &self,
        identity: &Identity,
        room: &RoomId,
        token: &str,
    ) -> Result<Grant, Refusal> {
        let bad = |why: String| {
            refusal(
                "bad_room_token",
                ErrorCode::Forbidden,
                room,
                format!("room token refused: {why}"),
            )
        };
        let grant = self.auth.verify_room_token(token).map_err(|e| match e {
            AuthError::Invalid(why) => bad(why),
            other => bad(other.to_string()),
        })?;
        if grant.user_id != identity.user_id {
            return Err(bad("it is another user's".into()));
        }
        if grant.room != *room {
            return Err(bad(format!("it grants `{}`, not this room", grant.room)));
        }
        match self.revocations.revoked_at(&identity.user_id).await {
            Ok(at) if revocation::refuses(at, grant.issued_at) => Err(refusal(
                "revoked",
                ErrorCode::Forbidden,
                room,
                "room token refused: the user's tokens were revoked".into(),
            )),
            Ok(_) => Ok(Grant::RoomToken),
            Err(e) => {
                log::warn!("room token of user {}: {e}", identity.user_id);
                Err(refusal(
                    "redis_unavailable",
                    ErrorCode::Unavailable,
                    room,
                    "the room token could not be checked; try again".into(),
                ))
            }
        }
    }

    /// Decides a post by a member; counts refusals. Without a hook, members post.
    pub async fn may_post(&self, identity: &Identity, room: &RoomId) -> Result<(), Refusal> {
        let Some(hook) = self.hook.as_ref().filter(|_| !self.open) else {
            return Ok(());
        };
        let decided = match hook.allows(&identity.user_id, room, Action::Publish).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(hook_denied(room, "post in")),
            Err(e) => Err(unavailable(room, "post", &e)),
        };
        if let Err(refused) = &decided {
            self.metrics.room_post_refused(refused.reason);
        }
        decided
    }
}

fn hook_denied(room: &RoomId, what: &str) -> Refusal {
    refusal(
        "hook_denied",
        ErrorCode::Forbidden,
        room,
        format!("not allowed to {what} `{room}` (the application's room hook said no)"),
    )
}

fn unavailable(room: &RoomId, what: &str, e: &HookError) -> Refusal {
    refusal(
        "hook_unavailable",
        ErrorCode::Unavailable,
        room,
        format!("the application's room hook gave no answer ({e}); cannot {what} `{room}` now, try again"),
    )
}
