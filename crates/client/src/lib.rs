//! The Rust client of tradelog: an async client of the published gRPC API
//! (`proto/tradelog/v1`), used by the `tradelog` CLI.
//!
//! Owns: one tonic channel per node (HTTP/2, reconnecting, shared by every clone and every
//! concurrent call), the routing of commands to their shard's leader, the caller's
//! declared identity (sent as the
//! `x-tradelog-principal` / `x-tradelog-authority` metadata of every call), timeouts,
//! the [`RetryPolicy`], and decoding answers into domain types with the api crate's
//! checked conversions ([`ClientError::InvalidResponse`] if a server sends something they
//! refuse).
//!
//! Must never contain: business logic (every rule is the engine's; the client only
//! carries commands and answers), or depend on the server, node, engine or storage crates.
//!
//! # Calls
//!
//! * Commands: one typed method per command RPC ([`Client::deposit`],
//!   [`Client::place_order`], ...) returning a [`Receipt`], with a business rejection as
//!   [`ClientError::Rejected`] (the stable [`RejectCode`](tradelog_domain::RejectCode),
//!   its wire name and message); [`Client::submit`] takes any domain
//!   [`Command`](tradelog_domain::Command) and returns the [`Answer`] with the rejection
//!   as a value; [`Client::submit_batch`] sends many (not all-or-nothing).
//! * Queries: [`Client::balances`], [`Client::balance_history`], [`Client::order`],
//!   [`Client::book`], [`Client::catalog`], [`Client::open_orders`], [`Client::trades`]
//!   (one page; [`Client::trades_to_end`] follows the pages), [`Client::candles`],
//!   [`Client::statement`] (one page; [`Client::statement_to_end`]),
//!   [`Client::read_events`]. Past states: [`Client::balances_as_of`],
//!   [`Client::order_as_of`], [`Client::book_as_of`] with an [`AsOf`] point (a log index
//!   of the owning shard or a time).
//! * Consistency: queries are linearizable by default (the answering node asks the
//!   shard's leader for its read index, so a query sees every write acknowledged before
//!   it). [`Client::stale`] (or [`Client::with_consistency`]) gives a handle on the same
//!   connections whose queries are stale reads: answered by the node the client talks to
//!   from its replica as it is, without the leader, so they work while a shard has no
//!   leader (a majority down), but may miss acknowledged writes; the answer's position
//!   says which state it reflects. A stale read cannot be combined with an as-of point.
//! * Events: [`Client::subscribe`] returns a [`Subscription`], a `Stream` of
//!   [`EventPage`]s: the stream's events after a position, then live ones, with no gap
//!   and no duplicate across the switch; [`Subscription::position`] resumes it.
//!
//! # A replicated cluster
//!
//! Give the client one or more nodes ([`ClientConfig::cluster`]). Before its first
//! command it asks a node for the cluster's status and learns every node, the shard
//! count and each shard's leader; a command then goes straight to its shard's leader
//! (computed with the server's own [`routing`](tradelog_domain::routing)), so it is not
//! forwarded between nodes. Any node accepts any command, so a stale map only costs a
//! hop. A node that fails a call is avoided for [`NODE_DOWN_MS`] and the routes are
//! asked for again, so a retry goes to a live node: a command with an idempotency key
//! sent across a leader's failure is applied exactly once, and answered as a duplicate
//! if its first attempt had been.
//!
//! # Retries and idempotency
//!
//! A retry resends the very same request (same transfer id, same client order id), and
//! only when the server did not answer: `Overloaded` always (the server refused before
//! recording anything), `Unavailable` only for calls whose repeat returns the original
//! result (see [`RetryPolicy`] and [`Repeat`]). A retried command that the server had
//! applied comes back with its original result and [`Answer::duplicate`] set.
//!
//! # Example
//!
//! ```no_run
//! use tradelog_client::{Client, ClientConfig, ClientError};
//! use tradelog_domain::{AccountId, Amount, AssetId, TransferId, TransferSpec};
//!
//! # async fn run() -> Result<(), ClientError> {
//! let client = Client::new(ClientConfig::new("http://127.0.0.1:7700"))?;
//! let transfer = TransferSpec {
//!     id: TransferId(42), // the idempotency key: resending it is safe
//!     debit: AccountId(1),
//!     credit: AccountId(2),
//!     asset: AssetId(1),
//!     amount: Amount(1_000),
//!     balancing: false,
//! };
//! match client.transfer(transfer).await {
//!     Ok(receipt) => println!("done on shard {}", receipt.shard),
//!     Err(ClientError::Rejected(r)) => println!("rejected: {r}"), // e.g. INSUFFICIENT_FUNDS (10)
//!     Err(e) => return Err(e),
//! }
//! println!("{:?}", client.balances(AccountId(2)).await?.of(AssetId(1)));
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod merge;
mod retry;
mod route;
mod types;

pub use error::{ClientError, Rejection};
pub use retry::{
    Repeat, RetryPolicy, RETRY_ATTEMPTS_MAX_DEFAULT, RETRY_BACKOFF_INITIAL_MS_DEFAULT,
    RETRY_BACKOFF_MS_MAX_DEFAULT,
};
pub use route::{NODES_MAX, NODE_DOWN_MS, ROUTES_TTL_MS};
pub use tradelog_api::query::{AsOf, EventStream, Position};
pub use types::{
    format_position, parse_position, AccountStatus, Answer, Balance, BalanceHistory, BalancePoint,
    Balances, Book, Candle, Candles, Catalog, ClusterChange, ClusterStatus, Consistency, EventPage,
    Level, MapNode, MetadataStatus, NodeAddress, NodeLoad, OpenOrder, OpenOrders, Order, Receipt,
    ReplicaProgress, ShardPosition, ShardReplicaStatus, ShardVerification, Statement,
    StatementEntry, Trade, TradesPage,
};

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio_stream::Stream;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::{Code, Request, Response, Status};
use tradelog_api::proto as pb;
use tradelog_api::query::{BalancesQuery, BookQuery, CatalogQuery, OpenOrdersQuery, OrderQuery};
use tradelog_domain as d;

use route::{Grpc, Mode, Routes};

/// The server's default gRPC address.
pub const ENDPOINT_DEFAULT: &str = "http://127.0.0.1:7700";
/// Default [`ClientConfig::connect_timeout_ms`].
pub const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 3_000;
/// Default [`ClientConfig::request_timeout_ms`].
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Metadata key carrying the declared principal (development only, until API keys land).
pub const PRINCIPAL_HEADER: &str = "x-tradelog-principal";
/// Metadata key carrying the declared authority (development only, until API keys land).
pub const AUTHORITY_HEADER: &str = "x-tradelog-authority";

/// Settings of a [`Client`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The server's gRPC address, e.g. `http://127.0.0.1:7700` (`http://` is assumed when
    /// the scheme is missing), or several nodes of a replicated cluster: calls go to the
    /// first until it fails, then to the next.
    pub endpoints: Vec<String>,
    /// The principal to act as (`None`: the server's default, principal 1). DEVELOPMENT
    /// ONLY: declared, not authenticated.
    pub principal: Option<d::Principal>,
    /// The authority to act with (`None`: the server's default, operator). DEVELOPMENT
    /// ONLY: declared, not authenticated.
    pub authority: Option<d::Authority>,
    /// Longest wait for a connection to be established, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Longest wait for the answer to one attempt of a call, in milliseconds (for a
    /// subscription: for the stream to open; the stream itself has no time limit).
    pub request_timeout_ms: u64,
    /// When calls are sent again.
    pub retry: RetryPolicy,
    /// Send each command straight to its shard's leader. Before its first command the
    /// client asks a node for the cluster's status (nodes, shard count, leaders; again
    /// every [`ROUTES_TTL_MS`] and after a failure). A single node answers that it is not
    /// in a cluster and is never asked again. With `false`, or before the leaders are
    /// known, a command goes to the current node, which forwards it to the leader.
    pub route_to_leaders: bool,
}

