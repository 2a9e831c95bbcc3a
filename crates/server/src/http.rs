//! The HTTP/JSON interface (axum): the same operations as gRPC, with domain types in their
//! serde JSON form, server-sent event streams, health, readiness and metrics.
//!
//! Errors are typed JSON, `{"error": {"code": ..., "message": ...}}`: 400
//! `invalid_argument` / `invalid_json` / `out_of_range` / `limit_exceeded`, 404
//! `not_found`, 409 `failed_precondition` / `wrong_node` (this node holds no replica of
//! the shard asked about), 413 `body_too_large`, 429 `overloaded`, 500 `internal`, 503
//! `unavailable`.
//!
//! Every route is in one table, [`routes`]; the router is built from it, and the OpenAPI
//! document served at `/openapi.json` (checked in as `docs/api/openapi.json`) is tested to
//! list exactly the same paths and methods.

use crate::core::ClusterChange;
use crate::core::{Core, Error, Identity, AUTHORITY_HEADER, PRINCIPAL_HEADER};
use crate::events::{self, Page, Select};
use crate::{telemetry, HTTP_BODY_BYTES_MAX};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tradelog_api::proto as pb;
use tradelog_api::query::{
    BalanceHistoryQuery, BalancesQuery, BookQuery, CandlesQuery, CatalogQuery, OpenOrdersQuery,
    OrderQuery, Position, ReadEventsQuery, StatementQuery, SubscribeQuery, TradesQuery,
};
use tradelog_domain as d;

const INTERFACE: &str = "http";
/// How long `/ready` waits for every shard to answer a read.
const READY_TIMEOUT: Duration = Duration::from_secs(2);
/// Batches an SSE subscription buffers before it waits for the client.
const SUBSCRIPTION_BUFFER: usize = 16;

type Shared = State<Arc<Core>>;

/// Serves HTTP on `listener` until `stop` fires, then finishes in-flight requests.
pub(crate) async fn serve(core: Arc<Core>, listener: TcpListener, stop: watch::Receiver<bool>) {
    let mut stop = stop;
    // TCP_NODELAY, as on the gRPC port: no answer waits for the client's delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    let r = axum::serve(listener, router(core))
        .with_graceful_shutdown(async move { events::stopped(&mut stop).await })
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

/// The OpenAPI 3.1 document of this interface (`docs/api/openapi.json`).
pub const OPENAPI_JSON: &str = include_str!("../../../docs/api/openapi.json");

/// Every route of the HTTP interface: method (`GET`, `POST`) and path, with path
/// parameters in braces as in OpenAPI (`/v1/accounts/{id}/balances`).
pub fn routes() -> Vec<(&'static str, &'static str)> {
    table().into_iter().map(|(m, p, _)| (m, p)).collect()
}

/// One row of [`table`]: the method's name and its router come from the same token.
macro_rules! route {
    ($method:ident, $path:literal, $handler:expr) => {
        (
            stringify!($method),
            $path,
            axum::routing::on(axum::routing::MethodFilter::$method, $handler),
        )
    };
}

fn table() -> Vec<(&'static str, &'static str, MethodRouter<Arc<Core>>)> {
    vec![
        route!(POST, "/v1/commands", command),
        route!(POST, "/v1/batch", batch),
        route!(GET, "/v1/accounts/{id}/balances", balances),
        route!(GET, "/v1/accounts/{id}/history", history),
        route!(GET, "/v1/accounts/{id}/orders", open_orders),
        route!(GET, "/v1/accounts/{id}/statement", statement),
        route!(GET, "/v1/markets/{id}/book", book),
        route!(GET, "/v1/markets/{id}/orders/{order}", order),
        route!(GET, "/v1/markets/{id}/trades", trades),
        route!(GET, "/v1/markets/{id}/candles", candles),
        route!(GET, "/v1/catalog", catalog),
        route!(GET, "/v1/cluster/status", cluster_status),
        route!(POST, "/v1/cluster/change", change_cluster),
        route!(GET, "/v1/events", read_events),
        route!(GET, "/v1/events/stream", stream_events),
        route!(GET, "/health", health),
        route!(GET, "/ready", ready),
        route!(GET, "/metrics", metrics),
        route!(GET, "/openapi.json", openapi),
    ]
}

fn router(core: Arc<Core>) -> Router {
    table()
        .into_iter()
        .fold(Router::new(), |r, (_, path, handler)| {
            r.route(path, handler)
        })
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(HTTP_BODY_BYTES_MAX))
        .with_state(core)
}

