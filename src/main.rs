//! The relay-hub binary: reads the configuration, starts logging, runs the hub until SIGTERM
//! or SIGINT. `relay-hub worker` runs a job worker instead (same environment, no auth mode).

use std::{net::TcpListener, process::ExitCode};

use relay_hub::config::{Config, WorkerEnv};

async fn shutdown_signal() {
    use actix_rt::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot listen for SIGTERM: {e}");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM received"),
        _ = actix_rt::signal::ctrl_c() => log::info!("SIGINT received"),
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match std::env::args().nth(1).as_deref() {
        None => hub(),
        Some("worker") => worker(),
        Some(other) => {
            eprintln!("relay-hub: unknown command `{other}` (usage: relay-hub [worker])");
            ExitCode::from(2)
        }
    }
}

/// `relay-hub worker`: takes jobs until SIGTERM or SIGINT, then finishes or releases them.
fn worker() -> ExitCode {
    let env = match WorkerEnv::from_env() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("relay-hub worker: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    match actix_rt::System::new().block_on(relay_hub::worker::run(env, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-hub worker: {e}");
            ExitCode::from(1)
        }
    }
}

fn hub() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("relay-hub: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    log::info!(
        target: "relay_hub::startup",
        "auth: {}; {}",
        if config.dev_auth { "DEV (?userId= trusted)" } else { "HS256 tokens (HUB_JWT_SECRET)" },
        config.api_mode()
    );
    for door in config.open_doors() {
        log::warn!(target: "relay_hub::startup", "!!! {door}");
    }
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
    let result =
        actix_rt::System::new().block_on(relay_hub::run(listener, config, shutdown_signal()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-hub: {e}");
            ExitCode::from(1)
        }
    }
}
