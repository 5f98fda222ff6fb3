//! Tokens as identity providers issue them: RS256, ES256 and EdDSA keys from a JWKS served by
//! this test process (rotated while the hub runs) or from a PEM file; the auth table (each bad
//! token refused with its documented reason); token expiry on live sessions and refresh.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{base64_url, eventually, hub, unix_now as now, Client, Ending, Hub, Redis};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

const ISSUER: &str = "https://id.example.com/realms/app";
const AUDIENCE: &str = "relay-hub";

fn key_file(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn jwk(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(key_file(&format!("{name}.jwk.json"))).unwrap())
        .unwrap()
}

/// Claims the hub accepts (with the issuer and audience these tests configure).
fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 600, "iss": ISSUER, "aud": AUDIENCE, "name": "Idp"})
}

/// A token signed with test key `name` (`rsa-a`, `rsa-b`, `ec-a`, `ed-a`), naming `kid`.
fn signed(name: &str, kid: Option<&str>, claims: &Value) -> String {
    let pem = std::fs::read(key_file(&format!("{name}.pem"))).unwrap();
    let (alg, key) = match &name[..2] {
        "rs" => (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem)),
        "ec" => (Algorithm::ES256, EncodingKey::from_ec_pem(&pem)),
        _ => (Algorithm::EdDSA, EncodingKey::from_ed_pem(&pem)),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, &key.unwrap()).unwrap()
}

/// An identity provider's key endpoint: serves whatever JWKS it holds now.
struct Jwks {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
}

