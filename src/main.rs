//! The relay-hub binary: parses the command line (see `relay-hub --help`; every option is
//! also an environment variable), starts logging, and runs the hub (`serve`, the default)
//! until SIGTERM or SIGINT, a job worker (`worker`), or a configuration check (`check`).

use std::{net::TcpListener, process::ExitCode};

use relay_hub::{
    announce::startup_lines,
    cli::{self, Cli, Mode},
    config::{Config, WorkerEnv},
};

/// Waits for SIGTERM or SIGINT and logs it under `target` (the hub's and the worker's differ).
async fn shutdown_signal(target: &'static str) {
    use actix_rt::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            log::error!(target: target, "cannot listen for SIGTERM: {e}");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => log::info!(target: target, "SIGTERM received"),
        _ = actix_rt::signal::ctrl_c() => log::info!(target: target, "SIGINT received"),
    }
}

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match cli.mode {
        Mode::Serve => hub(&cli, false),
        Mode::Check => hub(&cli, true),
        Mode::Worker => worker(&cli),
    }
}

/// `relay-hub worker`: takes jobs until SIGTERM or SIGINT, then finishes or releases them.
fn worker(cli: &Cli) -> ExitCode {
    let env = match WorkerEnv::from_vars(cli) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("relay-hub worker: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let signal = shutdown_signal("relay_hub::worker");
    match actix_rt::System::new().block_on(relay_hub::worker::run(env, signal)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-hub worker: {e}");
            ExitCode::from(1)
        }
    }
}

/// `relay-hub serve` (or `check`, which stops after the announcement).
fn hub(cli: &Cli, check_only: bool) -> ExitCode {
    let config = match Config::from_vars(cli) {
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
    if let Ok(local) = listener.local_addr() {
        for (warning, line) in startup_lines(&config, local) {
            if warning {
                log::warn!(target: "relay_hub::startup", "{line}");
            } else {
                log::info!(target: "relay_hub::startup", "{line}");
            }
        }
    }
    if check_only {
        return ExitCode::SUCCESS;
    }
    let signal = shutdown_signal("relay_hub::hub");
    let result = actix_rt::System::new().block_on(relay_hub::run(listener, config, signal));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-hub: {e}");
            ExitCode::from(1)
        }
    }
}
