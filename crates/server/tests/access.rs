//! Per-operation access (`[tables.operations]`): every rule (anonymous, authenticated,
//! owner, `role:NAME`, disabled) on every verb, v2 and v3, single requests and the batch
//! extension, for a caller without credentials, a user without the role and an admin. A
//! refusal answers 401 without credentials, 403 with credentials that lack the right and 405
//! for a disabled operation, with a JSON error (v3's 401 keeps the Datasync empty body).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, Resp, SECRET};
use serde_json::{Map, Value, json};
use tidesync_server::store::Mutation;
use tidesync_server::{App, ColumnType, Operation, Rule, Server, ServerConfig, TableConfig};

/// A token for `sub` with `extra` claims.
fn token(sub: &str, extra: Value) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut claims = json!({
        "sub": sub, "iat": now, "exp": now + 3600,
        "aud": "urn:microsoft:windows-azure:zumo", "iss": "urn:microsoft:windows-azure:zumo",
    });
    for (name, value) in extra.as_object().into_iter().flatten() {
        claims[name] = value.clone();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// The rules under test, each on a table of its own where all four operations follow it.
const RULES: [(&str, &str); 5] = [
    ("Anon", "anonymous"),
    ("Authn", "authenticated"),
    ("Own", "owner"),
    ("Admins", "role:admin"),
    ("Off", "disabled"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Nobody,
    User,
    Admin,
}

impl Who {
    fn sub(self) -> &'static str {
        match self {
            Who::Nobody => "",
            Who::User => "alice",
            Who::Admin => "root",
        }
    }

    fn headers(self, tokens: &Tokens) -> Vec<(&'static str, String)> {
        match self {
            Who::Nobody => Vec::new(),
            Who::User => vec![("x-zumo-auth", tokens.user.clone())],
            Who::Admin => vec![("x-zumo-auth", tokens.admin.clone())],
        }
    }
}

struct Tokens {
    user: String,
    admin: String,
}

/// The status a refused request gets, or `None` when `rule` lets `who` through.
fn refusal(rule: &str, who: Who) -> Option<u16> {
    match (rule, who) {
        ("disabled", _) => Some(405),
        ("anonymous", _) => None,
        (_, Who::Nobody) => Some(401),
        ("role:admin", Who::User) => Some(403),
        _ => None,
    }
}

fn config() -> ServerConfig {
    let mut text = format!("[auth]\njwt_secret = \"{SECRET}\"\n");
    for (name, rule) in RULES {
        text.push_str(&format!(
            "[[tables]]\nname = \"{name}\"\ncolumns = {{ text = \"string\" }}\n\
             [tables.operations]\nread = \"{rule}\"\ninsert = \"{rule}\"\n\
             update = \"{rule}\"\ndelete = \"{rule}\"\n"
        ));
    }
    ServerConfig::from_toml(&text).unwrap()
}

/// Stores a row directly (the API may refuse every write on the table).
async fn seed(app: &App, table: &str, id: &str, owner: &str, deleted: bool) {
    let mut values = Map::new();
    values.insert("text".to_owned(), json!("seed"));
    if table == "Own" {
        values.insert("userId".to_owned(), json!(owner));
    }
    let outcome = app
        .store()
        .write(
            table,
            id,
            Box::new(move |_, _| {
                Ok(Mutation::Put {
                    values: values.clone(),
                    deleted,
                    new_columns: Vec::new(),
                })
            }),
        )
        .await
        .unwrap();
    assert!(outcome.is_ok(), "{outcome:?}");
}

fn check(resp: &Resp, expected: u16, ok: u16, what: &str, v3: bool) {
    let want = if expected == 0 { ok } else { expected };
    assert_eq!(resp.status, want, "{what}: {}", resp.text);
    if expected != 0 && !(v3 && expected == 401) {
        assert!(
            resp.body["error"].is_string(),
            "{what}: a JSON error, got {}",
            resp.text
        );
    }
}

/// Every rule × verb × protocol × caller, single requests.
#[tokio::test]
async fn every_rule_on_every_verb_v2_and_v3() {
    let dir = tempfile::tempdir().unwrap();
    let app = Server::builder()
        .config(config())
        .sqlite(dir.path().join("access.db"))
        .build()
        .await
        .unwrap();
    let c = Client {
        router: app.router(),
    };
    let tokens = Tokens {
        user: token("alice", json!({})),
        admin: token("root", json!({ "roles": ["admin", "other"] })),
    };
    let mut n = 0;
    for (table, rule) in RULES {
        for who in [Who::Nobody, Who::User, Who::Admin] {
            let expected = refusal(rule, who).unwrap_or(0);
            let headers = who.headers(&tokens);
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            for version in ["2.0.0", "3.0.0"] {
                let v3 = version == "3.0.0";
                let tag = format!("{table} {rule} {who:?} v{version}");
                let send = |method: &'static str, path: String, body: Option<Value>| {
                    let h = h.clone();
                    let c = c.clone();
                    async move {
                        if v3 {
                            c.v3(method, &path, &h, body).await
                        } else {
                            c.v2(method, &path, &h, body).await
                        }
                    }
                };
                let id = |verb: &str| format!("{verb}-{}-{}", who.sub(), &version[..1]);
                // Read: the list and one item.
                seed(&app, table, &id("get"), who.sub(), false).await;
                let r = send("GET", format!("/tables/{table}"), None).await;
                check(&r, expected, 200, &format!("{tag} list"), v3);
                let r = send("GET", format!("/tables/{table}/{}", id("get")), None).await;
                check(&r, expected, 200, &format!("{tag} read"), v3);
                // Insert.
                let body = json!({ "id": id("ins"), "text": "new" });
                let r = send("POST", format!("/tables/{table}"), Some(body)).await;
                check(&r, expected, 201, &format!("{tag} insert"), v3);
                // Update: v2 PATCH, v3 PUT.
                seed(&app, table, &id("upd"), who.sub(), false).await;
                let path = format!("/tables/{table}/{}", id("upd"));
                let r = if v3 {
                    let body = json!({ "id": id("upd"), "text": "put" });
                    send("PUT", path, Some(body)).await
                } else {
                    send("PATCH", path, Some(json!({ "text": "patched" }))).await
                };
                check(&r, expected, 200, &format!("{tag} update"), v3);
                // Delete.
                seed(&app, table, &id("del"), who.sub(), false).await;
                let r = send("DELETE", format!("/tables/{table}/{}", id("del")), None).await;
                check(
                    &r,
                    expected,
                    if v3 { 204 } else { 200 },
                    &format!("{tag} delete"),
                    v3,
                );
                if !v3 {
                    // v2 undelete is an update.
                    seed(&app, table, &id("und"), who.sub(), true).await;
                    let path = format!("/tables/{table}/{}", id("und"));
                    let r = send("POST", path, None).await;
                    check(&r, expected, 201, &format!("{tag} undelete"), v3);
                }
                n += 1;
            }
            // The extension reads: snapshot, horizon and the change feed follow `read`.
            let tag = format!("{table} {rule} {who:?}");
            let path = format!("/tidesync/v1/tables/{table}/snapshot");
            let r = c.send("GET", &path, &h, None).await;
            check(&r, expected, 200, &format!("{tag} snapshot"), true);
            let path = format!("/tidesync/v1/tables/{table}/horizon");
            let r = c.send("GET", &path, &h, None).await;
            check(&r, expected, 200, &format!("{tag} horizon"), false);
            let status = feed_status(&c, table, &h).await;
            assert_eq!(
                status,
                if expected == 0 { 200 } else { expected },
                "{tag} feed"
            );
        }
    }
    assert_eq!(n, 30);
}

