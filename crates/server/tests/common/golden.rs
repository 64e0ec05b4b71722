//! The golden exchanges 1–50 of `server-protocol.md` §11, replayed in order against a fresh
//! `TodoItem` table. Store-agnostic: every backend's test calls [`run`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use super::{Client, Resp, token};

const T: &str = "/tables/TodoItem";
const VERSION_ERROR: &str = "ZUMO-API-VERSION of 2.0.0";

fn assert_status(resp: &Resp, status: u16, step: &str) {
    assert_eq!(resp.status, status, "exchange {step}: {}", resp.text);
}

fn is_ms_utc(text: &str) -> bool {
    text.len() == 24 && text.ends_with('Z') && text.as_bytes()[19] == b'.'
}

fn is_uuid_v4(text: &str) -> bool {
    uuid::Uuid::parse_str(text).is_ok_and(|u| u.get_version_num() == 4)
        && text == text.to_ascii_lowercase()
        && text.len() == 36
}

/// Runs exchanges 1–50; returns the numbers that were checked.
pub async fn run(c: &Client) -> Vec<u32> {
    let mut done = Vec::new();
    let mut step = |n: u32| done.push(n);

    // 1. no version header
    let r = c.send("GET", T, &[], None).await;
    assert_status(&r, 400, "1");
    assert!(r.body["error"].as_str().unwrap().contains(VERSION_ERROR));
    step(1);
    // 2. v3 is enabled here
    let r = c.v3("GET", T, &[], None).await;
    assert_status(&r, 200, "2");
    assert_eq!(
        r.body,
        json!({"items": [], "count": null, "nextLink": null})
    );
    step(2);
    // 3. version as a query parameter
    let r = c
        .send("GET", &format!("{T}?ZUMO-API-VERSION=2.0.0"), &[], None)
        .await;
    assert_status(&r, 200, "3");
    assert_eq!(r.body, json!([]));
    step(3);
    // 4. 2.0.1
    let r = c
        .send("GET", T, &[("ZUMO-API-VERSION", "2.0.1")], None)
        .await;
    assert_status(&r, 200, "4");
    assert_eq!(r.body, json!([]));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    step(4);
    // 5. unversioned POST writes nothing
    let r = c
        .send(
            "POST",
            T,
            &[("content-type", "application/json")],
            Some(r#"{"id":"no-version","text":"x"}"#),
        )
        .await;
    assert_status(&r, 400, "5");
    let r = c
        .v2("GET", &format!("{T}?__includeDeleted=true"), &[], None)
        .await;
    assert_eq!(r.body, json!([]), "exchange 5");
    step(5);

    // 6. insert with id
    let r = c
        .v2(
            "POST",
            T,
            &[],
            Some(json!({"id":"item-1","text":"buy milk","complete":false})),
        )
        .await;
    assert_status(&r, 201, "6");
    let v1 = r.body["version"].as_str().unwrap().to_owned();
    assert_eq!(r.etag(), format!("\"{v1}\""));
    assert_eq!(r.body["id"], "item-1");
    assert_eq!(r.body["createdAt"], r.body["updatedAt"]);
    assert!(is_ms_utc(r.body["createdAt"].as_str().unwrap()));
    assert_eq!(r.body["deleted"], false);
    assert_eq!(r.body["complete"], false);
    let created_body = r.body.clone();
    step(6);
    // 7. generated id
    let r = c
        .v2(
            "POST",
            T,
            &[],
            Some(json!({"text":"generated id","complete":true})),
        )
        .await;
    assert_status(&r, 201, "7");
    let generated = r.body["id"].as_str().unwrap().to_owned();
    assert!(is_uuid_v4(&generated), "{generated}");
    step(7);
    // 8. duplicate → 409 with the stored item
    let r = c
        .v2(
            "POST",
            T,
            &[],
            Some(json!({"id":"item-1","text":"conflicting","complete":true})),
        )
        .await;
    assert_status(&r, 409, "8");
    assert_eq!(r.body["text"], "buy milk");
    assert_eq!(r.etag(), format!("\"{v1}\""));
    step(8);
    // 9, 10. reserved properties
    let r = c
        .v2(
            "POST",
            T,
            &[],
            Some(json!({"id":"item-x","text":"t","createdAt":"2020-01-01T00:00:00.000Z"})),
        )
        .await;
    assert_status(&r, 400, "9");
    assert_eq!(
        r.body,
        json!({"error":"Cannot update item with property 'createdAt' as it is reserved"})
    );
    step(9);
    let r = c
        .v2(
            "POST",
            T,
            &[],
            Some(json!({"id":"item-x","text":"t","deleted":false})),
        )
        .await;
    assert_status(&r, 400, "10");
    assert_eq!(
        r.body,
        json!({"error":"Cannot update item with property 'deleted' as it is reserved"})
    );
    step(10);
    // 11. malformed JSON
    let r = c
        .send(
            "POST",
            T,
            &[
                ("zumo-api-version", "2.0.0"),
                ("content-type", "application/json"),
            ],
            Some(r#"{"id":"#),
        )
        .await;
    assert_status(&r, 400, "11");
    assert!(r.body["error"].is_string());
    step(11);
    // (unnumbered, golden/02) a version in the POST body is ignored
    let r = c
        .v2(
            "POST",
            T,
            &[],
            Some(json!({"id":"item-v","text":"with version","version":"AAAAAAAAB9E="})),
        )
        .await;
    assert_status(&r, 201, "item-v");
    assert_ne!(r.body["version"], "AAAAAAAAB9E=");

    // 12. read
    let r = c.v2("GET", &format!("{T}/item-1"), &[], None).await;
    assert_status(&r, 200, "12");
    assert_eq!(r.etag(), format!("\"{v1}\""));
    assert_eq!(r.body, created_body);
    step(12);
    // 13. If-None-Match ignored in v2
    let etag1 = format!("\"{v1}\"");
    let r = c
        .v2(
            "GET",
            &format!("{T}/item-1"),
            &[("if-none-match", &etag1)],
            None,
        )
        .await;
    assert_status(&r, 200, "13");
    step(13);
    // 14. missing
    let r = c.v2("GET", &format!("{T}/does-not-exist"), &[], None).await;
    assert_status(&r, 404, "14");
    assert_eq!(r.body, json!({"error":"The item does not exist"}));
    step(14);

    // 15. PATCH with the right If-Match
    let r = c
        .v2(
            "PATCH",
            &format!("{T}/item-1"),
            &[("if-match", &etag1)],
            Some(json!({"id":"item-1","text":"buy oat milk"})),
        )
        .await;
    assert_status(&r, 200, "15");
    assert_eq!(r.body["text"], "buy oat milk");
    assert_eq!(r.body["complete"], false);
    let v2 = r.body["version"].as_str().unwrap().to_owned();
    assert_ne!(v2, v1);
    assert_eq!(r.etag(), format!("\"{v2}\""));
    // "Advanced" at millisecond precision: writes of one millisecond share it (the version
    // is what always changes).
    assert!(r.body["updatedAt"].as_str().unwrap() >= r.body["createdAt"].as_str().unwrap());
    step(15);
    // 16. stale If-Match → 412
    let r = c
        .v2(
            "PATCH",
            &format!("{T}/item-1"),
            &[("if-match", &etag1)],
            Some(json!({"text":"stale write"})),
        )
        .await;
    assert_status(&r, 412, "16");
    assert_eq!(r.body["text"], "buy oat milk");
    assert_eq!(r.body["version"], v2.as_str());
    assert_eq!(r.etag(), format!("\"{v2}\""));
    step(16);
    // 17. stale body version → 409
    let r = c
        .v2(
            "PATCH",
            &format!("{T}/item-1"),
            &[],
            Some(json!({"id":"item-1","text":"stale body","version":v1})),
        )
        .await;
    assert_status(&r, 409, "17");
    assert_eq!(r.body["text"], "buy oat milk");
    assert_eq!(r.etag(), format!("\"{v2}\""));
    step(17);
    // 18. no version: last writer wins
    let r = c
        .v2(
            "PATCH",
            &format!("{T}/item-1"),
            &[],
            Some(json!({"complete":true})),
        )
        .await;
    assert_status(&r, 200, "18");
    assert_eq!(r.body["complete"], true);
    assert_ne!(r.body["version"], v2.as_str());
    step(18);
    // 19. id mismatch
    let r = c
        .v2(
            "PATCH",
            &format!("{T}/item-1"),
            &[],
            Some(json!({"id":"item-2","text":"x"})),
        )
        .await;
    assert_status(&r, 400, "19");
    assert_eq!(
        r.body,
        json!({"error":"The item ID and querystring ID did not match"})
    );
    step(19);
    // 20. reserved on PATCH
    let r = c
        .v2(
            "PATCH",
            &format!("{T}/item-1"),
            &[],
            Some(json!({"updatedAt":"2020-01-01T00:00:00.000Z"})),
        )
        .await;
    assert_status(&r, 400, "20");
    assert_eq!(
        r.body,
        json!({"error":"Cannot update item with property 'updatedAt' as it is reserved"})
    );
    step(20);
    // 21. unknown id
    let r = c
        .v2(
            "PATCH",
            &format!("{T}/nope"),
            &[],
            Some(json!({"text":"x"})),
        )
        .await;
    assert_status(&r, 404, "21");
    assert_eq!(r.body, json!({"error":"The item does not exist"}));
    step(21);
    // 22. If-Match: * is a wildcard
    let r = c
        .v2(
            "PATCH",
            &format!("{T}/item-1"),
            &[("if-match", "*")],
            Some(json!({"text":"buy oat milk"})),
        )
        .await;
    assert_status(&r, 200, "22");
    step(22);

    // 23. stale DELETE
    let r = c
        .v2(
            "POST",
            T,
            &[],
            Some(json!({"id":"item-del","text":"to delete","complete":false})),
        )
        .await;
    assert_status(&r, 201, "23");
    let d1 = r.body["version"].as_str().unwrap().to_owned();
    let d1_updated = r.body["updatedAt"].as_str().unwrap().to_owned();
    let r = c
        .v2(
            "DELETE",
            &format!("{T}/item-del"),
            &[("if-match", "\"MTIz\"")],
            None,
        )
        .await;
    assert_status(&r, 412, "23");
    assert_eq!(r.body["text"], "to delete");
    assert_eq!(r.etag(), format!("\"{d1}\""));
    step(23);
    // 24. DELETE
    let r = c
        .v2(
            "DELETE",
            &format!("{T}/item-del"),
            &[("if-match", &format!("\"{d1}\""))],
            None,
        )
        .await;
    assert_status(&r, 200, "24");
    assert_eq!(r.body["deleted"], true);
    let d2 = r.body["version"].as_str().unwrap().to_owned();
    assert_ne!(d2, d1);
    assert!(r.body["updatedAt"].as_str().unwrap() >= d1_updated.as_str());
    assert_eq!(r.etag(), format!("\"{d2}\""));
    step(24);
    // 25. deleted reads are 404 in v2, flag or not
    let r = c.v2("GET", &format!("{T}/item-del"), &[], None).await;
    assert_status(&r, 404, "25");
    let r = c
        .v2(
            "GET",
            &format!("{T}/item-del?__includeDeleted=true"),
            &[],
            None,
        )
        .await;
    assert_status(&r, 404, "25");
    step(25);
    // 26. include-deleted on queries
    let r = c
        .v2(
            "GET",
            &format!("{T}?$filter=id%20eq%20'item-del'"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.body, json!([]), "exchange 26");
    let r = c
        .v2(
            "GET",
            &format!("{T}?$filter=id%20eq%20'item-del'&__includeDeleted=true"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.ids(), vec!["item-del"], "exchange 26");
    assert_eq!(r.body[0]["deleted"], true);
    step(26);
    // 27. DELETE / PATCH of a deleted row
    let r = c.v2("DELETE", &format!("{T}/item-del"), &[], None).await;
    assert_status(&r, 404, "27");
    let r = c
        .v2(
            "PATCH",
            &format!("{T}/item-del"),
            &[],
            Some(json!({"text":"zombie"})),
        )
        .await;
    assert_status(&r, 404, "27");
    step(27);
    // 28. insert over a tombstone
    let r = c
        .v2(
            "POST",
            T,
            &[],
            Some(json!({"id":"item-del","text":"reuse"})),
        )
        .await;
    assert_status(&r, 409, "28");
    step(28);
    // 29. undelete
    let r = c.v2("POST", &format!("{T}/item-del"), &[], None).await;
    assert_status(&r, 201, "29");
    assert_eq!(r.body["deleted"], false);
    assert_ne!(r.body["version"], d2.as_str());
    let r = c.v2("GET", &format!("{T}/item-del"), &[], None).await;
    assert_status(&r, 200, "29");
    step(29);
    // (golden/05) delete it again without If-Match
    let r = c.v2("DELETE", &format!("{T}/item-del"), &[], None).await;
    assert_status(&r, 200, "29b");

    // 30. 55 bulk rows, default page 50 with Link
    let mut bulk_updated = Vec::new();
    for n in 1..=55 {
        let r = c
            .v2("POST", T, &[], Some(json!({"id": format!("bulk-{n:02}"), "text": format!("bulk {n:02}"), "complete": n % 2 == 0})))
            .await;
        assert_status(&r, 201, "30");
        bulk_updated.push(r.body["updatedAt"].as_str().unwrap().to_owned());
    }
    let r = c.v2("GET", &format!("{T}?$select=id"), &[], None).await;
    assert_status(&r, 200, "30");
    assert_eq!(r.body.as_array().unwrap().len(), 50);
    assert!(r.body[0].as_object().unwrap().keys().eq(["id"].iter()));
    let link = r.header("link").expect("a Link header");
    assert!(
        // The official clients' form: no angle brackets (docs/protocol.md).
        link.starts_with("http://127.0.0.1:8080/tables/TodoItem?"),
        "{link}"
    );
    assert!(
        link.ends_with("; rel=next") && link.contains("$skip=50") && link.contains("$top=50"),
        "{link}"
    );
    step(30);
    // 31. $top limit
    let r = c.v2("GET", &format!("{T}?$top=1001"), &[], None).await;
    assert_status(&r, 400, "31");
    assert_eq!(
        r.body,
        json!({"error":"You cannot request more than 1000 records"})
    );
    let r = c.v2("GET", &format!("{T}?$top=1000"), &[], None).await;
    assert_status(&r, 200, "31");
    assert_eq!(r.body.as_array().unwrap().len(), 58);
    step(31);
    // 32, 33. inline count
    let r = c
        .v2(
            "GET",
            &format!("{T}?$top=3&$inlinecount=allpages&$orderby=id&$select=id,text"),
            &[],
            None,
        )
        .await;
    assert_status(&r, 200, "32");
    assert_eq!(r.body["count"], 58);
    let mut by_id: Vec<String> = ["item-1", "item-v", generated.as_str()]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    by_id.extend((1..=55).map(|n| format!("bulk-{n:02}")));
    by_id.sort();
    assert_eq!(r.ids(), by_id[..3].to_vec(), "exchange 32");
    assert!(r.body["results"][0].as_object().unwrap().len() == 2);
    step(32);
    let r = c
        .v2(
            "GET",
            &format!("{T}?$top=3&$skip=3&$inlinecount=allpages&$orderby=id&$select=id,text"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.body["count"], 58);
    assert_eq!(r.ids(), by_id[3..6].to_vec(), "exchange 33");
    step(33);
    // 34–36. incremental pull
    let ts = &bulk_updated[49];
    let pull = |skip: u32, literal: &str| {
        format!(
            "{T}?$filter=(updatedAt%20ge%20{literal}'{ts}')&$orderby=updatedAt&$skip={skip}&$top=3&__includeDeleted=true"
        )
    };
    // The spec's rows are bulk-50 on. Writes of one millisecond share `updatedAt` (the clock
    // never runs ahead of the wall), so bulk rows written in bulk-50's millisecond before it
    // match `ge` too; in (updatedAt, id) order they come first.
    let first = bulk_updated.iter().position(|t| t == ts).unwrap_or(49) + 1;
    let pulled: Vec<String> = (first..=55).map(|n| format!("bulk-{n:02}")).collect();
    let page = |skip: usize| {
        pulled
            .iter()
            .skip(skip)
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
    };
    let r = c.v2("GET", &pull(0, "datetimeoffset"), &[], None).await;
    assert_eq!(r.ids(), page(0), "exchange 34");
    assert!(r.body[0]["createdAt"].is_string());
    step(34);
    let r = c.v2("GET", &pull(3, "datetimeoffset"), &[], None).await;
    assert_eq!(r.ids(), page(3), "exchange 35");
    let r = c
        .v2(
            "GET",
            &pull(pulled.len() as u32, "datetimeoffset"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.body, json!([]), "exchange 35");
    step(35);
    let r = c.v2("GET", &pull(0, "datetime"), &[], None).await;
    assert_eq!(r.ids(), page(0), "exchange 36");
    step(36);
    // 37. order by text desc, id
    let r = c
        .v2(
            "GET",
            &format!("{T}?$orderby=text%20desc%2Cid&$top=3&$select=id,text"),
            &[],
            None,
        )
        .await;
    assert_eq!(
        r.ids(),
        ["item-v".to_owned(), generated.clone(), "item-1".to_owned()],
        "exchange 37"
    );
    step(37);

    // 38–44. filters (the generated id sorts among the bulk ids, so expectations account for it)
    let q =
        |filter: &str| format!("{T}?$filter={filter}&$orderby=id&$top=3&$select=id,text,complete");
    let mut complete_true: Vec<String> = (2..=55)
        .step_by(2)
        .map(|n| format!("bulk-{n:02}"))
        .collect();
    complete_true.push(generated.clone());
    complete_true.sort();
    for filter in ["complete%20eq%20true", "complete"] {
        let r = c.v2("GET", &q(filter), &[], None).await;
        assert_eq!(
            r.ids(),
            complete_true[..3].to_vec(),
            "exchange 38: {filter}"
        );
    }
    let r = c.v2("GET", &q("not%20complete"), &[], None).await;
    assert_eq!(r.ids(), ["bulk-01", "bulk-03", "bulk-05"], "exchange 38");
    step(38);
    let cases: &[(u32, &str, &[&str])] = &[
        (
            39,
            "startswith(text%2C'bulk%201')",
            &["bulk-10", "bulk-11", "bulk-12"],
        ),
        (
            40,
            "substringof('ulk%202'%2Ctext)",
            &["bulk-20", "bulk-21", "bulk-22"],
        ),
        (
            40,
            "endswith(text%2C'9')",
            &["bulk-09", "bulk-19", "bulk-29"],
        ),
        (41, "tolower(text)%20eq%20'bulk%2003'", &["bulk-03"]),
        (41, "toupper(text)%20eq%20'BULK%2003'", &["bulk-03"]),
        (41, "trim(text)%20eq%20'bulk%2003'", &["bulk-03"]),
        (41, "concat(text%2C'!')%20eq%20'bulk%2003!'", &["bulk-03"]),
        (
            42,
            "length(text)%20eq%207",
            &["bulk-01", "bulk-02", "bulk-03"],
        ),
        (
            42,
            "indexof(text%2C'3')%20eq%206",
            &["bulk-03", "bulk-13", "bulk-23"],
        ),
        (42, "substring(text%2C5)%20eq%20'03'", &["bulk-03"]),
        (43, "text%20eq%20null", &[]),
    ];
    for (n, filter, expected) in cases {
        let r = c.v2("GET", &q(filter), &[], None).await;
        assert_status(&r, 200, &format!("{n}: {filter}"));
        assert_eq!(r.ids(), expected.to_vec(), "exchange {n}: {filter}");
        if *n != 40 {
            step(*n);
        }
    }
    step(40);
    for filter in [
        "year(createdAt)%20ge%202000",
        "month(createdAt)%20ge%201",
        "day(createdAt)%20ge%201",
        "round(1.4)%20eq%201",
        "floor(1.6)%20eq%201",
        "ceiling(1.2)%20eq%202",
        "(1%20add%202)%20eq%203",
    ] {
        let r = c
            .v2(
                "GET",
                &format!("{T}?$filter={filter}&$top=1000&$select=id"),
                &[],
                None,
            )
            .await;
        assert_status(&r, 200, &format!("43: {filter}"));
        assert_eq!(
            r.body.as_array().unwrap().len(),
            58,
            "exchange 43: {filter}"
        );
    }
    step(43);
    for filter in ["text%20eq", "frobnicate(text)", "nosuchcolumn%20eq%201"] {
        let r = c
            .v2("GET", &format!("{T}?$filter={filter}"), &[], None)
            .await;
        assert_status(&r, 400, &format!("44: {filter}"));
        assert!(r.body["error"].is_string(), "exchange 44: {}", r.text);
    }
    step(44);

    // 45. auth
    let r = c.v2("GET", "/tables/AuthTodoItem", &[], None).await;
    assert_status(&r, 401, "45");
    let r = c.v2("GET", T, &[("x-zumo-auth", "not-a-jwt")], None).await;
    assert_status(&r, 401, "45");
    let good = token("sid:tidesync-test-user");
    let r = c
        .v2(
            "GET",
            "/tables/AuthTodoItem",
            &[("x-zumo-auth", &good)],
            None,
        )
        .await;
    assert_status(&r, 200, "45");
    assert_eq!(r.body, json!([]));
    let bearer = format!("Bearer {good}");
    let r = c
        .v2(
            "POST",
            "/tables/AuthTodoItem",
            &[("authorization", &bearer)],
            Some(json!({"id":"a1","text":"secret"})),
        )
        .await;
    assert_status(&r, 201, "45");
    step(45);
    // 46. no PUT in v2; case-insensitive table names
    let r = c
        .v2(
            "PUT",
            &format!("{T}/item-1"),
            &[],
            Some(json!({"text":"put"})),
        )
        .await;
    assert_status(&r, 404, "46");
    let r = c.v2("GET", "/tables/todoitem/item-1", &[], None).await;
    assert_status(&r, 200, "46");
    step(46);

    // 47. v3 create
    let r = c
        .v3(
            "POST",
            T,
            &[],
            Some(json!({"id":"v3-1","text":"a","complete":false})),
        )
        .await;
    assert_status(&r, 201, "47");
    assert_eq!(
        r.header("location"),
        Some("http://127.0.0.1:8080/tables/TodoItem/v3-1")
    );
    let e1 = r.etag();
    assert!(r.header("last-modified").is_some());
    assert!(r.body["createdAt"].is_string() && r.body["version"].is_string());
    step(47);
    // 48. v3 replace and conditional GET
    let full = json!({"id":"v3-1","text":"b","complete":true});
    let r = c
        .v3(
            "PUT",
            &format!("{T}/v3-1"),
            &[("if-match", "\"AAAAAAAAAAA=\"")],
            Some(full.clone()),
        )
        .await;
    assert_status(&r, 412, "48");
    assert_eq!(r.body["text"], "a");
    assert_eq!(r.etag(), e1);
    let r = c
        .v3(
            "PUT",
            &format!("{T}/v3-1"),
            &[("if-match", &e1)],
            Some(full),
        )
        .await;
    assert_status(&r, 200, "48");
    assert_eq!(r.body["text"], "b");
    let e2 = r.etag();
    let r = c
        .v3("GET", &format!("{T}/v3-1"), &[("if-none-match", &e2)], None)
        .await;
    assert_status(&r, 304, "48");
    assert!(r.text.is_empty());
    step(48);
    // 49. v3 delete
    let r = c.v3("DELETE", &format!("{T}/v3-1"), &[], None).await;
    assert_status(&r, 204, "49");
    let r = c.v3("GET", &format!("{T}/v3-1"), &[], None).await;
    assert_status(&r, 410, "49");
    let r = c
        .v3("GET", &format!("{T}/v3-1?__includedeleted=true"), &[], None)
        .await;
    assert_status(&r, 200, "49");
    assert_eq!(r.body["deleted"], true);
    let r = c.v3("DELETE", &format!("{T}/v3-1"), &[], None).await;
    assert_status(&r, 410, "49");
    step(49);
    // 50. v3 paging with 150 live rows
    for n in 0..92 {
        let r = c
            .v3(
                "POST",
                T,
                &[],
                Some(json!({"id": format!("page-{n:03}"), "text": "p"})),
            )
            .await;
        assert_status(&r, 201, "50");
    }
    let r = c
        .v3("GET", &format!("{T}?$count=true&$orderby=id"), &[], None)
        .await;
    assert_status(&r, 200, "50");
    assert_eq!(r.body["items"].as_array().unwrap().len(), 100);
    assert_eq!(r.body["count"], 150);
    assert_eq!(r.body["nextLink"], "$count=true&$orderby=id&$skip=100");
    let r = c
        .v3(
            "GET",
            &format!("{T}?$count=true&$orderby=id&$top=120"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 100);
    let next = r.body["nextLink"].as_str().unwrap();
    assert!(
        next.contains("$top=20") && next.contains("$skip=100"),
        "{next}"
    );
    let r = c
        .v3(
            "GET",
            &format!("{T}?$count=true&$orderby=id&$top=2"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["nextLink"], Value::Null);
    step(50);
    done.sort_unstable();
    done.dedup();
    done
}
