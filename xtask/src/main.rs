//! Project chores, run as `cargo xtask <command>`.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("no command yet")
}
