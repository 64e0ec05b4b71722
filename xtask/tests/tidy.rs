//! Tidy: repository rules checked as ordinary tests, so `cargo test`, nextest and
//! `cargo xtask ci` all enforce them (rust-analyzer's pattern).
//!
//! Each rule is a function from the workspace root to a list of violations that name the
//! offending file; the `*_rule_can_fail` tests run every rule against a tiny fake tree to
//! prove it is not vacuous. The layout rules (no `#[path]`, file length, import circles)
//! and the file helpers live in `layout/`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod layout;

use layout::fs::{FakeTree, files_under, files_with_extension, read, relative, subdirectories};

/// The package that must stay free of storage, network and runtime I/O crates.
const CORE: &str = "tidesync-core";

/// Crates `tidesync-core` must not reach through normal dependencies (style guideline 2:
/// sync-core knows nothing of SQLite, redb, HTTP, axum, PostgreSQL, and does no I/O).
const FORBIDDEN_IN_CORE: &[&str] = &[
    "rusqlite",
    "libsqlite3-sys",
    "redb",
    "reqwest",
    "hyper",
    "axum",
    "tokio-postgres",
    "postgres",
    "deadpool-postgres",
    "sqlx",
    "tower-http",
    "wiremock",
    "mio",
    "tidesync-server",
];

/// Our own crates that depend on core, never the other way round.
const FORBIDDEN_PREFIXES_IN_CORE: &[&str] = &["tidesync-store-", "tidesync-transport-"];

/// The test-only harness of the official Node peers: a dev-dependency only, and a leaf.
const PEERS: &str = "tidesync-peers";

/// The shared test suites (transport conformance, engine properties): a dev-dependency only.
const SUITE: &str = "tidesync-engine-suite";

/// Every committed store fixture (the files under `crates/*/tests/fixtures/`) with its
/// sha256. A committed fixture never changes: a layout change bumps the format, adds a
/// migration and a new fixture, and a line here (docs/FORMATS.md).
const FIXTURES: &[(&str, &str)] = &[
    (
        "crates/store-redb/tests/fixtures/format-v1-f36987e.redb.bin",
        "e1a6def24f4189c89491eaa1b1a1673d81ef27e3cf3cee27598e9a60f19d9540",
    ),
    (
        "crates/store-redb/tests/fixtures/format-v1.redb.bin",
        "3e344252c13f5f0b3cd6f94d6a0d1e4561ae33f78a3b89e73de57634f303ac25",
    ),
    (
        "crates/store-redb/tests/fixtures/format-v2.redb.bin",
        "a719167c0aebac7cbadbac7caacf535728ffaa694b1d0fd29b9595872f8b846e",
    ),
    (
        "crates/store-sqlite/tests/fixtures/format-v1.sqlite",
        "d5b03ecbcc143cd6611fa692edc2da7fe119a6794e2cc35d097a4ac521a0dc61",
    ),
    (
        "crates/store-sqlite/tests/fixtures/format-v2-ab4395a.sqlite",
        "3cd2f1b89bc8c9fdff201594806129e9af8342241338554bec8e2377e3ef1d0d",
    ),
    (
        "crates/store-sqlite/tests/fixtures/format-v2.sqlite",
        "f2220722644a12a54a95a050eff3979568cf00339488931bdcd4a004b67ca1e3",
    ),
    (
        "crates/store-sqlite/tests/fixtures/format-v3-af44667.sqlite",
        "033aee219147fc59bacf4d2d981ba39a2d944dc31a7f5754bf394b5ed27718f3",
    ),
    (
        "crates/store-sqlite/tests/fixtures/format-v3.sqlite",
        "4067bc6a6ba78d3f68942c1cd8990a03c25f9760f69b21e762e19ba9e7f7c329",
    ),
    (
        "crates/store-sqlite/tests/fixtures/format-v4.sqlite",
        "a4f58b013f84de3d73dd10a2a73616ae4c3dfa9a06e7bbd3a7cd710bd91a2884",
    ),
    (
        "crates/store-sqlite/tests/fixtures/format-v5.sqlite",
        "79a2124e8afafd6b10b386ca6e6a30be56206c1acc19b3088c984b763ffbbf48",
    ),
];

/// The only functions test code may sleep in: retry-until-condition helpers (a loop that
/// checks a condition, sleeps a little and gives up after a bound), found by name prefix.
/// Everything else waits for an event, a gate, or a paused clock (`tokio::time::pause`).
const RETRY_HELPERS: &[&str] = &["eventually", "retry_until", "wait_until"];

