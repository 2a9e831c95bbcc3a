//! What both interfaces share: who is calling, the error vocabulary, and the translation of
//! validated requests into `Node` calls (commands through a oneshot bridge, reads on a
//! blocking thread so no tokio worker ever waits on a shard).

use crate::events::{EventLog, Page, Pages, Select};
use crate::history::History;
use crate::telemetry;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{oneshot, watch};
use tradelog_api::query::{
    AsOf, BalanceHistoryQuery, BalancesQuery, BookQuery, CatalogQuery, OrderQuery, Position,
    ShardFilter,
};
use tradelog_api::ApiError;
use tradelog_domain as d;
use tradelog_engine::routing::{route, Route};
use tradelog_engine::Engine;
use tradelog_node::runtime::now;
use tradelog_node::{CommandReply, ShardHost, SubmitError};

/// Principal assumed when a request names none (development only).
pub const PRINCIPAL_DEFAULT: u64 = 1;
/// Header / metadata key naming the caller's principal (development only).
pub(crate) const PRINCIPAL_HEADER: &str = "x-tradelog-principal";
/// Header / metadata key naming the caller's authority (development only).
pub(crate) const AUTHORITY_HEADER: &str = "x-tradelog-authority";

/// Who a request says it comes from. DEVELOPMENT ONLY: taken from request headers,
/// unauthenticated, until API keys land.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The principal recorded with every event the request causes.
    pub principal: d::Principal,
    /// What the engine lets it do.
    pub authority: d::Authority,
}

impl Identity {
    /// Parses the two header values (absent: principal [`PRINCIPAL_DEFAULT`], authority
    /// operator).
    pub fn parse(principal: Option<&str>, authority: Option<&str>) -> Result<Identity, String> {
        let principal = match principal.map(str::trim) {
            None => PRINCIPAL_DEFAULT,
            Some(p) => p.parse::<u64>().map_err(|_| {
                format!("invalid `{PRINCIPAL_HEADER}`: {p:?} is not an unsigned 64-bit integer")
            })?,
        };
        let authority = match authority.map(|a| a.trim().to_ascii_lowercase()).as_deref() {
            None | Some("operator") => d::Authority::Operator,
            Some("trader") => d::Authority::Trader,
            Some("read-only") | Some("readonly") | Some("read_only") => d::Authority::ReadOnly,
            Some(other) => {
                return Err(format!(
                "invalid `{AUTHORITY_HEADER}`: {other:?} (expected operator, trader or read-only)"
            ))
            }
        };
        Ok(Identity {
            principal: d::Principal(principal),
            authority,
        })
    }
}

/// Everything a request can fail with (a business rejection is not an error: it is an
/// `Outcome`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Error {
    /// Malformed request: gRPC `INVALID_ARGUMENT`, HTTP 400.
    Invalid(String),
    /// No such account / market / order: gRPC `NOT_FOUND`, HTTP 404.
    NotFound(String),
    /// A point outside the history that can be answered (beyond what a shard applied, in
    /// the future, a balance history older than the index): gRPC `OUT_OF_RANGE`, HTTP 400.
    OutOfRange(String),
    /// A request that would need more work than a named limit allows (narrow it): gRPC
    /// `INVALID_ARGUMENT`, HTTP 400 `limit_exceeded`.
    LimitExceeded(String),
    /// A shard queue (or the queue of history questions) is full: gRPC
    /// `RESOURCE_EXHAUSTED`, HTTP 429.
    Overloaded,
    /// Stopping, stopped, failed, or not ready yet (retry): gRPC `UNAVAILABLE`, HTTP 503.
    Unavailable(String),
    /// The server failed to answer (a damaged log, a bug): gRPC `INTERNAL`, HTTP 500.
    Internal(String),
    /// The caller's authority does not allow it: gRPC `PERMISSION_DENIED`, HTTP 403.
    PermissionDenied(String),
    /// The request needs what this server is not (a cluster operation on a single node):
    /// gRPC `FAILED_PRECONDITION`, HTTP 409.
    FailedPrecondition(String),
    /// This node holds no replica of the shard the request needs: gRPC
    /// `FAILED_PRECONDITION` with the metadata [`ERROR_KIND_HEADER`] `wrong-node`,
    /// [`SHARD_HEADER`] and [`MAP_VERSION_HEADER`]; HTTP 409 `wrong_node`. Ask a node that
    /// holds it (the cluster status names them).
    WrongNode {
        /// The shard.
        shard: d::ShardId,
        /// The cluster map version this node answered by.
        map_version: u64,
    },
}

