//! `todo demo`: the offline tutorial in one command, against a tidesync-server
//! started in this process, with two devices (clients) that each have their
//! own local store. Every step checks what the tutorial says should happen and
//! the demo stops with an error at the first step that behaves otherwise.

use anyhow::{Context, Result, bail};
use tidesync::{Client, PushStatus};

use crate::app::{self, Connection, Keep, ProtocolArg, StoreKind, TABLE, TodoItem, Verdict};

struct Demo {
    dir: tempfile::TempDir,
    store: StoreKind,
    protocol: ProtocolArg,
    api_key: Option<String>,
    step: u32,
}

impl Demo {
    fn step(&mut self, title: &str) {
        self.step += 1;
        println!();
        println!("step {}: {title}", self.step);
    }

    fn say(&self, line: impl AsRef<str>) {
        println!("  {}", line.as_ref());
    }

    /// Prints `ok: <expected>` or fails the demo with what happened instead.
    fn check(&self, ok: bool, expected: &str, actual: impl FnOnce() -> String) -> Result<()> {
        if ok {
            println!("  ok: {expected}");
            Ok(())
        } else {
            bail!(
                "step {} did not behave as the tutorial says: expected {expected}, but {}",
                self.step,
                actual()
            )
        }
    }

    /// Opens device `name`'s store, talking to `url`.
    fn open(&self, name: &str, url: &str) -> Result<Client> {
        let ext = match self.store {
            StoreKind::Sqlite => "db",
            StoreKind::Redb => "redb",
        };
        app::open(&Connection {
            db: self.dir.path().join(format!("{name}.{ext}")),
            url: url.to_owned(),
            store: self.store,
            protocol: self.protocol,
            api_key: self.api_key.clone(),
        })
    }

    async fn show_items(&self, client: &Client) -> Result<Vec<TodoItem>> {
        let items = app::list(client).await?;
        for item in &items {
            let mark = if item.complete { "x" } else { " " };
            self.say(format!("[{mark}] {}", item.text));
        }
        Ok(items)
    }

    async fn sync(&self, who: &str, client: &Client) -> Result<app::SyncReport> {
        self.say(format!("{who} syncs:"));
        let report = app::sync(client).await?;
        for line in report.lines(client) {
            self.say(format!("  {line}"));
        }
        Ok(report)
    }

    async fn pending(&self, who: &str, client: &Client, expected: u64) -> Result<()> {
        let pending = client.pending_operations()?;
        self.check(
            pending == expected,
            &format!("{who} has {expected} change(s) queued"),
            || format!("{pending} are queued"),
        )
    }
}

fn find<'a>(items: &'a [TodoItem], text: &str) -> Option<&'a TodoItem> {
    items.iter().find(|i| i.text == text)
}

/// A loopback URL nothing listens on: a port that was bound and released.
fn unreachable_url() -> Result<String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(format!("http://{addr}"))
}

