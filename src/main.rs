//! The relay-hub binary: reads the configuration, starts logging, runs the hub until SIGTERM
//! or SIGINT.

use std::{net::TcpListener, process::ExitCode};

use relay_hub::config::Config;

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
    let config = match Config::from_env() {
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