// ---- the rules, run against this workspace ----

#[test]
fn crate_roots_open_with_module_docs() -> Result<()> {
    assert_clean(
        "crate roots must open with a `//!` comment",
        &module_doc_violations(&workspace_root()?)?,
    );
    Ok(())
}

#[test]
fn no_should_panic() -> Result<()> {
    assert_clean(
        "no #[should_panic]",
        &should_panic_violations(&workspace_root()?)?,
    );
    Ok(())
}

#[test]
fn no_todo_in_library_code() -> Result<()> {
    assert_clean(
        "no todo!/unimplemented! in crates/*/src",
        &todo_violations(&workspace_root()?)?,
    );
    Ok(())
}

#[test]
fn manifests_use_workspace_lints() -> Result<()> {
    assert_clean(
        "every manifest needs `[lints] workspace = true`",
        &lints_violations(&workspace_root()?)?,
    );
    Ok(())
}

#[test]
fn core_has_no_io_dependencies() -> Result<()> {
    assert_clean(
        "tidesync-core dependency rule",
        &core_dependency_violations(&workspace_root()?)?,
    );
    Ok(())
}

#[test]
fn peers_harness_is_test_only() -> Result<()> {
    let metadata: serde_json::Value = serde_json::from_str(&cargo(
        &workspace_root()?,
        &["metadata", "--locked", "--no-deps", "--format-version", "1"],
    )?)
    .context("cargo metadata printed invalid JSON")?;
    assert_clean(
        "test-only crates (tidesync-peers, tidesync-engine-suite) are dev-dependencies only",
        &peers_dependency_violations(&metadata),
    );
    Ok(())
}

#[test]
fn fixtures_are_frozen() -> Result<()> {
    assert_clean(
        "committed fixtures never change (a layout change bumps the format; docs/FORMATS.md)",
        &fixture_violations(&workspace_root()?, FIXTURES)?,
    );
    Ok(())
}

#[test]
fn tests_sleep_only_in_retry_helpers() -> Result<()> {
    assert_clean(
        "no sleep as synchronisation in tests",
        &sleep_violations(&workspace_root()?)?,
    );
    Ok(())
}

fn assert_clean(rule: &str, violations: &[String]) {
    assert!(
        violations.is_empty(),
        "tidy: {rule}:\n  {}",
        violations.join("\n  ")
    );
}

fn workspace_root() -> Result<PathBuf> {
    Ok(Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask's manifest directory has no parent")?
        .to_path_buf())
}

// ---- the rules, as functions of a root path ----

/// Every `crates/*/src/lib.rs`, `examples/*/src/main.rs` and `xtask/src/main.rs` opens with
/// a `//!` line (style guideline 4).
fn module_doc_violations(root: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for (parent, file) in [("crates", "src/lib.rs"), ("examples", "src/main.rs")] {
        for package in subdirectories(&root.join(parent))? {
            files.push(package.join(file));
        }
    }
    files.push(root.join("xtask/src/main.rs"));

    let mut violations = Vec::new();
    for file in files.into_iter().filter(|file| file.is_file()) {
        let text = read(&file)?;
        let first = text.lines().map(str::trim).find(|line| !line.is_empty());
        if !first.is_some_and(|line| line.starts_with("//!")) {
            violations.push(format!(
                "{}: must open with a `//!` comment saying what the crate is and is not (first line: {:?})",
                relative(root, &file),
                first.unwrap_or("<empty file>"),
            ));
        }
    }
    Ok(violations)
}

/// No `#[should_panic]` anywhere under `crates/`: match the `Err` variant instead (style
/// guideline 8).
fn should_panic_violations(root: &Path) -> Result<Vec<String>> {
    let mut violations = Vec::new();
    for file in files_with_extension(&root.join("crates"), "rs")? {
        for (index, line) in read(&file)?.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("#[") && line.contains("should_panic") {
                violations.push(format!(
                    "{}:{}: `#[should_panic]`; return a Result or match the `Err` variant instead",
                    relative(root, &file),
                    index + 1,
                ));
            }
        }
    }
    Ok(violations)
}

