//! The relay-hub binary: reads the command line and the configuration, starts logging, runs
//! the hub (`serve`, the default) or a job worker (`worker`) until SIGTERM or SIGINT.

use std::{net::TcpListener, process::ExitCode};

use clap::Parser;
use relay_hub::{
    cli::{Cli, Command, ServeArgs, WorkerArgs},
    config::{Config, WorkerEnv},
};

/// Resolves on SIGTERM or SIGINT, logged under `target` (the hub's and the worker's logs
/// tell them apart).
async fn shutdown_signal(target: &'static str) {
    use actix_rt::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(e), _) | (_, Err(e)) => {
            log::error!(target: target, "cannot listen for SIGTERM and SIGINT: {e}");
            return std::future::pending().await;
        }
    };
    log::debug!(target: target, "stops on SIGTERM or SIGINT");
    tokio::select! {
        _ = term.recv() => log::info!(target: target, "SIGTERM received"),
        _ = int.recv() => log::info!(target: target, "SIGINT received"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match cli.command {
        None => hub(cli.serve),
        Some(Command::Serve(args)) => hub(args),
        Some(Command::Worker(args)) => worker(args),
    }
}

/// `relay-hub worker`: takes jobs until SIGTERM or SIGINT, then finishes or releases them.
fn worker(args: WorkerArgs) -> ExitCode {
    let env = match WorkerEnv::from_vars(&args.settings()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("relay-hub worker: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let stop = shutdown_signal("relay_hub::worker");
    match actix_rt::System::new().block_on(relay_hub::worker::run(env, stop)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-hub worker: {e}");
            ExitCode::from(1)
        }
    }
}

fn hub(args: ServeArgs) -> ExitCode {
    let config = match Config::from_vars(&args.settings()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("relay-hub: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind((config.host.as_str(), config.port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "relay-hub: cannot listen on {}:{}: {e}",
                config.host, config.port
            );
            return ExitCode::from(1);
        }
    };
    let stop = shutdown_signal("relay_hub::serve");
    let result = actix_rt::System::new().block_on(relay_hub::run(listener, config, stop));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-hub: {e}");
            ExitCode::from(1)
        }
    }
}
