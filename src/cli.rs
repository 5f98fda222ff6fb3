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

/// A setting: its environment variable, its default as `docs/configuration.md` gives it
/// (empty: none), and its help. `tests/configuration.rs` compares these with the docs' table
/// both ways, and each literal default with what the configuration does without the variable.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    /// The variable (`HUB_JWT_SECRET`); the flag is [`flag_name`] of it.
    pub var: &'static str,
    /// The default, in the docs' words; `""` when there is none.
    pub default: &'static str,
    /// What it sets.
    pub help: &'static str,
}

const fn s(var: &'static str, default: &'static str, help: &'static str) -> Setting {
    Setting { var, default, help }
}

/// Settings every mode reads.
const COMMON: &[Setting] = &[
    s(
        "REDIS_URL",
        "redis://127.0.0.1:6379",
        "Redis every instance shares",
    ),
    s(
        "REDIS_CLUSTER_URLS",
        "",
        "A Redis Cluster instead: comma-separated node URLs (redis://host:port,...)",
    ),
    s(
        "HUB_JOB_STATE_TTL_SECS",
        "86400",
        "How long a job's state is kept after its last change",
    ),
];

/// The hub's settings.
const SERVE: &[Setting] = &[
    s("PORT", "8080", "HTTP and WebSocket port"),
    s("HUB_HOST", "0.0.0.0; 127.0.0.1 in dev mode", "Bind address"),
    s(
        "HUB_AUTH",
        "",
        "`dev` trusts ?userId= (local use only, loopback unless --auth-dev-allow-remote)",
    ),
    s(
        "HUB_AUTH_DEV_ALLOW_REMOTE",
        "0",
        "Let dev mode listen on a non-loopback address (1 to force)",
    ),
    s(
        "HUB_JWT_SECRET",
        "",
        "HS256 secret for client tokens, at least 32 bytes (prefer the variable: flags show in ps)",
    ),
    s(
        "HUB_JWT_PUBLIC_KEY_FILE",
        "",
        "PEM public key for RS256, ES256 or EdDSA tokens (the key type sets the algorithm)",
    ),
    s(
        "HUB_JWKS_URL",
        "",
        "Your identity provider's JWKS (https://, or http:// to loopback); keys pin their alg",
    ),
    s(
        "HUB_JWKS_REFRESH_SECS",
        "300",
        "Fetch the JWKS again after this many seconds (an unknown kid fetches sooner)",
    ),
    s("HUB_JWT_AUDIENCE", "", "Required `aud` claim"),
    s("HUB_JWT_ISSUER", "", "Required `iss` claim"),
    s(
        "HUB_API_KEY",
        "",
        "Bearer key for /api/* (prefer the variable: flags show in ps)",
    ),
    s(
        "HUB_API_OPEN",
        "0",
        "Open /api/* without a key (1); without a key and this, /api/* is refused",
    ),
    s(
        "WEBAPP_URL",
        "",
        "The web app's origin, allowed to connect from browsers",
    ),
    s(
        "HUB_ALLOWED_ORIGINS",
        "",
        "More allowed browser origins, comma-separated",
    ),
    s(
        "HUB_AUTH_FAILURES_PER_MINUTE",
        "20",
        "Failed authentications per client address and minute, 0 = unlimited",
    ),
    s(
        "HUB_AUTH_TIMEOUT_MS",
        "10000",
        "Time for a first-frame `auth` or a Socket.IO CONNECT",
    ),
    s(
        "HUB_MAX_CONNECTIONS",
        "0",
        "Most open connections, 0 = unlimited",
    ),
    s(
        "HUB_MAX_CONNECTIONS_PER_IP",
        "256",
        "Most open connections per client IP, 0 = unlimited",
    ),
    s(
        "HUB_TRUSTED_PROXIES",
        "",
        "Proxies (addresses, CIDRs, comma-separated) whose X-Forwarded-For / Forwarded headers name the client",
    ),
    s(
        "HUB_PUBLIC_ROOMS",
        "",
        "Rooms any signed-in user may join: names and prefix* patterns, comma-separated; * for all",
    ),
    s(
        "HUB_ROOM_AUTH_URL",
        "",
        "The application's room hook, asked who may join and post (https://, or http:// to loopback)",
    ),
    s(
        "HUB_ROOM_AUTH_KEY",
        "",
        "Bearer key the hub sends to the room hook (prefer the variable: flags show in ps)",
    ),
    s(
        "HUB_ROOM_AUTH_TIMEOUT_MS",
        "2000",
        "Time the room hook has to answer; later is a refusal",
    ),
    s(
        "HUB_MAX_TOKEN_LIFETIME_SECS",
        "86400",
        "Longest token lifetime accepted (exp - iat), also how long a revocation is kept",
    ),
    s(
        "HUB_USER_MESSAGES_PER_SEC",
        "10",
        "Chat messages per user per second across all its sessions, 0 = unlimited",
    ),
    s(
        "HUB_USER_MESSAGE_BURST",
        "20",
        "Chat messages per user at once",
    ),
    s(
        "HUB_USER_JOINS_PER_SEC",
        "10",
        "Joins per user per second across all its sessions, 0 = unlimited",
    ),
    s("HUB_USER_JOIN_BURST", "50", "Joins per user at once"),
    s(
        "HUB_RESUME_RECORDS_PER_USER",
        "16",
        "Resume records kept per user; the oldest go first",
    ),
    s(
        "HUB_RESUME_RECORDS_PER_ADDRESS",
        "256",
        "Resume records kept per client address (IPv6 per /64)",
    ),
    s("HUB_WORKERS", "CPU count", "HTTP worker threads"),
    s(
        "HUB_INGEST_CONNECTIONS",
        "half of HUB_WORKERS, rounded up",
        "Redis pub/sub connections, each on its own thread",
    ),
    s("HUB_MAX_FRAME_BYTES", "65536", "Largest client frame"),
    s("HUB_MAX_MESSAGE_CHARS", "4000", "Longest chat message"),
    s(
        "HUB_MAX_ROOMS_PER_SESSION",
        "100",
        "Most rooms one session may join",
    ),
    s("HUB_RATE_PER_SEC", "20", "Client frames per second"),
    s("HUB_RATE_BURST", "40", "Client frame burst"),
    s(
        "HUB_ERROR_BURST",
        "10",
        "Errors a client may cause before it is closed",
    ),
    s("HUB_HEARTBEAT_MS", "30000", "Server ping interval"),
    s(
        "HUB_CLIENT_TIMEOUT_MS",
        "60000",
        "Silence after which a client is dropped",
    ),
    s(
        "HUB_SESSION_QUEUE_FRAMES",
        "HUB_SESSION_QUEUE_BYTES / 64 + 1",
        "Mailbox capacity, a backstop",
    ),
    s(
        "HUB_SESSION_QUEUE_BYTES",
        "1048576",
        "Bytes held for one client (mailbox and write queue) before it is a slow consumer",
    ),
    s(
        "HUB_WRITE_TIMEOUT_MS",
        "10000",
        "A client whose socket takes nothing this long while frames wait is a slow consumer",
    ),
    s(
        "HUB_PUBSUB_TIMEOUT_MS",
        "5000",
        "Silence from a Redis node after which its pub/sub connection counts as dead",
    ),
    s(
        "HUB_REDIS_FAILOVER_WAIT_MS",
        "5000",
        "On a cluster, how long a command whose slot has no reachable master waits for a failover",
    ),
    s(
        "HUB_INBOX_MAXLEN",
        "100",
        "Notifications kept per user inbox",
    ),
    s(
        "HUB_INBOX_TTL_SECS",
        "86400",
        "An inbox expires this long after its last notification",
    ),
    s(
        "HUB_INBOX_LOW_PER_MINUTE",
        "10",
        "Low-priority notifications pushed live per user and minute (0: no cap)",
    ),
    s(
        "HUB_SOCKET_SNDBUF",
        "65536",
        "Socket send buffer, 0 = the kernel's",
    ),
    s("HUB_HISTORY_LIMIT", "50", "Chat messages in `joined`"),
    s(
        "HUB_HISTORY_MAXLEN",
        "1000",
        "Chat messages kept per room",
    ),
    s(
        "HUB_HISTORY_TTL_SECS",
        "604800",
        "Room history lifetime without messages, 0 = forever",
    ),
    s(
        "HUB_HISTORY_RECOVERY_LIMIT",
        "100",
        "Most messages a `since` recovery returns",
    ),
    s(
        "HUB_SIO_RECOVERY_SECS",
        "120",
        "Session resume window (Socket.IO recovery and native resume), 0 = off",
    ),
    s(
        "HUB_PRESENCE_TTL_MS",
        "15000",
        "Room presence heartbeat TTL",
    ),
    s(
        "HUB_ROOM_PRESENCE_LIMIT",
        "1000",
        "Rooms with more users get no presence events",
    ),
    s(
        "HUB_STATIC_DIR",
        "",
        "Serve the demo pages from this directory instead of the built-in copies",
    ),
    s("HUB_INSTANCE_ID", "random", "This instance's id"),
    s(
        "HUB_SHUTDOWN_BATCH",
        "0",
        "Sessions closed per batch at shutdown, 0 = all",
    ),
    s(
        "HUB_SHUTDOWN_BATCH_PAUSE_MS",
        "0",
        "Pause between shutdown batches",
    ),
    s(
        "HUB_CANARY_INTERVAL_MS",
        "1000",
        "Health canary interval",
    ),
    s(
        "HUB_CANARY_TIMEOUT_MS",
        "3000",
        "Canary age at which /health is degraded",
    ),
    s(
        "HUB_JOB_TYPES",
        "",
        "Job types POST /api/jobs queues even while no worker has advertised them, comma-separated",
    ),
    s(
        "HUB_DISPATCH_BACKLOG_BYTES",
        "4194304",
        "Fan-out backlog above which Redis is not read",
    ),
];

