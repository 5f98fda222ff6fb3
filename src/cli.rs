//! The command line: `relay-hub [serve|worker|check] [--option value ...]`. Every option is
//! also read from its environment variable (`--jwt-secret` <-> `HUB_JWT_SECRET`); a flag on
//! the command line wins over the variable. The options are a table of the variable names
//! [`crate::config`] reads, so the two cannot drift apart.

use std::collections::HashMap;

use clap::{Arg, ArgMatches, Command};

use crate::config::{Env, Vars};

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The hub (also when no subcommand is given).
    Serve,
    /// A job worker.
    Worker,
    /// Reads the hub's configuration, prints what `serve` would announce, and exits.
    Check,
}

/// A parsed command line: the mode and the settings given as flags or variables.
#[derive(Debug)]
pub struct Cli {
    /// What to run.
    pub mode: Mode,
    given: HashMap<&'static str, String>,
}

impl Vars for Cli {
    fn get(&self, name: &str) -> Option<String> {
        self.given.get(name).cloned().or_else(|| Env.get(name))
    }
}

/// `(variable, help)` for options every mode reads.
const COMMON: &[(&str, &str)] = &[
    (
        "REDIS_URL",
        "Redis every instance shares [default: redis://127.0.0.1:6379]",
    ),
    (
        "REDIS_CLUSTER_URLS",
        "A Redis Cluster instead: comma-separated node URLs (redis://host:port,...)",
    ),
    (
        "HUB_JOB_STATE_TTL_SECS",
        "How long a job's state is kept after its last change [default: 86400]",
    ),
];

