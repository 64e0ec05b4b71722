//! The bindings steps of `cargo xtask ci`: build the UniFFI library (`tidesync-ffi`), the
//! generator and `tidesync-server`, generate the Python, Kotlin and Swift sources into
//! `target/bindings/<language>`, and run the tutorial test of each language against the
//! server (`crates/ffi/tutorial`).
//!
//! Python always runs. Kotlin and Swift need toolchains that
//! `crates/ffi/tutorial/toolchains.sh` installs into `~/.cache/tidesync` (npm
//! `kotlin-compiler` + Debian `libjna-java`; a Debian trixie chroot with `swiftlang`, which
//! needs root); when that fails the step is skipped with a warning, and under `CI=true` it
//! fails the run. A tutorial passes when it exits 0 and its last line reads `N passed, 0 failed`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::Ci;

/// The pinned Kotlin compiler's libraries (kotlinx-coroutines comes with it).
const KOTLIN_LIBS: &[&str] = &["kotlinx-coroutines-core-jvm.jar", "kotlin-stdlib.jar"];
/// Debian's `libjna-java`.
const JNA_JAR: &str = "/usr/share/java/jna.jar";

impl Ci {
    /// Every bindings step, in order.
    pub(super) fn bindings(&mut self) -> Result<()> {
        // Same features and profile as the test build, so only the generator is new work.
        let build = self.cargo(
            &["build"],
            true,
            &[
                "--workspace",
                "--all-features",
                "--lib",
                "--bin",
                "tidesync-server",
                "--bin",
                "uniffi-bindgen",
            ],
        );
        self.command("ffi-build", build)?;
        self.step("python", |ci| ci.python())?;
        self.step("kotlin", |ci| ci.kotlin())?;
        self.step("swift", |ci| ci.swift())?;
        Ok(())
    }

    fn debug_dir(&self) -> PathBuf {
        self.root.join("target/debug")
    }

    fn tutorial_dir(&self) -> PathBuf {
        self.root.join("crates/ffi/tutorial")
    }

    /// `uniffi-bindgen generate --library` for one language; returns the output directory.
    fn generate(&self, language: &str) -> Result<PathBuf> {
        let out = self.root.join("target/bindings").join(language);
        let status = Command::new(self.debug_dir().join("uniffi-bindgen"))
            .current_dir(&self.root)
            .args(["generate", "--no-format", "--library"])
            .arg(self.debug_dir().join("libtidesync_ffi.so"))
            .args(["--language", language, "--out-dir"])
            .arg(&out)
            .status()
            .context("cannot run target/debug/uniffi-bindgen")?;
        if !status.success() {
            bail!("generating the {language} bindings exited with {status}");
        }
        Ok(out)
    }

