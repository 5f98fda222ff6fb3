//! The browser client (`clients/js`, served by the hub at `/client/relay-hub.js`) in headless
//! Chromium against real hubs and Redis (`tests/browser/client.mjs`, scenarios described
//! there): a connection reset at the socket, a hub restarted (gracefully and killed), a token
//! refreshed through the callback (and one that ran out), and two hubs behind the page (then
//! a server disconnect, 4003, that the client does not fight). Each checks that every
//! notification and chat message arrives once and in order.
//!
//! Needs `chromium` and the scenario's node modules, like `tests/browser.rs`.

mod common;

use common::{
    browser::{run_scenario, Hubs},
    free_port, Redis,
};
use serde_json::json;

/// An HS256 secret for the token scenario (at least 32 bytes).
const SECRET: &str = "client-browser-test-secret-0123456789abcdef";

/// Runs `scenario` of `client.mjs` against `hubs` hubs on one Redis, with `env` on each and
/// every hub's page origin allowed on the others.
async fn client_scenario(scenario: &str, hubs: usize, env: &[(&str, &str)], min_checks: usize) {
    let redis = Redis::start().await;
    let ports: Vec<u16> = (0..hubs).map(|_| free_port()).collect();
    let balancer = free_port();
    let mut origins: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    origins.push(format!("http://127.0.0.1:{balancer}"));
    let origins = origins.join(",");
    let pages = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/pages");
    let mut env = env.to_vec();
    env.push(("HUB_ALLOWED_ORIGINS", &origins));
    // The test page from a directory, the client built in (as for development).
    env.push(("HUB_STATIC_DIR", pages));
    let mut hubs = Hubs::start(redis.url(), &ports, &env).await;
    let config = json!({
        "scenario": scenario,
        "hubs": hubs.urls(),
        "balancerPort": balancer,
        "jwtSecret": SECRET,
    });
    run_scenario("client.mjs", &[config.to_string()], &mut hubs, min_checks).await;
}

#[tokio::test]
async fn a_connection_reset_at_the_socket_comes_back_and_misses_nothing() {
    client_scenario("socket-kill", 1, &[], 9).await;
}

#[tokio::test]
async fn a_restarted_hub_resumes_or_recovers_with_since_and_misses_nothing() {
    client_scenario("restart", 2, &[], 8).await;
}

#[tokio::test]
async fn a_token_is_refreshed_through_the_callback_and_an_expired_one_replaced() {
    // With tokens, rooms are closed unless granted: the scenario's room is public here.
    let env = [("HUB_JWT_SECRET", SECRET), ("HUB_PUBLIC_ROOMS", "lobby")];
    client_scenario("token", 1, &env, 5).await;
}

#[tokio::test]
async fn two_hubs_behind_the_page_one_stops_and_nothing_is_missed_then_4003_stops_the_client() {
    client_scenario("two-hubs", 2, &[], 5).await;
}