impl ClientConfig {
    /// Defaults for the server at `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> ClientConfig {
        ClientConfig::cluster([endpoint.into()])
    }

    /// Defaults for the nodes of a cluster at `endpoints` (any of them; the client learns
    /// the others from the cluster's status).
    pub fn cluster(endpoints: impl IntoIterator<Item = impl Into<String>>) -> ClientConfig {
        ClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            principal: None,
            authority: None,
            connect_timeout_ms: CONNECT_TIMEOUT_MS_DEFAULT,
            request_timeout_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            retry: RetryPolicy::default(),
            route_to_leaders: true,
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig::new(ENDPOINT_DEFAULT)
    }
}

/// The metadata value of an authority.
fn authority_name(a: d::Authority) -> &'static str {
    match a {
        d::Authority::Operator => "operator",
        d::Authority::Trader => "trader",
        d::Authority::ReadOnly => "read-only",
    }
}

/// Longest wait for the cluster's status when the client refreshes its routes, in
/// milliseconds (the command that triggered it waits for it).
const ROUTES_REFRESH_TIMEOUT_MS: u64 = 2_000;

struct Shared {
    /// The first configured endpoint.
    endpoint: String,
    principal: Option<AsciiMetadataValue>,
    authority: Option<AsciiMetadataValue>,
    request_timeout: Duration,
    request_timeout_ms: u64,
    retry: RetryPolicy,
    retries: AtomicU64,
    route_to_leaders: bool,
    routes: Mutex<Routes>,
    /// Held by the one call refreshing the routes (the others do not wait for it).
    refreshing: tokio::sync::Mutex<()>,
}

/// A client of one tradelog server or of the nodes of a cluster. Cheap to clone: clones
/// share the connections, the routes, the configuration and the retry counter, and may
/// be used concurrently.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    /// How current this handle's queries must be.
    consistency: Consistency,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.shared.endpoint)
            .finish_non_exhaustive()
    }
}

macro_rules! rpc {
    ($self:ident, $msg:expr, $repeat:expr, $method:ident) => {
        rpc!($self, $msg, $repeat, None, $method)
    };
    ($self:ident, $msg:expr, $repeat:expr, $shard:expr, $method:ident) => {
        $self
            .unary($msg, $repeat, $shard, |mut g: Grpc, r| async move {
                g.$method(r).await
            })
            .await
    };
}

