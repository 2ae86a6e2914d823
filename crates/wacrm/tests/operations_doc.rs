//! docs/operations.md lists every metric the code exports, and nothing else: a metric added,
//! renamed or removed without the reference changing fails here.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The first string literal after each `counter!(`, `gauge!(` and `histogram!(` in the crates'
/// library sources (tests and benches are not the service).
fn exported() -> BTreeSet<String> {
    let mut files = Vec::new();
    for krate in std::fs::read_dir(workspace().join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    let mut names = BTreeSet::new();
    for file in files {
        if file.components().any(|c| c.as_os_str() == "bin") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for macro_name in ["counter!(", "gauge!(", "histogram!("] {
            for (at, _) in text.match_indices(macro_name) {
                let rest = text[at + macro_name.len()..].trim_start();
                if let Some(literal) = rest.strip_prefix('"') {
                    if let Some(end) = literal.find('"') {
                        names.insert(literal[..end].to_owned());
                    }
                }
            }
        }
    }
    names
}

/// The metric names in the reference table (first column, in backticks).
fn documented() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(workspace().join("docs/operations.md")).unwrap();
    let table = doc.split("## Metrics").nth(1).unwrap();
    table
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_metrics_reference_lists_exactly_the_metrics_the_code_exports() {
    let exported = exported();
    let documented = documented();
    assert!(exported.len() > 20, "{exported:?}");
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    let gone: Vec<_> = documented.difference(&exported).collect();
    assert!(
        undocumented.is_empty() && gone.is_empty(),
        "not in docs/operations.md: {undocumented:?}; documented but not exported: {gone:?}"
    );
}
