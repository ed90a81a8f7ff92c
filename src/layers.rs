//! The rule of the tree, checked: `src/` is one folder per layer, lowest first
//! `pure`, `catalog`, `remote`, `pipeline`, `ops`, `api`; a file imports only its own
//! folder and the folders below it, and no files import each other in a circle.
//! Read from the source's `crate::` paths (tests excluded), so it fails at `cargo test`.

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    const LAYERS: [&str; 6] = ["pure", "catalog", "remote", "pipeline", "ops", "api"];

    /// Every module of a layer folder as `layer::file` (`mod.rs` is the layer itself),
    /// with the text it compiles outside tests.
    fn modules() -> BTreeMap<String, String> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut out = BTreeMap::new();
        for layer in LAYERS {
            for entry in std::fs::read_dir(root.join(layer)).expect("a layer folder") {
                let path = entry.expect("a file").path();
                let file = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                let text = std::fs::read_to_string(&path).expect("readable source");
                let code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
                let name = if file == "mod" {
                    layer.to_string()
                } else {
                    format!("{layer}::{file}")
                };
                out.insert(name, code);
            }
        }
        out
    }

    /// The modules `code` names through `crate::` (the longest known path each time),
    /// groups included: `crate::pipeline::{days, slice::Batch}` names both.
    fn imports(code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut name = |path: &[&str]| {
            let two = path.iter().take(2).copied().collect::<Vec<_>>().join("::");
            if known.contains(&two) {
                out.insert(two);
            } else if let Some(first) = path.first().filter(|p| known.contains(**p)) {
                out.insert(first.to_string());
            }
        };
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
            let after = &rest[path.len()..];
            if !after.starts_with('{') {
                name(&parts);
                continue;
            }
            let group = &after[1..after.find('}').unwrap_or(after.len())];
            for item in group.split(',') {
                let first: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let mut full = parts.clone();
                if first != "self" && !first.is_empty() {
                    full.push(&first);
                }
                name(&full);
            }
        }
        out
    }

    fn rank(module: &str) -> usize {
        let layer = module.split("::").next().unwrap_or("");
        LAYERS
            .iter()
            .position(|l| *l == layer)
            .unwrap_or(usize::MAX)
    }

    fn graph() -> BTreeMap<String, BTreeSet<String>> {
        let mods = modules();
        let known: BTreeSet<String> = mods.keys().cloned().collect();
        mods.iter()
            .map(|(m, code)| {
                let mut to = imports(code, &known);
                to.remove(m);
                (m.clone(), to)
            })
            .collect()
    }

    #[test]
    fn no_file_imports_a_layer_above_its_own() {
        let mut up = Vec::new();
        for (m, to) in graph() {
            for t in to.iter().filter(|t| rank(t) > rank(&m)) {
                up.push(format!("{m} -> {t}"));
            }
        }
        assert!(up.is_empty(), "imports that run back up: {up:#?}");
    }

    #[test]
    fn no_files_import_each_other_in_a_circle() {
        let g = graph();
        // Peel off modules that import nothing left; what stays sits on a circle.
        let mut left = g.clone();
        loop {
            let leaves: Vec<String> = left
                .iter()
                .filter(|(_, to)| to.iter().all(|t| !left.contains_key(t)))
                .map(|(m, _)| m.clone())
                .collect();
            if leaves.is_empty() {
                break;
            }
            for m in leaves {
                left.remove(&m);
            }
        }
        assert!(left.is_empty(), "import circles among: {:?}", left.keys());
    }

    #[test]
    fn the_pure_layer_never_calls_spi() {
        for (m, code) in modules().iter().filter(|(m, _)| rank(m) == 0) {
            for call in ["Spi::", "pgrx::spi", "SPI_"] {
                assert!(!code.contains(call), "{m} calls SPI ({call})");
            }
        }
    }

    #[test]
    fn the_check_sees_the_tree() {
        let g = graph();
        assert!(g.len() > 20, "{} modules found", g.len());
        assert!(g["pipeline::slice"].contains("catalog"));
        // A group import names every module in it.
        let known: BTreeSet<String> = g.keys().cloned().collect();
        let group = imports("use crate::pipeline::{days, slice::Batch, self};", &known);
        assert!(group.contains("pipeline::days") && group.contains("pipeline::slice"));
        assert!(group.contains("pipeline"));
        assert!(rank("api::windows") > rank("pure::sql"));
    }
}