/// `(variable, help)` for the hub's options.
const SERVE: &[(&str, &str)] = &[
    ("PORT", "HTTP and WebSocket port [default: 8080]"),
    (
        "HUB_HOST",
        "Bind address [default: 0.0.0.0; 127.0.0.1 in dev mode]",
    ),
    (
        "HUB_AUTH",
        "`dev` trusts ?userId= (local use only, loopback unless --auth-dev-allow-remote)",
    ),
    (
        "HUB_AUTH_DEV_ALLOW_REMOTE",
        "Let dev mode listen on a non-loopback address (1 to force)",
    ),
    (
        "HUB_JWT_SECRET",
        "HS256 secret for client tokens, at least 32 bytes (prefer the variable: flags show in ps)",
    ),
    (
        "HUB_JWT_PUBLIC_KEY_FILE",
        "PEM public key for RS256, ES256 or EdDSA tokens (the key type sets the algorithm)",
    ),
    (
        "HUB_JWKS_URL",
        "Your identity provider's JWKS (https://, or http:// to loopback); keys pin their alg",
    ),
    (
        "HUB_JWKS_REFRESH_SECS",
        "Fetch the JWKS again after this many seconds (default 300; an unknown kid fetches sooner)",
    ),
    ("HUB_JWT_AUDIENCE", "Required `aud` claim"),
    ("HUB_JWT_ISSUER", "Required `iss` claim"),
    (
        "HUB_API_KEY",
        "Bearer key for /api/* (prefer the variable: flags show in ps)",
    ),
    (
        "HUB_API_OPEN",
        "Open /api/* without a key (1); without a key and this, /api/* is refused",
    ),
    (
        "WEBAPP_URL",
        "The web app's origin, allowed to connect from browsers",
    ),
    (
        "HUB_ALLOWED_ORIGINS",
        "More allowed browser origins, comma-separated",
    ),
    (
        "HUB_AUTH_FAILURES_PER_MINUTE",
        "Failed authentications per client address and minute, 0 = unlimited [default: 20]",
    ),
    (
        "HUB_AUTH_TIMEOUT_MS",
        "Time for a first-frame `auth` or a Socket.IO CONNECT [default: 10000]",
    ),
    (
        "HUB_MAX_CONNECTIONS",
        "Most open connections, 0 = unlimited [default: 0]",
    ),
    (
        "HUB_MAX_CONNECTIONS_PER_IP",
        "Most open connections per client IP, 0 = unlimited [default: 256]",
    ),
    (
        "HUB_TRUSTED_PROXIES",
        "Proxies (addresses, CIDRs, comma-separated) whose X-Forwarded-For / Forwarded headers name the client",
    ),
    (
        "HUB_PUBLIC_ROOMS",
        "Rooms any signed-in user may join: names and prefix* patterns, comma-separated; * for all",
    ),
    (
        "HUB_ROOM_AUTH_URL",
        "The application's room hook, asked who may join and post (https://, or http:// to loopback)",
    ),
    (
        "HUB_ROOM_AUTH_KEY",
        "Bearer key the hub sends to the room hook (prefer the variable: flags show in ps)",
    ),
    (
        "HUB_ROOM_AUTH_TIMEOUT_MS",
        "Time the room hook has to answer; later is a refusal [default: 2000]",
    ),
    (
        "HUB_MAX_TOKEN_LIFETIME_SECS",
        "Longest token lifetime accepted (exp - iat), also how long a revocation is kept [default: 86400]",
    ),
    (
        "HUB_USER_MESSAGES_PER_SEC",
        "Chat messages per user per second across all its sessions, 0 = unlimited [default: 10]",
    ),
    (
        "HUB_USER_MESSAGE_BURST",
        "Chat messages per user at once [default: 20]",
    ),
    (
        "HUB_USER_JOINS_PER_SEC",
        "Joins per user per second across all its sessions, 0 = unlimited [default: 10]",
    ),
    ("HUB_USER_JOIN_BURST", "Joins per user at once [default: 50]"),
    (
        "HUB_RESUME_RECORDS_PER_USER",
        "Resume records kept per user; the oldest go first [default: 16]",
    ),
    (
        "HUB_RESUME_RECORDS_PER_ADDRESS",
        "Resume records kept per client address (IPv6 per /64) [default: 256]",
    ),
    ("HUB_WORKERS", "HTTP worker threads [default: CPU count]"),
    (
        "HUB_INGEST_CONNECTIONS",
        "Redis pub/sub connections, each on its own thread [default: half the workers, rounded up]",
    ),
    ("HUB_MAX_FRAME_BYTES", "Largest client frame"),
    ("HUB_MAX_MESSAGE_CHARS", "Longest chat message"),
    (
        "HUB_MAX_ROOMS_PER_SESSION",
        "Most rooms one session may join",
    ),
    ("HUB_RATE_PER_SEC", "Client frames per second"),
    ("HUB_RATE_BURST", "Client frame burst"),
    (
        "HUB_ERROR_BURST",
        "Errors a client may cause before it is closed",
    ),
    ("HUB_HEARTBEAT_MS", "Server ping interval"),
    (
        "HUB_CLIENT_TIMEOUT_MS",
        "Silence after which a client is dropped",
    ),
    (
        "HUB_SESSION_QUEUE_FRAMES",
        "Mailbox capacity, a backstop [default: HUB_SESSION_QUEUE_BYTES / 64 + 1]",
    ),
    (
        "HUB_SESSION_QUEUE_BYTES",
        "Bytes held for one client (mailbox and write queue) before it is a slow consumer [default: 1048576]",
    ),
    (
        "HUB_WRITE_TIMEOUT_MS",
        "A client whose socket takes nothing this long while frames wait is a slow consumer [default: 10000]",
    ),
    (
        "HUB_PUBSUB_TIMEOUT_MS",
        "Silence from Redis after which the pub/sub connection counts as dead [default: 5000]",
    ),
    (
        "HUB_INBOX_MAXLEN",
        "Notifications kept per user inbox [default: 100]",
    ),
    (
        "HUB_INBOX_TTL_SECS",
        "An inbox expires this long after its last notification [default: 86400]",
    ),
    ("HUB_SOCKET_SNDBUF", "Socket send buffer, 0 = the kernel's"),
    (
        "HUB_HISTORY_LIMIT",
        "Chat messages in `joined` [default: 50]",
    ),
    (
        "HUB_HISTORY_MAXLEN",
        "Chat messages kept per room [default: 1000]",
    ),
    (
        "HUB_HISTORY_TTL_SECS",
        "Room history lifetime without messages, 0 = forever",
    ),
    (
        "HUB_HISTORY_RECOVERY_LIMIT",
        "Most messages a `since` recovery returns [default: 100]",
    ),
    (
        "HUB_SIO_RECOVERY_SECS",
        "Socket.IO connection state recovery window, 0 = off [default: 120]",
    ),
    (
        "HUB_PRESENCE_TTL_MS",
        "Room presence heartbeat TTL [default: 15000]",
    ),
    (
        "HUB_ROOM_PRESENCE_LIMIT",
        "Rooms with more users get no presence events [default: 1000]",
    ),
    (
        "HUB_STATIC_DIR",
        "Serve the demo pages from this directory [default: built in]",
    ),
    ("HUB_INSTANCE_ID", "This instance's id [default: random]"),
    (
        "HUB_SHUTDOWN_BATCH",
        "Sessions closed per batch at shutdown, 0 = all",
    ),
    (
        "HUB_SHUTDOWN_BATCH_PAUSE_MS",
        "Pause between shutdown batches",
    ),
    (
        "HUB_CANARY_INTERVAL_MS",
        "Health canary interval [default: 1000]",
    ),
    (
        "HUB_CANARY_TIMEOUT_MS",
        "Canary age at which /health is degraded [default: 3000]",
    ),
    (
        "HUB_DISPATCH_BACKLOG_BYTES",
        "Fan-out backlog above which Redis is not read",
    ),
];