impl Client {
    /// A client of the server(s) in `config`, connecting on first use (so a server that
    /// is down now is only an error when a call is made). Must be called inside a tokio
    /// runtime.
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        Ok(Client {
            shared: Arc::new(Self::prepare(config)?),
            consistency: Consistency::Linearizable,
        })
    }

    /// A client of the server(s) in `config`, connected now to the first that answers:
    /// fails at once with [`ClientError::Unavailable`] if none can be reached.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let shared = Self::prepare(config)?;
        let urls = shared.routes.lock().expect("routes lock").urls();
        let mut last = None;
        for (i, url) in urls.iter().enumerate() {
            let endpoint = shared.routes.lock().expect("routes lock").endpoint(url)?;
            match endpoint.connect().await {
                Ok(channel) => {
                    shared
                        .routes
                        .lock()
                        .expect("routes lock")
                        .connected(i, channel);
                    return Ok(Client {
                        shared: Arc::new(shared),
                        consistency: Consistency::Linearizable,
                    });
                }
                Err(e) => {
                    last = Some(ClientError::Unavailable {
                        endpoint: url.clone(),
                        message: error::with_sources(&e.to_string(), &e),
                    })
                }
            }
        }
        Err(last.expect("at least one endpoint"))
    }

    fn prepare(config: ClientConfig) -> Result<Shared, ClientError> {
        let routes = Routes::new(
            &config.endpoints,
            Duration::from_millis(config.connect_timeout_ms),
        )?;
        let principal = config.principal.map(|p| AsciiMetadataValue::from(p.0));
        let authority = config
            .authority
            .map(|a| AsciiMetadataValue::from_static(authority_name(a)));
        if config.retry.attempts_max == 0 {
            return Err(ClientError::Config(
                "retry.attempts_max must be at least 1".into(),
            ));
        }
        Ok(Shared {
            endpoint: route::normalize(&config.endpoints[0]),
            principal,
            authority,
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            request_timeout_ms: config.request_timeout_ms,
            retry: config.retry,
            retries: AtomicU64::new(0),
            route_to_leaders: config.route_to_leaders,
            routes: Mutex::new(routes),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// A handle on the same connections whose queries have this consistency (commands
    /// are not affected): `client.with_consistency(Consistency::Stale).balances(a)` is
    /// one stale read, `client` itself stays as it was.
    pub fn with_consistency(&self, consistency: Consistency) -> Client {
        Client {
            shared: self.shared.clone(),
            consistency,
        }
    }

    /// `with_consistency(Consistency::Stale)`: queries answered by the node this client
    /// talks to (its current node, not necessarily a leader) from its replica as it is,
    /// even while the shard has no leader. May miss acknowledged writes.
    pub fn stale(&self) -> Client {
        self.with_consistency(Consistency::Stale)
    }

    /// How current this handle's queries must be.
    pub fn consistency(&self) -> Consistency {
        self.consistency
    }

    fn is_stale(&self) -> bool {
        self.consistency == Consistency::Stale
    }

    /// The first configured server address.
    pub fn endpoint(&self) -> &str {
        &self.shared.endpoint
    }

    /// Retries made so far by this client and its clones.
    pub fn retries(&self) -> u64 {
        self.shared.retries.load(Ordering::Relaxed)
    }

    /// The nodes this client knows (configured, then learned from the cluster's status),
    /// with their node ids once learned.
    pub fn nodes(&self) -> Vec<(String, Option<u64>)> {
        self.routes().nodes()
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.shared.routes.lock().expect("routes lock")
    }

    fn request<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        let m: &mut MetadataMap = r.metadata_mut();
        if let Some(p) = &self.shared.principal {
            m.insert(PRINCIPAL_HEADER, p.clone());
        }
        if let Some(a) = &self.shared.authority {
            m.insert(AUTHORITY_HEADER, a.clone());
        }
        r
    }

    /// Asks a node for the cluster's nodes and leaders (and, when there are several
    /// shards, for the catalog, which says where markets live), unless another call is
    /// doing it or it was done recently.
    async fn refresh_routes(&self) {
        if !self.shared.route_to_leaders {
            return;
        }
        let Ok(_one) = self.shared.refreshing.try_lock() else {
            return;
        };
        let now = Instant::now();
        let pick = {
            let mut r = self.routes();
            if !r.stale(now) {
                return;
            }
            r.refreshing(now);
            r.pick(None, now)
        };
        let wait = self
            .shared
            .request_timeout
            .min(Duration::from_millis(ROUTES_REFRESH_TIMEOUT_MS));
        let mut g = pick.grpc.clone();
        let status = tokio::time::timeout(
            wait,
            g.get_cluster_status(self.request(pb::GetClusterStatusRequest { routing_only: true })),
        )
        .await;
        match status {
            Ok(Ok(s)) => {
                let status = ClusterStatus::from_wire(s.into_inner());
                let sharded = {
                    let mut r = self.routes();
                    r.learn(&status);
                    r.sharded()
                };
                if sharded {
                    let catalog = tokio::time::timeout(
                        wait,
                        g.get_catalog(self.request(pb::GetCatalogRequest { stale: true })),
                    )
                    .await;
                    if let Ok(Ok(c)) = catalog {
                        if let Ok(c) = Catalog::from_wire(c.into_inner()) {
                            self.routes().learn_markets(&c.markets);
                        }
                    }
                }
            }
            // Not a member of a cluster (or a server from before clusters).
            Ok(Err(s)) if matches!(s.code(), Code::FailedPrecondition | Code::Unimplemented) => {
                self.routes().single()
            }
            Ok(Err(_)) | Err(_) => self.routes().failed(pick.index, Instant::now()),
        }
    }

    /// One unary call with the retry policy: the same `msg` every attempt, to `shard`'s
    /// leader when known, else to the current node; a node that fails is avoided by the
    /// next attempt, and a node that holds no replica of a shard the call needs
    /// ([`ClientError::WrongNode`]) sends the next attempt to one that does.
    async fn unary<T, R, F, Fut>(
        &self,
        msg: T,
        repeat: Repeat,
        shard: Option<d::ShardId>,
        call: F,
    ) -> Result<R, ClientError>
    where
        T: Clone,
        F: Fn(Grpc, Request<T>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let mut attempt = 1;
        // The shards nodes answered `WrongNode` for: the next attempt goes to a node
        // holding them all (a read may need several).
        let mut needed: std::collections::BTreeSet<d::ShardId> = Default::default();
        loop {
            let pick = if needed.is_empty() {
                self.routes().pick(shard, Instant::now())
            } else {
                self.routes().pick_holding(&needed, Instant::now())
            };
            let fut = call(pick.grpc, self.request(msg.clone()));
            let error = match tokio::time::timeout(self.shared.request_timeout, fut).await {
                Ok(Ok(r)) => return Ok(r.into_inner()),
                Ok(Err(status)) => ClientError::from_status(status, &pick.url),
                Err(_) => ClientError::Timeout {
                    endpoint: pick.url,
                    timeout_ms: self.shared.request_timeout_ms,
                },
            };
            if matches!(
                error,
                ClientError::Unavailable { .. } | ClientError::Timeout { .. }
            ) {
                self.routes().failed(pick.index, Instant::now());
            }
            if let ClientError::WrongNode { shard: s, .. } = &error {
                if !self.shared.route_to_leaders {
                    // Without routes the next attempt would go to the same node.
                    return Err(error);
                }
                needed.insert(*s);
                self.routes().expire();
            }
            match self.shared.retry.next_delay(attempt, &error, repeat) {
                Some(wait) => {
                    self.shared.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                    if shard.is_some() || !needed.is_empty() {
                        self.refresh_routes().await;
                    }
                    attempt += 1;
                }
                None => return Err(error),
            }
        }
    }

    /// The shard `command` is applied on, once the routes are known (refreshing them
    /// first when they are stale).
    async fn shard_of(&self, command: &d::Command) -> Option<d::ShardId> {
        if !self.shared.route_to_leaders {
            return None;
        }
        let stale = self.routes().stale(Instant::now());
        if stale {
            self.refresh_routes().await;
        }
        let r = self.routes();
        match r.mode() {
            Mode::Cluster => r.shard_of(command),
            Mode::Single | Mode::Unknown => None,
        }
    }

    // ----- commands ----------------------------------------------------------------

    /// Sends any command through its own RPC and returns the engine's answer, a
    /// rejection included (as a value). Retried per [`Repeat::of`] the command.
    pub async fn submit(&self, command: d::Command) -> Result<Answer, ClientError> {
        use pb::command::Command as C;
        let repeat = Repeat::of(&command);
        let shard = self.shard_of(&command).await;
        let Some(c) = pb::Command::from(command).command else {
            unreachable!("every domain command converts to a wire command")
        };
        let r = match c {
            C::CreateAsset(m) => rpc!(self, m, repeat, shard, create_asset),
            C::CreateMarket(m) => rpc!(self, m, repeat, shard, create_market),
            C::OpenAccount(m) => rpc!(self, m, repeat, shard, open_account),
            C::Deposit(m) => rpc!(self, m, repeat, shard, deposit),
            C::Withdraw(m) => rpc!(self, m, repeat, shard, withdraw),
            C::Transfer(m) => rpc!(self, m, repeat, shard, transfer),
            C::LinkedTransfers(m) => rpc!(self, m, repeat, shard, linked_transfers),
            C::CreatePending(m) => rpc!(self, m, repeat, shard, create_pending),
            C::PostPending(m) => rpc!(self, m, repeat, shard, post_pending),
            C::VoidPending(m) => rpc!(self, m, repeat, shard, void_pending),
            C::FreezeAccount(m) => rpc!(self, m, repeat, shard, freeze_account),
            C::UnfreezeAccount(m) => rpc!(self, m, repeat, shard, unfreeze_account),
            C::CloseAccount(m) => rpc!(self, m, repeat, shard, close_account),
            C::PlaceOrder(m) => rpc!(self, m, repeat, shard, place_order),
            C::CancelOrder(m) => rpc!(self, m, repeat, shard, cancel_order),
            C::AmendOrder(m) => rpc!(self, m, repeat, shard, amend_order),
            C::HaltMarket(m) => rpc!(self, m, repeat, shard, halt_market),
            C::ResumeMarket(m) => rpc!(self, m, repeat, shard, resume_market),
        }?;
        Answer::from_wire(r)
    }

    /// Sends many independent commands in one request (NOT all-or-nothing: one answer
    /// each, in order; use [`Client::linked_transfers`] for atomic transfers). Retried
    /// only if every command is [`Repeat::Safe`].
    pub async fn submit_batch(
        &self,
        commands: Vec<d::Command>,
    ) -> Result<Vec<Answer>, ClientError> {
        let repeat = Repeat::of_batch(&commands);
        let n = commands.len();
        // To the first command's shard's leader (the others are forwarded if elsewhere).
        let shard = match commands.first() {
            Some(c) => self.shard_of(c).await,
            None => None,
        };
        let r = rpc!(
            self,
            pb::CommandBatch::from(commands),
            repeat,
            shard,
            submit_batch
        )?;
        if r.responses.len() != n {
            return Err(ClientError::InvalidResponse(format!(
                "{} answers to a batch of {n} commands",
                r.responses.len()
            )));
        }
        r.responses.into_iter().map(Answer::from_wire).collect()
    }

    async fn command(&self, command: d::Command) -> Result<Receipt, ClientError> {
        self.submit(command).await?.into_receipt()
    }

    /// Adds an asset to the catalog (operators; idempotent by content).
    pub async fn create_asset(&self, asset: d::Asset) -> Result<Receipt, ClientError> {
        self.command(d::Command::CreateAsset(asset)).await
    }

    /// Adds a market to the catalog (operators; idempotent by content).
    pub async fn create_market(&self, market: d::MarketSpec) -> Result<Receipt, ClientError> {
        self.command(d::Command::CreateMarket(market)).await
    }

    /// Opens an account owned by `owner`.
    pub async fn open_account(
        &self,
        account: d::AccountId,
        owner: d::Principal,
    ) -> Result<Receipt, ClientError> {
        self.command(d::Command::OpenAccount { account, owner })
            .await
    }

    /// Money enters the system (operators). `id` is the idempotency key.
    pub async fn deposit(
        &self,
        id: d::TransferId,
        account: d::AccountId,
        asset: d::AssetId,
        amount: d::Amount,
    ) -> Result<Receipt, ClientError> {
        self.command(d::Command::Deposit {
            id,
            account,
            asset,
            amount,
        })
        .await
    }

    /// Money leaves the system. `id` is the idempotency key.
    pub async fn withdraw(
        &self,
        id: d::TransferId,
        account: d::AccountId,
        asset: d::AssetId,
        amount: d::Amount,
    ) -> Result<Receipt, ClientError> {
        self.command(d::Command::Withdraw {
            id,
            account,
            asset,
            amount,
        })
        .await
    }

    /// Moves money between two accounts (across shards: [`d::Accepted::InFlight`]).
    pub async fn transfer(&self, transfer: d::TransferSpec) -> Result<Receipt, ClientError> {
        self.command(d::Command::Transfer(transfer)).await
    }

    /// Moves money in an all-or-nothing batch (every account on one shard); a rejection
    /// names the failing transfer's index.
    pub async fn linked_transfers(
        &self,
        transfers: Vec<d::TransferSpec>,
    ) -> Result<Receipt, ClientError> {
        self.command(d::Command::LinkedTransfers(transfers)).await
    }

    /// Reserves funds for a two-phase transfer, voided after `timeout_ms` of leader time.
    pub async fn create_pending(
        &self,
        transfer: d::TransferSpec,
        timeout_ms: u64,
    ) -> Result<Receipt, ClientError> {
        self.command(d::Command::CreatePending {
            spec: transfer,
            timeout_ms,
        })
        .await
    }

    /// Posts a pending transfer, all of it (`None`) or part.
    pub async fn post_pending(
        &self,
        debit: d::AccountId,
        id: d::TransferId,
        amount: Option<d::Amount>,
    ) -> Result<Receipt, ClientError> {
        self.command(d::Command::PostPending { debit, id, amount })
            .await
    }

    /// Voids a pending transfer.
    pub async fn void_pending(
        &self,
        debit: d::AccountId,
        id: d::TransferId,
    ) -> Result<Receipt, ClientError> {
        self.command(d::Command::VoidPending { debit, id }).await
    }

    /// Freezes an account (operators).
    pub async fn freeze_account(&self, account: d::AccountId) -> Result<Receipt, ClientError> {
        self.command(d::Command::FreezeAccount { account }).await
    }

    /// Unfreezes an account (operators).
    pub async fn unfreeze_account(&self, account: d::AccountId) -> Result<Receipt, ClientError> {
        self.command(d::Command::UnfreezeAccount { account }).await
    }

    /// Closes an empty account.
    pub async fn close_account(&self, account: d::AccountId) -> Result<Receipt, ClientError> {
        self.command(d::Command::CloseAccount { account }).await
    }

    /// Places an order; [`Receipt::order_id`] is its id. Give it a client order id to make
    /// retries safe.
    pub async fn place_order(&self, order: d::NewOrder) -> Result<Receipt, ClientError> {
        self.command(d::Command::PlaceOrder(order)).await
    }

    /// Cancels an open order.
    pub async fn cancel_order(
        &self,
        market: d::MarketId,
        order: d::OrderId,
    ) -> Result<Receipt, ClientError> {
        self.command(d::Command::CancelOrder { market, order })
            .await
    }

    /// Amends (cancel-replaces) an open order.
    pub async fn amend_order(
        &self,
        market: d::MarketId,
        order: d::OrderId,
        price: d::Price,
        qty: d::Qty,
    ) -> Result<Receipt, ClientError> {
        self.command(d::Command::AmendOrder {
            market,
            order,
            price,
            qty,
        })
        .await
    }

    /// Halts a market (operators).
    pub async fn halt_market(&self, market: d::MarketId) -> Result<Receipt, ClientError> {
        self.command(d::Command::HaltMarket { market }).await
    }

    /// Resumes a halted market (operators).
    pub async fn resume_market(&self, market: d::MarketId) -> Result<Receipt, ClientError> {
        self.command(d::Command::ResumeMarket { market }).await
    }

    // ----- queries -----------------------------------------------------------------

    /// An account's balances ([`ClientError::NotFound`] if it does not exist).
    pub async fn balances(&self, account: d::AccountId) -> Result<Balances, ClientError> {
        self.balances_at(account, None).await
    }

    /// An account's balances as of a past point of its shard's history
    /// ([`ClientError::NotFound`] if it did not exist then, [`ClientError::OutOfRange`]
    /// for a point beyond what the shard applied; refused on a stale handle).
    pub async fn balances_as_of(
        &self,
        account: d::AccountId,
        at: AsOf,
    ) -> Result<Balances, ClientError> {
        self.balances_at(account, Some(at)).await
    }

    async fn balances_at(
        &self,
        account: d::AccountId,
        as_of: Option<AsOf>,
    ) -> Result<Balances, ClientError> {
        let m = pb::GetBalancesRequest::from(BalancesQuery {
            account,
            as_of,
            stale: self.is_stale(),
        });
        Balances::from_wire(rpc!(self, m, Repeat::Safe, get_balances)?)
    }

    /// Changes of one balance with `from <= timestamp < to` (`to`: `None` = no end), at
    /// most `limit` (0: the server's default).
    pub async fn balance_history(
        &self,
        account: d::AccountId,
        asset: d::AssetId,
        from: d::Timestamp,
        to: Option<d::Timestamp>,
        limit: u32,
    ) -> Result<BalanceHistory, ClientError> {
        let m = pb::GetBalanceHistoryRequest {
            account_id: account.0,
            asset_id: asset.0,
            from_ns: from.0,
            to_ns: to.map(|t| t.0),
            limit,
        };
        Ok(BalanceHistory::from_wire(rpc!(
            self,
            m,
            Repeat::Safe,
            get_balance_history
        )?))
    }

    /// An open order ([`ClientError::NotFound`] once it is filled or cancelled: its
    /// history is in its event stream).
    pub async fn order(
        &self,
        market: d::MarketId,
        order: d::OrderId,
    ) -> Result<Order, ClientError> {
        self.order_at(market, order, None).await
    }

    /// An order as it rested at a past point of its market's shard
    /// ([`ClientError::NotFound`] if it was not resting then).
    pub async fn order_as_of(
        &self,
        market: d::MarketId,
        order: d::OrderId,
        at: AsOf,
    ) -> Result<Order, ClientError> {
        self.order_at(market, order, Some(at)).await
    }

    async fn order_at(
        &self,
        market: d::MarketId,
        order: d::OrderId,
        as_of: Option<AsOf>,
    ) -> Result<Order, ClientError> {
        let m = pb::GetOrderRequest::from(OrderQuery {
            market,
            order,
            as_of,
            stale: self.is_stale(),
        });
        Order::from_wire(rpc!(self, m, Repeat::Safe, get_order)?)
    }

    /// A market's aggregated depth, `depth` levels per side (0: the server's default).
    pub async fn book(&self, market: d::MarketId, depth: u32) -> Result<Book, ClientError> {
        self.book_at(market, depth, None).await
    }

    /// A market's aggregated depth as of a past point of its shard's history.
    pub async fn book_as_of(
        &self,
        market: d::MarketId,
        depth: u32,
        at: AsOf,
    ) -> Result<Book, ClientError> {
        self.book_at(market, depth, Some(at)).await
    }

    async fn book_at(
        &self,
        market: d::MarketId,
        depth: u32,
        as_of: Option<AsOf>,
    ) -> Result<Book, ClientError> {
        let m = pb::GetBookRequest::from(BookQuery {
            market,
            depth,
            as_of,
            stale: self.is_stale(),
        });
        Book::from_wire(rpc!(self, m, Repeat::Safe, get_book)?)
    }

    /// Every asset and market.
    pub async fn catalog(&self) -> Result<Catalog, ClientError> {
        let m = pb::GetCatalogRequest::from(CatalogQuery {
            stale: self.is_stale(),
        });
        Catalog::from_wire(rpc!(self, m, Repeat::Safe, get_catalog)?)
    }

    /// The orders of an account that rest on their books, by order id
    /// ([`ClientError::NotFound`] if the account does not exist).
    ///
    /// On a cluster whose nodes hold only some shards, the node holding the account's
    /// shard answers for the books it holds and names the orders it did not find; those
    /// are then looked up on the other market shards, each part on a node holding it
    /// (as few nodes as cover them), and the answers merged. Without routing
    /// ([`ClientConfig::route_to_leaders`] off) a node lacking a market shard answers
    /// [`ClientError::WrongNode`].
    pub async fn open_orders(&self, account: d::AccountId) -> Result<OpenOrders, ClientError> {
        let routed = self.shared.route_to_leaders;
        let m = pb::GetOpenOrdersRequest::from(OpenOrdersQuery {
            partial: routed,
            ..OpenOrdersQuery::of(account, self.is_stale())
        });
        let first = rpc!(self, m, Repeat::Safe, get_open_orders)?;
        let mut unread: BTreeSet<d::ShardId> =
            first.unread_shards.iter().map(|s| d::ShardId(*s)).collect();
        let mut sought: BTreeSet<u64> = first.unresolved_order_ids.iter().copied().collect();
        let mut out = OpenOrders::from_wire(first)?;
        let mut attempt = 1;
        while !unread.is_empty() && !sought.is_empty() {
            let parts = self
                .routes()
                .cover_of(&unread, Instant::now(), &BTreeSet::new());
            let reads = parts.into_iter().map(|(pick, shards)| {
                let m = pb::GetOpenOrdersRequest {
                    account_id: account.0,
                    stale: self.is_stale(),
                    partial: true,
                    order_ids: sought.iter().copied().collect(),
                    shards: shards.iter().map(|s| s.0).collect(),
                };
                async move {
                    let mut g = pick.grpc.clone();
                    let r = self.once(&pick, g.get_open_orders(self.request(m))).await;
                    (shards, r)
                }
            });
            let mut error = None;
            for (shards, r) in futures_util::future::join_all(reads).await {
                let r = match r {
                    Ok(r) => r,
                    Err(e) => {
                        error = Some(e);
                        continue;
                    }
                };
                let lacked: BTreeSet<d::ShardId> =
                    r.unread_shards.iter().map(|s| d::ShardId(*s)).collect();
                let part = OpenOrders::from_wire(r)?;
                for o in &part.orders {
                    sought.remove(&o.order.0);
                }
                out.orders.extend(part.orders);
                out.positions.extend(part.positions);
                for s in shards {
                    if lacked.contains(&s) {
                        // The node no longer holds it: the routes are stale.
                        self.routes().expire();
                        error.get_or_insert(ClientError::WrongNode {
                            shard: s,
                            map_version: 0,
                            message: format!("shard {s} is no longer held where the routes said"),
                        });
                    } else {
                        unread.remove(&s);
                    }
                }
            }
            if let Some(e) = error {
                self.retry_parts(&mut attempt, e).await?;
            }
        }
        out.orders.sort_by_key(|o| o.order);
        out.orders.dedup_by_key(|o| o.order);
        Ok(out)
    }

    /// One page of a market's trades with `from <= timestamp < to` (`to`: `None` = no
    /// end), after the event `after_seq` of the market's shard when given (the previous
    /// page's `position.seq`), at most `limit` (0: the server's default).
    pub async fn trades(
        &self,
        market: d::MarketId,
        from: d::Timestamp,
        to: Option<d::Timestamp>,
        after_seq: Option<u64>,
        limit: u32,
    ) -> Result<TradesPage, ClientError> {
        let m = pb::GetTradesRequest {
            market_id: market.0,
            after_seq,
            from_ns: from.0,
            to_ns: to.map(|t| t.0),
            limit,
            stale: self.is_stale(),
        };
        TradesPage::from_wire(rpc!(self, m, Repeat::Safe, get_trades)?)
    }

    /// Every trade of a market with `from <= timestamp < to` after `after_seq`, page by
    /// page until the server says it read to the end; `max` bounds how many are kept
    /// (the page that crosses it is cut). The position is where the last page stopped.
    pub async fn trades_to_end(
        &self,
        market: d::MarketId,
        from: d::Timestamp,
        to: Option<d::Timestamp>,
        mut after_seq: Option<u64>,
        max: Option<usize>,
    ) -> Result<TradesPage, ClientError> {
        let mut out = Vec::new();
        loop {
            let left = max.map(|m| m.saturating_sub(out.len()));
            let limit = left.map_or(0, |l| {
                u32::try_from(l).map_or(tradelog_api::TRADES_LIMIT_MAX, |l| {
                    l.min(tradelog_api::TRADES_LIMIT_MAX)
                })
            });
            let page = self.trades(market, from, to, after_seq, limit).await?;
            out.extend(page.trades);
            let full = max.is_some_and(|m| out.len() >= m);
            if page.at_end || full || after_seq == Some(page.position.seq) {
                return Ok(TradesPage {
                    trades: out,
                    position: page.position,
                    at_end: page.at_end,
                });
            }
            after_seq = Some(page.position.seq);
        }
    }

    /// OHLCV candles of a market's trades in `[from, to)`, `interval_s` seconds each
    /// (1 to 86400; at most 10000 candles per call); intervals without trades are omitted.
    pub async fn candles(
        &self,
        market: d::MarketId,
        interval_s: u32,
        from: d::Timestamp,
        to: d::Timestamp,
    ) -> Result<Candles, ClientError> {
        let m = pb::GetCandlesRequest {
            market_id: market.0,
            interval_s,
            from_ns: from.0,
            to_ns: to.0,
            stale: self.is_stale(),
        };
        Candles::from_wire(rpc!(self, m, Repeat::Safe, get_candles)?)
    }

    /// One page of an account's statement in one asset over `from <= timestamp < to`
    /// (`to`: `None` = up to now): opening balance, at most `limit` changes (0: the
    /// server's default) after `after_seq` when given, closing balance.
    pub async fn statement(
        &self,
        account: d::AccountId,
        asset: d::AssetId,
        from: d::Timestamp,
        to: Option<d::Timestamp>,
        after_seq: Option<u64>,
        limit: u32,
    ) -> Result<Statement, ClientError> {
        let m = pb::GetStatementRequest {
            account_id: account.0,
            asset_id: asset.0,
            from_ns: from.0,
            to_ns: to.map(|t| t.0),
            limit,
            after_seq,
            stale: self.is_stale(),
        };
        Statement::from_wire(asset, rpc!(self, m, Repeat::Safe, get_statement)?)
    }

    /// A whole statement: pages of [`statement`](Self::statement) joined (the opening of
    /// the first, the closing of the last), at most `max` entries when given (then
    /// `truncated` says whether more are left).
    pub async fn statement_to_end(
        &self,
        account: d::AccountId,
        asset: d::AssetId,
        from: d::Timestamp,
        to: Option<d::Timestamp>,
        max: Option<usize>,
    ) -> Result<Statement, ClientError> {
        let mut after = None;
        let mut whole: Option<Statement> = None;
        loop {
            let have = whole.as_ref().map_or(0, |w| w.entries.len());
            let limit = max.map_or(0, |m| {
                u32::try_from(m.saturating_sub(have))
                    .map_or(tradelog_api::STATEMENT_LIMIT_MAX, |l| {
                        l.min(tradelog_api::STATEMENT_LIMIT_MAX)
                    })
            });
            let page = self
                .statement(account, asset, from, to, after, limit)
                .await?;
            after = page.entries.last().map(|e| e.seq).or(after);
            let w = match whole.take() {
                None => page,
                Some(mut w) => {
                    w.entries.extend(page.entries);
                    w.closing = page.closing;
                    w.truncated = page.truncated;
                    w.position = page.position;
                    w
                }
            };
            let full = max.is_some_and(|m| w.entries.len() >= m);
            if !w.truncated || full {
                return Ok(w);
            }
            whole = Some(w);
        }
    }

    /// The answering node's view of the replicated cluster (FAILED_PRECONDITION from a
    /// single node).
    pub async fn cluster_status(&self) -> Result<ClusterStatus, ClientError> {
        Ok(ClusterStatus::from_wire(rpc!(
            self,
            pb::GetClusterStatusRequest {
                routing_only: false
            },
            Repeat::Safe,
            get_cluster_status
        )?))
    }

    /// Shard `shard`'s audit figures at log index `index` (the answering node's applied
    /// index when `None`), computed by the node this client talks to on its own replica
    /// (no leader needed). Sent once per attempt to the current node.
    pub async fn shard_figures(
        &self,
        shard: d::ShardId,
        index: Option<u64>,
    ) -> Result<d::audit::ShardFigures, ClientError> {
        let m = pb::RunShardTaskRequest {
            shard: shard.0,
            task: Some(pb::run_shard_task_request::Task::Figures(pb::FiguresTask {
                log_index: index,
            })),
        };
        match rpc!(self, m, Repeat::Safe, run_shard_task)?.result {
            Some(pb::run_shard_task_response::Result::Figures(f)) => {
                d::audit::ShardFigures::try_from(f)
                    .map_err(|e| ClientError::InvalidResponse(e.to_string()))
            }
            _ => Err(ClientError::InvalidResponse(
                "a figures task answered without figures".into(),
            )),
        }
    }

    /// Shard `shard`'s statement lines over `[from, to)` on the node this client talks to
    /// (its own replica): for `accounts` (those of them on the shard), or with none a page
    /// of the shard's accounts after `after` (at most `limit`, 0: the most a task allows).
    pub async fn shard_statements(
        &self,
        shard: d::ShardId,
        from: d::Timestamp,
        to: d::Timestamp,
        accounts: &[d::AccountId],
        after: d::AccountId,
        limit: u32,
    ) -> Result<d::jobs::ShardStatements, ClientError> {
        self.statements_task(
            shard,
            pb::StatementsTask {
                from_ns: from.0,
                to_ns: to.0,
                account_ids: accounts.iter().map(|a| a.0).collect(),
                after_account: after.0,
                limit,
                to_log_index: None,
            },
        )
        .await
    }

    /// Statement lines of `accounts` on shard `shard` from `from` up to log index
    /// `to_index` of the shard (the state after it, the events up to its last): the part of
    /// a moved account's statement on the shard it left in a split, up to the index
    /// before the split (an audit task, as [`shard_statements`](Self::shard_statements)).
    pub async fn shard_statements_to_index(
        &self,
        shard: d::ShardId,
        from: d::Timestamp,
        to_index: u64,
        accounts: &[d::AccountId],
    ) -> Result<d::jobs::ShardStatements, ClientError> {
        self.statements_task(
            shard,
            pb::StatementsTask {
                from_ns: from.0,
                to_ns: u64::MAX,
                account_ids: accounts.iter().map(|a| a.0).collect(),
                after_account: 0,
                limit: 0,
                to_log_index: Some(to_index),
            },
        )
        .await
    }

    async fn statements_task(
        &self,
        shard: d::ShardId,
        task: pb::StatementsTask,
    ) -> Result<d::jobs::ShardStatements, ClientError> {
        let m = pb::RunShardTaskRequest {
            shard: shard.0,
            task: Some(pb::run_shard_task_request::Task::Statements(task)),
        };
        match rpc!(self, m, Repeat::Safe, run_shard_task)?.result {
            Some(pb::run_shard_task_response::Result::Statements(s)) => {
                d::jobs::ShardStatements::try_from(s)
                    .map_err(|e| ClientError::InvalidResponse(e.to_string()))
            }
            _ => Err(ClientError::InvalidResponse(
                "a statements task answered without statements".into(),
            )),
        }
    }

    /// VWAP and OHLCV of shard `shard`'s markets (`markets` of them, or all) over
    /// `[from, to)`, candles of `interval_s` seconds (0: none), on the node this client
    /// talks to (its own replica).
    pub async fn shard_activity(
        &self,
        shard: d::ShardId,
        from: d::Timestamp,
        to: d::Timestamp,
        interval_s: u32,
        markets: &[d::MarketId],
    ) -> Result<d::jobs::ShardActivity, ClientError> {
        let m = pb::RunShardTaskRequest {
            shard: shard.0,
            task: Some(pb::run_shard_task_request::Task::Activity(
                pb::ActivityTask {
                    from_ns: from.0,
                    to_ns: to.0,
                    interval_s,
                    market_ids: markets.iter().map(|m| m.0).collect(),
                },
            )),
        };
        match rpc!(self, m, Repeat::Safe, run_shard_task)?.result {
            Some(pb::run_shard_task_response::Result::Activity(a)) => {
                d::jobs::ShardActivity::try_from(a)
                    .map_err(|e| ClientError::InvalidResponse(e.to_string()))
            }
            _ => Err(ClientError::InvalidResponse(
                "an activity task answered without activity".into(),
            )),
        }
    }

    /// Replay verification of shard `shard` on the node this client talks to: its live
    /// state's hash and the hash of the state regenerated from its log, at its applied
    /// index.
    pub async fn verify_shard(&self, shard: d::ShardId) -> Result<ShardVerification, ClientError> {
        let m = pb::RunShardTaskRequest {
            shard: shard.0,
            task: Some(pb::run_shard_task_request::Task::Verify(pb::VerifyTask {})),
        };
        match rpc!(self, m, Repeat::Safe, run_shard_task)?.result {
            Some(pb::run_shard_task_response::Result::Verify(v)) => ShardVerification::from_wire(v),
            _ => Err(ClientError::InvalidResponse(
                "a verify task answered without a verification".into(),
            )),
        }
    }

    /// How busy the node this client talks to is.
    pub async fn node_load(&self) -> Result<NodeLoad, ClientError> {
        Ok(NodeLoad::from_wire(rpc!(
            self,
            pb::GetNodeLoadRequest {},
            Repeat::Safe,
            get_node_load
        )?))
    }

    /// Applies one change to the replicated cluster (operators) and returns the answering
    /// node's view afterwards. Adding a node waits until it caught up: give the client a
    /// long request timeout. Repeating a change is harmless, so it is retried as `Safe`.
    pub async fn change_cluster(
        &self,
        change: &ClusterChange,
    ) -> Result<ClusterStatus, ClientError> {
        Ok(ClusterStatus::from_wire(rpc!(
            self,
            change.to_wire(),
            Repeat::Safe,
            change_cluster
        )?))
    }

    /// At most `limit` events of `stream` after `after` (0: the server's default). An
    /// empty page whose position equals `after` means the stream is read to its end.
    ///
    /// In a cluster whose nodes hold only some shards, the client reads each shard from a
    /// node holding it (one request per node, at the same time) and merges the pages.
    pub async fn read_events(
        &self,
        stream: EventStream,
        after: &Position,
        limit: u32,
    ) -> Result<EventPage, ClientError> {
        let mut attempt = 1;
        let mut lacking = BTreeSet::new();
        loop {
            let Some(parts) = self.history_parts(&lacking).await? else {
                let m = pb::ReadEventsRequest {
                    stream: Some(stream.into()),
                    after: Some(after.clone().into()),
                    limit,
                    shards: Vec::new(),
                };
                let node = self.routes().pick(None, Instant::now()).index;
                match rpc!(self, m, Repeat::Safe, read_events) {
                    Ok(r) => return EventPage::from_wire(r.events, r.position),
                    Err(e) => {
                        self.lacks_history(&mut lacking, node, e)?;
                        continue;
                    }
                }
            };
            let reads = parts.into_iter().map(|(pick, shards)| {
                let m = pb::ReadEventsRequest {
                    stream: Some(stream.into()),
                    after: Some(after.clone().into()),
                    limit,
                    shards: shards.iter().map(|s| s.0).collect(),
                };
                async move {
                    let mut g = pick.grpc.clone();
                    let read = async {
                        let r = self.once(&pick, g.read_events(self.request(m))).await?;
                        Ok::<_, ClientError>((shards, EventPage::from_wire(r.events, r.position)?))
                    };
                    read.await.map_err(|e| (pick.index, e))
                }
            });
            let error = match futures_util::future::join_all(reads)
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(pages) => {
                    let limit = if limit == 0 {
                        tradelog_api::READ_EVENTS_LIMIT_DEFAULT
                    } else {
                        limit
                    };
                    return Ok(merge::merge_pages(after, pages, limit as usize));
                }
                Err((node, e @ ClientError::OutOfRange(_))) => {
                    self.lacks_history(&mut lacking, node, e)?;
                    continue;
                }
                Err((_, e)) => e,
            };
            self.retry_parts(&mut attempt, error).await?;
        }
    }

    /// How to read every shard's events, as [`event_parts`](Self::event_parts), leaving
    /// out the nodes in `lacking` (they answered `OUT_OF_RANGE`) wherever another node
    /// holds the shard. A shard only such nodes hold: their error.
    async fn history_parts(
        &self,
        lacking: &BTreeSet<usize>,
    ) -> Result<Option<Vec<(route::Pick, BTreeSet<d::ShardId>)>>, ClientError> {
        if lacking.is_empty() {
            return Ok(self.event_parts().await);
        }
        let parts = self.routes().cover_avoiding(Instant::now(), lacking);
        if let Some(parts) = &parts {
            if let Some((p, shards)) = parts.iter().find(|(p, _)| lacking.contains(&p.index)) {
                return Err(ClientError::OutOfRange(format!(
                    "no node holding shard(s) {shards:?} has the events asked for ({} lacks \
                     them: a replica that received its shard as a snapshot has no events \
                     before it)",
                    p.url
                )));
            }
        }
        Ok(parts)
    }

    /// A read or subscription on node `node` failed with `error`: when it is
    /// `OUT_OF_RANGE` on a cluster, the node may lack events another holder has (it
    /// received the shard as a snapshot), so it is left out next time (`Ok`); otherwise,
    /// or if it was already left out, the error.
    fn lacks_history(
        &self,
        lacking: &mut BTreeSet<usize>,
        node: usize,
        error: ClientError,
    ) -> Result<(), ClientError> {
        let cluster = self.shared.route_to_leaders && self.routes().mode() == Mode::Cluster;
        match error {
            ClientError::OutOfRange(_) if cluster && lacking.insert(node) => Ok(()),
            e => Err(e),
        }
    }

    /// The events of `stream` after `after`, then live ones as they happen, with no gap
    /// and no duplicate. The subscription ends when the server stops (resume from
    /// [`Subscription::position`]).
    ///
    /// In a cluster whose nodes hold only some shards, it subscribes to each shard on a
    /// node holding it and merges the parts; when a part's node stops holding a shard
    /// (the shard moved), or lacks the events asked for (it received the shard as a
    /// snapshot), it subscribes again from its position elsewhere by itself (see
    /// [`Subscription`]); any other error of a part ends it.
    pub async fn subscribe(
        &self,
        stream: EventStream,
        after: Position,
    ) -> Result<Subscription, ClientError> {
        self.subscribe_avoiding(stream, after, BTreeSet::new())
            .await
    }

    /// [`subscribe`](Self::subscribe), leaving out the nodes in `lacking` wherever
    /// another node holds the shard (they lack events of it).
    async fn subscribe_avoiding(
        &self,
        stream: EventStream,
        after: Position,
        mut lacking: BTreeSet<usize>,
    ) -> Result<Subscription, ClientError> {
        let mut attempt = 1;
        loop {
            let Some(parts) = self.history_parts(&lacking).await? else {
                let m = pb::SubscribeEventsRequest {
                    stream: Some(stream.into()),
                    after: Some(after.clone().into()),
                    shards: Vec::new(),
                };
                let pick = self.routes().pick(None, Instant::now());
                let endpoint = pick.url;
                let inner = match rpc!(self, m, Repeat::Safe, subscribe_events) {
                    Ok(inner) => inner,
                    Err(e) => {
                        self.lacks_history(&mut lacking, pick.index, e)?;
                        continue;
                    }
                };
                return Ok(Subscription {
                    inner: Parts::One(inner),
                    position: after,
                    endpoint,
                    client: self.clone(),
                    stream,
                    resumed: 0,
                    in_row: 0,
                    lacking,
                });
            };
            let endpoint = parts
                .iter()
                .map(|(p, _)| p.url.as_str())
                .collect::<Vec<_>>()
                .join(",");
            let opens = parts.into_iter().map(|(pick, shards)| {
                let m = pb::SubscribeEventsRequest {
                    stream: Some(stream.into()),
                    after: Some(after.clone().into()),
                    shards: shards.iter().map(|s| s.0).collect(),
                };
                async move {
                    let mut g = pick.grpc.clone();
                    let inner = self
                        .once(&pick, g.subscribe_events(self.request(m)))
                        .await
                        .map_err(|e| (pick.index, e))?;
                    Ok::<_, (usize, ClientError)>(merge::Part {
                        shards,
                        inner,
                        endpoint: pick.url,
                    })
                }
            });
            let error = match futures_util::future::join_all(opens)
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(parts) => {
                    return Ok(Subscription {
                        inner: Parts::Merged(merge::Merged {
                            parts,
                            next: 0,
                            done: false,
                            failed: None,
                        }),
                        position: after,
                        endpoint,
                        client: self.clone(),
                        stream,
                        resumed: 0,
                        in_row: 0,
                        lacking,
                    })
                }
                Err((node, e @ ClientError::OutOfRange(_))) => {
                    self.lacks_history(&mut lacking, node, e)?;
                    continue;
                }
                Err((_, e)) => e,
            };
            self.retry_parts(&mut attempt, error).await?;
        }
    }

    /// After attempt `attempt` of a call spread over several nodes failed with `error`:
    /// waits as the retry policy says and refreshes the routes (`Ok`: try again), or
    /// gives the error back.
    async fn retry_parts(&self, attempt: &mut u32, error: ClientError) -> Result<(), ClientError> {
        let Some(wait) = self.shared.retry.next_delay(*attempt, &error, Repeat::Safe) else {
            return Err(error);
        };
        self.shared.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(wait).await;
        self.refresh_routes().await;
        *attempt += 1;
        Ok(())
    }

    /// How to read every shard's events: `None` when one node serves them all (see
    /// `Routes::cover`), refreshing stale routes first.
    async fn event_parts(&self) -> Option<Vec<(route::Pick, BTreeSet<d::ShardId>)>> {
        if !self.shared.route_to_leaders {
            return None;
        }
        if self.routes().stale(Instant::now()) {
            self.refresh_routes().await;
        }
        self.routes().cover(Instant::now())
    }

    /// One attempt of a call on the node `pick`, within the request timeout; a node that
    /// cannot be reached is avoided for a while, and a wrong node makes the routes stale.
    async fn once<R>(
        &self,
        pick: &route::Pick,
        call: impl Future<Output = Result<Response<R>, Status>>,
    ) -> Result<R, ClientError> {
        let error = match tokio::time::timeout(self.shared.request_timeout, call).await {
            Ok(Ok(r)) => return Ok(r.into_inner()),
            Ok(Err(status)) => ClientError::from_status(status, &pick.url),
            Err(_) => ClientError::Timeout {
                endpoint: pick.url.clone(),
                timeout_ms: self.shared.request_timeout_ms,
            },
        };
        match &error {
            ClientError::Unavailable { .. } | ClientError::Timeout { .. } => {
                self.routes().failed(pick.index, Instant::now())
            }
            ClientError::WrongNode { .. } => self.routes().expire(),
            _ => {}
        }
        Err(error)
    }
}