/// No `todo!(` or `unimplemented!(` in `crates/*/src`.
fn todo_violations(root: &Path) -> Result<Vec<String>> {
    let mut violations = Vec::new();
    for package in subdirectories(&root.join("crates"))? {
        for file in files_with_extension(&package.join("src"), "rs")? {
            for (index, line) in read(&file)?.lines().enumerate() {
                for name in ["todo!(", "unimplemented!("] {
                    if contains_macro_call(line, name) {
                        violations.push(format!(
                            "{}:{}: `{name}..)` in library code; return an error instead",
                            relative(root, &file),
                            index + 1,
                        ));
                    }
                }
            }
        }
    }
    Ok(violations)
}

/// Every `Cargo.toml` under `crates/` and `examples/` inherits the workspace lints.
fn lints_violations(root: &Path) -> Result<Vec<String>> {
    let mut violations = Vec::new();
    for parent in ["crates", "examples"] {
        for manifest in files_with_extension(&root.join(parent), "toml")? {
            if manifest
                .file_name()
                .is_some_and(|name| name == "Cargo.toml")
                && !inherits_workspace_lints(&read(&manifest)?)
            {
                violations.push(format!(
                    "{}: add `[lints]` with `workspace = true`",
                    relative(root, &manifest)
                ));
            }
        }
    }
    Ok(violations)
}

/// Each file under `crates/*/tests/fixtures/` has the sha256 `pinned` gives it, and every
/// pinned file is there.
fn fixture_violations(root: &Path, pinned: &[(&str, &str)]) -> Result<Vec<String>> {
    use sha2::Digest as _;
    let mut found = BTreeMap::new();
    for package in subdirectories(&root.join("crates"))? {
        for file in files_under(&package.join("tests/fixtures"))? {
            let digest = sha2::Sha256::digest(fs::read(&file)?);
            let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
            found.insert(relative(root, &file), hex);
        }
    }
    let mut violations = Vec::new();
    for (path, hash) in &found {
        match pinned.iter().find(|(p, _)| p == path) {
            None => violations.push(format!(
                "{path}: a new fixture; pin it in FIXTURES as (\"{path}\", \"{hash}\")"
            )),
            Some((_, pin)) if pin != hash => violations.push(format!(
                "{path}: changed (sha256 {hash}, pinned {pin}); a committed fixture never \
                 changes: bump the format, add a migration and a new fixture"
            )),
            Some(_) => {}
        }
    }
    for (path, _) in pinned {
        if !found.contains_key(*path) {
            violations.push(format!("{path}: pinned, but not there"));
        }
    }
    Ok(violations)
}

/// No `sleep(`/`sleep_until(` call in test code (files under `crates/*/tests`,
/// `examples/*/tests` and the testkit) outside a function named like a retry helper
/// ([`RETRY_HELPERS`]): a test that sleeps to let something happen is flaky under load.
fn sleep_violations(root: &Path) -> Result<Vec<String>> {
    let mut files = files_with_extension(&root.join("crates/sync-core/src/testkit"), "rs")?;
    files.extend(files_with_extension(
        &root.join("crates/engine-suite/src"),
        "rs",
    )?);
    for parent in ["crates", "examples"] {
        for package in subdirectories(&root.join(parent))? {
            files.extend(files_with_extension(&package.join("tests"), "rs")?);
        }
    }
    let mut violations = Vec::new();
    for file in files {
        // The functions enclosing the current line: (indentation, name).
        let mut enclosing: Vec<(usize, String)> = Vec::new();
        for (index, line) in read(&file)?.lines().enumerate() {
            let code = line.trim_start();
            if code.is_empty() || code.starts_with("//") {
                continue;
            }
            let indent = line.len() - code.len();
            // A line at a function's own depth (its closing brace, or a sibling) ends it.
            enclosing.retain(|(depth, _)| *depth < indent);
            if let Some(name) = declared_fn(code) {
                enclosing.push((indent, name));
                continue;
            }
            let sleeps =
                contains_macro_call(line, "sleep(") || contains_macro_call(line, "sleep_until(");
            let in_helper = enclosing
                .iter()
                .any(|(_, name)| RETRY_HELPERS.iter().any(|prefix| name.starts_with(prefix)));
            if sleeps && !in_helper {
                violations.push(format!(
                    "{}:{}: a sleep outside a retry-until-condition helper (fn {}…); wait for \
                     an event or a gate, or pause the clock (tokio::time::pause) instead",
                    relative(root, &file),
                    index + 1,
                    RETRY_HELPERS.join("…/fn "),
                ));
            }
        }
    }
    Ok(violations)
}

