//! The workspace's structure, checked on the source so it cannot erode:
//! no two modules of a crate import each other, HTTP handlers run no SQL and
//! no resource's handlers import another's (what they share has a module of
//! its own), and the AWS control-plane CLI links no numeric crate (training
//! lives in `accunode-ml`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path inside a crate, e.g. `["stack", "resources"]`; the crate root is empty.
type ModulePath = Vec<String>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// `src/stack/resources/mod.rs` → `["stack", "resources"]`; `src/lib.rs` → `[]`.
fn module_of(src: &Path, file: &Path) -> ModulePath {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: ModulePath = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The source without comments and without its `#[cfg(test)]` module (a
/// test module may reach anywhere in its crate).
fn code_of(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_identifier(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every module of the crate that `code` (in module `from`) names through
/// `crate::`, `super::` or `self::` paths, including `use super::{a, b}`.
fn referenced_modules(
    code: &str,
    from: &ModulePath,
    modules: &BTreeSet<ModulePath>,
) -> BTreeSet<ModulePath> {
    let mut found = BTreeSet::new();
    for (start, head) in ["crate::", "super::", "self::"]
        .iter()
        .flat_map(|head| code.match_indices(head).map(move |(i, _)| (i, *head)))
    {
        if code[..start].chars().next_back().is_some_and(is_identifier) {
            continue;
        }
        let base: ModulePath = match head {
            "crate::" => Vec::new(),
            "super::" => from[..from.len().saturating_sub(1)].to_vec(),
            _ => from.clone(),
        };
        let rest = &code[start + head.len()..];
        let paths: Vec<Vec<&str>> = if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            group
                .split(',')
                .map(|item| item.trim().split("::").collect())
                .collect()
        } else {
            let end = rest
                .find(|c: char| !(is_identifier(c) || c == ':'))
                .unwrap_or(rest.len());
            vec![rest[..end].split("::").collect()]
        };
        for path in paths {
            let mut full = base.clone();
            full.extend(
                path.iter()
                    .map(|segment| segment.trim())
                    .take_while(|segment| !segment.is_empty() && segment.chars().all(is_identifier))
                    .map(str::to_owned),
            );
            while !full.is_empty() {
                if modules.contains(&full) {
                    found.insert(full);
                    break;
                }
                full.pop();
            }
        }
    }
    found.remove(from);
    found
}

/// Pairs of modules of the crate at `src` that import each other (a module
/// and its own ancestors are exempt: `super::` reaching a parent is how Rust
/// nests modules).
fn mutual_imports(src: &Path) -> Vec<String> {
    let files: BTreeMap<ModulePath, PathBuf> = rust_files(src)
        .into_iter()
        .map(|file| (module_of(src, &file), file))
        .collect();
    let modules: BTreeSet<ModulePath> = files.keys().cloned().collect();
    let imports: BTreeMap<&ModulePath, BTreeSet<ModulePath>> = files
        .iter()
        .map(|(module, file)| (module, referenced_modules(&code_of(file), module, &modules)))
        .collect();
    let nested = |a: &ModulePath, b: &ModulePath| a.starts_with(b) || b.starts_with(a);
    let mut pairs = Vec::new();
    for (a, targets) in &imports {
        for b in targets {
            if *a < b && !nested(a, b) && imports.get(b).is_some_and(|back| back.contains(*a)) {
                pairs.push(format!("{} <-> {}", a.join("::"), b.join("::")));
            }
        }
    }
    pairs
}

#[test]
fn no_two_modules_of_a_crate_import_each_other() {
    let mut cycles = Vec::new();
    for krate in ["core", "ml", "service", "worker", "provisioner", "testkit"] {
        let src = workspace().join(krate).join("src");
        cycles.extend(
            mutual_imports(&src)
                .into_iter()
                .map(|pair| format!("{krate}: {pair}")),
        );
    }
    assert!(
        cycles.is_empty(),
        "modules importing each other: {cycles:#?}"
    );
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir(src.join("resources")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod aws;\nmod resources;\n").unwrap();
    std::fs::write(
        src.join("aws.rs"),
        "fn f() { crate::resources::aws_error(); }",
    )
    .unwrap();
    std::fs::write(
        src.join("resources/mod.rs"),
        "use super::{aws::Aws, other};\nmod network;",
    )
    .unwrap();
    std::fs::write(src.join("resources/network.rs"), "use super::Ctx;").unwrap();
    assert_eq!(mutual_imports(src), ["aws <-> resources"]);
}

/// The module of `service/src/api` that holds what several resources share;
/// it imports no resource module, and resource modules import only it.
const SHARED_HANDLER_MODULE: &str = "shared";

#[test]
fn handlers_do_http_only() {
    let api = workspace().join("service/src/api");
    let resource_modules: BTreeSet<String> = rust_files(&api)
        .iter()
        .map(|file| module_of(&api, file))
        .filter_map(|module| module.first().cloned())
        .filter(|module| module != SHARED_HANDLER_MODULE)
        .collect();
    assert!(
        resource_modules.len() >= 5,
        "the resource modules were not found: {resource_modules:?}"
    );
    let mut problems = Vec::new();
    for file in rust_files(&api) {
        let code = code_of(&file);
        let name = file
            .strip_prefix(workspace())
            .unwrap()
            .display()
            .to_string();
        if code.contains("sqlx") {
            problems.push(format!("{name} runs SQL (sqlx)"));
        }
        let own = module_of(&api, &file).first().cloned();
        for other in &resource_modules {
            let reaches = [
                format!("crate::api::{other}"),
                format!("super::{other}::"),
                format!("super::{{{other}"),
            ]
            .iter()
            .any(|path| code.contains(path.as_str()));
            if reaches && own.as_ref() != Some(other) && !file.ends_with("api/mod.rs") {
                problems.push(format!("{name} imports the api module {other}"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_control_plane_cli_links_no_numeric_crate() {
    let manifest = std::fs::read_to_string(workspace().join("provisioner/Cargo.toml")).unwrap();
    let dependencies = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .unwrap();
    for numeric in ["lightgbm3", "linfa", "ndarray", "argmin"] {
        assert!(
            !dependencies
                .lines()
                .any(|line| line.trim_start().starts_with(numeric)),
            "provisioner/Cargo.toml depends on {numeric}: training belongs in accunode-ml"
        );
    }
}
