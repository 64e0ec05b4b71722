//! `GET /tables/{table}`: OData options in, a v2 array / `{results,count}` or a v3
//! `{items,count,nextLink}` out, with the spec's paging (7.4).

use std::fmt::Write as _;

use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use tidesync_protocol::odata::{ParseLimits, Query};
use tidesync_protocol::wire::{ApiVersion, V2CountedPage, V3Page};
use tidesync_protocol::{Item, format_timestamp};

use super::Shared;
use super::context::{Ctx, absolute_path, detect_version, finish};
use super::page::{self, WireRow};
use super::response;
use crate::error::ServerError;
use crate::policy::Operation;
use crate::store::{EncodedPage, PageRequest, ReadRequest, ms_to_time, sql};

/// Characters escaped in the query strings we build.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'$')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b',')
    .remove(b':');

/// The header that tells tidesync clients the tombstone horizon of a table: a cursor older
/// than this may have missed deletions and should resync the table.
pub const PURGED_BEFORE_HEADER: &str = "x-tidesync-purged-before";

/// `GET /tables/{table}`.
pub(crate) async fn list(
    State(state): State<Shared>,
    Path(table): Path<String>,
    uri: Uri,
    OriginalUri(original): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let version = detect_version(&state, &headers, &uri);
    let result = async {
        let ctx = Ctx::new(&state, &table, &headers, &uri, Operation::Read).await?;
        let query = Query::from_query_pairs(
            ctx.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            &ParseLimits::default(),
        )
        .map_err(|e| ServerError::bad_request(e.to_string()))?;
        let (page, max_top) = match ctx.version {
            ApiVersion::V2 => (state.paging.v2(), state.paging.v2_max_top),
            ApiVersion::V3 => (state.paging.v3(), state.paging.v3_max_top),
        };
        if query.top.is_some_and(|top| top > max_top) {
            return Err(ServerError::TopTooLarge { max: max_top });
        }
        let take = match (ctx.version, query.top) {
            (ApiVersion::V2, None | Some(0)) => page,
            (ApiVersion::V2, Some(top)) => top,
            (ApiVersion::V3, top) => top.unwrap_or(page).min(page),
        };
        let schema = state.store.schema(&ctx.table.name).await?;
        if let Some(select) = &query.select {
            sql::check_select(&schema, select)?;
        }
        let skip = query.skip.unwrap_or(0);
        let request = ReadRequest {
            filter: ctx.grant.restrict(query.filter.clone()),
            order_by: query.order_by.clone(),
            skip,
            limit: take.saturating_add(1),
            include_deleted: ctx.include_deleted(),
            scope: None,
            count: query.count,
        };
        let soft_delete = ctx.table.soft_delete;
        // Without `$select`, a store that can writes the page's body itself (SQLite, on its
        // blocking thread, straight from its rows); the rest is the same either way.
        let request = if query.select.is_none() {
            let prefix: &[u8] = match (ctx.version, query.count) {
                (ApiVersion::V2, false) => b"",
                (ApiVersion::V2, true) => b"{\"results\":",
                (ApiVersion::V3, _) => b"{\"items\":",
            };
            let page = PageRequest {
                read: request,
                take,
                soft_delete,
                prefix: prefix.to_vec(),
            };
            if let Some(encoded) = state.store.read_page(&ctx.table.name, &page).await? {
                state
                    .metrics
                    .add_rows(usize::try_from(encoded.rows).unwrap_or(usize::MAX));
                let paging = Paging {
                    pairs: &ctx.pairs,
                    skip,
                    take,
                };
                return encoded_response(
                    ctx.version,
                    &query,
                    encoded,
                    &paging,
                    &headers,
                    &original,
                );
            }
            page.read
        } else {
            request
        };
        let mut result = state.store.read(&ctx.table.name, &request).await?;
        let more = u64::try_from(result.rows.len()).unwrap_or(u64::MAX) > take;
        result
            .rows
            .truncate(usize::try_from(take).unwrap_or(usize::MAX));
        let returned = u64::try_from(result.rows.len()).unwrap_or(u64::MAX);
        state.metrics.add_rows(result.rows.len());
        // Without `$select` each row is written straight to the body (`page.rs`); with it,
        // the projected items are built first.
        let wire: Vec<WireRow<'_>> = match query.select {
            None => result
                .rows
                .iter()
                .map(|row| WireRow { row, soft_delete })
                .collect(),
            Some(_) => Vec::new(),
        };
        let items: Vec<Item> = match query.select.as_deref() {
            None => Vec::new(),
            Some(select) => result
                .rows
                .iter()
                .map(|row| project(row.to_item(soft_delete), Some(select)))
                .collect(),
        };
        let direct = query.select.is_none();
        let mut response = match ctx.version {
            ApiVersion::V2 => {
                let mut response = match (result.count, direct) {
                    (Some(count), true) => response::json(
                        StatusCode::OK,
                        &page::V2Counted {
                            results: &wire,
                            count,
                        },
                    ),
                    (Some(count), false) => response::json(
                        StatusCode::OK,
                        &V2CountedPage {
                            results: items,
                            count,
                        },
                    ),
                    (None, true) => response::json(StatusCode::OK, &wire),
                    (None, false) => response::json(StatusCode::OK, &items),
                };
                if more {
                    add_next_link(
                        &mut response,
                        &headers,
                        &original,
                        &ctx.pairs,
                        skip + returned,
                        take,
                    );
                }
                response
            }
            ApiVersion::V3 => {
                let remaining = query.top.map(|top| top.saturating_sub(returned));
                let next_link = (more && remaining != Some(0))
                    .then(|| next_query(&ctx.pairs, skip + returned, remaining));
                if direct {
                    response::json(
                        StatusCode::OK,
                        &page::V3 {
                            items: &wire,
                            count: result.count,
                            next_link,
                        },
                    )
                } else {
                    response::json(
                        StatusCode::OK,
                        &V3Page {
                            items,
                            count: result.count,
                            next_link,
                        },
                    )
                }
            }
        };
        add_purge_header(
            &mut response,
            state.store.purge_horizon(&ctx.table.name).await?,
        );
        Ok(response)
    }
    .await;
    finish(version, result)
}