/// The name of the function a line declares (`fn name(`, with any qualifiers before).
fn declared_fn(code: &str) -> Option<String> {
    let at = code.find("fn ")?;
    let before = &code[..at];
    let qualifiers = [
        "pub",
        "pub(crate)",
        "pub(super)",
        "async",
        "const",
        "unsafe",
        "extern",
    ];
    if !before
        .split_whitespace()
        .all(|word| qualifiers.contains(&word))
    {
        return None;
    }
    let name: String = code[at + 3..]
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// `tidesync-core`'s normal dependency tree (all features, all platforms) contains no
/// storage, network or I/O-driver crate and none of our outer crates (style guideline 2).
///
/// This reads `cargo tree -p tidesync-core -e normal` rather than walking `resolve` in
/// `cargo metadata`: metadata unifies features across the whole workspace, so as soon as the
/// server turns on tokio's `net` feature, `tokio -> mio` would show up under core too even
/// though building core alone never compiles mio. `cargo tree -p` resolves features for core
/// only, which is the invariant we mean. `cargo metadata --no-deps` still finds the package.
fn core_dependency_violations(root: &Path) -> Result<Vec<String>> {
    let metadata: serde_json::Value = serde_json::from_str(&cargo(
        root,
        &["metadata", "--locked", "--no-deps", "--format-version", "1"],
    )?)
    .context("cargo metadata printed invalid JSON")?;
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|package| package["name"] == CORE)
        .and_then(|package| package["manifest_path"].as_str());
    let Some(manifest) = manifest else {
        eprintln!(
            "note: tidy: {CORE} is not in the workspace yet; the dependency rule passes vacuously"
        );
        return Ok(Vec::new());
    };
    let tree = cargo(
        root,
        &[
            "tree",
            "--locked",
            "-p",
            CORE,
            "-e",
            "normal",
            "--all-features",
            "--target",
            "all",
            "--prefix",
            "depth",
        ],
    )?;
    Ok(forbidden_dependencies(&tree)
        .into_iter()
        .map(|(name, chain)| {
            format!(
                "{}: {CORE} must not depend on `{name}` (sync-core does no I/O and knows no backend); via {chain}",
                relative(root, Path::new(manifest)),
            )
        })
        .collect())
}

/// Forbidden packages in `cargo tree --prefix depth` output, each with the first chain of
/// package names that reaches it.
fn forbidden_dependencies(tree: &str) -> Vec<(String, String)> {
    let mut chain: Vec<&str> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    for line in tree.lines() {
        let digits = line.chars().take_while(char::is_ascii_digit).count();
        let Ok(depth) = line[..digits].parse::<usize>() else {
            continue;
        };
        let Some(name) = line[digits..].split_whitespace().next() else {
            continue;
        };
        chain.truncate(depth);
        chain.push(name);
        let forbidden = FORBIDDEN_IN_CORE.contains(&name)
            || FORBIDDEN_PREFIXES_IN_CORE
                .iter()
                .any(|prefix| name.starts_with(prefix));
        if depth > 0 && forbidden && seen.insert(name) {
            found.push((name.to_owned(), chain.join(" -> ")));
        }
    }
    found
}

/// `tidesync-peers` (it installs npm packages and starts Node processes) is only ever a
/// dev-dependency, so no shipped crate can reach it; and it depends on none of our crates, so
/// every crate's tests can use it without a cycle. Reads `cargo metadata --no-deps`.
fn peers_dependency_violations(metadata: &serde_json::Value) -> Vec<String> {
    let mut violations = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().unwrap_or_default();
        for dependency in package["dependencies"].as_array().into_iter().flatten() {
            let target = dependency["name"].as_str().unwrap_or_default();
            let kind = dependency["kind"].as_str().unwrap_or("normal");
            if (target == PEERS || target == SUITE) && kind != "dev" {
                violations.push(format!(
                    "{name}: `{target}` is a {kind} dependency; it may only be a dev-dependency"
                ));
            }
            if name == PEERS && target.starts_with("tidesync") {
                violations.push(format!(
                    "{PEERS}: depends on `{target}`; the harness must not depend on our crates"
                ));
            }
        }
    }
    violations
}

// ---- helpers ----

fn cargo(root: &Path, args: &[&str]) -> Result<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(args)
        .current_dir(root)
        .output()
        .with_context(|| format!("could not run cargo {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "cargo {} exited with {}:\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8(output.stdout).context("cargo printed non-UTF-8 output")
}

fn inherits_workspace_lints(manifest: &str) -> bool {
    let mut section = String::new();
    for line in manifest.lines() {
        let line: String = line
            .split('#')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if let Some(header) = line
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            section = header.to_owned();
        } else if (section == "lints" && line == "workspace=true")
            || (section.is_empty() && line == "lints.workspace=true")
        {
            return true;
        }
    }
    false
}