/// Where a subscription's pages come from.
enum Parts {
    /// One node serves every shard.
    One(tonic::Streaming<pb::SubscribeEventsResponse>),
    /// Several nodes serve a part each.
    Merged(merge::Merged),
    /// Subscribing again from the position, after a node stopped holding a shard.
    Resuming(Pin<Box<dyn Future<Output = Result<Subscription, ClientError>> + Send>>),
    /// Over: the error that ended it was delivered.
    Ended,
}

/// A live event subscription: a `Stream` of pages (each with the position after it).
/// It ends (`None`) when the server closes it, e.g. when it shuts down.
///
/// When a node serving it stops holding one of its shards (the shard moved, on a cluster
/// whose nodes hold only some shards: [`ClientError::WrongNode`]), it subscribes again
/// by itself from its position, where the shard is now, with no gap and no duplicate;
/// the retry policy bounds how many times in a row ([`Subscription::resumed`] counts
/// them). The same when a node lacks the events asked for ([`ClientError::OutOfRange`]
/// on a cluster: it received its shard as a snapshot): it goes on from another node
/// holding the shard, once per node. Other errors end it: subscribe again from
/// [`Subscription::position`].
pub struct Subscription {
    inner: Parts,
    position: Position,
    /// The node(s) serving it, comma-separated.
    endpoint: String,
    /// What it subscribed with, to subscribe again.
    client: Client,
    stream: EventStream,
    /// Times it subscribed again, in all and since the last page.
    resumed: u64,
    in_row: u32,
    /// Nodes (indexes in the routes) that answered `OUT_OF_RANGE`: left out when it
    /// subscribes again.
    lacking: BTreeSet<usize>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("endpoint", &self.endpoint)
            .field("position", &self.position)
            .field("resumed", &self.resumed)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The position after the last page delivered: subscribe again from it to resume with
    /// no gap and no duplicate.
    pub fn position(&self) -> &Position {
        &self.position
    }

