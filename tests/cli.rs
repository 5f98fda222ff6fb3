//! The command line: `--help`, `--version`, subcommands, flags in place of environment
//! variables, and what the hub says at startup.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use common::{eventually, free_port, http_request, Redis};

fn relay_hub(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_relay-hub"))
        .args(args)
        .env_clear()
        .output()
        .expect("run relay-hub")
}

#[test]
fn help_version_and_unknown_commands() {
    let help = relay_hub(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for word in ["serve", "worker", "--port", "[env: PORT=]", "--redis-url"] {
        assert!(text.contains(word), "`{word}` in --help:\n{text}");
    }
    let version = relay_hub(&["--version"]);
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("relay-hub "));
    let worker_help = relay_hub(&["worker", "--help"]);
    assert!(String::from_utf8_lossy(&worker_help.stdout).contains("--concurrency"));
    let unknown = relay_hub(&["frobnicate"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unrecognized subcommand"));
}

/// The hub runs from flags alone (no environment), and says where to go and which doors are
/// open.
#[tokio::test]
async fn flags_configure_the_hub_and_startup_announces_open_doors() {
    let redis = Redis::start().await;
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_relay-hub"))
        .args([
            "serve",
            "--port",
            &port.to_string(),
            "--host",
            "127.0.0.1",
            "--redis-url",
            &redis.url(),
            "--auth",
            "dev",
        ])
        .env_clear()
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start relay-hub");
    let stderr = child.stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let done = line.contains("origins:");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    });
    eventually("the hub to answer on the port given by flag", || async {
        let ok = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok();
        ok.then_some(())
    })
    .await;
    let (status, _) = http_request(port, "GET", "/health", &[], "").await;
    assert_eq!(status, 200);
    let seen = lines.join().unwrap().join("\n");
    let _ = child.kill();
    let _ = child.wait();
    for expected in [
        &format!("demo page: http://127.0.0.1:{port}/"),
        "dashboard.html",
        "/health",
        "DEV MODE",
        "HTTP API: OPEN",
    ] {
        assert!(seen.contains(expected), "`{expected}` at startup:\n{seen}");
    }
}

/// The hub and the worker log their shutdown signal under different targets.
#[tokio::test]
async fn the_worker_logs_its_signal_under_its_own_target() {
    let redis = Redis::start().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_relay-hub"))
        .args(["worker", "--redis-url", &redis.url()])
        .env_clear()
        .env("RUST_LOG", "info,relay_hub::worker=debug")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the worker");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Once it listens for signals, it gets Ctrl-C.
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("stops on SIGTERM"));
    if ready.is_none() {
        let _ = child.kill();
        panic!("the worker never said it listens for signals");
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().unwrap().success());
    assert!(
        rest.iter()
            .any(|l| l.contains("relay_hub::worker] SIGINT received")),
        "{rest:?}"
    );
}
