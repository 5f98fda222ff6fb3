//! The binary's command line: help, version, unknown commands, and `check` refusing an
//! unsafe configuration with a message that names the variable.

use std::process::Command;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_relay-hub"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run relay-hub");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn help_and_version() {
    let (code, help) = run(&["--help"], &[]);
    assert_eq!(code, 0, "{help}");
    for want in ["serve", "worker", "check", "--jwt-secret", "HUB_JWT_SECRET"] {
        assert!(help.contains(want), "{want} missing:\n{help}");
    }
    let (code, version) = run(&["--version"], &[]);
    assert_eq!(code, 0);
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let (code, err) = run(&["frobnicate"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("frobnicate"), "{err}");
}

#[test]
fn check_announces_and_refuses_open_doors() {
    let (code, out) = run(&["check", "--port", "0"], &[("HUB_AUTH", "dev")]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("/dashboard.html") && out.contains("/health"),
        "{out}"
    );
    assert!(out.contains("DEV MODE"), "{out}");
    let (code, out) = run(&["check", "--host", "0.0.0.0"], &[("HUB_AUTH", "dev")]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("HUB_AUTH_DEV_ALLOW_REMOTE"), "{out}");
    // A flag wins over its variable.
    let (code, out) = run(
        &["check", "--port", "0", "--auth", "dev"],
        &[("HUB_AUTH", "nope")],
    );
    assert_eq!(code, 0, "{out}");
}