/// `line` calls the macro `name` (e.g. `todo!(`), not one whose name merely ends with it.
fn contains_macro_call(line: &str, name: &str) -> bool {
    line.match_indices(name).any(|(at, _)| {
        !line[..at]
            .chars()
            .next_back()
            .is_some_and(|before| before.is_alphanumeric() || before == '_')
    })
}

// ---- every rule can fail: run them against tiny fake trees ----

#[test]
fn module_doc_rule_can_fail() -> Result<()> {
    let tree = FakeTree::new("docs")?
        .with("crates/good/src/lib.rs", "\n//! Good.\n")?
        .with(
            "crates/bad/src/lib.rs",
            "#![forbid(unsafe_code)]\n//! Late.\n",
        )?
        .with("examples/app/src/main.rs", "fn main() {}\n")?
        .with("xtask/src/main.rs", "")?;
    let violations = module_doc_violations(&tree.0)?;
    assert_eq!(violations.len(), 3, "{violations:#?}");
    assert!(
        violations[0].starts_with("crates/bad/src/lib.rs: "),
        "{violations:#?}"
    );
    assert!(
        violations[1].starts_with("examples/app/src/main.rs: "),
        "{violations:#?}"
    );
    assert!(
        violations[2].starts_with("xtask/src/main.rs: "),
        "{violations:#?}"
    );
    Ok(())
}

#[test]
fn should_panic_rule_can_fail() -> Result<()> {
    let tree = FakeTree::new("should-panic")?
        .with("crates/a/src/lib.rs", "//! A.\n")?
        .with(
            "crates/a/tests/it.rs",
            "#[test]\n    #[should_panic(expected = \"boom\")]\nfn f() {}\n",
        )?;
    assert_eq!(should_panic_violations(&tree.0)?.len(), 1);
    assert!(should_panic_violations(&tree.0)?[0].starts_with("crates/a/tests/it.rs:2: "));
    Ok(())
}

#[test]
fn todo_rule_can_fail() -> Result<()> {
    let tree = FakeTree::new("todo")?
        .with(
            "crates/a/src/lib.rs",
            "//! A.\nfn f() { todo!() }\nfn g() { my_todo!() }\n",
        )?
        .with(
            "crates/a/src/deep/mod.rs",
            "fn h() { unimplemented!(\"later\") }\n",
        )?
        .with("crates/a/tests/it.rs", "fn t() { todo!() }\n")?;
    let violations = todo_violations(&tree.0)?;
    assert_eq!(violations.len(), 2, "{violations:#?}");
    assert!(
        violations[0].starts_with("crates/a/src/deep/mod.rs:1: "),
        "{violations:#?}"
    );
    assert!(
        violations[1].starts_with("crates/a/src/lib.rs:2: "),
        "{violations:#?}"
    );
    Ok(())
}

#[test]
fn lints_rule_can_fail() -> Result<()> {
    let tree = FakeTree::new("lints")?
        .with(
            "crates/good/Cargo.toml",
            "[package]\nname = \"good\"\n\n[lints]\nworkspace = true # shared\n",
        )?
        .with(
            "crates/dotted/Cargo.toml",
            "lints.workspace = true\n[package]\nname = \"dotted\"\n",
        )?
        .with("crates/none/Cargo.toml", "[package]\nname = \"none\"\n")?
        .with(
            "examples/own/Cargo.toml",
            "[package]\nname = \"own\"\n[lints.rust]\nworkspace = true\n",
        )?;
    let violations = lints_violations(&tree.0)?;
    assert_eq!(violations.len(), 2, "{violations:#?}");
    assert!(
        violations[0].starts_with("crates/none/Cargo.toml: "),
        "{violations:#?}"
    );
    assert!(
        violations[1].starts_with("examples/own/Cargo.toml: "),
        "{violations:#?}"
    );
    Ok(())
}