/// Runs the demo; `Ok(0)` when every step behaved as expected.
pub async fn run(store: StoreKind, protocol: ProtocolArg, api_key: Option<String>) -> Result<u8> {
    let mut d = Demo {
        dir: tempfile::tempdir().context("cannot create a temporary directory")?,
        store,
        protocol,
        api_key,
        step: 0,
    };
    println!("tidesync todo demo: the offline tutorial, two devices and one server");

    d.step("start tidesync-server on a free loopback port, with a temporary SQLite database");
    let mut server = tidesync_server::Server::builder()
        .sqlite(d.dir.path().join("server.db"))
        .table(TABLE)
        .bind("127.0.0.1:0");
    if let Some(key) = &d.api_key {
        server = server.api_key(key.clone());
    }
    let server = server.start().await.context("cannot start the server")?;
    let url = server.url();
    d.say(format!("listening on {url}"));

    d.step("device A adds \"buy milk\" while online (todo add \"buy milk\")");
    let a = d.open("device-a", &url)?;
    let milk = a
        .sync_table::<TodoItem>()
        .insert(&TodoItem::new("buy milk"))
        .await?;
    d.say(format!("added: {}", milk.id()));
    let report = d.sync("A", &a).await?;
    d.check(
        report.verdict() == Verdict::Complete,
        "push: Complete, and the pull completed",
        || format!("push: {} and pull {:?}", report.push.status, report.pulled),
    )?;
    d.pending("A", &a, 0).await?;
    drop(a);

    let offline = unreachable_url()?;
    d.step("device A goes offline: its server URL now points at a closed port");
    d.say(format!("server url: {offline}"));
    let a = d.open("device-a", &offline)?;
    let dog = a
        .sync_table::<TodoItem>()
        .insert(&TodoItem::new("walk the dog"))
        .await?;
    d.say(format!("added: {} (walk the dog)", dog.id()));
    app::complete(&a, milk.id()).await?;
    d.say(format!("completed: {} (buy milk)", milk.id()));
    let report = d.sync("A", &a).await?;
    d.check(
        report.push.status == PushStatus::CancelledByNetworkError,
        "push: CancelledByNetworkError",
        || format!("push: {}", report.push.status),
    )?;
    d.pending("A", &a, 2).await?;
    let items = d.show_items(&a).await?;
    d.check(
        items.len() == 2
            && find(&items, "buy milk").is_some_and(|i| i.complete)
            && find(&items, "walk the dog").is_some_and(|i| !i.complete),
        "nothing was lost: both items are in the local store, \"buy milk\" is complete",
        || format!("the local items are {items:?}"),
    )?;

    d.step("restart device A: close it and open the same store file again (still offline)");
    drop(a);
    let a = d.open("device-a", &offline)?;
    d.pending("A", &a, 2).await?;
    let again = d.show_items(&a).await?;
    d.check(again == items, "the items survived the restart", || {
        format!("the local items are {again:?}")
    })?;
    drop(a);

    d.step("device A reconnects (todo sync with the server's URL)");
    let a = d.open("device-a", &url)?;
    let report = d.sync("A", &a).await?;
    d.check(
        report.verdict() == Verdict::Complete,
        "push: Complete, and the pull completed",
        || format!("push: {} and pull {:?}", report.push.status, report.pulled),
    )?;
    d.pending("A", &a, 0).await?;

    d.step("device B, with its own empty store, syncs and sees A's changes");
    let b = d.open("device-b", &url)?;
    let report = d.sync("B", &b).await?;
    d.check(
        report.verdict() == Verdict::Complete,
        "the sync completed",
        || format!("push: {} and pull {:?}", report.push.status, report.pulled),
    )?;
    let items = d.show_items(&b).await?;
    d.check(
        items.len() == 2
            && find(&items, "buy milk").is_some_and(|i| i.complete)
            && find(&items, "walk the dog").is_some_and(|i| !i.complete),
        "B has both items, \"buy milk\" complete",
        || format!("B's items are {items:?}"),
    )?;

    d.step("both devices edit \"walk the dog\": B first, then A, which has not pulled B's edit");
    let b_dog = app::find(&b, dog.id()).await?;
    b.sync_table::<TodoItem>()
        .update(&TodoItem {
            text: "walk the dog at 7".into(),
            ..b_dog
        })
        .await?;
    d.say("B renames it \"walk the dog at 7\"");
    let report = d.sync("B", &b).await?;
    d.check(
        report.verdict() == Verdict::Complete,
        "B's edit reached the server",
        || format!("push: {}", report.push.status),
    )?;
    let a_dog = app::find(&a, dog.id()).await?;
    a.sync_table::<TodoItem>()
        .update(&TodoItem {
            text: "walk the dog and the cat".into(),
            ..a_dog
        })
        .await?;
    d.say("A renames it \"walk the dog and the cat\"");
    let report = d.sync("A", &a).await?;
    let conflict = report.errors.first();
    d.check(
        report.verdict() == Verdict::ItemErrors
            && report.errors.len() == 1
            && conflict.is_some_and(|e| e.is_conflict() && e.item_id == dog.id()),
        "the server refuses A's edit as a conflict (the default handler keeps it for the app)",
        || format!("the errors are {:?}", report.errors),
    )?;
    let server_text = conflict
        .and_then(|e| e.server_item.as_ref())
        .and_then(|s| s.get("text"))
        .and_then(|t| t.as_str())
        .unwrap_or_default()
        .to_owned();
    d.check(
        server_text == "walk the dog at 7",
        "the conflict carries the server's values (B's text)",
        || format!("the server's text is {server_text:?}"),
    )?;
    d.pending("A", &a, 1).await?;

    d.step("A resolves the conflict keeping its own values (todo resolve ID --keep-local)");
    d.say(app::resolve(&a, dog.id(), Keep::Local)?);
    let report = d.sync("A", &a).await?;
    d.check(
        report.verdict() == Verdict::Complete,
        "A's values reach the server",
        || {
            format!(
                "push: {} with {} error(s)",
                report.push.status,
                report.errors.len()
            )
        },
    )?;
    d.pending("A", &a, 0).await?;
    let report = d.sync("B", &b).await?;
    let b_dog = app::find(&b, dog.id()).await?;
    d.check(
        report.verdict() == Verdict::Complete && b_dog.text == "walk the dog and the cat",
        "B now sees \"walk the dog and the cat\"",
        || format!("B has {b_dog:?}"),
    )?;

    d.step("another conflict, this time resolved with the server's values (--keep-server)");
    app::complete(&b, dog.id()).await?;
    d.say("B completes it");
    let report = d.sync("B", &b).await?;
    d.check(
        report.verdict() == Verdict::Complete,
        "B's change reached the server",
        || format!("push: {}", report.push.status),
    )?;
    let a_dog = app::find(&a, dog.id()).await?;
    a.sync_table::<TodoItem>()
        .update(&TodoItem {
            text: "walk the dog tomorrow".into(),
            ..a_dog
        })
        .await?;
    d.say("A renames it \"walk the dog tomorrow\"");
    let report = d.sync("A", &a).await?;
    d.check(
        report.verdict() == Verdict::ItemErrors && report.errors.iter().all(|e| e.is_conflict()),
        "a conflict again",
        || {
            format!(
                "push: {} with errors {:?}",
                report.push.status, report.errors
            )
        },
    )?;
    d.say(app::resolve(&a, dog.id(), Keep::Server)?);
    let report = d.sync("A", &a).await?;
    let a_dog = app::find(&a, dog.id()).await?;
    let b_dog = app::find(&b, dog.id()).await?;
    d.check(
        report.verdict() == Verdict::Complete
            && a_dog.complete
            && a_dog.text == b_dog.text
            && a.pending_operations()? == 0,
        "A took the server's values: \"walk the dog and the cat\", complete",
        || format!("A has {a_dog:?}, B has {b_dog:?}"),
    )?;
    let items = d.show_items(&a).await?;
    d.check(
        items.len() == 2 && items.iter().all(|i| i.complete),
        "both items complete on A",
        || format!("A's items are {items:?}"),
    )?;

    d.step("stop the server");
    drop(a);
    drop(b);
    server.shutdown().await.context("server shutdown")?;
    d.say("stopped");

    println!();
    println!(
        "demo complete: all {} steps behaved as the tutorial says",
        d.step
    );
    Ok(0)
}