/// Where a page starts and how long it is, with the request's parameters (for next links).
struct Paging<'a> {
    pairs: &'a [(String, String)],
    skip: u64,
    take: u64,
}

/// The response of a page the store encoded: its body closed with the envelope's count and
/// next link (v3), the `Link` header (v2) and the purge horizon header.
fn encoded_response(
    version: ApiVersion,
    query: &Query,
    encoded: EncodedPage,
    paging: &Paging<'_>,
    headers: &HeaderMap,
    original: &Uri,
) -> Result<Response, ServerError> {
    let mut body = encoded.body;
    let next_skip = paging.skip + encoded.rows;
    let link = match version {
        ApiVersion::V2 => {
            if query.count {
                let count = encoded
                    .count
                    .ok_or_else(|| ServerError::internal("the store did not count the rows"))?;
                let _ = write!(Utf8(&mut body), ",\"count\":{count}}}");
            }
            encoded.more
        }
        ApiVersion::V3 => {
            let remaining = query.top.map(|top| top.saturating_sub(encoded.rows));
            let next_link = (encoded.more && remaining != Some(0))
                .then(|| next_query(paging.pairs, next_skip, remaining));
            body.extend_from_slice(b",\"count\":");
            match encoded.count {
                Some(count) => {
                    let _ = write!(Utf8(&mut body), "{count}");
                }
                None => body.extend_from_slice(b"null"),
            }
            body.extend_from_slice(b",\"nextLink\":");
            match next_link {
                Some(link) => serde_json::to_writer(&mut body, &link)
                    .map_err(|e| ServerError::internal(e.to_string()))?,
                None => body.extend_from_slice(b"null"),
            }
            body.push(b'}');
            false
        }
    };
    let mut response = response::json_bytes(StatusCode::OK, body);
    if link {
        add_next_link(
            &mut response,
            headers,
            original,
            paging.pairs,
            next_skip,
            paging.take,
        );
    }
    add_purge_header(&mut response, encoded.purged_before_ms);
    Ok(response)
}

/// The v2 `Link` header of the next page.
fn add_next_link(
    response: &mut Response,
    headers: &HeaderMap,
    original: &Uri,
    pairs: &[(String, String)],
    skip: u64,
    take: u64,
) {
    let next = next_query(pairs, skip, Some(take));
    // No angle brackets: the official clients take everything before `;` as the URL
    // (docs/protocol.md).
    let link = format!("{}?{next}; rel=next", absolute_path(headers, original));
    if let Ok(value) = HeaderValue::from_str(&link) {
        response.headers_mut().insert(header::LINK, value);
    }
}

/// The table's purge horizon header, when a purge removed rows.
fn add_purge_header(response: &mut Response, horizon: Option<i64>) {
    if let Some(horizon) = horizon {
        if let Ok(value) = HeaderValue::from_str(&format_timestamp(ms_to_time(horizon))) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(PURGED_BEFORE_HEADER), value);
        }
    }
}

/// `fmt::Write` into a byte buffer.
struct Utf8<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Utf8<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Keeps only the selected properties (all without `$select`).
fn project(mut item: Item, select: Option<&[String]>) -> Item {
    let Some(select) = select else {
        return item;
    };
    select
        .iter()
        .filter_map(|name| item.remove(name).map(|value: Value| (name.clone(), value)))
        .collect()
}

/// The request's parameters without `$skip`/`$top`, then the new `$skip` and `$top`.
fn next_query(pairs: &[(String, String)], skip: u64, top: Option<u64>) -> String {
    let mut out = String::new();
    let kept = pairs.iter().filter(|(name, _)| {
        !name.eq_ignore_ascii_case("$skip") && !name.eq_ignore_ascii_case("$top")
    });
    for (name, value) in kept {
        let _ = write!(
            out,
            "{}={}&",
            utf8_percent_encode(name, QUERY_VALUE),
            utf8_percent_encode(value, QUERY_VALUE)
        );
    }
    let _ = write!(out, "$skip={skip}");
    if let Some(top) = top {
        let _ = write!(out, "&$top={top}");
    }
    out
}
