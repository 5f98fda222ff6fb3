//! Authentication against a real hub in JWT mode.

mod common;

use common::{base64_url, hub, unix_now as now, Client, Ending, Redis};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "test-secret-of-at-least-32-bytes";

fn token(alg: Algorithm, claims: Value, secret: &str) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn valid(sub: &str) -> String {
    token(
        Algorithm::HS256,
        json!({"sub": sub, "exp": now() + 600, "name": "Tok"}),
        SECRET,
    )
}

/// `alg: none` with no signature.
fn unsigned(sub: &str) -> String {
    use base64_url as b64;
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = b64(json!({"sub": sub, "exp": now() + 600})
        .to_string()
        .as_bytes());
    format!("{header}.{claims}.")
}

#[tokio::test]
async fn bad_tokens_are_refused_before_the_upgrade() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_JWT_SECRET", SECRET)]).await;
    let expired = token(
        Algorithm::HS256,
        json!({"sub": "1", "exp": now() - 3600}),
        SECRET,
    );
    let wrong_key = token(
        Algorithm::HS256,
        json!({"sub": "1", "exp": now() + 600}),
        "other",
    );
    let no_exp = token(Algorithm::HS256, json!({"sub": "1"}), SECRET);
    let hs512 = token(
        Algorithm::HS512,
        json!({"sub": "1", "exp": now() + 600}),
        SECRET,
    );
    let not_yet = token(
        Algorithm::HS256,
        json!({"sub": "1", "exp": now() + 600, "nbf": now() + 300}),
        SECRET,
    );
    let good = valid("1");
    let (head, rest) = good.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let tampered = format!(
        "{head}.{}.{sig}",
        base64_url(
            json!({"sub": "2", "exp": now() + 600})
                .to_string()
                .as_bytes()
        )
    );
    for (name, t) in [
        ("expired", expired),
        ("wrong signature", wrong_key),
        ("missing exp", no_exp),
        ("other alg", hs512),
        ("alg none", unsigned("1")),
        ("not yet valid", not_yet),
        ("tampered", tampered),
        ("garbage", "abc".into()),
    ] {
        let refused = Client::try_connect(&hub.ws_url(&format!("token={t}")), &[]).await;
        assert_eq!(refused.err(), Some(401), "{name} must be refused");
    }
    let dev = Client::try_connect(&hub.ws_url("userId=1"), &[]).await;
    assert_eq!(dev.err(), Some(401), "dev mode is off with a secret");
    assert_eq!(
        hub.metric("hub_connections_rejected_total{reason=\"unauthorized\"}")
            .await,
        8.0
    );
    assert_eq!(
        hub.metric("hub_connections_rejected_total{reason=\"expired_token\"}")
            .await,
        1.0,
        "expired tokens are counted apart (and not against the address's budget)"
    );
}

#[tokio::test]
async fn a_valid_token_connects_as_its_subject() {
    let redis = Redis::start().await;
    // Room `r` is public: with tokens, rooms are closed unless something grants them.
    let hub = hub(
        &redis,
        &[("HUB_JWT_SECRET", SECRET), ("HUB_PUBLIC_ROOMS", "r")],
    )
    .await;
    let mut c = Client::connect(&hub.ws_url(&format!("token={}", valid("77")))).await;
    assert_eq!(c.recv_type("connected").await["userId"], 77);
    let joined = c.join("r").await;
    assert_eq!(
        joined["members"],
        json!([{"userId": 77, "username": "Tok"}])
    );
}

#[tokio::test]
async fn first_frame_auth() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_JWT_SECRET", SECRET)]).await;

    let mut c = Client::connect(&hub.ws_url("")).await;
    c.send(json!({"type": "ping", "id": 1})).await;
    assert_eq!(c.expect_error("unauthorized").await["id"], 1);
    c.send(json!({"type": "auth", "token": valid("5")})).await;
    assert_eq!(c.recv_type("connected").await["userId"], 5);
    c.send(json!({"type": "ping"})).await;
    c.recv_type("pong").await;

    let mut bad = Client::connect(&hub.ws_url("")).await;
    bad.send(json!({"type": "auth", "token": "nope"})).await;
    bad.expect_error("unauthorized").await;
    assert_eq!(bad.expect_close().await, Ending::Close(4001));
}

#[tokio::test]
async fn silent_clients_are_closed_after_the_auth_timeout() {
    let redis = Redis::start().await;
    let hub = hub(
        &redis,
        &[("HUB_JWT_SECRET", SECRET), ("HUB_AUTH_TIMEOUT_MS", "200")],
    )
    .await;
    let mut c = Client::connect(&hub.ws_url("")).await;
    assert_eq!(c.expect_close().await, Ending::Close(4001));
}

#[tokio::test]
async fn the_analytics_topic_needs_an_admin_token() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_JWT_SECRET", SECRET)]).await;
    let mut user = Client::connect(&hub.ws_url(&format!("token={}", valid("1")))).await;
    user.recv_type("connected").await;
    user.send(json!({"type": "subscribe", "topic": "analytics"}))
        .await;
    user.expect_error("forbidden").await;
    let admin_token = token(
        Algorithm::HS256,
        json!({"sub": "2", "exp": now() + 600, "role": "admin"}),
        SECRET,
    );
    let mut admin = Client::connect(&hub.ws_url(&format!("token={admin_token}"))).await;
    admin.recv_type("connected").await;
    admin
        .send(json!({"type": "subscribe", "topic": "analytics"}))
        .await;
    assert_eq!(admin.recv_type("subscribed").await["topic"], "analytics");
}

#[tokio::test]
async fn a_configured_audience_is_required() {
    let redis = Redis::start().await;
    let hub = hub(
        &redis,
        &[
            ("HUB_JWT_SECRET", SECRET),
            ("HUB_JWT_AUDIENCE", "relay-hub"),
        ],
    )
    .await;
    let claims = |aud: Option<&str>| {
        let mut c = json!({"sub": "1", "exp": now() + 600});
        if let Some(aud) = aud {
            c["aud"] = json!(aud);
        }
        token(Algorithm::HS256, c, SECRET)
    };
    for bad in [claims(None), claims(Some("someone-else"))] {
        let refused = Client::try_connect(&hub.ws_url(&format!("token={bad}")), &[]).await;
        assert_eq!(refused.err(), Some(401));
    }
    let mut ok =
        Client::connect(&hub.ws_url(&format!("token={}", claims(Some("relay-hub"))))).await;
    ok.recv_type("connected").await;
}

#[tokio::test]
async fn a_configured_issuer_is_required_and_a_userid_beside_a_token_is_ignored() {
    let redis = Redis::start().await;
    let issuer = "https://id.example.com/realms/app";
    let hub = hub(
        &redis,
        &[("HUB_JWT_SECRET", SECRET), ("HUB_JWT_ISSUER", issuer)],
    )
    .await;
    let claims = |iss: Option<&str>| {
        let mut c = json!({"sub": "1", "exp": now() + 600});
        if let Some(iss) = iss {
            c["iss"] = json!(iss);
        }
        token(Algorithm::HS256, c, SECRET)
    };
    for bad in [claims(None), claims(Some("https://evil.example.com"))] {
        let refused = Client::try_connect(&hub.ws_url(&format!("token={bad}")), &[]).await;
        assert_eq!(refused.err(), Some(401));
    }
    let good = claims(Some(issuer));
    let mut ok = Client::connect(&hub.ws_url(&format!("token={good}&userId=999"))).await;
    let connected = ok.recv_type("connected").await;
    assert_eq!(connected["userId"], 1, "the token's sub wins over ?userId=");
}
