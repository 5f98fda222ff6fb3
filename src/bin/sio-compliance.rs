//! The Socket.IO compliance server: the reference test application of the Socket.IO protocol
//! (see `relay_hub::compliance`) on port 3000 (or `PORT`) of 127.0.0.1 and ::1, until SIGTERM
//! or SIGINT.

use std::process::ExitCode;

async fn shutdown_signal() {
    use actix_rt::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = actix_rt::signal::ctrl_c() => {}
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let port = match std::env::var("PORT").ok().filter(|p| !p.is_empty()) {
        None => 3000,
        Some(p) => match p.parse() {
            Ok(port) => port,
            Err(_) => {
                eprintln!("sio-compliance: configuration error: PORT: `{p}` is not a port number");
                return ExitCode::from(2);
            }
        },
    };
    let listeners = match relay_hub::compliance::bind(port) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sio-compliance: cannot listen on port {port}: {e}");
            return ExitCode::from(1);
        }
    };
    match actix_rt::System::new().block_on(relay_hub::compliance::run(listeners, shutdown_signal()))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sio-compliance: {e}");
            ExitCode::from(1)
        }
    }
}