/// gRPC response metadata naming the kind of a `FAILED_PRECONDITION` answer (`wrong-node`).
pub const ERROR_KIND_HEADER: &str = "x-tradelog-error";
/// gRPC response metadata: the shard a `wrong-node` answer is about.
pub const SHARD_HEADER: &str = "x-tradelog-shard";
/// gRPC response metadata: the cluster map version a `wrong-node` answer was given by.
pub const MAP_VERSION_HEADER: &str = "x-tradelog-map-version";

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Error {
        Error::Invalid(e.to_string())
    }
}

impl From<SubmitError> for Error {
    fn from(e: SubmitError) -> Error {
        match e {
            SubmitError::Overloaded(_) => Error::Overloaded,
            SubmitError::Stopped
            | SubmitError::Failed(_)
            | SubmitError::Unavailable(_)
            | SubmitError::OutcomeUnknown(_) => Error::Unavailable(e.to_string()),
            SubmitError::WrongNode { shard, map_version } => {
                Error::WrongNode { shard, map_version }
            }
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Invalid(m)
            | Error::NotFound(m)
            | Error::OutOfRange(m)
            | Error::LimitExceeded(m)
            | Error::FailedPrecondition(m)
            | Error::PermissionDenied(m) => f.write_str(m),
            Error::Overloaded => f.write_str("overloaded, retry"),
            Error::Unavailable(m) => write!(f, "unavailable: {m}"),
            Error::Internal(m) => write!(f, "internal error: {m}"),
            Error::WrongNode { shard, map_version } => write!(
                f,
                "this node holds no replica of shard {shard} (cluster map version \
                 {map_version}); ask a node that does"
            ),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        match e {
            Error::Invalid(m) => tonic::Status::invalid_argument(m),
            Error::NotFound(m) => tonic::Status::not_found(m),
            Error::OutOfRange(m) => tonic::Status::out_of_range(m),
            Error::LimitExceeded(m) => tonic::Status::invalid_argument(m),
            Error::Overloaded => tonic::Status::resource_exhausted("overloaded, retry"),
            Error::Unavailable(m) => tonic::Status::unavailable(m),
            Error::Internal(m) => tonic::Status::internal(m),
            Error::FailedPrecondition(m) => tonic::Status::failed_precondition(m),
            Error::PermissionDenied(m) => tonic::Status::permission_denied(m),
            Error::WrongNode { shard, map_version } => {
                let mut status = tonic::Status::failed_precondition(e.to_string());
                let md = status.metadata_mut();
                md.insert(
                    ERROR_KIND_HEADER,
                    tonic::metadata::MetadataValue::from_static("wrong-node"),
                );
                md.insert(SHARD_HEADER, shard.0.into());
                md.insert(MAP_VERSION_HEADER, map_version.into());
                status
            }
        }
    }
}

/// The answer to one command, with where it was recorded.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Answer {
    /// The engine's outcome.
    pub outcome: d::Outcome,
    /// The shard whose log recorded it.
    pub shard: d::ShardId,
    /// Its position in that shard's input log (0: unknown, a duplicate that caused no
    /// event).
    pub input: u64,
    /// The events it caused on that shard.
    pub events: Vec<d::EventRecord>,
}

/// A position in one shard's event stream (what a read reflects).
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct ShardPos {
    pub shard: d::ShardId,
    pub seq: u64,
}

pub(crate) fn shard_pos(e: &Engine) -> ShardPos {
    ShardPos {
        shard: e.shard(),
        seq: e.next_event_seq().saturating_sub(1),
    }
}

/// One balance.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct BalanceView {
    pub asset: d::AssetId,
    pub available: d::Amount,
    pub held: d::Amount,
}

