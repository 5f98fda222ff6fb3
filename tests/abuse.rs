//! Abuse by a signed-in user or through a proxy (docs/security.md): a token refresh that does
//! not extend the expiry is refused (one expiry timer per session); behind trusted proxies
//! (`HUB_TRUSTED_PROXIES`) the per-address limits count the forwarded client address, and
//! forwarding headers from anyone else are ignored; expired tokens do not use up an address's
//! failure budget; resume records are capped per user and per address.

mod common;
mod sio_common;

use common::resume::{kept, record_exists, resume_token};
use common::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

const SECRET: &str = "an-abuse-test-secret-of-32-bytes-or-more";

fn token(sub: &str, exp: i64) -> String {
    encode(
        &Header::default(),
        &json!({"sub": sub, "exp": exp}),
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_refresh_that_does_not_extend_the_expiry_is_refused() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_JWT_SECRET", SECRET)]).await;
    let exp = unix_now() + 600;
    let current = token("1", exp);
    let mut c = Client::connect(&hub.ws_url(&format!("token={current}"))).await;
    c.recv_type("connected").await;
    // Resending the same token (or an older one) would only pile up work: refused, each time.
    for i in 0..5 {
        c.send(json!({"type": "auth", "token": current, "id": i}))
            .await;
        let reply = c.expect_error("bad_request").await;
        assert_eq!(reply["id"], i);
    }
    let earlier = token("1", exp - 60);
    c.send(json!({"type": "auth", "token": earlier})).await;
    c.expect_error("bad_request").await;
    let later = token("1", exp + 60);
    c.send(json!({"type": "auth", "token": later, "id": "ok"}))
        .await;
    let refreshed = c.recv_type("token-refreshed").await;
    assert_eq!(refreshed["id"], "ok");
    assert_eq!(hub.metric("hub_token_refreshes_total").await, 1.0);
    // Refusals spend the error budget: a client that keeps at it is closed.
    for _ in 0..20 {
        if c.try_send_text(&json!({"type": "auth", "token": later}).to_string())
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(c.expect_close().await, Ending::Close(1008));
}

/// A client behind the proxy at 127.0.0.1, forwarding as `client`.
async fn via_proxy(hub: &Hub, client: &str, query: &str) -> Result<Client, u16> {
    Client::try_connect(&hub.ws_url(query), &[("x-forwarded-for", client)]).await
}

#[tokio::test]
async fn behind_trusted_proxies_limits_count_the_forwarded_address() {
    let redis = Redis::start().await;
    let hub = hub(
        &redis,
        &[
            ("HUB_JWT_SECRET", SECRET),
            ("HUB_TRUSTED_PROXIES", "127.0.0.1"),
            ("HUB_MAX_CONNECTIONS_PER_IP", "1"),
            ("HUB_AUTH_FAILURES_PER_MINUTE", "2"),
        ],
    )
    .await;
    let good = format!("token={}", token("1", unix_now() + 600));
    let first = via_proxy(&hub, "203.0.113.1", &good).await;
    let _second = via_proxy(&hub, "203.0.113.2", &good)
        .await
        .expect("another client");
    assert_eq!(via_proxy(&hub, "203.0.113.1", &good).await.err(), Some(429));
    // `Forwarded` is read too, and wins over `X-Forwarded-For`.
    let forwarded = [
        ("forwarded", "for=203.0.113.3"),
        ("x-forwarded-for", "203.0.113.1"),
    ];
    assert!(Client::try_connect(&hub.ws_url(&good), &forwarded)
        .await
        .is_ok());
    // The same limit over Socket.IO.
    let refused = sio_common::Ws::try_connect(
        hub.port,
        "/socket.io/?EIO=4&transport=websocket",
        &[("x-forwarded-for", "203.0.113.1")],
    )
    .await;
    assert_eq!(refused.err().map(|(status, _)| status), Some(429));
    drop(first);

    // A peer that is no trusted proxy cannot choose its address.
    let untrusted = |xff: &'static str| {
        let url = hub.ws_url(&good);
        async move { Client::try_connect_from([127, 0, 0, 2], &url, &[("x-forwarded-for", xff)]).await }
    };
    let _held = untrusted("198.51.100.7")
        .await
        .expect("the first from 127.0.0.2");
    assert_eq!(
        untrusted("198.51.100.8").await.err(),
        Some(429),
        "headers ignored"
    );

    // Failed authentications are counted per forwarded address; expired tokens are not.
    let expired = format!("token={}", token("1", unix_now() - 3600));
    for _ in 0..5 {
        assert_eq!(
            via_proxy(&hub, "192.0.2.1", &expired).await.err(),
            Some(401)
        );
    }
    assert!(
        via_proxy(&hub, "192.0.2.1", &good).await.is_ok(),
        "not locked out"
    );
    for _ in 0..2 {
        let forged = "token=a.b.c";
        assert_eq!(via_proxy(&hub, "192.0.2.2", forged).await.err(), Some(401));
    }
    assert_eq!(via_proxy(&hub, "192.0.2.2", &good).await.err(), Some(429));
    assert!(
        via_proxy(&hub, "192.0.2.3", &good).await.is_ok(),
        "others are not"
    );
}

#[tokio::test]
async fn without_trusted_proxies_forwarding_headers_are_ignored() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_MAX_CONNECTIONS_PER_IP", "1")]).await;
    let _first = via_proxy(&hub, "203.0.113.1", "userId=1").await.unwrap();
    assert_eq!(
        via_proxy(&hub, "203.0.113.2", "userId=2").await.err(),
        Some(429)
    );
}

/// Drops a resumable session of `user` (connected from `source`) and waits until it is kept;
/// returns its resume token.
async fn dropped_session(hub: &Hub, redis: &Redis, user: &str, source: [u8; 4]) -> String {
    let url = hub.ws_url(&format!("userId={user}&resume=true"));
    let mut c = Client::try_connect_from(source, &url, &[]).await.unwrap();
    let pid = resume_token(&mut c).await;
    drop(c);
    kept(redis, &pid).await;
    pid
}

#[tokio::test]
async fn resume_records_are_capped_per_user_and_per_address() {
    let redis = Redis::start().await;
    let per_user = hub(&redis, &[("HUB_RESUME_RECORDS_PER_USER", "2")]).await;
    let mut pids = Vec::new();
    for _ in 0..3 {
        pids.push(dropped_session(&per_user, &redis, "ann", [127, 0, 0, 1]).await);
    }
    assert!(!record_exists(&redis, &pids[0]).await, "the oldest went");
    assert!(record_exists(&redis, &pids[1]).await && record_exists(&redis, &pids[2]).await);
    let evicted = r#"hub_resume_records_evicted_total{cap="user"}"#;
    assert_eq!(per_user.metric(evicted).await, 1.0);

    let per_address = hub(&redis, &[("HUB_RESUME_RECORDS_PER_ADDRESS", "2")]).await;
    let mut pids = Vec::new();
    for user in ["u1", "u2", "u3"] {
        pids.push(dropped_session(&per_address, &redis, user, [127, 0, 0, 3]).await);
    }
    let other = dropped_session(&per_address, &redis, "u4", [127, 0, 0, 4]).await;
    assert!(
        !record_exists(&redis, &pids[0]).await,
        "the address's oldest went"
    );
    assert!(record_exists(&redis, &pids[1]).await && record_exists(&redis, &other).await);
    let evicted = r#"hub_resume_records_evicted_total{cap="address"}"#;
    assert_eq!(per_address.metric(evicted).await, 1.0);
}
