//! The actor system's layers (docs/architecture.md#layers-of-the-actor-system): every module
//! of `actors/src` uses only modules of its own layer or of the layers below it. Reads the
//! sources; fails naming the file and the import that points up.

use std::{fs, path::Path};

/// The layers, bottom first: each is a folder of `actors/src` (`messages` a file), and
/// `crate::` paths name it first, since nothing is re-exported under a second name.
const LAYERS: [&str; 6] = [
    "common",
    "messages",
    "connections",
    "features",
    "hub",
    "transports",
];

fn layer_of_module(name: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| *layer == name)
}

/// The layer of a source file, from its path under `actors/src`.
fn layer_of_file(rel: &str) -> Option<usize> {
    let first = rel.split('/').next()?.trim_end_matches(".rs");
    LAYERS.iter().position(|name| *name == first)
}

/// The first path segment of every `crate::` path in `text` (inside `use crate::{...}` groups
/// too), comments left out.
fn crate_imports(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            rest = &group[i..];
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if item_start && depth == 1 && (c.is_alphabetic() || c == '_') => {
                        let name: String = group[i..]
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        found.push(name);
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn actor_system_imports_point_down() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("actors/src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(files.len() > 20, "found the sources in {}", root.display());
    let mut upward = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let Some(own) = layer_of_file(&rel) else {
            assert_eq!(rel, "lib.rs", "{rel} is in no layer");
            continue;
        };
        for name in crate_imports(&fs::read_to_string(file).unwrap()) {
            if let Some(used) = layer_of_module(&name) {
                if used > own {
                    upward.push(format!(
                        "{rel} ({}) uses crate::{name} ({})",
                        LAYERS[own], LAYERS[used]
                    ));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports pointing up:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_import_scanner_sees_grouped_and_plain_paths() {
    let text = "use crate::{\n    hub::client::{A, B},\n    messages::X, // crate::session\n};\nfn f() { crate::transport::close::NORMAL; }";
    assert_eq!(crate_imports(text), ["hub", "messages", "transport"]);
}

/// One name per module: the crate root declares its layers and re-exports nothing, so
/// `crate::auth` cannot stand beside `crate::common::auth`.
#[test]
fn the_crate_root_re_exports_no_module() {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("actors/src/lib.rs");
    let text = fs::read_to_string(&lib).unwrap();
    let uses: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("pub use"))
        .collect();
    assert!(uses.is_empty(), "re-exports in actors/src/lib.rs: {uses:?}");
    let mut mods: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';'))
        .collect();
    mods.sort_unstable();
    let mut layers = LAYERS.to_vec();
    layers.sort_unstable();
    assert_eq!(mods, layers, "the crate root declares exactly the layers");
}

/// docs/architecture.md's layer table names every file (and sub-folder) of each layer folder,
/// in that layer's row: a module added without its line fails here.
#[test]
fn the_layer_table_names_every_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let mut missing = Vec::new();
    for layer in LAYERS.iter().filter(|l| **l != "messages") {
        let folder = format!("`actors/src/{layer}/`");
        let row = doc
            .lines()
            .find(|l| l.starts_with('|') && l.contains(&folder))
            .unwrap_or_else(|| panic!("no row for {folder}"));
        for entry in fs::read_dir(root.join("actors/src").join(layer)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let name = if path.is_dir() { name + "/" } else { name };
            if name != "mod.rs" && !row.contains(&format!("`{name}`")) {
                missing.push(format!("{layer}/{name}"));
            }
        }
    }
    missing.sort();
    assert!(missing.is_empty(), "not in the layer table: {missing:?}");
}
