//! The demo pages and the browser client are built into the binary: a hub started from a
//! directory that is not the source tree serves `/`, `/dashboard.html` and the client at
//! `/client/relay-hub.js` (and the modules it imports), byte for byte as in the source tree;
//! `HUB_STATIC_DIR` serves the pages from a directory instead, and the client stays built in.

mod common;

use std::path::Path;

use common::{hub_in_dir, request_bytes, Redis};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path`: status, `content-type` and body.
async fn get(port: u16, path: &str) -> (u16, String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(&request_bytes(port, "GET", path, &[], b""))
        .await
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or("")
        .to_string();
    (status, content_type, raw[split + 4..].to_vec())
}

fn source(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// A fresh empty directory under the system's temporary directory.
fn empty_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("relay-hub-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn a_hub_started_elsewhere_serves_the_built_in_pages_and_client() {
    let redis = Redis::start().await;
    let elsewhere = empty_dir("elsewhere");
    let hub = hub_in_dir(&redis, &elsewhere, &[]).await;
    for (path, file, mime) in [
        ("/", "static/index.html", "text/html; charset=utf-8"),
        (
            "/dashboard.html",
            "static/dashboard.html",
            "text/html; charset=utf-8",
        ),
        ("/app.js", "static/app.js", "text/javascript; charset=utf-8"),
        (
            "/client/relay-hub.js",
            "clients/js/src/relay-hub.js",
            "text/javascript; charset=utf-8",
        ),
        (
            "/client/client.js",
            "clients/js/src/client.js",
            "text/javascript; charset=utf-8",
        ),
    ] {
        let (status, content_type, body) = get(hub.port, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(content_type, mime, "{path}");
        assert!(body == source(file), "{path} is {file}");
    }
    for path in [
        "/client/missing.js",
        "/client/..%2Fstatic%2Fapp.js",
        "/client/relay-hub.d.ts",
        "/nothing.html",
    ] {
        assert_eq!(get(hub.port, path).await.0, 404, "{path}");
    }
}

#[tokio::test]
async fn hub_static_dir_serves_the_pages_from_a_directory_and_keeps_the_client() {
    let redis = Redis::start().await;
    let pages = empty_dir("pages");
    std::fs::write(pages.join("index.html"), "<h1>my page</h1>").unwrap();
    let dir = pages.display().to_string();
    let hub = hub_in_dir(&redis, &pages, &[("HUB_STATIC_DIR", dir.as_str())]).await;
    assert_eq!(get(hub.port, "/").await.2, b"<h1>my page</h1>");
    std::fs::write(pages.join("index.html"), "<h1>edited</h1>").unwrap();
    assert_eq!(
        get(hub.port, "/").await.2,
        b"<h1>edited</h1>",
        "read at every request"
    );
    assert_eq!(
        get(hub.port, "/dashboard.html").await.0,
        404,
        "only what the directory has"
    );
    let (status, _, body) = get(hub.port, "/client/relay-hub.js").await;
    assert_eq!((status, body), (200, source("clients/js/src/relay-hub.js")));
}
