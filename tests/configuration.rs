//! The settings tables of docs/configuration.md are one fact with the command line's
//! definitions (`src/cli.rs`): every setting has a row and every row a setting, with the same
//! default; each literal default is what the configuration applies without the variable; and
//! every setting named anywhere in the docs exists.

use std::{collections::BTreeMap, path::Path};

use relay_hub::{
    cli::{hub_settings, worker_settings, Setting},
    config::{Config, WorkerEnv},
};

/// Variables in the docs' tables that are no command-line setting.
const NOT_FLAGS: &[&str] = &["RUST_LOG"];

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// The rows of the first table under the heading that starts with `heading`: variable ->
/// default, in the docs' words (backticks and a trailing `(...)` note removed, `none` as
/// `""`). A row naming two variables (`A` / `B`) gives two defaults (`x` / `y`).
fn table(doc: &str, heading: &str) -> BTreeMap<String, String> {
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("no section `{heading}`"));
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let vars: Vec<&str> = cells[0]
            .trim_start_matches("| ")
            .split(" / ")
            .map(|v| v.trim_matches('`'))
            .collect();
        let defaults: Vec<&str> = if vars.len() > 1 {
            cells[1].split(" / ").collect()
        } else {
            vec![cells[1]]
        };
        assert_eq!(vars.len(), defaults.len(), "{line}");
        for (var, default) in vars.into_iter().zip(defaults) {
            let mut default = default.replace('`', "");
            if default.ends_with(')') {
                if let Some(open) = default.rfind(" (") {
                    default.truncate(open);
                }
            }
            if default == "none" {
                default.clear();
            }
            let previous = rows.insert(var.to_string(), default);
            assert!(previous.is_none(), "{var} has two rows");
        }
    }
    assert!(!rows.is_empty(), "no table under `{heading}`");
    rows
}

/// Compares a docs table with the settings, both ways.
fn compare<'a>(rows: BTreeMap<String, String>, settings: impl Iterator<Item = &'a Setting>) {
    let mut rows = rows;
    let mut problems = Vec::new();
    for s in settings {
        match rows.remove(s.var) {
            None => problems.push(format!("{}: no row (default `{}`)", s.var, s.default)),
            Some(documented) if documented != s.default => problems.push(format!(
                "{}: the docs say `{documented}`, the command line `{}`",
                s.var, s.default
            )),
            Some(_) => {}
        }
    }
    for var in rows.keys().filter(|v| !NOT_FLAGS.contains(&v.as_str())) {
        problems.push(format!("{var}: a row but no setting"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_tables_list_every_setting_with_its_default() {
    let doc = read("docs/configuration.md");
    compare(table(&doc, "The hub (`relay-hub`)"), hub_settings());
    compare(
        table(&doc, "The job worker (`relay-hub worker`)"),
        worker_settings(),
    );
}

/// A default that is a value the variable can be set to (a number, a URL), not a rule.
fn literal(s: &Setting) -> bool {
    (!s.default.is_empty() && s.default.bytes().all(|b| b.is_ascii_digit()))
        || s.default.starts_with("redis://")
}

/// The value next to a numeric default (to show that the variable is read at all).
fn other(default: &str) -> Option<String> {
    default.parse::<u64>().ok().map(|n| (n + 1).to_string())
}

/// For every literal default: the configuration is the same with the variable unset and set
/// to the default, and differs with another value (`read` gives the configuration's `Debug`).
fn defaults_apply<'a>(
    settings: impl Iterator<Item = &'a Setting>,
    base: &[(&str, &str)],
    read: impl Fn(&dyn Fn(&str) -> Option<String>) -> Result<String, String>,
) -> usize {
    let with = |extra: Option<(&str, &str)>| {
        let vars = |name: &str| {
            base.iter()
                .chain(extra.as_ref())
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        read(&vars)
    };
    let unset = with(None).expect("the base configuration is valid");
    let mut checked = 0;
    for s in settings.filter(|s| literal(s)) {
        assert!(base.iter().all(|(k, _)| *k != s.var), "{} in base", s.var);
        let set = with(Some((s.var, s.default))).unwrap();
        assert_eq!(set, unset, "{}={} is not the default", s.var, s.default);
        if let Some(value) = other(s.default) {
            let changed =
                with(Some((s.var, &value))).unwrap_or_else(|e| panic!("{}={value}: {e}", s.var));
            assert_ne!(changed, unset, "{} is not read", s.var);
        }
        checked += 1;
    }
    checked
}

#[test]
fn the_documented_defaults_are_what_the_configuration_applies() {
    // Every optional part on (so that its settings are read), with fixed random parts.
    let hub_base = [
        ("HUB_JWKS_URL", "http://127.0.0.1:9/jwks"),
        ("HUB_ROOM_AUTH_URL", "http://127.0.0.1:9/rooms"),
        ("HUB_ROOM_AUTH_KEY", "k"),
        ("HUB_INSTANCE_ID", "i"),
    ];
    let hub = defaults_apply(hub_settings(), &hub_base, |vars| {
        Config::from_vars(&vars).map(|c| format!("{c:?}"))
    });
    let worker = defaults_apply(worker_settings(), &[("HUB_WORKER_ID", "w")], |vars| {
        WorkerEnv::from_vars(&vars).map(|w| format!("{w:?}"))
    });
    assert!(
        hub > 40 && worker > 8,
        "{hub} hub and {worker} worker defaults checked"
    );
}

#[test]
fn every_setting_the_docs_name_exists() {
    let known: Vec<&str> = hub_settings()
        .chain(worker_settings())
        .map(|s| s.var)
        .collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut pages: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    pages.push(("README.md".into(), read("README.md")));
    let mut unknown = Vec::new();
    for (page, text) in &pages {
        for (at, _) in text.match_indices("HUB_") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let name = name.trim_end_matches('_');
            if !known.contains(&name) {
                unknown.push(format!("{page}: {name}"));
            }
        }
    }
    unknown.dedup();
    assert!(unknown.is_empty(), "not settings:\n{}", unknown.join("\n"));
}