    /// How many times it subscribed again by itself because a node serving it stopped
    /// holding one of its shards.
    pub fn resumed(&self) -> u64 {
        self.resumed
    }

    /// The node(s) serving it now, comma-separated.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl Stream for Subscription {
    type Item = Result<EventPage, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let next = match &mut this.inner {
                Parts::Ended => return Poll::Ready(None),
                Parts::Resuming(again) => match again.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(sub)) => {
                        this.inner = sub.inner;
                        this.endpoint = sub.endpoint;
                        this.lacking = sub.lacking;
                        continue;
                    }
                    Poll::Ready(Err(e)) => {
                        this.inner = Parts::Ended;
                        return Poll::Ready(Some(Err(e)));
                    }
                },
                Parts::Merged(m) => m.poll_page(cx, &mut this.position),
                Parts::One(inner) => match Pin::new(inner).poll_next(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Ready(Some(Err(s))) => {
                        Poll::Ready(Some(Err(ClientError::from_status(s, &this.endpoint))))
                    }
                    Poll::Ready(Some(Ok(r))) => {
                        let page = EventPage::from_wire(r.events, r.position);
                        if let Ok(p) = &page {
                            this.position = p.position.clone();
                        }
                        Poll::Ready(Some(page))
                    }
                },
            };
            // A node without the events asked for (it received the shard as a snapshot):
            // subscribe again from the position, leaving it out, once per node.
            if let Poll::Ready(Some(Err(ClientError::OutOfRange(_)))) = &next {
                let failed = match &this.inner {
                    Parts::Merged(m) => m.failed.clone(),
                    _ => Some(this.endpoint.clone()),
                };
                let cluster = this.client.shared.route_to_leaders
                    && this.client.routes().mode() == Mode::Cluster;
                let node = failed.and_then(|u| this.client.routes().index_of(&u));
                if let Some(node) = node.filter(|n| cluster && !this.lacking.contains(n)) {
                    this.lacking.insert(node);
                    this.resumed += 1;
                    let (c, stream, at) = (this.client.clone(), this.stream, this.position.clone());
                    let lacking = this.lacking.clone();
                    this.inner = Parts::Resuming(Box::pin(async move {
                        c.subscribe_avoiding(stream, at, lacking).await
                    }));
                    continue;
                }
            }
            match next {
                Poll::Ready(Some(Err(e @ ClientError::WrongNode { .. }))) => {
                    let retry = &this.client.shared.retry;
                    let Some(wait) = retry.next_delay(this.in_row + 1, &e, Repeat::Safe) else {
                        this.inner = Parts::Ended;
                        return Poll::Ready(Some(Err(e)));
                    };
                    this.in_row += 1;
                    this.resumed += 1;
                    let (c, stream, at) = (this.client.clone(), this.stream, this.position.clone());
                    let lacking = this.lacking.clone();
                    this.inner = Parts::Resuming(Box::pin(async move {
                        tokio::time::sleep(wait).await;
                        // The routes that led here are stale.
                        c.routes().expire();
                        c.subscribe_avoiding(stream, at, lacking).await
                    }));
                }
                Poll::Ready(Some(Ok(page))) => {
                    this.in_row = 0;
                    return Poll::Ready(Some(Ok(page)));
                }
                other => return other,
            }
        }
    }
}
