//! `floor`: the cost of the one thing every delivery must do. A writer thread pinned to the
//! server's core writes `--frame-bytes` WebSocket frames round-robin to `--sockets` loopback
//! TCP connections (`TCP_NODELAY`, 64 KiB send buffer, like the hub's sockets), while a reader
//! pinned to the other core drains them. The writer's CPU time (user + system) per write is
//! the floor for CPU per delivery.

use std::{
    io::Write,
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::{args::Args, report, sys};

/// Runs the scenario.
pub fn run(mut args: Args) -> Result<Value, String> {
    let sockets: usize = args.get("sockets", 1000)?;
    let seconds: f64 = args.get("seconds", 3.0)?;
    let frame_bytes: usize = args.get("frame-bytes", 120)?;
    let writer_cpu: usize = args.get("writer-cpu", 0)?;
    let reader_cpu: usize = args.get("reader-cpu", 1)?;
    args.finish()?;
    if !(2..=127).contains(&frame_bytes) {
        return Err("--frame-bytes must be 2..=127 (one short text frame)".into());
    }

    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (ready_tx, ready_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || reader(listener, sockets, reader_cpu, ready_tx));

    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(writer(
            addr,
            sockets,
            seconds,
            frame_bytes,
            writer_cpu,
            ready_rx,
        ));
    });
    let result = rx.recv().map_err(|_| "writer thread died".to_string())??;
    let _ = reader.join();
    let (writes, cpu, wall) = result;
    Ok(json!({
        "scenario": "floor",
        "sockets": sockets,
        "frame_bytes": frame_bytes,
        "writer_cpu": writer_cpu,
        "reader_cpu": reader_cpu,
        "writes": writes,
        "seconds": report::round(wall, 3),
        "writes_per_sec": report::round(writes as f64 / wall, 0),
        "writer_cpu_secs": report::round(cpu, 3),
        "writer_utilisation_pct": report::round(cpu * 100.0 / wall, 1),
        "us_per_write": report::round(cpu * 1e6 / writes.max(1) as f64, 3),
    }))
}

type WriterResult = Result<(u64, f64, f64), String>;

fn writer(
    addr: std::net::SocketAddr,
    sockets: usize,
    seconds: f64,
    frame_bytes: usize,
    cpu: usize,
    ready: mpsc::Receiver<()>,
) -> WriterResult {
    sys::pin_thread(cpu).map_err(|e| format!("pin the writer to CPU {cpu}: {e}"))?;
    let mut conns = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        let s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        let size: libc::c_int = 64 * 1024;
        // SAFETY: a valid fd and an int option of the size we pass.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        conns.push(s);
    }
    ready
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| "the reader did not accept every connection".to_string())?;
    let mut frame = vec![0x81u8, (frame_bytes - 2) as u8];
    frame.resize(frame_bytes, b'x');
    let cpu0 = sys::thread_cpu();
    let start = Instant::now();
    let limit = Duration::from_secs_f64(seconds);
    let mut writes = 0u64;
    'outer: loop {
        for s in conns.iter_mut() {
            s.write_all(&frame).map_err(|e| format!("write: {e}"))?;
            writes += 1;
            if writes.is_multiple_of(1024) && start.elapsed() >= limit {
                break 'outer;
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = (sys::thread_cpu() - cpu0).as_secs_f64();
    drop(conns);
    Ok((writes, cpu, wall))
}

fn reader(listener: TcpListener, sockets: usize, cpu: usize, ready: mpsc::Sender<()>) {
    if let Err(e) = sys::pin_thread(cpu) {
        eprintln!("pin the reader to CPU {cpu}: {e}");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let mut tasks = Vec::with_capacity(sockets);
        for _ in 0..sockets {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tasks.push(tokio::task::spawn_local(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    if stream.readable().await.is_err() {
                        return;
                    }
                    match stream.try_read(&mut buf) {
                        Ok(0) => return,
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                }
            }));
        }
        let _ = ready.send(());
        for t in tasks {
            let _ = t.await;
        }
    });
}
