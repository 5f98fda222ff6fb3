//! docs/operations.md's metrics list is one fact with the code: every metric the hub, its
//! actors and the job queue register is listed there, and every `hub_*` metric any page names
//! exists in the code.

use std::path::{Path, PathBuf};

/// Metrics registered only when a crate is embedded without the hub (the hub passes its own
/// counter instead).
const LIBRARY_ONLY: &[&str] = &["hub_engineio_slow_consumer_total"];

/// Names that start like a metric in the docs but are code paths (`hub_wire::protocol`).
const NOT_METRICS: &[&str] = &["hub_wire", "hub_messages"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

/// Every `hub_...` word in `text` (a prefix followed by `{`, e.g. `hub_ai_{name}`, is left
/// out: a family named in prose).
fn metric_names(text: &str, quoted: bool) -> Vec<String> {
    let mut names = Vec::new();
    let start = if quoted { "\"hub_" } else { "hub_" };
    for (at, _) in text.match_indices(start) {
        if !quoted && at > 0 {
            let before = text.as_bytes()[at - 1];
            if before.is_ascii_alphanumeric() || before == b'_' || before == b':' {
                continue;
            }
        }
        let from = at + usize::from(quoted);
        let name: String = text[from..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        let after = text[from + name.len()..].chars().next();
        if quoted && after != Some('"') || name.ends_with('_') {
            continue;
        }
        names.push(name);
    }
    names
}

/// The metric names the code registers (string literals `"hub_..."` outside tests).
fn registered() -> Vec<String> {
    let mut sources = Vec::new();
    for dir in ["src", "actors/src", "jobs/src", "store/src", "cache/src"] {
        files(&root().join(dir), "rs", &mut sources);
    }
    let mut names: Vec<String> = sources
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap().to_string();
            metric_names(&code, true)
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn every_metric_is_listed_and_every_listed_metric_exists() {
    let code = registered();
    assert!(code.len() > 50, "{code:?}");
    let operations = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let listed = metric_names(&operations, false);
    let unlisted: Vec<&String> = code
        .iter()
        .filter(|m| !LIBRARY_ONLY.contains(&m.as_str()) && !listed.contains(m))
        .collect();
    assert!(
        unlisted.is_empty(),
        "registered but not in docs/operations.md: {unlisted:?}"
    );

    let mut pages = Vec::new();
    files(&root().join("docs"), "md", &mut pages);
    pages.push(root().join("README.md"));
    let mut unknown = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for name in metric_names(&text, false) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            if !NOT_METRICS.contains(&base) && !code.iter().any(|m| m == base || *m == name) {
                unknown.push(format!("{}: {name}", page.display()));
            }
        }
    }
    unknown.dedup();
    assert!(unknown.is_empty(), "not metrics of the code: {unknown:?}");
}