impl Jwks {
    async fn serve(names: &[&str]) -> Jwks {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let keys = Arc::new(Mutex::new(names.iter().map(|n| jwk(n)).collect()));
        let served = keys.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let body = json!({"keys": *served.lock().unwrap()}).to_string();
                tokio::spawn(async move {
                    let mut request = vec![0; 4096];
                    let _ = stream.read(&mut request).await;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        Jwks { url, keys }
    }

    fn publish(&self, names: &[&str]) {
        *self.keys.lock().unwrap() = names.iter().map(|n| jwk(n)).collect();
    }
}

async fn idp_hub(redis: &Redis, jwks: &Jwks) -> Hub {
    hub(
        redis,
        &[
            ("HUB_JWKS_URL", &jwks.url),
            ("HUB_JWT_ISSUER", ISSUER),
            ("HUB_JWT_AUDIENCE", AUDIENCE),
        ],
    )
    .await
}

/// The `userId` of `connected`, or the HTTP status the upgrade was refused with.
async fn connect_as(hub: &Hub, token: &str) -> Result<Value, u16> {
    let mut c = Client::try_connect(&hub.ws_url(&format!("token={token}")), &[]).await?;
    Ok(c.recv_type("connected").await["userId"].clone())
}

/// The `error` message a first-frame `auth` with `token` gets (then the close code 4001).
async fn refusal(hub: &Hub, token: &str) -> String {
    let mut c = Client::connect(&hub.ws_url("")).await;
    c.send(json!({"type": "auth", "token": token})).await;
    let err = c.expect_error("unauthorized").await;
    assert_eq!(c.expect_close().await, Ending::Close(4001));
    err["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_from_a_jwks_connect() {
    let redis = Redis::start().await;
    let jwks = Jwks::serve(&["rsa-a", "ec-a", "ed-a"]).await;
    let hub = idp_hub(&redis, &jwks).await;
    for (i, key) in ["rsa-a", "ec-a", "ed-a"].iter().enumerate() {
        let user = format!("{}", 10 + i);
        let token = signed(key, Some(key), &claims(&user));
        assert_eq!(connect_as(&hub, &token).await, Ok(json!(10 + i)), "{key}");
    }
    assert_eq!(hub.metric("hub_jwks_keys").await, 3.0);
}

/// A JWKS URL that redirects elsewhere (here to real keys) is not followed: a redirect could
/// lead from `https://` to plain `http://` or to another host.
#[tokio::test]
async fn a_jwks_redirect_is_not_followed() {
    let redis = Redis::start().await;
    let jwks = Jwks::serve(&["rsa-a"]).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirector = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let target = jwks.url.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = vec![0; 4096];
            let _ = stream.read(&mut request).await;
            let response = format!(
                "HTTP/1.1 302 Found\r\nlocation: {target}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    let moved = Jwks {
        url: redirector,
        keys: jwks.keys.clone(),
    };
    let hub = idp_hub(&redis, &moved).await;
    let token = signed("rsa-a", Some("rsa-a"), &claims("10"));
    assert_eq!(connect_as(&hub, &token).await, Err(401));
    assert!(hub.metric("hub_jwks_fetches_total{result=\"error\"}").await >= 1.0);
    assert_eq!(hub.metric("hub_jwks_keys").await, 0.0);
}

#[tokio::test]
async fn a_rotated_key_is_fetched_when_a_token_names_it_and_a_retired_one_stops_working() {
    let redis = Redis::start().await;
    let jwks = Jwks::serve(&["rsa-a"]).await;
    let hub = idp_hub(&redis, &jwks).await;
    let old = signed("rsa-a", Some("rsa-a"), &claims("1"));
    let new = signed("rsa-b", Some("rsa-b"), &claims("2"));
    assert_eq!(connect_as(&hub, &old).await, Ok(json!(1)));
    // The provider rotates: rsa-b signs from now on, rsa-a is retired.
    jwks.publish(&["rsa-b"]);
    let first = refusal(&hub, &new).await;
    assert!(first.contains("unknown key id `rsa-b`"), "{first}");
    // That token made the hub fetch the JWKS again (the periodic refresh is 5 minutes away).
    eventually("the JWKS to be fetched again", || async {
        let fetched = hub.metric("hub_jwks_fetches_total{result=\"ok\"}").await;
        (fetched == 2.0).then_some(())
    })
    .await;
    assert_eq!(connect_as(&hub, &new).await, Ok(json!(2)));
    let retired = refusal(&hub, &old).await;
    assert!(retired.contains("unknown key id `rsa-a`"), "{retired}");
}

#[tokio::test]
async fn a_pem_key_file_pins_its_algorithm() {
    let redis = Redis::start().await;
    let file = key_file("ec-a.pub.pem");
    let hub = hub(&redis, &[("HUB_JWT_PUBLIC_KEY_FILE", &file)]).await;
    let claims = json!({"sub": "3", "exp": now() + 600});
    assert_eq!(
        connect_as(&hub, &signed("ec-a", None, &claims)).await,
        Ok(json!(3))
    );
    let rs = refusal(&hub, &signed("rsa-a", None, &claims)).await;
    assert!(rs.contains("algorithm RS256 is not allowed"), "{rs}");
}

/// The auth table of docs/security.md: each bad token is refused with its reason.
#[tokio::test]
async fn the_auth_table() {
    let redis = Redis::start().await;
    let jwks = Jwks::serve(&["rsa-a"]).await;
    let hub = idp_hub(&redis, &jwks).await;
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims("1");
        change(&mut c);
        signed("rsa-a", Some("rsa-a"), &c)
    };
    // HS/RS confusion: HS256 "signed" with the RSA public key as the secret.
    let public_pem = std::fs::read(key_file("rsa-a.pub.pem")).unwrap();
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some("rsa-a".into());
    let confused = encode(
        &hs_header,
        &claims("1"),
        &EncodingKey::from_secret(&public_pem).unwrap(),
    )
    .unwrap();
    let b64 = |s: &str| base64_url(s.as_bytes());
    let alg_none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT","kid":"rsa-a"}"#),
        b64(&claims("1").to_string())
    );
    let table: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            with(&|c| c["exp"] = json!(now() - 3600)),
            "token expired",
        ),
        (
            "wrong signature",
            signed("rsa-b", Some("rsa-a"), &claims("1")),
            "bad signature",
        ),
        ("alg none", alg_none, "algorithm not allowed"),
        (
            "HS/RS confusion",
            confused,
            "algorithm HS256 is not allowed (the key takes RS256)",
        ),
        (
            "wrong aud",
            with(&|c| c["aud"] = json!("other-app")),
            "wrong audience (aud)",
        ),
        (
            "wrong iss",
            with(&|c| c["iss"] = json!("https://evil.example.com")),
            "wrong issuer (iss)",
        ),
        (
            "unknown kid",
            signed("rsa-a", Some("nope"), &claims("1")),
            "unknown key id `nope`",
        ),
        (
            "no exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            "missing claim `exp`",
        ),
        ("garbage", "abc".into(), "malformed token"),
    ];
    for (case, token, reason) in &table {
        let message = refusal(&hub, token).await;
        assert!(
            message == format!("invalid credentials: {reason}"),
            "{case}: got `{message}`, documented `{reason}`"
        );
        let upgrade = Client::try_connect(&hub.ws_url(&format!("token={token}")), &[]).await;
        assert_eq!(upgrade.err(), Some(401), "{case} in the query");
    }
    // No token: nothing but `auth` is answered.
    let mut anonymous = Client::connect(&hub.ws_url("")).await;
    anonymous.send(json!({"type": "ping"})).await;
    let err = anonymous.expect_error("unauthorized").await;
    assert!(err["message"]
        .as_str()
        .unwrap()
        .starts_with("authenticate first"));
    // A userId beside a valid token is ignored: the token's subject wins.
    let good = with(&|_| {});
    let mut spoof = Client::connect(&hub.ws_url(&format!("token={good}&userId=999"))).await;
    assert_eq!(spoof.recv_type("connected").await["userId"], 1);
}

