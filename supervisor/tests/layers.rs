//! The supervisor's layers hold: a module imports only its own layer and the layers below
//! it (ARCHITECTURE.md draws them), and no two modules of one layer import each other in a
//! cycle. Read from the sources of both crates (`corral-core` holds the lowest layers,
//! `corral` the rest), so a wrong import fails here, not in review; between the crates
//! cargo refuses it too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom to top: each layer may use the ones before it.
const LAYERS: &[&str] = &[
    "base",
    "telemetry",
    "wal",
    "pipeline",
    "supervision",
    "front",
    "observe",
    "cli",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `(layer, module)` of a source file: `wal/codec.rs` is `("wal", "codec")`, `wal/mod.rs`
/// is `("wal", "mod")`, `cli.rs` is `("cli", "mod")`. `None` for the crate roots.
fn place(src: &Path, file: &Path) -> Option<(String, String)> {
    let rel = file.strip_prefix(src).expect("under src");
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    match parts.as_slice() {
        [root] if root == "lib" || root == "main" => None,
        [layer] => Some((layer.clone(), "mod".into())),
        [layer, module] => Some((layer.clone(), module.clone())),
        _ => panic!(
            "{} is nested deeper than a layer and a module",
            rel.display()
        ),
    }
}

/// Every `crate::a::b` (or `corral_core::a::b`) path in `text`, as `(a, b)` (`b` empty
/// for `crate::a` alone).
fn crate_paths(text: &str) -> Vec<(String, String)> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found: Vec<(usize, (String, String))> = ["crate::", "corral_core::"]
        .into_iter()
        .flat_map(|prefix| {
            text.match_indices(prefix).map(move |(i, _)| {
                let rest = &text[i + prefix.len()..];
                let first = ident(rest);
                let after = &rest[first.len()..];
                let second = after.strip_prefix("::").map(ident).unwrap_or_default();
                (i, (first, second))
            })
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, path)| path).collect()
}

#[test]
fn every_import_points_down_or_sideways_without_a_cycle() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let roots = [here.join("../core/src"), here.join("src")];
    let mut files = Vec::new();
    for root in &roots {
        let mut found = Vec::new();
        sources(root, &mut found);
        files.extend(found.into_iter().map(|f| (root.clone(), f)));
    }
    let rank = |layer: &str| LAYERS.iter().position(|l| *l == layer);
    let mut modules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // The highest layer in corral-core and the lowest in corral.
    let (mut core_top, mut corral_bottom) = (0, LAYERS.len());
    for (root, file) in &files {
        if let Some((layer, module)) = place(root, file) {
            let r = rank(&layer).unwrap_or_else(|| {
                panic!(
                    "{}: `{layer}` is not a layer; add it to LAYERS and to ARCHITECTURE.md",
                    file.display()
                )
            });
            if root == &roots[0] {
                core_top = core_top.max(r);
            } else {
                corral_bottom = corral_bottom.min(r);
            }
            modules.entry(layer).or_default().insert(module);
        }
    }
    assert!(
        core_top < corral_bottom,
        "corral-core must hold the lowest layers only: {} is in it, {} in corral",
        LAYERS[core_top],
        LAYERS[corral_bottom.min(LAYERS.len() - 1)]
    );
    let mut wrong = Vec::new();
    // Edges between modules of one layer, for the cycle check.
    let mut edges: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (root, file) in &files {
        let Some((layer, module)) = place(root, file) else {
            continue;
        };
        let whole = std::fs::read_to_string(file).expect("readable source");
        // A module's unit tests (at its end) may use any helper of their layer: only the
        // code they test is the structure.
        let text = whole
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or_default();
        let from = rank(&layer).expect("checked above");
        for (to_layer, to_item) in crate_paths(text) {
            let Some(to) = rank(&to_layer) else {
                continue; // a crate-level item such as a macro
            };
            if to > from {
                wrong.push(format!(
                    "{}: {layer} uses crate::{to_layer}::{to_item}, a layer above it",
                    file.display()
                ));
            }
            if to_layer == layer {
                let target = if modules[&layer].contains(&to_item) {
                    to_item
                } else {
                    "mod".to_string()
                };
                if target != module {
                    edges
                        .entry((layer.clone(), module.clone()))
                        .or_default()
                        .insert(target);
                }
            }
        }
        // A layer's root re-exporting a module (`pub use segment::*`) depends on it.
        if module == "mod" {
            for line in text.lines() {
                if let Some(rest) = line.trim().strip_prefix("pub use ") {
                    let target: String = rest.chars().take_while(|c| *c != ':').collect();
                    if modules[&layer].contains(&target) {
                        edges
                            .entry((layer.clone(), module.clone()))
                            .or_default()
                            .insert(target);
                    }
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
    assert!(
        edges.values().map(BTreeSet::len).sum::<usize>() > 5,
        "the import scan found almost no edges: is it still reading the sources?"
    );

    for (layer, members) in &modules {
        // Depth-first search for a back edge among the layer's modules.
        fn visit(
            layer: &str,
            m: &str,
            edges: &BTreeMap<(String, String), BTreeSet<String>>,
            state: &mut BTreeMap<String, u8>,
            path: &mut Vec<String>,
        ) -> Option<Vec<String>> {
            match state.get(m) {
                Some(1) => {
                    let start = path.iter().position(|p| p == m).expect("on the path");
                    let mut cycle = path[start..].to_vec();
                    cycle.push(m.to_string());
                    return Some(cycle);
                }
                Some(_) => return None,
                None => {}
            }
            state.insert(m.to_string(), 1);
            path.push(m.to_string());
            for next in edges
                .get(&(layer.to_string(), m.to_string()))
                .into_iter()
                .flatten()
            {
                if let Some(c) = visit(layer, next, edges, state, path) {
                    return Some(c);
                }
            }
            path.pop();
            state.insert(m.to_string(), 2);
            None
        }
        let mut state = BTreeMap::new();
        for m in members {
            let cycle = visit(layer, m, &edges, &mut state, &mut Vec::new());
            assert!(
                cycle.is_none(),
                "import cycle in {layer}: {}",
                cycle.unwrap_or_default().join(" -> ")
            );
        }
    }
}

#[test]
fn the_scan_sees_paths_as_written() {
    assert_eq!(
        crate_paths(
            "use crate::wal::codec::{self};\n/// [`crate::base`] corral_core::telemetry::log"
        ),
        vec![
            ("wal".to_string(), "codec".to_string()),
            ("base".to_string(), String::new()),
            ("telemetry".to_string(), "log".to_string())
        ]
    );
}
