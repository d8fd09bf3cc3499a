//! The architecture of docs/architecture.md, checked: the library and the Python binding do not
//! depend on the command line's crates, the library prints nothing, and neither the library's
//! modules nor the CLI's import each other in a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn normal_dependencies(package: &str) -> String {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "-e", "normal", "--prefix", "none", "-p", package])
        .current_dir(workspace())
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_library_and_the_binding_leave_the_command_line_out() {
    for package in ["mesascope", "mesascope-python"] {
        let tree = normal_dependencies(package);
        assert!(tree.contains("mesascope-core"), "{tree}");
        for cli_only in ["clap ", "indicatif ", "ctrlc ", "mesascope-cli "] {
            assert!(
                !tree.lines().any(|l| l.starts_with(cli_only)),
                "{package} depends on {cli_only}"
            );
        }
    }
}

/// Every file under `dir`, at any depth.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let (mut files, mut stack) = (Vec::new(), vec![dir.to_path_buf()]);
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// `crate::X` modules each `.rs` file under `src` imports, keyed by its own module path.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    {
        for path in files_under(src) {
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut module: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module
                .last()
                .is_some_and(|m| m == "mod" || m == "lib" || m == "main")
            {
                module.pop();
            }
            let name = module.join("::");
            let text = std::fs::read_to_string(&path).unwrap();
            let mut targets = BTreeSet::new();
            for (i, _) in text.match_indices("crate::") {
                let rest = &text[i + "crate::".len()..];
                let first: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let second: String = rest[first.len()..]
                    .strip_prefix("::")
                    .map(|r| {
                        r.chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect()
                    })
                    .unwrap_or_default();
                // `crate::report::text` is the module `report::text`.
                let target = if !second.is_empty()
                    && src.join(&first).join(format!("{second}.rs")).exists()
                {
                    format!("{first}::{second}")
                } else {
                    first
                };
                if target != name && !target.is_empty() {
                    targets.insert(target);
                }
            }
            // `super::x` inside a folder module.
            if module.len() > 1 {
                for (i, _) in text.match_indices("super::") {
                    let rest = &text[i + "super::".len()..];
                    let sibling: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    let parent = module[..module.len() - 1].join("::");
                    if src.join(&parent).join(format!("{sibling}.rs")).exists() {
                        targets.insert(format!("{parent}::{sibling}"));
                    }
                }
            }
            graph.insert(name, targets);
        }
    }
    graph
}

/// A cycle in the import graph, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            return Some(path[at..].to_vec());
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_import_cycles_and_reports_import_no_pipeline() {
    let lib = imports(&workspace().join("crates/mesascope/src"));
    assert!(
        lib.contains_key("train") && lib.contains_key("report::audit"),
        "{lib:?}"
    );
    assert_eq!(
        cycle(&lib),
        None,
        "library modules import each other in a circle"
    );
    let infrastructure = ["error", "fsio", "progress"];
    for (module, targets) in lib.iter().filter(|(m, _)| m.starts_with("report")) {
        for t in targets {
            assert!(
                t.starts_with("report") || infrastructure.contains(&t.as_str()),
                "{module} imports the pipeline module {t}"
            );
        }
    }
    let cli = imports(&workspace().join("crates/cli/src"));
    assert!(cli.contains_key("commands::train"), "{cli:?}");
    assert_eq!(
        cycle(&cli),
        None,
        "CLI modules import each other in a circle"
    );
}

#[test]
fn the_library_prints_nothing() {
    {
        for path in files_under(&workspace().join("crates/mesascope/src")) {
            let text = std::fs::read_to_string(&path).unwrap();
            // Code only: the crate's docs show a user printing a report.
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for printer in ["println!", "eprintln!", "print!(", "eprint!("] {
                assert!(
                    !code.contains(printer),
                    "{} prints ({printer}): progress goes through `Progress`",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert!(cycle(&g).is_some());
    g.insert("b".to_string(), BTreeSet::new());
    assert_eq!(cycle(&g), None);
}