    fn python(&self) -> Result<&'static str> {
        let out = self.generate("python")?;
        // The generated module loads the library from its own directory.
        std::fs::copy(
            self.debug_dir().join("libtidesync_ffi.so"),
            out.join("libtidesync_ffi.so"),
        )
        .context("cannot copy libtidesync_ffi.so beside the Python bindings")?;
        let mut test = Command::new("python3");
        test.arg(self.tutorial_dir().join("python/tutorial.py"))
            .env("PYTHONPATH", &out)
            .env(
                "TIDESYNC_SERVER_BIN",
                self.debug_dir().join("tidesync-server"),
            );
        tutorial("python", test)
    }

    fn kotlin(&self) -> Result<&'static str> {
        let Some(kotlinc) = self.toolchain("kotlin")? else {
            return Ok("skipped");
        };
        let kotlinc = PathBuf::from(kotlinc);
        let lib = kotlinc
            .parent()
            .and_then(Path::parent)
            .context("kotlinc is not in a bin/ directory")?
            .join("lib");
        let mut classpath: Vec<PathBuf> = vec![PathBuf::from(JNA_JAR)];
        classpath.extend(KOTLIN_LIBS.iter().map(|jar| lib.join(jar)));
        let generated = self.generate("kotlin")?;
        let jar = self.root.join("target/bindings/kotlin-tutorial.jar");
        let status = Command::new(&kotlinc)
            .args(["-nowarn", "-cp"])
            .arg(join_paths(&classpath[..2])?)
            .arg(generated.join("uniffi/tidesync_ffi/tidesync_ffi.kt"))
            .arg(self.tutorial_dir().join("kotlin/Tutorial.kt"))
            .arg("-d")
            .arg(&jar)
            .status()
            .with_context(|| format!("cannot run {}", kotlinc.display()))?;
        if !status.success() {
            bail!("kotlinc exited with {status}");
        }
        classpath.insert(0, jar);
        let mut test = Command::new("java");
        test.arg(format!("-Djna.library.path={}", self.debug_dir().display()))
            .arg("-cp")
            .arg(join_paths(&classpath)?)
            .arg("TutorialKt")
            .env(
                "TIDESYNC_SERVER_BIN",
                self.debug_dir().join("tidesync-server"),
            );
        tutorial("kotlin", test)
    }

    fn swift(&self) -> Result<&'static str> {
        let Some(chroot) = self.toolchain("swift")? else {
            return Ok("skipped");
        };
        self.generate("swift")?;
        // Inside the chroot the workspace is bind-mounted at /work (private mount namespace).
        let script = "cd /work && mkdir -p target/bindings/swift-tutorial && \
            swiftc -module-name Tutorial -swift-version 5 -I target/bindings/swift \
              -Xcc -fmodule-map-file=target/bindings/swift/tidesync_ffiFFI.modulemap \
              -L target/debug -ltidesync_ffi \
              target/bindings/swift/tidesync_ffi.swift crates/ffi/tutorial/swift/main.swift \
              -o target/bindings/swift-tutorial/tutorial && \
            cd /tmp && TIDESYNC_SERVER_BIN=/work/target/debug/tidesync-server \
              LD_LIBRARY_PATH=/work/target/debug /work/target/bindings/swift-tutorial/tutorial";
        let mount = format!(
            "mkdir -p '{chroot}/work' && mount -t proc proc '{chroot}/proc' && \
             mount --bind '{root}' '{chroot}/work' && chroot '{chroot}' sh -c '{script}'",
            root = self.root.display(),
        );
        let mut test = Command::new("unshare");
        test.args(["--mount", "sh", "-c", &mount]);
        tutorial("swift", test)
    }

    /// The toolchain's path from `toolchains.sh`, or None (a skip) when it cannot be
    /// installed here; under `CI=true` that is an error.
    fn toolchain(&self, language: &str) -> Result<Option<String>> {
        let output = Command::new("bash")
            .arg(self.tutorial_dir().join("toolchains.sh"))
            .arg(language)
            .output()
            .context("cannot run bash")?;
        let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if output.status.success() && !path.is_empty() {
            return Ok(Some(path));
        }
        let why = format!(
            "the {language} toolchain could not be installed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" / ")
        );
        if self.strict {
            bail!("{why}; CI=true requires it");
        }
        eprintln!("warning: {why}; skipping (with CI=true this fails the run)");
        Ok(None)
    }
}

/// Runs a tutorial test, passing its output through, and checks its closing line.
fn tutorial(language: &str, mut test: Command) -> Result<&'static str> {
    let output = test
        .output()
        .with_context(|| format!("cannot start the {language} tutorial"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    let last = stdout.lines().last().unwrap_or_default();
    let summary = parse_summary(last);
    match summary {
        Some((passed, 0)) if output.status.success() && passed > 0 => {
            eprintln!("==> {language} tutorial: {last}");
            Ok("ok")
        }
        _ => bail!(
            "the {language} tutorial failed ({}); its last line: {last:?}",
            output.status
        ),
    }
}

/// `N passed, M failed` as (N, M).
fn parse_summary(line: &str) -> Option<(u32, u32)> {
    let (passed, failed) = line.split_once(" passed, ")?;
    let failed = failed.strip_suffix(" failed")?;
    Some((passed.trim().parse().ok()?, failed.trim().parse().ok()?))
}

fn join_paths(paths: &[PathBuf]) -> Result<std::ffi::OsString> {
    std::env::join_paths(paths).context("a classpath entry contains ':'")
}

#[cfg(test)]
mod tests {
    use super::parse_summary;

    #[test]
    fn the_closing_line_is_read_strictly() {
        assert_eq!(parse_summary("22 passed, 0 failed"), Some((22, 0)));
        assert_eq!(parse_summary("3 passed, 2 failed"), Some((3, 2)));
        assert_eq!(parse_summary("ok   push online completes"), None);
        assert_eq!(parse_summary("22 passed"), None);
    }
}