#[test]
fn peers_rule_can_fail() {
    let metadata = serde_json::json!({"packages": [
        {"name": "tidesync-server", "dependencies": [
            {"name": "tidesync-peers", "kind": "dev"},
            {"name": "serde", "kind": null},
        ]},
        {"name": "tidesync-transport-http", "dependencies": [
            {"name": "tidesync-peers", "kind": null},
            {"name": "tidesync-engine-suite", "kind": "build"},
        ]},
        {"name": "tidesync-peers", "dependencies": [
            {"name": "tokio", "kind": null},
            {"name": "tidesync-protocol", "kind": null},
        ]},
    ]});
    assert_eq!(
        peers_dependency_violations(&metadata),
        [
            "tidesync-transport-http: `tidesync-peers` is a normal dependency; it may only be a dev-dependency",
            "tidesync-transport-http: `tidesync-engine-suite` is a build dependency; it may only be a dev-dependency",
            "tidesync-peers: depends on `tidesync-protocol`; the harness must not depend on our crates",
        ]
    );
}

#[test]
fn dependency_rule_can_fail() {
    let tree = "\
0tidesync-core v0.1.0 (/w/crates/sync-core)
1serde v1.0.0
1tokio v1.0.0
2mio v1.0.0
1tidesync-store-sqlite v0.1.0 (/w/crates/store-sqlite)
2rusqlite v0.43.0
3libsqlite3-sys v0.35.0
1tokio v1.0.0 (*)
";
    let found = forbidden_dependencies(tree);
    let expected = [
        ("mio", "tidesync-core -> tokio -> mio"),
        (
            "tidesync-store-sqlite",
            "tidesync-core -> tidesync-store-sqlite",
        ),
        (
            "rusqlite",
            "tidesync-core -> tidesync-store-sqlite -> rusqlite",
        ),
        (
            "libsqlite3-sys",
            "tidesync-core -> tidesync-store-sqlite -> rusqlite -> libsqlite3-sys",
        ),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(name, chain)| ((*name).to_owned(), (*chain).to_owned()))
        .collect();
    assert_eq!(found, expected);
    assert!(
        forbidden_dependencies("0tidesync-core v0.1.0 (/w)\n1serde v1.0.0\n1uuid v1.0.0\n")
            .is_empty()
    );
}

#[test]
fn fixture_rule_can_fail() -> Result<()> {
    use sha2::Digest as _;
    let tree = FakeTree::new("fixtures")?
        .with("crates/a/tests/fixtures/kept.bin", "kept")?
        .with("crates/a/tests/fixtures/changed.bin", "changed in place")?
        .with("crates/b/tests/fixtures/deep/new.bin", "new")?;
    let kept: String = sha2::Sha256::digest(b"kept")
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let pinned = [
        ("crates/a/tests/fixtures/kept.bin", kept.as_str()),
        ("crates/a/tests/fixtures/changed.bin", kept.as_str()),
        ("crates/a/tests/fixtures/gone.bin", kept.as_str()),
    ];
    let violations = fixture_violations(&tree.0, &pinned)?;
    assert_eq!(violations.len(), 3, "{violations:#?}");
    assert!(violations[0].starts_with("crates/a/tests/fixtures/changed.bin: changed"));
    assert!(violations[1].starts_with("crates/b/tests/fixtures/deep/new.bin: a new fixture"));
    assert!(violations[2].starts_with("crates/a/tests/fixtures/gone.bin: pinned, but not"));
    Ok(())
}

#[test]
fn sleep_rule_can_fail() -> Result<()> {
    let tree = FakeTree::new("sleep")?
        .with(
            "crates/a/tests/it.rs",
            "async fn eventually(done: impl Fn() -> bool) {
    while !done() {
        tokio::time::sleep(D).await;
    }
}

#[tokio::test]
async fn waits_by_sleeping() {
    // tokio::time::sleep(D).await; in a comment is fine
    tokio::time::sleep(D).await;
    let f = || std::thread::sleep(D);
}

fn wait_until_ready() {
    std::thread::sleep(D);
}
",
        )?
        .with(
            "crates/sync-core/src/testkit/crash.rs",
            "pub fn kill_later() {\n    std::thread::sleep(D);\n}\n",
        )?
        .with(
            "crates/a/src/lib.rs",
            "fn backoff() { std::thread::sleep(D); }\n",
        )?;
    let violations = sleep_violations(&tree.0)?;
    assert_eq!(violations.len(), 3, "{violations:#?}");
    assert!(violations[0].starts_with("crates/sync-core/src/testkit/crash.rs:2: "));
    assert!(violations[1].starts_with("crates/a/tests/it.rs:10: "));
    assert!(violations[2].starts_with("crates/a/tests/it.rs:11: "));
    Ok(())
}
