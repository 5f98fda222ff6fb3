//! The demo pages and the browser client as the hub serves them: built into the binary at
//! compile time (`build.rs`), so the hub serves them from wherever it runs. `HUB_STATIC_DIR`
//! serves the pages from a directory instead (edit and reload, for development); the client
//! library at `/client/` is always the one built in, the one that matches this hub.

use std::{borrow::Cow, path::PathBuf};

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// Where the demo pages come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pages {
    /// The copies built into the binary.
    Embedded,
    /// A directory (`HUB_STATIC_DIR`), read at every request.
    Dir(PathBuf),
}

impl Pages {
    /// The page `name` (a flat file name, already checked), if there is one.
    pub async fn page(&self, name: &str) -> Option<Cow<'static, [u8]>> {
        match self {
            Pages::Embedded => find(PAGES, name),
            Pages::Dir(dir) => {
                let path = dir.join(name);
                actix_web::rt::task::spawn_blocking(move || std::fs::read(path))
                    .await
                    .ok()?
                    .ok()
                    .map(Cow::Owned)
            }
        }
    }
}

/// The client library file `name` (`relay-hub.js` and the modules it imports).
pub fn client_file(name: &str) -> Option<Cow<'static, [u8]>> {
    find(CLIENT, name)
}

fn find(set: &'static [(&'static str, &'static [u8])], name: &str) -> Option<Cow<'static, [u8]>> {
    set.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| Cow::Borrowed(*bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_pages_and_the_client_are_built_in() {
        let names = |set: &[(&'static str, &'static [u8])]| -> Vec<&str> {
            set.iter().map(|(n, _)| *n).collect()
        };
        let (pages, client) = (names(PAGES), names(CLIENT));
        for page in [
            "index.html",
            "app.js",
            "dashboard.html",
            "dashboard.js",
            "style.css",
        ] {
            assert!(pages.contains(&page), "{page} in {pages:?}");
        }
        for file in ["relay-hub.js", "client.js", "backoff.js", "state.js"] {
            assert!(client.contains(&file), "{file} in {client:?}");
        }
        let index = find(PAGES, "index.html").unwrap();
        let on_disk = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/static/index.html"));
        assert_eq!(*index, on_disk.unwrap()[..]);
    }
}
