//! A pull's progress on stderr, from the engine's change events
//! (`ChangeEvent::PullProgress`): an `indicatif` bar when stderr is a terminal
//! (a row count until the server's total is known, then a bar), plain lines
//! when it is not (at most one a second, only for pulls that take longer than
//! that). Results stay on stdout.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::ProgressStyle;
use tidesync::{ChangeEvent, Client, SyncAction};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::app::progress_bar;

/// Plain lines are this far apart at least (and come only after this long):
/// a second, or `TODO_PROGRESS_EVERY_MS` milliseconds.
fn line_every() -> Duration {
    std::env::var("TODO_PROGRESS_EVERY_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::from_secs(1), Duration::from_millis)
}

/// Follows one table's pull until it finishes.
pub struct PullProgress {
    task: JoinHandle<()>,
}

impl PullProgress {
    /// Starts following the next pull of `table` (call before starting it).
    pub fn follow(client: &Client, table: &str) -> Self {
        let mut events = client.subscribe();
        let table = table.to_owned();
        let bar = std::io::stderr()
            .is_terminal()
            .then(|| progress_bar(None, "pull"));
        let every = line_every();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut last_line: Option<Instant> = None;
            let mut has_total = false;
            loop {
                let event = match events.recv().await {
                    Ok(event) => event,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                };
                match event {
                    ChangeEvent::PullProgress {
                        table: of,
                        applied,
                        total,
                    } if of == table => match &bar {
                        Some(bar) => {
                            if let (Some(total), false) = (total, has_total) {
                                has_total = true;
                                bar.set_style(bar_style());
                                bar.set_length(total);
                            } else if let Some(total) = total {
                                bar.set_length(total);
                            }
                            bar.set_position(applied);
                        }
                        None => {
                            let due = last_line.unwrap_or(started).elapsed() >= every;
                            let last = total == Some(applied) && last_line.is_some();
                            if due || last {
                                last_line = Some(Instant::now());
                                match total {
                                    Some(total) => {
                                        eprintln!("todo: pull {of}: {applied} of {total} rows");
                                    }
                                    None => eprintln!("todo: pull {of}: {applied} rows"),
                                }
                            }
                        }
                    },
                    ChangeEvent::SyncFinished {
                        action: SyncAction::Pull,
                        table: Some(of),
                        ..
                    } if of == table => break,
                    _ => {}
                }
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
        });
        Self { task }
    }

    /// Waits until the pull's last report is shown (its `SyncFinished` arrived).
    pub async fn done(self) {
        let _ = self.task.await;
    }
}

/// The bar once the total is known.
fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg:5} [{bar:30}] {pos}/{len} rows")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}