/// An account and its balances.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct AccountView {
    pub account: d::AccountId,
    pub owner: d::Principal,
    pub status: tradelog_ledger::AccountStatus,
    pub balances: Vec<BalanceView>,
    pub open_orders: u32,
    pub position: ShardPos,
    pub log_index: u64,
}

/// A resting order.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct OrderView {
    pub order: d::OrderId,
    pub market: d::MarketId,
    pub account: d::AccountId,
    pub owner: d::Principal,
    pub side: d::Side,
    pub price: d::Price,
    pub remaining: d::Qty,
    pub held: d::Amount,
    pub stp: d::SelfTradePrevention,
    pub post_only: bool,
    pub position: ShardPos,
    pub log_index: u64,
}

/// One price level.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct LevelView {
    pub price: d::Price,
    pub qty: d::Qty,
    pub orders: u32,
}

/// Aggregated depth of a book.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct BookView {
    pub market: d::MarketId,
    pub bids: Vec<LevelView>,
    pub asks: Vec<LevelView>,
    pub halted: bool,
    pub last_price: Option<d::Price>,
    pub position: ShardPos,
    pub log_index: u64,
}

/// The catalog.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct CatalogView {
    pub assets: Vec<d::Asset>,
    pub markets: Vec<d::MarketSpec>,
}

fn account_view(e: &Engine, account: d::AccountId) -> Option<AccountView> {
    e.ledger().account(account).map(|a| AccountView {
        account: a.id,
        owner: a.owner,
        status: a.status,
        balances: a
            .balances
            .iter()
            .map(|b| BalanceView {
                asset: b.asset,
                available: b.available,
                held: b.held,
            })
            .collect(),
        open_orders: a.open_orders,
        position: shard_pos(e),
        log_index: e.inputs_applied(),
    })
}

pub(crate) fn order_view(
    e: &Engine,
    market: d::MarketId,
    o: &tradelog_matching::RestingOrder,
) -> OrderView {
    OrderView {
        order: o.id,
        market,
        account: o.account,
        owner: o.owner,
        side: o.side,
        price: o.price,
        remaining: o.remaining,
        held: o.hold,
        stp: o.stp,
        post_only: o.post_only,
        position: shard_pos(e),
        log_index: e.inputs_applied(),
    }
}

fn book_view(e: &Engine, market: d::MarketId, depth: u32) -> Option<BookView> {
    let book = e.books().get(&market)?;
    let (bids, asks) = book.depth(depth as usize);
    let level = |(price, qty, orders): (d::Price, d::Qty, u32)| LevelView { price, qty, orders };
    Some(BookView {
        market,
        bids: bids.into_iter().map(level).collect(),
        asks: asks.into_iter().map(level).collect(),
        halted: book.halted(),
        last_price: book.last_price(),
        position: shard_pos(e),
        log_index: e.inputs_applied(),
    })
}

/// " as of ..." for messages about a past state.
fn as_of_text(at: Option<AsOf>) -> String {
    match at {
        None => String::new(),
        Some(AsOf::LogIndex(i)) => format!(" as of log index {i}"),
        Some(AsOf::Time(t)) => format!(" as of {} ns", t.0),
    }
}

/// Runs `f` on shard `s`'s state (after every write acknowledged before) on the host's
/// thread or task, without blocking a worker.
pub(crate) async fn read<R: Send + 'static>(
    host: &dyn ShardHost,
    s: d::ShardId,
    f: impl FnOnce(&Engine) -> R + Send + 'static,
) -> Result<R, Error> {
    read_as(host, s, false, f).await
}

/// [`read`], or with `stale` a read of the host's copy of the shard as it is
/// ([`ShardHost::read_stale`]: no leader asked).
pub(crate) async fn read_as<R: Send + 'static>(
    host: &dyn ShardHost,
    s: d::ShardId,
    stale: bool,
    f: impl FnOnce(&Engine) -> R + Send + 'static,
) -> Result<R, Error> {
    let (tx, rx) = oneshot::channel();
    let f: tradelog_node::EngineRead = Box::new(move |r| {
        let _ = tx.send(r.map(f));
    });
    if stale {
        host.read_stale(s, f);
    } else {
        host.read_with(s, f);
    }
    rx.await
        .unwrap_or(Err(SubmitError::Stopped))
        .map_err(Error::from)
}