/// A typed JSON error.
struct HttpError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl HttpError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            code,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }
}

impl From<Error> for HttpError {
    fn from(e: Error) -> HttpError {
        let message = e.to_string();
        let (status, code) = match e {
            Error::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_argument"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::OutOfRange(_) => (StatusCode::BAD_REQUEST, "out_of_range"),
            Error::LimitExceeded(_) => (StatusCode::BAD_REQUEST, "limit_exceeded"),
            Error::Overloaded => (StatusCode::TOO_MANY_REQUESTS, "overloaded"),
            Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            Error::FailedPrecondition(_) => (StatusCode::CONFLICT, "failed_precondition"),
            Error::PermissionDenied(_) => (StatusCode::FORBIDDEN, "permission_denied"),
            Error::WrongNode { .. } => (StatusCode::CONFLICT, "wrong_node"),
        };
        HttpError::new(status, code, message)
    }
}

impl From<tradelog_api::ApiError> for HttpError {
    fn from(e: tradelog_api::ApiError) -> HttpError {
        HttpError::invalid(e.to_string())
    }
}

impl From<BytesRejection> for HttpError {
    fn from(r: BytesRejection) -> HttpError {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "invalid_body"
        };
        HttpError::new(status, code, r.body_text())
    }
}

impl From<PathRejection> for HttpError {
    fn from(r: PathRejection) -> HttpError {
        HttpError::invalid(r.body_text())
    }
}

impl From<QueryRejection> for HttpError {
    fn from(r: QueryRejection) -> HttpError {
        HttpError::invalid(r.body_text())
    }
}

fn error_body(code: &str, message: &str) -> serde_json::Value {
    json!({ "error": { "code": code, "message": message } })
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.status, Json(error_body(self.code, &self.message))).into_response()
    }
}

type HttpResult<T> = Result<T, HttpError>;

fn identity(h: &HeaderMap) -> HttpResult<Identity> {
    let get = |k: &str| -> HttpResult<Option<&str>> {
        h.get(k)
            .map(|v| {
                v.to_str()
                    .map_err(|_| HttpError::invalid(format!("invalid `{k}`: not visible ASCII")))
            })
            .transpose()
    };
    Identity::parse(get(PRINCIPAL_HEADER)?, get(AUTHORITY_HEADER)?).map_err(HttpError::invalid)
}

/// A command as JSON, checked exactly as gRPC checks it (through the wire conversion), so
/// both interfaces refuse the same requests with the same field paths.
fn parse_command(v: serde_json::Value) -> HttpResult<d::Command> {
    let c: d::Command = serde_json::from_value(v)
        .map_err(|e| HttpError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?;
    Ok(d::Command::try_from(pb::Command::from(c))?)
}

fn json_body(body: Result<Bytes, BytesRejection>) -> HttpResult<serde_json::Value> {
    let body = body?;
    serde_json::from_slice(&body)
        .map_err(|e| HttpError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))
}