/// The status a change feed on `table` opens with (the stream itself is dropped unread).
async fn feed_status(c: &Client, table: &str, headers: &[(&str, &str)]) -> u16 {
    use tower::ServiceExt;
    let mut request = axum::http::Request::builder()
        .uri(format!("/tidesync/v1/feed?tables={table}"))
        .header("host", "127.0.0.1");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(axum::body::Body::empty()).unwrap();
    let response = c.router.clone().oneshot(request).await.unwrap();
    response.status().as_u16()
}

/// Every rule × batch op kind × caller: the refusal is the op's result, the other ops of
/// the same batch still apply.
#[tokio::test]
async fn every_rule_on_every_batch_op() {
    let dir = tempfile::tempdir().unwrap();
    let app = Server::builder()
        .config(config())
        .sqlite(dir.path().join("access.db"))
        .table_config(TableConfig::new("Free").column("text", ColumnType::String))
        .build()
        .await
        .unwrap();
    let c = Client {
        router: app.router(),
    };
    let tokens = Tokens {
        user: token("alice", json!({})),
        admin: token("root", json!({ "roles": "admin" })),
    };
    for (table, rule) in RULES {
        for who in [Who::Nobody, Who::User, Who::Admin] {
            let expected = refusal(rule, who).unwrap_or(0);
            let headers = who.headers(&tokens);
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let tag = format!("{table} {rule} {who:?}");
            let id = |verb: &str| format!("b{verb}-{}", who.sub());
            seed(&app, table, &id("upd"), who.sub(), false).await;
            seed(&app, table, &id("del"), who.sub(), false).await;
            let op = |n: &str, kind: &str, item_id: String, item: Value| {
                json!({ "id": format!("{tag}-{n}"), "kind": kind, "table": table,
                        "itemId": item_id, "item": item })
            };
            let ops = json!({ "operations": [
                op("i", "insert", id("ins"), json!({ "text": "new" })),
                op("u", "update", id("upd"), json!({ "text": "changed" })),
                op("d", "delete", id("del"), Value::Null),
                { "id": format!("{tag}-free"), "kind": "insert", "table": "Free",
                  "itemId": format!("free-{table}-{}", who.sub()), "item": { "text": "x" } },
            ]});
            let r = c.batch(&ops, &h).await;
            assert_eq!(r.status, 200, "{tag}: {}", r.text);
            let results = r.body["results"].as_array().unwrap();
            for (at, ok) in [(0, 201), (1, 200), (2, 204)] {
                let want = if expected == 0 { ok } else { expected };
                assert_eq!(results[at]["status"], want, "{tag} op {at}: {}", r.text);
                if expected != 0 {
                    assert!(results[at]["error"].is_string(), "{tag}: {}", r.text);
                }
            }
            assert_eq!(
                results[3]["status"], 201,
                "{tag}: the open table's op applies"
            );
        }
    }
}

