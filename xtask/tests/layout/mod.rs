//! Layout rules: no `#[path]` module includes, no source file over [`MAX_LINES`] lines, no
//! import circle of three or more files inside a crate. Each runs on a root path; the
//! workspace checks compare against explicit allowlists of today's offenders that may only
//! shrink (an allowlisted entry that no longer offends fails the check, so it is removed).

pub mod fs;
mod imports;

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Result;

use fs::{FakeTree, files_with_extension, read, relative, subdirectories};

/// The most lines a `.rs` file may have.
pub const MAX_LINES: usize = 800;

/// Files over [`MAX_LINES`] allowed for now (none since issue 16 split push.rs). Only
/// ever shrinks.
const LONG_FILES: &[&str] = &[];

/// Crates whose `src` may keep an import circle of 3+ files for now (none since issue 16
/// untangled sync-core and store-redb). Only ever shrinks.
const CIRCLES: &[&str] = &[];

/// Every `.rs` file of the workspace's packages (`crates/*`, `examples/*`, `xtask`).
fn rust_files(root: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for parent in ["crates", "examples"] {
        for package in subdirectories(&root.join(parent))? {
            files.extend(files_with_extension(&package, "rs")?);
        }
    }
    files.extend(files_with_extension(&root.join("xtask"), "rs")?);
    Ok(files)
}

/// No `#[path = …]` attribute on a module: modules live where their name says, and test
/// code shared between crates lives in a crate (tidesync-engine-suite) or the testkit.
pub fn path_attribute_violations(root: &Path) -> Result<Vec<String>> {
    let mut violations = Vec::new();
    for file in rust_files(root)? {
        for (index, line) in read(&file)?.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("#[path") || code.starts_with("#![path") {
                violations.push(format!(
                    "{}:{}: `#[path]` module include; make it a proper module or move shared \
                     code into a crate",
                    relative(root, &file),
                    index + 1,
                ));
            }
        }
    }
    Ok(violations)
}

/// Files over [`MAX_LINES`] lines, as relative paths.
pub fn long_files(root: &Path) -> Result<BTreeSet<String>> {
    let mut long = BTreeSet::new();
    for file in rust_files(root)? {
        if read(&file)?.lines().count() > MAX_LINES {
            long.insert(relative(root, &file));
        }
    }
    Ok(long)
}

/// Crates (`crates/NAME`, `examples/NAME`, `xtask`) whose `src` has an import circle of
/// three or more files, each with one such circle for the message.
pub fn circles(root: &Path) -> Result<Vec<(String, Vec<String>)>> {
    let mut packages = Vec::new();
    for parent in ["crates", "examples"] {
        packages.extend(subdirectories(&root.join(parent))?);
    }
    packages.push(root.join("xtask"));
    let mut found = Vec::new();
    for package in packages {
        let src = package.join("src");
        if !src.is_dir() {
            continue;
        }
        if let Some(circle) = imports::circle(&src)? {
            found.push((relative(root, &package), circle));
        }
    }
    Ok(found)
}

/// Compares what offends with the allowlist: new offenders, and allowlisted entries that
/// no longer offend (remove them from the list).
pub fn against_allowlist(
    rule: &str,
    offenders: &BTreeSet<String>,
    allowed: &[&str],
) -> Vec<String> {
    let allowed: BTreeSet<String> = allowed.iter().map(|s| (*s).to_owned()).collect();
    let mut violations: Vec<String> = offenders
        .difference(&allowed)
        .map(|path| format!("{path}: {rule}"))
        .collect();
    violations.extend(allowed.difference(offenders).map(|path| {
        format!("{path}: allowlisted for `{rule}` but no longer offends; remove it from the list")
    }));
    violations
}

fn assert_clean(rule: &str, violations: &[String]) {
    assert!(
        violations.is_empty(),
        "tidy: {rule}:\n  {}",
        violations.join("\n  ")
    );
}

// ---- the rules, run against this workspace ----

#[test]
fn no_path_attributes() -> Result<()> {
    assert_clean(
        "no #[path]",
        &path_attribute_violations(&super::workspace_root()?)?,
    );
    Ok(())
}

#[test]
fn no_file_over_800_lines() -> Result<()> {
    let rule = format!("more than {MAX_LINES} lines; split it");
    let long = long_files(&super::workspace_root()?)?;
    assert_clean(&rule, &against_allowlist(&rule, &long, LONG_FILES));
    Ok(())
}