/// One change to the replicated cluster.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum ClusterChange {
    /// Add a node to every shard's group.
    AddNode {
        /// Its id.
        node: u64,
        /// The URL of its gRPC port.
        url: String,
    },
    /// Remove a node from every shard's group.
    RemoveNode {
        /// Its id.
        node: u64,
    },
    /// Hand one shard's leadership to a voter.
    TransferLeader {
        /// The shard.
        shard: u32,
        /// The new leader.
        to: u64,
    },
    /// Spread leaders evenly over the voters.
    BalanceLeaders,
    /// Move a shard's replicas to exactly these nodes.
    MoveShard {
        /// The shard.
        shard: u32,
        /// Where it goes.
        nodes: Vec<u64>,
    },
    /// Give every shard this many replicas, placed by the placement policy.
    SetReplicationFactor {
        /// Replicas per shard.
        replication_factor: u64,
    },
    /// Split a shard: its accounts with `id % modulus == residue` (none when `modulus` is
    /// 0) and the markets named become a new shard.
    SplitShard {
        /// The shard that splits.
        shard: u32,
        /// 0, or 2 to 2^32.
        #[serde(default)]
        modulus: u64,
        /// Below `modulus`.
        #[serde(default)]
        residue: u64,
        /// Markets that move with their books.
        #[serde(default)]
        markets: Vec<u32>,
    },
}

/// State shared by every request.
pub(crate) struct Core {
    pub(crate) node: Arc<dyn ShardHost>,
    /// The replicated node, when this server is one node of a cluster.
    pub(crate) cluster: Option<Arc<tradelog_cluster::ClusterNode>>,
    pub(crate) events: Arc<EventLog>,
    pub(crate) history: History,
    /// Shard tasks of audit jobs in progress here.
    pub(crate) tasks: crate::audit::Tasks,
    stop: watch::Receiver<bool>,
}

impl Pages for Core {
    fn page(
        &self,
        sel: &Select,
        after: &Position,
        limit: usize,
    ) -> impl std::future::Future<Output = Result<Page, Error>> + Send {
        self.read_events(sel, after, limit)
    }

    fn holds(&self, shards: &ShardFilter) -> Result<(), Error> {
        for s in (0..self.shard_count()).map(d::ShardId) {
            if shards.includes(s) {
                self.node.check_hosted(s)?;
            }
        }
        Ok(())
    }
}

impl Core {
    pub(crate) fn new(
        node: Arc<dyn ShardHost>,
        cluster: Option<Arc<tradelog_cluster::ClusterNode>>,
        events: Arc<EventLog>,
        history: History,
        stop: watch::Receiver<bool>,
    ) -> Core {
        Core {
            node,
            cluster,
            events,
            history,
            tasks: Default::default(),
            stop,
        }
    }

    /// Up to `limit` events of `sel` after `after`: regenerated from the logs while a
    /// shard's position is older than the event index, then from the index.
    pub(crate) async fn read_events(
        &self,
        sel: &Select,
        after: &Position,
        limit: usize,
    ) -> Result<Page, Error> {
        self.index_caught_up_on(&sel.shards).await;
        loop {
            let seams = self.check_position(after, &sel.shards)?;
            let behind = seams.iter().enumerate().any(|(s, first)| {
                let s = d::ShardId(s as u32);
                sel.covers(s) && after.get(s).saturating_add(1) < *first
            });
            if behind {
                return self.history.page(sel, after, limit, seams).await;
            }
            match self.events.read(sel, after, limit) {
                // The index dropped events since the check: they are history now.
                Err(Error::OutOfRange(_)) => continue,
                r => return r,
            }
        }
    }

    /// Waits (bounded, like a command's answer) until the event index holds every event
    /// this node had applied when the call began, on every shard: a read of the events
    /// then sees whatever a query of the state just showed, including what other shards
    /// applied for a command after its answer (the credit of a cross-shard transfer).
    pub(crate) async fn index_caught_up(&self) {
        self.index_caught_up_on(&ShardFilter::all()).await
    }

