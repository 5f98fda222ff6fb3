//! A token-authenticated session's token in the core: the revocation check when it connects
//! (both ways in, resume included), a fresh token on a live session (`auth`), and the one
//! expiry timer that closes the session when its token runs out.

use super::*;
use crate::features::revocation;

impl ClientCore {
    /// Connects an authenticated session: first, for a token, the revocation check (a revoked
    /// user's token is refused, whether it resumes or not), then registers it (or resumes it).
    pub fn connect(&mut self, io: &mut impl ClientIo) {
        let Some(identity) = self.identity.clone().filter(|i| !i.is_dev()) else {
            return self.connect_checked(io);
        };
        let revocations = self.env.revocations.clone();
        self.busy.get_or_insert_default();
        io.spawn(Step::new(async move {
            let revoked_at = revocations.revoked_at(&identity.user_id).await;
            Resumed(Outcome::Admitted { revoked_at })
        }));
    }

    /// The revocation check of a connecting session is back.
    pub(super) fn admitted(
        &mut self,
        revoked_at: Result<Option<u64>, HubError>,
        io: &mut impl ClientIo,
    ) {
        let issued_at = self.identity.as_ref().and_then(|i| i.issued_at);
        if self.is_revoked(revoked_at, issued_at) {
            self.env.metrics.client_error(ErrorCode::Unauthorized);
            let message = "invalid credentials: token revoked; sign in again";
            return io.refuse(ClientError::new(ErrorCode::Unauthorized, message));
        }
        // What waited goes on once connected (`connect_checked` keeps the session busy).
        let deferred = self.busy.take().map(|f| f.deferred).unwrap_or_default();
        self.connect_checked(io);
        self.busy.get_or_insert_default().deferred = deferred;
    }

    /// True when a token issued at `issued_at` is revoked; a check Redis could not answer lets
    /// it through (counted: the hub keeps serving while Redis is away).
    fn is_revoked(
        &self,
        revoked_at: Result<Option<u64>, HubError>,
        issued_at: Option<u64>,
    ) -> bool {
        match revoked_at {
            Ok(at) if revocation::refuses(at, issued_at) => {
                self.env.metrics.revocations("refused");
                true
            }
            Ok(_) => false,
            Err(e) => {
                warn!("session {:x}: revocation not checked: {e}", self.id);
                self.env.metrics.revocations("unchecked");
                false
            }
        }
    }

    /// `auth` on a live session: a fresh token for the same user that expires later pushes
    /// the session's expiry back (after its revocation check).
    pub(super) fn refresh_token(
        &mut self,
        current: &Identity,
        token: &str,
        id: Option<Value>,
        io: &mut impl ClientIo,
    ) {
        let fresh = match self.env.auth.verify_token(token) {
            Ok(fresh) => fresh,
            Err(e) => {
                return self.reject(
                    error_with_id(ErrorCode::Unauthorized, e.to_string(), id),
                    io,
                )
            }
        };
        if fresh.user_id != current.user_id {
            let message = "a fresh token must be for the same user; reconnect to change users";
            return self.reject(error_with_id(ErrorCode::Forbidden, message, id), io);
        }
        if fresh.expires_at <= current.expires_at {
            let message = "a fresh token must expire later than the session's current one";
            return self.reject(error_with_id(ErrorCode::BadRequest, message, id), io);
        }
        let revocations = self.env.revocations.clone();
        self.busy.get_or_insert_default();
        io.spawn(Step::new(async move {
            let revoked_at = revocations.revoked_at(&fresh.user_id).await;
            Resumed(Outcome::Refreshed {
                fresh: Box::new(fresh),
                id,
                revoked_at,
            })
        }));
    }

    /// The revocation check of a fresh token is back.
    pub(super) fn refreshed(
        &mut self,
        fresh: Identity,
        id: Option<Value>,
        revoked_at: Result<Option<u64>, HubError>,
        io: &mut impl ClientIo,
    ) {
        if self.is_revoked(revoked_at, fresh.issued_at) {
            let message = "invalid credentials: token revoked";
            io.error(error_with_id(ErrorCode::Unauthorized, message, id));
            return io.close(close::UNAUTHORIZED, "token revoked");
        }
        let expires_at = fresh.expires_at.unwrap_or_default();
        self.identity = Some(Arc::new(fresh));
        self.env.metrics.token_refreshes.inc();
        self.watch_expiry(io);
        io.reply(Reply::TokenRefreshed { expires_at }, id);
    }

    /// Closes the session when its token expires, unless a fresh token comes first. One timer
    /// per session: a refresh only moves the expiry, and the timer, when it goes off early,
    /// waits again for what is left.
    pub(super) fn watch_expiry(&mut self, io: &mut impl ClientIo) {
        if self.expiry_armed {
            return;
        }
        let Some(expires_at) = self.identity.as_ref().and_then(|i| i.expires_at) else {
            return;
        };
        self.expiry_armed = true;
        let left_ms = expires_at
            .saturating_mul(1000)
            .saturating_sub(protocol::now_ms());
        io.spawn(Step::new(async move {
            tokio::time::sleep(std::time::Duration::from_millis(left_ms)).await;
            Resumed(Outcome::Expired)
        }));
    }

    /// The expiry timer went off: closes the session if its token has expired, otherwise
    /// waits for the fresh one's expiry.
    pub(super) fn expiry_due(&mut self, io: &mut impl ClientIo) {
        self.expiry_armed = false;
        let expires_at = self.identity.as_ref().and_then(|i| i.expires_at);
        if expires_at.is_some_and(|at| at.saturating_mul(1000) > protocol::now_ms()) {
            return self.watch_expiry(io);
        }
        self.env.metrics.token_expiries.inc();
        let message = "token expired: reconnect with a fresh one, or send `auth` with a fresh \
                       token before it expires";
        io.error(ClientError::new(ErrorCode::Unauthorized, message));
        io.close(close::TOKEN_EXPIRED, "token expired");
    }
}
