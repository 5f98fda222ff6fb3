//! Token revocation (`POST /api/users/{userId}/disconnect` with `"revokeTokens": true`): the
//! moment a user's tokens were revoked, kept in Redis (`hub:revoked:{user:notifications:ID}`)
//! for the longest token lifetime the hub accepts, so that every token issued before it has
//! expired by the time the mark goes. From then on a token of that user whose `iat` is at or
//! before that second, or that has no `iat`, is refused: when connecting (both ways in, resume
//! included), as a fresh token on a live session, and as a room token.

use std::time::Duration;

use crate::{
    common::error::HubError,
    connections::publisher::{retry_on_dead_connection, Publisher},
};

use hub_wire::protocol::{now_ms, USER_PREFIX};

/// The key holding when `user`'s tokens were revoked (Unix seconds); in the slot of the
/// user's channel.
pub fn key(user: &str) -> String {
    format!("hub:revoked:{{{USER_PREFIX}{user}}}")
}

/// True when a token issued at `issued_at` is refused by a revocation at `revoked_at`.
pub fn refuses(revoked_at: Option<u64>, issued_at: Option<u64>) -> bool {
    match (revoked_at, issued_at) {
        (None, _) => false,
        (Some(revoked), Some(iat)) => iat <= revoked,
        (Some(_), None) => true,
    }
}

/// The revocation marks in Redis, on the instance's command connection. Cheap to clone.
#[derive(Clone)]
pub struct Revocations {
    publisher: Publisher,
    /// How long a mark is kept: the longest token lifetime accepted, plus the leeway.
    keep: Duration,
}

impl Revocations {
    /// Marks kept for `keep`.
    pub fn new(publisher: Publisher, keep: Duration) -> Self {
        Revocations { publisher, keep }
    }

    /// Revokes every token of `user` issued until now; returns the mark (Unix seconds).
    pub async fn revoke(&self, user: &str) -> Result<u64, HubError> {
        let now = now_ms() / 1000;
        let mut cmd = redis::cmd("SET");
        cmd.arg(key(user))
            .arg(now)
            .arg("PX")
            .arg(self.keep.as_millis() as u64);
        retry_on_dead_connection(|| {
            let mut conn = self.publisher.connection();
            let cmd = &cmd;
            async move { cmd.query_async::<()>(&mut conn).await }
        })
        .await
        .map_err(|e| HubError::Redis(format!("SET {}: {e}", key(user))))?;
        Ok(now)
    }

    /// When `user`'s tokens were revoked, if they were (within the lifetime kept).
    pub async fn revoked_at(&self, user: &str) -> Result<Option<u64>, HubError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key(user));
        retry_on_dead_connection(|| {
            let mut conn = self.publisher.connection();
            let cmd = &cmd;
            async move { cmd.query_async::<Option<u64>>(&mut conn).await }
        })
        .await
        .map_err(|e| HubError::Redis(format!("GET {}: {e}", key(user))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_issued_until_the_revocation_second_are_refused() {
        assert!(!refuses(None, None));
        assert!(!refuses(None, Some(5)));
        assert!(refuses(Some(10), Some(9)));
        assert!(
            refuses(Some(10), Some(10)),
            "the same second counts as before"
        );
        assert!(!refuses(Some(10), Some(11)));
        assert!(
            refuses(Some(10), None),
            "without iat a token cannot prove it is newer"
        );
        assert_eq!(key("7"), "hub:revoked:{user:notifications:7}");
    }
}
