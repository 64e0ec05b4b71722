//! The import graph of one crate's `src`: which module files name which others through
//! `use crate::…` / `use super::…` / `use self::…` (groups expanded) and inline
//! `crate::x::…` / `super::x::…` paths, with comments and string literals ignored.
//!
//! A path names the deepest module file it walks through (`crate::a::b::Thing` is
//! `a/b.rs` when that file exists, else `a.rs`). The crate root (`lib.rs`, `main.rs`) is
//! left out: it declares the modules and re-exports their items, so `crate::Error` would
//! otherwise tie every file to every other. `src/bin` holds other crates and is skipped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

use anyhow::Result;

use super::fs::{files_with_extension, read};

/// A module path (`["a", "b"]` for `crate::a::b`), the root being empty.
type ModPath = Vec<String>;

/// One circle of three or more files in `src`, as file paths relative to `src`, if any.
pub fn circle(src: &Path) -> Result<Option<Vec<String>>> {
    let mut modules: BTreeMap<ModPath, String> = BTreeMap::new();
    let mut texts = Vec::new();
    for file in files_with_extension(src, "rs")? {
        let rel = file
            .strip_prefix(src)
            .unwrap_or(&file)
            .to_string_lossy()
            .replace('\\', "/");
        if rel.starts_with("bin/") {
            continue;
        }
        let module = module_of(&rel);
        if module.is_empty() {
            continue;
        }
        texts.push((module.clone(), read(&file)?));
        modules.insert(module, rel);
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in &texts {
        let from = modules[module].clone();
        for path in paths(&strip_comments_and_strings(text)) {
            if let Some(target) = resolve(module, &path, &modules) {
                if let Some(to) = modules.get(&target) {
                    if *to != from {
                        edges.entry(from.clone()).or_default().insert(to.clone());
                    }
                }
            }
        }
    }
    Ok(find_circle(&edges))
}

/// `a/b.rs` and `a/b/mod.rs` are `["a", "b"]`; `lib.rs` and `main.rs` the root.
fn module_of(rel: &str) -> ModPath {
    let trimmed = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut parts: Vec<String> = trimmed.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        parts.clear();
    }
    parts
}

/// The module a path (`crate::a::Thing`, `super::b`, `self::c::d`) leads to, as deep as
/// module files exist; `None` for paths that do not start at the crate or this module.
fn resolve(
    current: &ModPath,
    path: &[String],
    modules: &BTreeMap<ModPath, String>,
) -> Option<ModPath> {
    let mut segments = path.iter().peekable();
    let mut base = match segments.next()?.as_str() {
        "crate" => Vec::new(),
        "self" => current.clone(),
        "super" => {
            let mut parent = current.clone();
            parent.pop();
            parent
        }
        _ => return None,
    };
    while segments.peek().is_some_and(|s| *s == "super") {
        segments.next();
        base.pop();
    }
    for segment in segments {
        if segment == "self" {
            continue;
        }
        let mut child = base.clone();
        child.push(segment.clone());
        if !modules.contains_key(&child) {
            break;
        }
        base = child;
    }
    Some(base)
}

/// Every `crate`/`super`/`self` path in `code`: `use` trees expanded, and inline paths.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if starts_word(code, i, "use") && code[i + 3..].starts_with(char::is_whitespace) {
            let end = code[i..].find(';').map_or(code.len(), |n| i + n);
            // `x as y` names x; the rename is dropped before the whitespace goes.
            let mut tokens = code[i + 3..end].split_whitespace();
            let mut tree = String::new();
            while let Some(token) = tokens.next() {
                if token == "as" {
                    let renamed = tokens.next().unwrap_or_default();
                    // Keep what follows the new name (`,` or `}` of a group).
                    tree.extend(renamed.chars().filter(|c| matches!(c, ',' | '}')));
                } else {
                    tree.push_str(token);
                }
            }
            expand(&[], &tree, &mut found);
            i = end;
            continue;
        }
        for head in ["crate", "super", "self"] {
            if starts_word(code, i, head) && code[i + head.len()..].starts_with("::") {
                let rest = &code[i..];
                let len = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(rest.len());
                let segments: Vec<String> = rest[..len]
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                found.push(segments);
                i += len.max(1) - 1;
                break;
            }
        }
        i += 1;
    }
    found
}

/// `word` starts at `at` and is a whole word (no identifier character or `$` before it).
fn starts_word(code: &str, at: usize, word: &str) -> bool {
    code[at..].starts_with(word)
        && !code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$')
        && !code[at + word.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// Expands a `use` tree without whitespace (`crate::{a::{self,B},c::*}`) into paths.
fn expand(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim_start_matches("::");
    if let Some(open) = tree.find('{') {
        let mut path = prefix.to_vec();
        path.extend(segments(&tree[..open]));
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        for part in split_top_level(inner) {
            expand(&path, part, out);
        }
    } else {
        let mut path = prefix.to_vec();
        path.extend(segments(tree));
        if !path.is_empty() {
            out.push(path);
        }
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .filter(|s| !s.is_empty() && *s != "*")
        .map(str::to_owned)
        .collect()
}

/// Splits a group's items at top-level commas.
fn split_top_level(inner: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts.retain(|p| !p.is_empty());
    parts
}

/// `code` with comments, string literals and char literals blanked out.
fn strip_comments_and_strings(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !prev_is_ident(&chars, i)
        {
            // A raw string: r"…", r#"…"#, …
            let mut hashes = 0;
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            while j < chars.len() {
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\u{..}'); a lifetime ('a) is kept.
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// A simple cycle of three or more files, if there is one: for each edge `u → v`, a path
/// from `v` back to `u` that does not take the edge `v → u` (which would close a circle of
/// two) makes one.
fn find_circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    for (u, targets) in edges {
        for v in targets {
            let mut previous: BTreeMap<&String, &String> = BTreeMap::new();
            let mut queue = VecDeque::from([v]);
            let mut seen = BTreeSet::from([v]);
            while let Some(node) = queue.pop_front() {
                for next in edges.get(node).into_iter().flatten() {
                    if node == v && next == u {
                        continue;
                    }
                    if next == u {
                        let mut circle = vec![u.clone()];
                        let mut back = vec![node.clone()];
                        let mut at = node;
                        while let Some(prev) = previous.get(at) {
                            back.push((*prev).clone());
                            at = prev;
                        }
                        back.reverse();
                        circle.extend(back);
                        return Some(circle);
                    }
                    if seen.insert(next) {
                        previous.insert(next, node);
                        queue.push_back(next);
                    }
                }
            }
        }
    }
    None
}