/// `(variable, help)` for the worker's options.
const WORKER: &[(&str, &str)] = &[
    ("HUB_WORKER_ID", "Consumer name [default: host-pid-random]"),
    ("HUB_WORKER_CONCURRENCY", "Jobs run at once"),
    ("HUB_JOB_VISIBILITY_MS", "Lease of a taken job"),
    (
        "HUB_JOB_MAX_ATTEMPTS",
        "Attempts before a job is dead-lettered [default: 3]",
    ),
    ("HUB_JOB_RETRY_BACKOFF_MS", "Pause before a retry"),
    ("HUB_WORKER_DRAIN_MS", "Time to finish jobs at shutdown"),
    (
        "HUB_DEMO_LATENCY_MS",
        "Simulated work time of the demo handlers [default: 1000]",
    ),
    ("HUB_WORKER_TEST_HANDLERS", "Register the test handlers (1)"),
];

/// Variables that are switches: `--api-open` alone means `1`.
const SWITCHES: &[&str] = &[
    "HUB_AUTH_DEV_ALLOW_REMOTE",
    "HUB_API_OPEN",
    "HUB_WORKER_TEST_HANDLERS",
];

/// `HUB_JWT_SECRET` -> `jwt-secret`, `PORT` -> `port`.
pub fn flag_name(var: &str) -> String {
    var.strip_prefix("HUB_")
        .unwrap_or(var)
        .to_ascii_lowercase()
        .replace('_', "-")
}

fn options(table: &[(&'static str, &'static str)]) -> Vec<Arg> {
    table
        .iter()
        .map(|&(var, help)| {
            let arg = Arg::new(var)
                .long(flag_name(var))
                .env(var)
                .hide_env_values(true)
                .value_name("VALUE")
                .help(help);
            if SWITCHES.contains(&var) {
                arg.num_args(0..=1).default_missing_value("1")
            } else {
                arg
            }
        })
        .collect()
}