#[test]
fn no_import_circle_of_three_files() -> Result<()> {
    let found = circles(&super::workspace_root()?)?;
    let rule = "an import circle of 3+ files in src";
    let offenders: BTreeSet<String> = found.iter().map(|(package, _)| package.clone()).collect();
    let mut violations = against_allowlist(rule, &offenders, CIRCLES);
    for (package, circle) in &found {
        if !CIRCLES.contains(&package.as_str()) {
            violations.push(format!("{package}: {}", circle.join(" → ")));
        }
    }
    assert_clean(rule, &violations);
    Ok(())
}

// ---- every rule can fail: synthetic trees ----

#[test]
fn path_rule_can_fail() -> Result<()> {
    let tree = FakeTree::new("path")?
        .with("crates/a/src/lib.rs", "//! A.\nmod ok;\n")?
        .with("crates/a/src/ok.rs", "// #[path = \"x.rs\"] in a comment\n")?
        .with(
            "crates/b/tests/t.rs",
            "#[path = \"../../a/tests/shared.rs\"]\nmod shared;\n",
        )?
        .with("xtask/src/main.rs", "    #[path = \"y.rs\"]\n    mod y;\n")?;
    let violations = path_attribute_violations(&tree.0)?;
    assert_eq!(violations.len(), 2, "{violations:#?}");
    assert!(
        violations[0].starts_with("crates/b/tests/t.rs:1: "),
        "{violations:#?}"
    );
    assert!(
        violations[1].starts_with("xtask/src/main.rs:1: "),
        "{violations:#?}"
    );
    Ok(())
}

#[test]
fn length_rule_can_fail() -> Result<()> {
    let at_limit = "//\n".repeat(MAX_LINES);
    let over = "//\n".repeat(MAX_LINES + 1);
    let tree = FakeTree::new("length")?
        .with("crates/a/src/lib.rs", &at_limit)?
        .with("crates/a/tests/big.rs", &over)?
        .with("examples/e/src/main.rs", &over)?;
    let long = long_files(&tree.0)?;
    let expected: BTreeSet<String> = ["crates/a/tests/big.rs", "examples/e/src/main.rs"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(long, expected);
    // The allowlist: a listed offender passes, a new one fails, a stale entry fails.
    let violations = against_allowlist("long", &long, &["crates/a/tests/big.rs", "gone.rs"]);
    assert_eq!(violations.len(), 2, "{violations:#?}");
    assert!(
        violations[0].starts_with("examples/e/src/main.rs: "),
        "{violations:#?}"
    );
    assert!(
        violations[1].starts_with("gone.rs: allowlisted"),
        "{violations:#?}"
    );
    Ok(())
}

#[test]
fn circle_rule_can_fail() -> Result<()> {
    let tree = FakeTree::new("circle")?
        // A circle through `use crate::`, an inline `crate::` path and `super::`.
        .with(
            "crates/bad/src/lib.rs",
            "//! Bad.\nmod a;\nmod b;\nmod c;\n",
        )?
        .with("crates/bad/src/a.rs", "use crate::b::Thing;\n")?
        .with("crates/bad/src/b.rs", "fn f() { crate::c::d::run(); }\n")?
        .with("crates/bad/src/c/mod.rs", "pub mod d;\n")?
        .with(
            "crates/bad/src/c/d.rs",
            "use super::super::{a::{self, Item}, x};\n",
        )?
        // Two files importing each other, and a chain: no circle of three.
        .with(
            "crates/good/src/lib.rs",
            "//! Good.\nmod a;\nmod b;\nmod c;\n",
        )?
        .with(
            "crates/good/src/a.rs",
            "use crate::b::X;\n// use crate::c::Y;\n",
        )?
        .with("crates/good/src/b.rs", "use crate::a::Y;\nuse crate::c;\n")?
        .with(
            "crates/good/src/c.rs",
            "const S: &str = \"crate::a::Z\";\nuse crate::Root;\n",
        )?;
    let found = circles(&tree.0)?;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].0, "crates/bad");
    let circle: BTreeSet<&str> = found[0].1.iter().map(String::as_str).collect();
    let expected: BTreeSet<&str> = ["a.rs", "b.rs", "c/d.rs"].into_iter().collect();
    assert_eq!(circle, expected, "{found:#?}");
    Ok(())
}
