//! The command line: `relay-hub [serve] [OPTIONS]` runs the hub, `relay-hub worker [OPTIONS]`
//! a job worker. Every option is also read from its environment variable (named in `--help`
//! and in docs/configuration.md); a flag wins over the variable. Settings that have no flag
//! are read from the environment only. Values are checked by the configuration
//! ([`crate::config`]), which names the variable of a bad one.

use std::collections::HashMap;

use clap::{Args, Parser, Subcommand};

use crate::config::{Env, Vars};

/// relay-hub: Redis pub/sub to live WebSocket pushes.
#[derive(Debug, Parser)]
#[command(
    name = "relay-hub",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Every option is also read from the environment variable shown with it; a \
                  flag wins. Settings without a flag (limits, history, inbox, timeouts, ...) \
                  are read from the environment: see docs/configuration.md."
)]
pub struct Cli {
    /// What to run (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `serve`, when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub: WebSocket (/ws, /socket.io/), HTTP API, /health, /metrics, demo pages.
    Serve(ServeArgs),
    /// Run a job worker: takes AI jobs from Redis until SIGTERM or SIGINT.
    Worker(WorkerArgs),
}

/// Options of `relay-hub serve`.
#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// HTTP and WebSocket port [default: 8080]
    #[arg(long, env = "PORT")]
    pub port: Option<String>,
    /// Bind address [default: 0.0.0.0]
    #[arg(long, env = "HUB_HOST")]
    pub host: Option<String>,
    /// The Redis every instance shares [default: redis://127.0.0.1:6379]
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// `dev` trusts `?userId=` (local use only)
    #[arg(long, env = "HUB_AUTH")]
    pub auth: Option<String>,
    /// HS256 secret for client tokens
    #[arg(long, env = "HUB_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Bearer key for /api/*
    #[arg(long, env = "HUB_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Browser origins allowed besides WEBAPP_URL, comma separated
    #[arg(long, env = "HUB_ALLOWED_ORIGINS")]
    pub allowed_origins: Option<String>,
    /// HTTP worker threads, each with its registry shard [default: the cores]
    #[arg(long, env = "HUB_WORKERS")]
    pub workers: Option<String>,
    /// This instance's id in /health and session ids [default: random]
    #[arg(long, env = "HUB_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Where the demo pages are [default: static]
    #[arg(long, env = "HUB_STATIC_DIR")]
    pub static_dir: Option<String>,
}

/// Options of `relay-hub worker`.
#[derive(Debug, Default, Args)]
pub struct WorkerArgs {
    /// The Redis holding the queue [default: redis://127.0.0.1:6379]
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Jobs run at once [default: 4]
    #[arg(long, env = "HUB_WORKER_CONCURRENCY")]
    pub concurrency: Option<String>,
    /// This worker's name in Redis [default: host and pid]
    #[arg(long, env = "HUB_WORKER_ID")]
    pub worker_id: Option<String>,
}

impl ServeArgs {
    /// The settings given, by environment variable name.
    pub fn settings(&self) -> Settings {
        Settings::from([
            ("PORT", &self.port),
            ("HUB_HOST", &self.host),
            ("REDIS_URL", &self.redis_url),
            ("HUB_AUTH", &self.auth),
            ("HUB_JWT_SECRET", &self.jwt_secret),
            ("HUB_API_KEY", &self.api_key),
            ("HUB_ALLOWED_ORIGINS", &self.allowed_origins),
            ("HUB_WORKERS", &self.workers),
            ("HUB_INSTANCE_ID", &self.instance_id),
            ("HUB_STATIC_DIR", &self.static_dir),
        ])
    }
}

impl WorkerArgs {
    /// The settings given, by environment variable name.
    pub fn settings(&self) -> Settings {
        Settings::from([
            ("REDIS_URL", &self.redis_url),
            ("HUB_WORKER_CONCURRENCY", &self.concurrency),
            ("HUB_WORKER_ID", &self.worker_id),
        ])
    }
}

/// Settings from the command line, falling back to the environment: what the configuration
/// reads.
pub struct Settings(HashMap<&'static str, String>);

impl<const N: usize> From<[(&'static str, &Option<String>); N]> for Settings {
    fn from(given: [(&'static str, &Option<String>); N]) -> Self {
        Settings(
            given
                .into_iter()
                .filter_map(|(name, value)| {
                    let value = value.as_ref()?.trim();
                    (!value.is_empty()).then(|| (name, value.to_string()))
                })
                .collect(),
        )
    }
}

impl Vars for Settings {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned().or_else(|| Env.get(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_environment_and_subcommands_parse() {
        let cli = Cli::try_parse_from(["relay-hub", "--port", "9001", "--auth", "dev"]).unwrap();
        assert!(cli.command.is_none());
        let settings = cli.serve.settings();
        assert_eq!(settings.get("PORT").as_deref(), Some("9001"));
        assert_eq!(settings.get("HUB_AUTH").as_deref(), Some("dev"));

        let cli = Cli::try_parse_from(["relay-hub", "worker", "--concurrency", "2"]).unwrap();
        let Some(Command::Worker(args)) = cli.command else {
            panic!("worker subcommand")
        };
        assert_eq!(
            args.settings().get("HUB_WORKER_CONCURRENCY").as_deref(),
            Some("2")
        );
        assert!(Cli::try_parse_from(["relay-hub", "frobnicate"]).is_err());
    }
}
