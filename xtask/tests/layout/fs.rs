//! File helpers of the tidy rules: walking a tree (skipping `target` and hidden
//! directories), reading, relative paths, and [`FakeTree`], the scratch trees the
//! `*_rule_can_fail` tests build.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub fn subdirectories(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut dirs = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Files under `dir` ending in `.{extension}`, recursively, skipping `target` and hidden
/// directories.
pub fn files_with_extension(dir: &Path, extension: &str) -> Result<Vec<PathBuf>> {
    let mut files = files_under(dir)?;
    files.retain(|path| path.extension().is_some_and(|ext| ext == extension));
    Ok(files)
}

/// Every file under `dir`, recursively, skipping `target` and hidden directories.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        if !dir.is_dir() {
            continue;
        }
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let name = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    pending.push(path);
                }
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

pub fn read(file: &Path) -> Result<String> {
    fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}

pub fn relative(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string()
}

/// A scratch directory under the system temp dir, removed on drop.
pub struct FakeTree(pub PathBuf);

impl FakeTree {
    pub fn new(name: &str) -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "tidesync-tidy-{name}-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    pub fn with(self, path: &str, text: &str) -> Result<Self> {
        let file = self.0.join(path);
        fs::create_dir_all(file.parent().context("no parent")?)?;
        fs::write(file, text)?;
        Ok(self)
    }
}

impl Drop for FakeTree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