/// The clap command (for `--help`, `--version` and parsing).
pub fn command() -> Command {
    let serve = || options(COMMON).into_iter().chain(options(SERVE));
    Command::new("relay-hub")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Realtime hub: Redis pub/sub and an HTTP API to live WebSocket and Socket.IO pushes")
        .after_help(
            "Without a subcommand, runs `serve`. Every option can also be set with the \
             environment variable shown in its help; a flag wins over the variable.",
        )
        .args(serve())
        .subcommand(
            Command::new("serve")
                .about("Runs the hub (the default)")
                .args(serve()),
        )
        .subcommand(
            Command::new("worker")
                .about("Runs a job worker (no auth mode needed)")
                .args(options(COMMON).into_iter().chain(options(WORKER))),
        )
        .subcommand(
            Command::new("check")
                .about("Checks the hub's configuration, prints what `serve` would announce, exits")
                .args(serve()),
        )
}

fn given(
    matches: &ArgMatches,
    tables: &[&[(&'static str, &'static str)]],
) -> HashMap<&'static str, String> {
    tables
        .iter()
        .flat_map(|t| t.iter())
        .filter_map(|&(var, _)| {
            matches
                .get_one::<String>(var)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (var, v.clone()))
        })
        .collect()
}

/// Parses `args` (the first one is the program name); `Err` carries clap's message, which
/// also covers `--help` and `--version` (print it and exit with its code).
pub fn parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = command().try_get_matches_from(args)?;
    Ok(match matches.subcommand() {
        Some(("worker", m)) => Cli {
            mode: Mode::Worker,
            given: given(m, &[COMMON, WORKER]),
        },
        Some(("check", m)) => Cli {
            mode: Mode::Check,
            given: given(m, &[COMMON, SERVE]),
        },
        Some(("serve", m)) => Cli {
            mode: Mode::Serve,
            given: given(m, &[COMMON, SERVE]),
        },
        _ => Cli {
            mode: Mode::Serve,
            given: given(&matches, &[COMMON, SERVE]),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_to_the_variables() {
        let cli = parse([
            "relay-hub",
            "serve",
            "--port",
            "9000",
            "--auth",
            "dev",
            "--api-open",
        ])
        .unwrap();
        assert_eq!(cli.mode, Mode::Serve);
        assert_eq!(cli.get("PORT").as_deref(), Some("9000"));
        assert_eq!(cli.get("HUB_AUTH").as_deref(), Some("dev"));
        assert_eq!(cli.get("HUB_API_OPEN").as_deref(), Some("1"));
        let w = parse(["relay-hub", "worker", "--worker-concurrency", "3"]).unwrap();
        assert_eq!(w.mode, Mode::Worker);
        assert_eq!(w.get("HUB_WORKER_CONCURRENCY").as_deref(), Some("3"));
        assert_eq!(parse(["relay-hub"]).unwrap().mode, Mode::Serve);
    }

    #[test]
    fn help_version_and_mistakes() {
        use clap::error::ErrorKind;
        assert_eq!(
            parse(["relay-hub", "--help"]).unwrap_err().kind(),
            ErrorKind::DisplayHelp
        );
        assert_eq!(
            parse(["relay-hub", "--version"]).unwrap_err().kind(),
            ErrorKind::DisplayVersion
        );
        assert_eq!(
            parse(["relay-hub", "frobnicate"]).unwrap_err().kind(),
            ErrorKind::InvalidSubcommand
        );
        assert_eq!(
            parse(["relay-hub", "worker", "--jwt-secret", "x"])
                .unwrap_err()
                .kind(),
            ErrorKind::UnknownArgument,
            "hub options are not worker options"
        );
    }

    #[test]
    fn every_variable_the_config_reads_is_an_option() {
        let source = include_str!("config.rs");
        let known: Vec<&str> = [COMMON, SERVE, WORKER]
            .iter()
            .flat_map(|t| t.iter().map(|(v, _)| *v))
            .collect();
        for quoted in source.split('"').skip(1).step_by(2) {
            let is_var =
                quoted.starts_with("HUB_") || ["PORT", "REDIS_URL", "WEBAPP_URL"].contains(&quoted);
            if is_var && quoted.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                assert!(
                    known.contains(&quoted),
                    "{quoted} has no command-line option"
                );
            }
        }
    }
}