    /// [`index_caught_up`](Self::index_caught_up) on the shards `shards` covers.
    pub(crate) async fn index_caught_up_on(&self, shards: &ShardFilter) {
        for s in 0..self.shard_count() {
            let shard = d::ShardId(s);
            if !shards.includes(shard) {
                continue;
            }
            // A shard that cannot answer now has nothing newer to wait for.
            if let Ok(next) = self.read_as(shard, true, |e| e.next_event_seq()).await {
                if next > 1 {
                    self.events.caught_up(shard, next - 1).await;
                }
            }
        }
    }

    /// Checks that a read or subscription of `shards` can start after `after` (every
    /// shard it names exists, this node holds every shard it reads, the index is open);
    /// returns the index's seams.
    pub(crate) fn check_position(
        &self,
        after: &Position,
        shards: &ShardFilter,
    ) -> Result<Vec<u64>, Error> {
        let seams = self.events.seams()?;
        let n = seams.len();
        if let Some((s, _)) = after.0.iter().find(|(s, _)| s.0 as usize >= n) {
            return Err(Error::Invalid(format!(
                "invalid field `after.shards`: shard {s} does not exist (this node has {n} shards)"
            )));
        }
        if let Some(s) = shards.0.iter().find(|s| s.0 as usize >= n) {
            return Err(Error::Invalid(format!(
                "invalid field `shards`: shard {s} does not exist (this node has {n} shards)"
            )));
        }
        // A stream merges its shards' events: a node holding only some of them would
        // answer with a gap, so it refuses and names a shard it lacks (the client reads
        // that shard from a node holding it, with `shards`).
        self.holds(shards)?;
        Ok(seams)
    }