/// The worker's settings.
const WORKER: &[Setting] = &[
    s(
        "HUB_WORKER_ID",
        "{hostname}-{pid}-{random}",
        "Consumer name",
    ),
    s("HUB_WORKER_CONCURRENCY", "4", "Jobs run at once"),
    s("HUB_JOB_VISIBILITY_MS", "30000", "Lease of a taken job"),
    s(
        "HUB_JOB_MAX_ATTEMPTS",
        "3",
        "Attempts before a job is dead-lettered",
    ),
    s("HUB_JOB_RETRY_BACKOFF_MS", "1000", "Pause before a retry"),
    s(
        "HUB_WORKER_DRAIN_MS",
        "10000",
        "Time to finish jobs at shutdown",
    ),
    s(
        "HUB_DEMO_LATENCY_MS",
        "1000",
        "Simulated work time of the demo handlers",
    ),
    s(
        "HUB_WORKER_TEST_HANDLERS",
        "0",
        "Register the test handlers (1)",
    ),
];

/// The hub's settings (`serve` and `check`), in the order of `--help`.
pub fn hub_settings() -> impl Iterator<Item = &'static Setting> {
    COMMON.iter().chain(SERVE)
}

/// The worker's settings, in the order of `--help`.
pub fn worker_settings() -> impl Iterator<Item = &'static Setting> {
    COMMON.iter().chain(WORKER)
}

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

fn options(table: &[Setting]) -> Vec<Arg> {
    table
        .iter()
        .map(|&Setting { var, default, help }| {
            let help = match default {
                "" => help.to_string(),
                d => format!("{help} [default: {d}]"),
            };
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

fn given(matches: &ArgMatches, tables: &[&[Setting]]) -> HashMap<&'static str, String> {
    tables
        .iter()
        .flat_map(|t| t.iter())
        .filter_map(|&Setting { var, .. }| {
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
            .flat_map(|t| t.iter().map(|s| s.var))
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