/// A token about to expire: `exp` in the past but inside the hub's 5 s leeway, so the
/// session lives 2 to 3 seconds (time enough to refresh it).
fn expiring(sub: &str) -> String {
    let mut c = claims(sub);
    c["exp"] = json!(now() - 2);
    signed("rsa-a", Some("rsa-a"), &c)
}

#[tokio::test]
async fn a_session_is_closed_when_its_token_expires() {
    let redis = Redis::start().await;
    let jwks = Jwks::serve(&["rsa-a"]).await;
    let hub = idp_hub(&redis, &jwks).await;
    let mut c = Client::connect(&hub.ws_url(&format!("token={}", expiring("1")))).await;
    c.recv_type("connected").await;
    let err = c.expect_error("unauthorized").await;
    assert!(err["message"]
        .as_str()
        .unwrap()
        .starts_with("token expired"));
    assert_eq!(c.expect_close().await, Ending::Close(4002));
    assert_eq!(hub.metric("hub_token_expiries_total").await, 1.0);
}

#[tokio::test]
async fn a_fresh_token_keeps_the_session_open() {
    let redis = Redis::start().await;
    let jwks = Jwks::serve(&["rsa-a"]).await;
    let hub = idp_hub(&redis, &jwks).await;
    let mut c = Client::connect(&hub.ws_url(&format!("token={}", expiring("1")))).await;
    let old_expiry = now() + 3;
    c.recv_type("connected").await;
    let fresh = signed("rsa-a", Some("rsa-a"), &claims("1"));
    c.send(json!({"type": "auth", "token": fresh, "id": 7}))
        .await;
    let refreshed = c.recv_type("token-refreshed").await;
    assert_eq!(refreshed["id"], 7);
    assert!(refreshed["expiresAt"].as_i64().unwrap() > now() + 500);
    // A token for someone else is refused and changes nothing.
    let other = signed("rsa-a", Some("rsa-a"), &claims("2"));
    c.send(json!({"type": "auth", "token": other})).await;
    c.expect_error("forbidden").await;
    // What is tested is time passing: the old token's expiry goes by, the session stays.
    let past_old = Duration::from_secs((old_expiry + 1 - now()).max(0) as u64 + 1);
    tokio::time::sleep(past_old).await;
    c.send(json!({"type": "ping"})).await;
    c.recv_type("pong").await;
    assert_eq!(hub.metric("hub_token_expiries_total").await, 0.0);
    assert_eq!(hub.metric("hub_token_refreshes_total").await, 1.0);
}