    /// Fires when the server shuts down (streams end then).
    pub(crate) fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }

    /// True once shutdown began.
    pub(crate) fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Number of shards.
    pub(crate) fn shard_count(&self) -> u32 {
        self.node.shard_count()
    }

    /// The shard whose replica answers catalog reads (assets and markets; every shard
    /// applies every catalog command): the lowest this node holds.
    pub(crate) fn catalog_shard(&self) -> d::ShardId {
        (0..self.shard_count())
            .map(d::ShardId)
            .find(|s| self.node.check_hosted(*s).is_ok())
            .unwrap_or(d::ShardId(0))
    }

    /// Submits one (already validated) command and waits, without blocking a worker,
    /// for the shard's answer.
    pub(crate) async fn submit(
        &self,
        who: Identity,
        command: d::Command,
        interface: &'static str,
    ) -> Result<Answer, Error> {
        let started = Instant::now();
        let pending = self.start(who, command);
        finish(pending, started, interface, &*self.node, &self.events).await
    }

    /// Submits every command first (they share group commits), then awaits every answer,
    /// in order. Commands are independent: each has its own result.
    pub(crate) async fn submit_batch(
        &self,
        who: Identity,
        commands: Vec<d::Command>,
        interface: &'static str,
    ) -> Vec<Result<Answer, Error>> {
        let started = Instant::now();
        let pending: Vec<Pending> = commands.into_iter().map(|c| self.start(who, c)).collect();
        let mut out = Vec::with_capacity(pending.len());
        for p in pending {
            out.push(finish(p, started, interface, &*self.node, &self.events).await);
        }
        out
    }

    fn start(&self, who: Identity, command: d::Command) -> Pending {
        let (tx, rx) = oneshot::channel();
        let fallback = match route(&command, &self.node.placement(), &BTreeMap::new()) {
            Route::Shard(s) => s,
            Route::All => d::ShardId(0),
        };
        let meta = d::Meta {
            timestamp: now(),
            principal: who.principal,
            authority: who.authority,
        };
        self.node.submit(
            meta,
            command,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        Pending { rx, fallback }
    }

    /// Runs `f` on shard `s`'s state (after every write it acknowledged before), on a
    /// blocking thread.
    pub(crate) async fn read<R: Send + 'static>(
        &self,
        s: d::ShardId,
        f: impl FnOnce(&Engine) -> R + Send + 'static,
    ) -> Result<R, Error> {
        self.read_as(s, false, f).await
    }

    /// [`read`](Self::read), or with `stale` on this node's copy of the shard as it is,
    /// without asking the leader (a stale read: answers while the shard has no leader,
    /// may miss acknowledged writes; the answer's position says what it reflects).
    pub(crate) async fn read_as<R: Send + 'static>(
        &self,
        s: d::ShardId,
        stale: bool,
        f: impl FnOnce(&Engine) -> R + Send + 'static,
    ) -> Result<R, Error> {
        if s.0 >= self.node.shard_count() {
            return Err(Error::Invalid(format!(
                "shard {s} does not exist (this node has {} shards)",
                self.node.shard_count()
            )));
        }
        read_as(&*self.node, s, stale, f).await
    }

    /// A read round trip on every shard (readiness).
    pub(crate) async fn ping(&self) -> Result<(), Error> {
        if self.stopping() {
            return Err(Error::Unavailable("shutting down".into()));
        }
        if let Some(why) = self.events.closed() {
            return Err(Error::Unavailable(format!("event index: {why}")));
        }
        for s in 0..self.shard_count() {
            // Every shard this node holds answers (a cluster node may hold only some).
            if self.node.check_hosted(d::ShardId(s)).is_ok() {
                self.read(d::ShardId(s), |e| e.inputs_applied()).await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn balances(&self, q: BalancesQuery) -> Result<AccountView, Error> {
        let shard = self.node.placement().account_shard(q.account);
        let account = q.account;
        let view = match q.as_of {
            None => {
                self.read_as(shard, q.stale, move |e| account_view(e, account))
                    .await?
            }
            Some(at) => {
                self.history
                    .as_of(shard, at, move |e| account_view(e, account))
                    .await?
            }
        };
        view.ok_or_else(|| {
            Error::NotFound(format!(
                "account {account} does not exist{}",
                as_of_text(q.as_of)
            ))
        })
    }

    /// The shard that owns a market's book: where the catalog created it (read stale or
    /// not), followed through the splits of the current placement.
    pub(crate) async fn market_shard(
        &self,
        market: d::MarketId,
        stale: bool,
    ) -> Result<d::ShardId, Error> {
        let home = self.market_home(market, stale).await?;
        // A split may have moved the market (with its book) to another shard since it was
        // created there.
        Ok(self.node.placement().market_shard(market, home))
    }

    /// The shard the catalog created a market on (read stale or not).
    pub(crate) async fn market_home(
        &self,
        market: d::MarketId,
        stale: bool,
    ) -> Result<d::ShardId, Error> {
        self.read_as(self.catalog_shard(), stale, move |e| {
            e.markets().get(&market).map(|m| m.shard)
        })
        .await?
        .ok_or_else(|| Error::NotFound(format!("market {market} does not exist")))
    }

    pub(crate) async fn order(&self, q: OrderQuery) -> Result<OrderView, Error> {
        let shard = self.market_shard(q.market, q.stale).await?;
        let f = move |e: &Engine| {
            let o = e.books().get(&q.market)?.order(q.order)?;
            Some(order_view(e, q.market, o))
        };
        let view = match q.as_of {
            None => self.read_as(shard, q.stale, f).await?,
            Some(at) => self.history.as_of(shard, at, f).await?,
        };
        view.ok_or_else(|| {
            Error::NotFound(format!(
                "order {} is not open in market {}{} (its history is in the order's event \
                 stream)",
                q.order,
                q.market,
                as_of_text(q.as_of)
            ))
        })
    }

    pub(crate) async fn book(&self, q: BookQuery) -> Result<BookView, Error> {
        let shard = self.market_shard(q.market, q.stale).await?;
        let f = move |e: &Engine| book_view(e, q.market, q.depth);
        let view = match q.as_of {
            None => self.read_as(shard, q.stale, f).await?,
            Some(at) => self.history.as_of(shard, at, f).await?,
        };
        view.ok_or_else(|| {
            Error::NotFound(format!(
                "market {} has no book{}",
                q.market,
                as_of_text(q.as_of)
            ))
        })
    }

    /// This node's view of the cluster (refused on a single node).
    pub(crate) async fn cluster_status(
        &self,
        state_hash: bool,
    ) -> Result<tradelog_cluster::ClusterStatus, Error> {
        match &self.cluster {
            Some(c) => Ok(c.status_with(state_hash).await),
            None => Err(Error::FailedPrecondition(
                "this server is a single node, not a member of a replicated cluster \
                 (start it with --node-id and --members)"
                    .into(),
            )),
        }
    }

    /// Applies one change to the cluster (operators only) and answers the status after it.
    pub(crate) async fn change_cluster(
        &self,
        who: &Identity,
        change: ClusterChange,
    ) -> Result<tradelog_cluster::ClusterStatus, Error> {
        let Some(c) = &self.cluster else {
            return self.cluster_status(true).await;
        };
        if who.authority != d::Authority::Operator {
            return Err(Error::PermissionDenied(
                "changing the cluster needs the operator authority".into(),
            ));
        }
        let r = match change {
            ClusterChange::AddNode { node, url } => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(Error::Invalid(format!(
                        "invalid field `url`: {url:?} is not a URL (such as http://127.0.0.1:7730)"
                    )));
                }
                if node == 0 {
                    return Err(Error::Invalid(
                        "invalid field `node`: node ids start at 1".into(),
                    ));
                }
                c.add_node(node, &url).await.map_err(change_error)?;
                Ok(())
            }
            ClusterChange::RemoveNode { node } => {
                c.remove_node(node).await.map_err(change_error)?;
                Ok(())
            }
            ClusterChange::TransferLeader { shard, to } => {
                if shard >= self.shard_count() {
                    return Err(Error::Invalid(format!(
                        "invalid field `shard`: shard {shard} does not exist (this node has {} shards)",
                        self.shard_count()
                    )));
                }
                self.node.check_hosted(d::ShardId(shard))?;
                c.transfer_leader(d::ShardId(shard), to).await
            }
            ClusterChange::BalanceLeaders => c.balance_leaders().await.map(|_| ()),
            ClusterChange::MoveShard { shard, nodes } => {
                if shard >= self.shard_count() {
                    return Err(Error::Invalid(format!(
                        "invalid field `shard`: shard {shard} does not exist (this node has {} shards)",
                        self.shard_count()
                    )));
                }
                let set: std::collections::BTreeSet<u64> = nodes.iter().copied().collect();
                let max = tradelog_placement::REPLICATION_FACTOR_MAX;
                if set.len() != nodes.len() || set.is_empty() || set.len() > max {
                    return Err(Error::Invalid(format!(
                        "invalid field `nodes`: 1 to {max} distinct node ids, got {nodes:?}"
                    )));
                }
                c.move_shard(d::ShardId(shard), set)
                    .await
                    .map_err(change_error)?;
                Ok(())
            }
            ClusterChange::SetReplicationFactor { replication_factor } => {
                let max = tradelog_placement::REPLICATION_FACTOR_MAX;
                let rf = usize::try_from(replication_factor)
                    .ok()
                    .filter(|rf| (1..=max).contains(rf))
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "invalid field `replication_factor`: 1 to {max}, got {replication_factor}"
                        ))
                    })?;
                c.set_replication_factor(rf).await.map_err(change_error)?;
                Ok(())
            }
            ClusterChange::SplitShard {
                shard,
                modulus,
                residue,
                markets,
            } => {
                if shard >= self.shard_count() {
                    return Err(Error::Invalid(format!(
                        "invalid field `shard`: shard {shard} does not exist (this node has {} shards)",
                        self.shard_count()
                    )));
                }
                let max = d::SPLIT_MARKETS_MAX;
                if markets.len() > max || markets.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(Error::Invalid(format!(
                        "invalid field `markets`: at most {max} market ids, ascending, without repeats"
                    )));
                }
                let markets = markets.into_iter().map(d::MarketId).collect();
                c.split_shard(d::ShardId(shard), modulus, residue, markets)
                    .await
                    .map_err(change_error)?;
                Ok(())
            }
        };
        r.map_err(|e| Error::Unavailable(e.to_string()))?;
        Ok(c.status().await)
    }

    pub(crate) async fn catalog(&self, q: CatalogQuery) -> Result<CatalogView, Error> {
        self.read_as(self.catalog_shard(), q.stale, |e| CatalogView {
            assets: e.assets().values().cloned().collect(),
            markets: e.markets().values().cloned().collect(),
        })
        .await
    }

    pub(crate) fn balance_history(
        &self,
        q: &BalanceHistoryQuery,
    ) -> Result<(Vec<tradelog_engine::projection::BalancePoint>, bool), Error> {
        let shard = self.node.placement().account_shard(q.account);
        // The index holds only the shards this node holds; another's would look empty.
        self.node.check_hosted(shard)?;
        self.events.balance_history(shard, q)
    }
}

