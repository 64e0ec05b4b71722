//! Pulling several tables in one call ([`pull_tables`]): one implicit push for
//! all of them first, then the pulls run concurrently, each as its own task, under
//! one hold of the engine's sync lock. Their requests and response decoding
//! overlap; their store writes serialise in the store (each page is one batch
//! committed under the queue lock), so each table's rows and cursor end as its
//! own pull would leave them.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::outcome::{PullResult, TablePull};

use super::{PullRun, announce_end, announce_start, push_before};

/// Pulls every table of `pulls` concurrently; one result per pull, in order.
pub(crate) async fn pull_tables(
    engine: &Arc<Engine>,
    pulls: Vec<TablePull>,
) -> Vec<Result<PullResult>> {
    let mut results: Vec<Option<Result<PullResult>>> = pulls.iter().map(|_| None).collect();
    let mut runs = Vec::new();
    let mut tables = HashSet::new();
    for (at, pull) in pulls.into_iter().enumerate() {
        announce_start(engine, &pull.table);
        let run = if tables.insert(pull.table.clone()) {
            PullRun::new(
                engine,
                &pull.table,
                pull.query_id.as_deref(),
                pull.query,
                pull.options,
            )
        } else {
            Err(Error::InvalidArgument(format!(
                "table {:?} appears twice in one pull_tables call",
                pull.table
            )))
        };
        match run {
            Ok(run) => runs.push((at, run)),
            Err(e) => {
                announce_end(engine, &pull.table, &Err(copy_error(&e)));
                results[at] = Some(Err(e));
            }
        }
    }

    // One push for all of them.
    let pulled: Vec<String> = runs.iter().map(|(_, run)| run.table.clone()).collect();
    let scope =
        (!runs.iter().any(|(_, run)| run.options.push_other_tables)).then(|| pulled.clone());
    let cancel = runs.iter().find_map(|(_, run)| run.options.cancel.clone());
    match push_before(engine, &pulled, scope, cancel.as_ref()).await {
        Ok(push) => {
            for (_, run) in &mut runs {
                run.result.push.clone_from(&push);
            }
        }
        Err(e) => {
            for (at, run) in runs.drain(..) {
                let failed = Err(copy_error(&e));
                announce_end(engine, &run.table, &failed);
                results[at] = Some(failed);
            }
        }
    }

    if !runs.is_empty() {
        let _sync = engine.sync.lock().await;
        tracing::info!(tables = ?pulled, "pulling tables concurrently");
        let mut tasks = Tasks(Vec::new());
        for (at, run) in runs {
            let engine = engine.clone();
            let table = run.table.clone();
            let span = tracing::info_span!("pull", table = %table);
            let task = tokio::spawn(
                async move {
                    let result = run.run().await;
                    announce_end(&engine, &table, &result);
                    result
                }
                .instrument(span),
            );
            tasks.0.push((at, task));
        }
        for (at, task) in &mut tasks.0 {
            results[*at] = Some(match task.await {
                Ok(result) => result,
                Err(e) => Err(Error::Internal(format!("a table's pull failed: {e}"))),
            });
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::Internal("a pull was lost".to_owned()))))
        .collect()
}

/// The pull tasks, aborted if the call is dropped before they end.
struct Tasks(Vec<(usize, JoinHandle<Result<PullResult>>)>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for (_, task) in &self.0 {
            task.abort();
        }
    }
}

/// The same failure for another table of the call.
fn copy_error(error: &Error) -> Error {
    match error {
        Error::PushFailed(result) => Error::PushFailed(result.clone()),
        Error::Cancelled => Error::Cancelled,
        Error::InvalidArgument(message) => Error::InvalidArgument(message.clone()),
        other => Error::Internal(other.to_string()),
    }
}