async fn command(
    State(core): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> HttpResult<Response> {
    let who = identity(&headers)?;
    let command = json_body(body).and_then(parse_command).inspect_err(|_| {
        telemetry::command_invalid(INTERFACE, 1);
    })?;
    let answer = core.submit(who, command, INTERFACE).await?;
    Ok(Json(answer).into_response())
}

/// `[command, ...]`: independent commands (not all-or-nothing), each with its own answer
/// or error, in order.
async fn batch(
    State(core): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> HttpResult<Response> {
    let who = identity(&headers)?;
    let commands = json_body(body)
        .and_then(|v| {
            let list: Vec<d::Command> = serde_json::from_value(v).map_err(|e| {
                HttpError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("expected an array of commands: {e}"),
                )
            })?;
            Ok(Vec::<d::Command>::try_from(pb::CommandBatch::from(list))?)
        })
        .inspect_err(|_| telemetry::command_invalid(INTERFACE, 1))?;
    let answers = core.submit_batch(who, commands, INTERFACE).await;
    let responses: Vec<serde_json::Value> = answers
        .into_iter()
        .map(|a| match a {
            Ok(a) => serde_json::to_value(a).unwrap_or_else(|e| {
                error_body("internal", &format!("answer not serializable: {e}"))
            }),
            Err(e) => {
                let e = HttpError::from(e);
                error_body(e.code, &e.message)
            }
        })
        .collect();
    Ok(Json(json!({ "responses": responses })).into_response())
}

/// `as_of_index=N` or `as_of_time=NS` (not both), or `stale=true` (not with an as-of
/// point).
#[derive(Deserialize)]
struct AsOfParams {
    as_of_index: Option<u64>,
    as_of_time: Option<u64>,
    #[serde(default)]
    stale: bool,
}

/// `stale=true`: answer from this node's replica without asking the leader.
#[derive(Deserialize)]
struct StaleParams {
    #[serde(default)]
    stale: bool,
}

impl AsOfParams {
    fn wire(&self) -> HttpResult<Option<pb::AsOf>> {
        use pb::as_of::Point;
        let point = match (self.as_of_index, self.as_of_time) {
            (None, None) => return Ok(None),
            (Some(i), None) => Point::LogIndex(i),
            (None, Some(t)) => Point::TimeNs(t),
            (Some(_), Some(_)) => {
                return Err(HttpError::invalid(
                    "give `as_of_index` or `as_of_time`, not both",
                ))
            }
        };
        Ok(Some(pb::AsOf { point: Some(point) }))
    }
}

async fn balances(
    State(core): Shared,
    id: Result<Path<u64>, PathRejection>,
    params: Result<Query<AsOfParams>, QueryRejection>,
) -> HttpResult<Response> {
    let Path(id) = id?;
    let Query(p) = params?;
    let q = BalancesQuery::try_from(pb::GetBalancesRequest {
        account_id: id,
        as_of: p.wire()?,
        stale: p.stale,
    })?;
    Ok(Json(core.balances(q).await?).into_response())
}

/// `GET /v1/accounts/{id}/orders`: `stale`, `partial`, `order_ids=ID,ID,...` and
/// `shards=SHARD,...` as in `GetOpenOrdersRequest`.
#[derive(Deserialize)]
struct OpenOrdersParams {
    #[serde(default)]
    stale: bool,
    #[serde(default)]
    partial: bool,
    order_ids: Option<String>,
    shards: Option<String>,
}

async fn open_orders(
    State(core): Shared,
    id: Result<Path<u64>, PathRejection>,
    params: Result<Query<OpenOrdersParams>, QueryRejection>,
) -> HttpResult<Response> {
    let Path(id) = id?;
    let Query(p) = params?;
    let q = OpenOrdersQuery::try_from(pb::GetOpenOrdersRequest {
        account_id: id,
        stale: p.stale,
        partial: p.partial,
        order_ids: parse_list(
            p.order_ids.as_deref(),
            "order_ids",
            "ID",
            d::ACCOUNT_OPEN_ORDERS_MAX as usize,
        )?,
        shards: parse_shards(p.shards.as_deref())?,
    })?;
    Ok(Json(core.open_orders(q).await?).into_response())
}

#[derive(Deserialize)]
struct StatementParams {
    asset: u32,
    #[serde(default)]
    from: u64,
    to: Option<u64>,
    #[serde(default)]
    limit: u32,
    after_seq: Option<u64>,
    #[serde(default)]
    stale: bool,
}

async fn statement(
    State(core): Shared,
    id: Result<Path<u64>, PathRejection>,
    params: Result<Query<StatementParams>, QueryRejection>,
) -> HttpResult<Response> {
    let Path(id) = id?;
    let Query(p) = params?;
    let q = StatementQuery::try_from(pb::GetStatementRequest {
        account_id: id,
        asset_id: p.asset,
        from_ns: p.from,
        to_ns: p.to,
        limit: p.limit,
        after_seq: p.after_seq,
        stale: p.stale,
    })?;
    Ok(Json(core.statement(q).await?).into_response())
}

#[derive(Deserialize)]
struct TradesParams {
    after_seq: Option<u64>,
    #[serde(default)]
    from: u64,
    to: Option<u64>,
    #[serde(default)]
    limit: u32,
    #[serde(default)]
    stale: bool,
}

async fn trades(
    State(core): Shared,
    id: Result<Path<u32>, PathRejection>,
    params: Result<Query<TradesParams>, QueryRejection>,
) -> HttpResult<Response> {
    let Path(id) = id?;
    let Query(p) = params?;
    let q = TradesQuery::try_from(pb::GetTradesRequest {
        market_id: id,
        after_seq: p.after_seq,
        from_ns: p.from,
        to_ns: p.to,
        limit: p.limit,
        stale: p.stale,
    })?;
    Ok(Json(core.trades(q).await?).into_response())
}

#[derive(Deserialize)]
struct CandlesParams {
    interval: u32,
    from: u64,
    to: u64,
    #[serde(default)]
    stale: bool,
}

async fn candles(
    State(core): Shared,
    id: Result<Path<u32>, PathRejection>,
    params: Result<Query<CandlesParams>, QueryRejection>,
) -> HttpResult<Response> {
    let Path(id) = id?;
    let Query(p) = params?;
    let q = CandlesQuery::try_from(pb::GetCandlesRequest {
        market_id: id,
        interval_s: p.interval,
        from_ns: p.from,
        to_ns: p.to,
        stale: p.stale,
    })?;
    Ok(Json(core.candles(q).await?).into_response())
}

#[derive(Deserialize)]
struct HistoryParams {
    asset: u32,
    #[serde(default)]
    from: u64,
    to: Option<u64>,
    #[serde(default)]
    limit: u32,
}

async fn history(
    State(core): Shared,
    id: Result<Path<u64>, PathRejection>,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> HttpResult<Response> {
    let Path(id) = id?;
    let Query(p) = params?;
    let q = BalanceHistoryQuery::try_from(pb::GetBalanceHistoryRequest {
        account_id: id,
        asset_id: p.asset,
        from_ns: p.from,
        to_ns: p.to,
        limit: p.limit,
    })?;
    let (points, truncated) = core.balance_history(&q)?;
    let points: Vec<_> = points
        .iter()
        .map(|p| {
            json!({
                "timestamp": p.timestamp,
                "seq": p.seq,
                "available": p.available,
                "held": p.held,
            })
        })
        .collect();
    Ok(Json(json!({ "points": points, "truncated": truncated })).into_response())
}

#[derive(Deserialize)]
struct BookParams {
    #[serde(default)]
    depth: u32,
    // Not `#[serde(flatten)]`: query strings cannot carry numbers through it.
    as_of_index: Option<u64>,
    as_of_time: Option<u64>,
    #[serde(default)]
    stale: bool,
}

async fn book(
    State(core): Shared,
    id: Result<Path<u32>, PathRejection>,
    params: Result<Query<BookParams>, QueryRejection>,
) -> HttpResult<Response> {
    let Path(id) = id?;
    let Query(p) = params?;
    let q = BookQuery::try_from(pb::GetBookRequest {
        market_id: id,
        depth: p.depth,
        as_of: AsOfParams {
            as_of_index: p.as_of_index,
            as_of_time: p.as_of_time,
            stale: p.stale,
        }
        .wire()?,
        stale: p.stale,
    })?;
    Ok(Json(core.book(q).await?).into_response())
}

async fn order(
    State(core): Shared,
    ids: Result<Path<(u32, u64)>, PathRejection>,
    params: Result<Query<AsOfParams>, QueryRejection>,
) -> HttpResult<Response> {
    let Path((market, order)) = ids?;
    let Query(p) = params?;
    let q = OrderQuery::try_from(pb::GetOrderRequest {
        market_id: market,
        order_id: order,
        as_of: p.wire()?,
        stale: p.stale,
    })?;
    Ok(Json(core.order(q).await?).into_response())
}

async fn cluster_status(State(core): Shared) -> HttpResult<Response> {
    Ok(Json(core.cluster_status(true).await?).into_response())
}

async fn change_cluster(
    State(core): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> HttpResult<Response> {
    let who = identity(&headers)?;
    let change: ClusterChange = serde_json::from_value(json_body(body)?)
        .map_err(|e| HttpError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?;
    Ok(Json(core.change_cluster(&who, change).await?).into_response())
}

async fn catalog(
    State(core): Shared,
    params: Result<Query<StaleParams>, QueryRejection>,
) -> HttpResult<Response> {
    let Query(p) = params?;
    let q = CatalogQuery::from(pb::GetCatalogRequest { stale: p.stale });
    Ok(Json(core.catalog(q).await?).into_response())
}

#[derive(Deserialize)]
struct EventsParams {
    stream: Option<String>,
    after: Option<String>,
    #[serde(default)]
    limit: u32,
    shards: Option<String>,
}

/// `SHARD,SHARD,...` (absent or empty: every shard).
fn parse_shards(s: Option<&str>) -> HttpResult<Vec<u32>> {
    parse_list(s, "shards", "SHARD", d::SHARD_COUNT_MAX as usize)
}

/// A comma-separated list of numbers in the query parameter `field` (absent or empty:
/// none), at most `max` of them.
fn parse_list<T: std::str::FromStr>(
    s: Option<&str>,
    field: &str,
    item: &str,
    max: usize,
) -> HttpResult<Vec<T>> {
    let Some(s) = s.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        if out.len() >= max {
            return Err(HttpError::invalid(format!(
                "invalid field `{field}`: more than {max} items"
            )));
        }
        out.push(part.trim().parse().map_err(|_| {
            HttpError::invalid(format!(
                "invalid field `{field}`: {part:?} (expected {item},{item},...)"
            ))
        })?);
    }
    Ok(out)
}

/// `all`, `account:ID`, `market:ID` or `order:ID` (absent: `all`).
fn parse_stream(s: Option<&str>) -> HttpResult<pb::EventStream> {
    use pb::event_stream::Stream;
    let bad = |s: &str| {
        HttpError::invalid(format!(
            "invalid field `stream`: {s:?} (expected all, account:ID, market:ID or order:ID)"
        ))
    };
    let s = s.unwrap_or("all").trim();
    let stream = match s.split_once(':') {
        None if s == "all" => Stream::All(pb::event_stream::All {}),
        Some(("account", id)) => Stream::AccountId(id.parse().map_err(|_| bad(s))?),
        Some(("market", id)) => Stream::MarketId(id.parse().map_err(|_| bad(s))?),
        Some(("order", id)) => Stream::OrderId(id.parse().map_err(|_| bad(s))?),
        _ => return Err(bad(s)),
    };
    Ok(pb::EventStream {
        stream: Some(stream),
    })
}

/// `SHARD:SEQ,SHARD:SEQ,...` (absent or empty: the beginning).
fn parse_position(s: Option<&str>) -> HttpResult<Option<pb::Position>> {
    let Some(s) = s.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let bad = |part: &str| {
        HttpError::invalid(format!(
            "invalid field `after`: {part:?} (expected SHARD:SEQ,SHARD:SEQ,...)"
        ))
    };
    let mut shards = Vec::new();
    for part in s.split(',') {
        let (shard, seq) = part.trim().split_once(':').ok_or_else(|| bad(part))?;
        if shards.len() > d::SHARD_COUNT_MAX as usize {
            return Err(HttpError::invalid("invalid field `after`: too many shards"));
        }
        shards.push(pb::ShardPosition {
            shard: shard.trim().parse().map_err(|_| bad(part))?,
            seq: seq.trim().parse().map_err(|_| bad(part))?,
        });
    }
    Ok(Some(pb::Position { shards }))
}

/// The `after` form of a position.
fn format_position(p: &Position) -> String {
    p.0.iter()
        .map(|(s, seq)| format!("{s}:{seq}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn page_json(p: &Page) -> serde_json::Value {
    json!({ "events": p.events, "position": format_position(&p.position) })
}

async fn read_events(
    State(core): Shared,
    params: Result<Query<EventsParams>, QueryRejection>,
) -> HttpResult<Response> {
    let Query(p) = params?;
    let q = ReadEventsQuery::try_from(pb::ReadEventsRequest {
        stream: Some(parse_stream(p.stream.as_deref())?),
        after: parse_position(p.after.as_deref())?,
        limit: p.limit,
        shards: parse_shards(p.shards.as_deref())?,
    })?;
    let sel = Select {
        stream: q.stream,
        shards: q.shards,
    };
    let page = core.read_events(&sel, &q.after, q.limit as usize).await?;
    Ok(Json(page_json(&page)).into_response())
}

/// Server-sent events: `event: events` with `{"events": [...], "position": "..."}` and the
/// position as the event id (a reconnecting client's `Last-Event-ID` resumes there), then
/// `event: error` with a typed error if the stream must end.
async fn stream_events(
    State(core): Shared,
    headers: HeaderMap,
    params: Result<Query<EventsParams>, QueryRejection>,
) -> HttpResult<Response> {
    let Query(p) = params?;
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let after = p.after.or(last_id);
    let q = SubscribeQuery::try_from(pb::SubscribeEventsRequest {
        stream: Some(parse_stream(p.stream.as_deref())?),
        after: parse_position(after.as_deref())?,
        shards: parse_shards(p.shards.as_deref())?,
    })?;
    core.check_position(&q.after, &q.shards)?;
    let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
    tokio::spawn(events::subscribe(
        core.clone(),
        core.events.clone(),
        Select {
            stream: q.stream,
            shards: q.shards,
        },
        q.after,
        tx,
        core.stop_signal(),
    ));
    let stream = ReceiverStream::new(rx).map(|r| -> Result<SseEvent, Infallible> {
        Ok(match r {
            Ok(p) => SseEvent::default()
                .event("events")
                .id(format_position(&p.position))
                .data(page_json(&p).to_string()),
            Err(e) => {
                let e = HttpError::from(e);
                SseEvent::default()
                    .event("error")
                    .data(error_body(e.code, &e.message).to_string())
            }
        })
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn health() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

async fn ready(State(core): Shared) -> HttpResult<Response> {
    match tokio::time::timeout(READY_TIMEOUT, core.ping()).await {
        Ok(Ok(())) => {
            Ok(Json(json!({ "status": "ready", "shards": core.shard_count() })).into_response())
        }
        Ok(Err(e)) => Err(HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )),
        Err(_) => Err(HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "a shard did not answer a read in time",
        )),
    }
}

async fn metrics() -> HttpResult<Response> {
    let text = telemetry::render().ok_or_else(|| {
        HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "metrics recorder not installed",
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

async fn not_found() -> HttpError {
    HttpError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