fn change_error(e: tradelog_cluster::ChangeError) -> Error {
    match e {
        tradelog_cluster::ChangeError::Propose(e) => Error::Unavailable(e.to_string()),
        tradelog_cluster::ChangeError::Refused(m) => Error::FailedPrecondition(m),
    }
}

/// A submitted command whose answer is on its way.
struct Pending {
    rx: oneshot::Receiver<Result<CommandReply, SubmitError>>,
    fallback: d::ShardId,
}

async fn finish(
    p: Pending,
    started: Instant,
    interface: &'static str,
    host: &dyn ShardHost,
    events: &EventLog,
) -> Result<Answer, Error> {
    let r = p.rx.await.unwrap_or(Err(SubmitError::Stopped));
    telemetry::command_done(interface, &r, started.elapsed());
    let reply = r?;
    // Read your writes: the answer goes out once its events can be read here (a shard
    // this node holds no replica of has no events here: its reads go elsewhere).
    if let Some(last) = reply.events.last() {
        if host.check_hosted(last.shard).is_ok() {
            events.caught_up(last.shard, last.seq).await;
        }
    }
    let (shard, input) = match reply.events.first() {
        Some(e) => (e.shard, e.input),
        None => (p.fallback, 0),
    };
    Ok(Answer {
        outcome: reply.outcome,
        shard,
        input,
        events: reply.events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_errors_map_to_retry_and_unavailable_statuses() {
        let s = tonic::Status::from(Error::from(SubmitError::Overloaded(d::ShardId(2))));
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(s.message(), "overloaded, retry");
        for e in [SubmitError::Stopped, SubmitError::Failed("disk".into())] {
            let s = tonic::Status::from(Error::from(e));
            assert_eq!(s.code(), tonic::Code::Unavailable);
        }
        // A shard this node holds no replica of: typed in the metadata, for clients.
        let s = tonic::Status::from(Error::from(SubmitError::WrongNode {
            shard: d::ShardId(3),
            map_version: 12,
        }));
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        let md = |k: &str| s.metadata().get(k).unwrap().to_str().unwrap().to_string();
        assert_eq!(
            (
                md(ERROR_KIND_HEADER),
                md(SHARD_HEADER),
                md(MAP_VERSION_HEADER)
            ),
            ("wrong-node".into(), "3".into(), "12".into())
        );
        assert_eq!(
            s.message(),
            "this node holds no replica of shard 3 (cluster map version 12); ask a node that does"
        );
    }

    #[test]
    fn identity_defaults_and_refusals() {
        let id = Identity::parse(None, None).unwrap();
        assert_eq!(id.principal, d::Principal(PRINCIPAL_DEFAULT));
        assert_eq!(id.authority, d::Authority::Operator);
        let id = Identity::parse(Some(" 42 "), Some("Read-Only")).unwrap();
        assert_eq!(
            (id.principal, id.authority),
            (d::Principal(42), d::Authority::ReadOnly)
        );
        assert_eq!(
            Identity::parse(None, Some("trader")).unwrap().authority,
            d::Authority::Trader
        );
        assert!(Identity::parse(Some("-1"), None)
            .unwrap_err()
            .contains(PRINCIPAL_HEADER));
        assert!(Identity::parse(None, Some("admin"))
            .unwrap_err()
            .contains(AUTHORITY_HEADER));
    }
}
