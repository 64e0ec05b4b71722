#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Runs the `embedded-server` binary on a loopback port over a fresh SQLite file and uses it
//! as a client would: the host's own routes, a login, the tidesync table with the session
//! token (`modifiedBy` stamped, a long `text` refused), the change feed, and the host's
//! fallback next to the tidesync router's.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

struct Running {
    child: Child,
    url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &tempfile::TempDir) -> Running {
    let database = format!("sqlite://{}", dir.path().join("example.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_embedded-server"))
        .args(["--listen", "127.0.0.1:0", "--database", &database])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Running { child, url }
}

#[tokio::test]
async fn the_example_app_serves_its_routes_and_tidesyncs_with_its_rules() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let url = &server.url;
    let http = reqwest::Client::new();

    // The host's own routes and fallback.
    let home = http.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert!(home.text().await.unwrap().contains("embeds tidesync"));
    let other = http.get(format!("{url}/somewhere")).send().await.unwrap();
    assert_eq!(other.status(), 404);
    assert_eq!(other.text().await.unwrap(), "not here\n");

    // Without a session the table refuses (401); an unknown session too.
    let table = format!("{url}/tables/TodoItem");
    let anonymous = http
        .get(&table)
        .header("zumo-api-version", "3.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let forged = http
        .get(&table)
        .header("zumo-api-version", "3.0.0")
        .bearer_auth("not-a-session")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // Log in with the host's route, then write with the session token.
    let login: Value = http
        .post(format!("{url}/login"))
        .json(&json!({ "user": "ann" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_owned();
    let mut feed = http
        .get(format!("{url}/tidesync/v1/feed?tables=TodoItem"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    let created = http
        .post(&table)
        .header("zumo-api-version", "3.0.0")
        .bearer_auth(&token)
        .json(&json!({ "id": "t1", "text": "milk", "modifiedBy": "mallory" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["modifiedBy"], "ann", "stamped by the policy");

    let too_long = http
        .post(&table)
        .header("zumo-api-version", "3.0.0")
        .bearer_auth(&token)
        .json(&json!({ "id": "t2", "text": "x".repeat(201) }))
        .send()
        .await
        .unwrap();
    assert_eq!(too_long.status(), 400);
    let error: Value = too_long.json().await.unwrap();
    assert_eq!(error["error"], "text has at most 200 characters");
    let just_right = http
        .post(&table)
        .header("zumo-api-version", "3.0.0")
        .bearer_auth(&token)
        .json(&json!({ "id": "t3", "text": "é".repeat(200) }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        just_right.status(),
        201,
        "200 characters (400 bytes) are fine"
    );

    // The change feed told of the write.
    let mut text = String::new();
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !text.contains("\"t1\"") {
        let chunk = tokio::time::timeout_at(until, feed.chunk())
            .await
            .expect("a change event")
            .unwrap()
            .expect("the feed is open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }

    // A v2 list shows both rows, with their stamps.
    let page: Value = http
        .get(&table)
        .header("zumo-api-version", "2.0.0")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = page.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|row| row["modifiedBy"] == "ann"));
}