/// Each operation follows its own rule: one table readable by anyone, writable by users,
/// updatable by editors only and never deletable.
#[tokio::test]
async fn operations_are_independent() {
    let dir = tempfile::tempdir().unwrap();
    let table = TableConfig::new("Mixed")
        .column("text", ColumnType::String)
        .operation(Operation::Read, Rule::Anonymous)
        .operation(Operation::Insert, Rule::Authenticated)
        .operation(Operation::Update, Rule::Role("editor".to_owned()))
        .operation(Operation::Delete, Rule::Disabled);
    let app = Server::builder()
        .sqlite(dir.path().join("mixed.db"))
        .table_config(table)
        .jwt_secret(SECRET)
        .build()
        .await
        .unwrap();
    let c = Client {
        router: app.router(),
    };
    let user = token("alice", json!({}));
    let editor = token("ed", json!({ "roles": "editor" }));
    let u = [("x-zumo-auth", user.as_str())];
    let e = [("x-zumo-auth", editor.as_str())];
    assert_eq!(c.v3("GET", "/tables/Mixed", &[], None).await.status, 200);
    let body = json!({ "id": "m1", "text": "a" });
    assert_eq!(
        c.v3("POST", "/tables/Mixed", &[], Some(body.clone()))
            .await
            .status,
        401
    );
    assert_eq!(
        c.v3("POST", "/tables/Mixed", &u, Some(body)).await.status,
        201
    );
    let put = json!({ "id": "m1", "text": "b" });
    let r = c.v3("PUT", "/tables/Mixed/m1", &u, Some(put.clone())).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.body["error"].as_str().unwrap().contains("editor"));
    assert_eq!(
        c.v3("PUT", "/tables/Mixed/m1", &e, Some(put)).await.status,
        200
    );
    let r = c.v3("DELETE", "/tables/Mixed/m1", &e, None).await;
    assert_eq!(r.status, 405, "{}", r.text);
    assert!(r.body["error"].as_str().unwrap().contains("delete"));
    // The capabilities document tells clients each operation's rule.
    let caps = c.send("GET", "/tidesync/v1/capabilities", &[], None).await;
    assert_eq!(
        caps.body["tables"][0]["operations"],
        json!({"read": "anonymous", "insert": "authenticated",
               "update": "role:editor", "delete": "disabled"}),
        "{}",
        caps.text
    );
    // The role claim is configurable.
    let config = ServerConfig::from_toml(&format!(
        "[auth]\njwt_secret = \"{SECRET}\"\nroles_claim = \"groups\"\n\
         [[tables]]\nname = \"G\"\n[tables.operations]\nread = \"role:staff\"\n"
    ))
    .unwrap();
    let app = Server::builder()
        .config(config)
        .sqlite(dir.path().join("groups.db"))
        .build()
        .await
        .unwrap();
    let c = Client {
        router: app.router(),
    };
    let in_groups = token("s", json!({ "groups": ["staff"] }));
    let in_roles = token("s", json!({ "roles": ["staff"] }));
    let get = |t: String| {
        let c = c.clone();
        async move {
            c.v2("GET", "/tables/G", &[("x-zumo-auth", t.as_str())], None)
                .await
                .status
        }
    };
    assert_eq!(get(in_groups).await, 200);
    assert_eq!(get(in_roles).await, 403);
}

/// A bad rule in the file is refused when the file is read, naming the accepted forms.
#[test]
fn unknown_rules_are_refused() {
    let error = ServerConfig::from_toml(
        "[[tables]]\nname = \"T\"\n[tables.operations]\nread = \"everyone\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("role:NAME"), "{error}");
    assert!(
        ServerConfig::from_toml(
            "[[tables]]\nname = \"T\"\n[tables.operations]\nread = \"role:\"\n"
        )
        .is_err()
    );
}
