//! The gRPC interface: the generated `tradelog.v1.Tradelog` service over [`Core`].

use crate::core::ClusterChange;
use crate::core::{Answer, Core, Error, Identity, AUTHORITY_HEADER, PRINCIPAL_HEADER};
use crate::events::{self, Page, Select};
use crate::{telemetry, GRPC_MESSAGE_BYTES_MAX};
use std::pin::Pin;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tradelog_api::proto as pb;
use tradelog_api::proto::tradelog_server::{Tradelog, TradelogServer};
use tradelog_api::query::{BalanceHistoryQuery, BalancesQuery, BookQuery, OrderQuery};
use tradelog_api::query::{CandlesQuery, OpenOrdersQuery, StatementQuery, TradesQuery};
use tradelog_api::query::{ReadEventsQuery, SubscribeQuery};
use tradelog_api::ApiError;
use tradelog_domain as d;
use tradelog_raft::pb::raft_transport_server::RaftTransportServer;
use tradelog_raft::RaftRouter;

const INTERFACE: &str = "grpc";
/// Batches a gRPC subscription buffers before it waits for the client.
const SUBSCRIPTION_BUFFER: usize = 16;

/// Serves gRPC on `listener` until `stop` fires, then finishes in-flight calls.
pub(crate) async fn serve(
    core: Arc<Core>,
    listener: TcpListener,
    stop: watch::Receiver<bool>,
    raft: Option<RaftTransportServer<RaftRouter>>,
) {
    let service =
        TradelogServer::new(Grpc { core }).max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX);
    let mut stop = stop;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let r = tonic::transport::Server::builder()
        .add_service(service)
        .add_optional_service(raft)
        // TCP_NODELAY: an answer is written in pieces (headers, message, trailers); with
        // Nagle's algorithm the later pieces wait for the client's delayed ACK (40 ms).
        .serve_with_incoming_shutdown(incoming, async move { events::stopped(&mut stop).await })
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, "gRPC server failed");
    }
}

struct Grpc {
    core: Arc<Core>,
}

fn identity<T>(r: &Request<T>) -> Result<Identity, Status> {
    let get = |k: &str| -> Result<Option<&str>, Status> {
        r.metadata()
            .get(k)
            .map(|v| {
                v.to_str()
                    .map_err(|_| Status::invalid_argument(format!("invalid `{k}`: not ASCII")))
            })
            .transpose()
    };
    Identity::parse(get(PRINCIPAL_HEADER)?, get(AUTHORITY_HEADER)?)
        .map_err(Status::invalid_argument)
}

fn status_pb(v: tradelog_cluster::ClusterStatus) -> pb::GetClusterStatusResponse {
    let m = v.metadata;
    pb::GetClusterStatusResponse {
        node: v.node,
        metadata: Some(pb::MetadataStatus {
            version: m.version,
            replication_factor: m.replication_factor,
            role: m.role,
            leader: m.leader,
            voters: m.voters,
            learners: m.learners,
            nodes: m
                .nodes
                .into_iter()
                .map(|n| pb::MapNode {
                    node: n.node,
                    url: n.url,
                    draining: n.draining,
                })
                .collect(),
            splits: m
                .splits
                .into_iter()
                .map(|s| pb::MapSplit {
                    parent: s.parent.0,
                    child: s.child.0,
                    modulus: s.modulus,
                    residue: s.residue,
                    markets: s.markets.into_iter().map(|m| m.0).collect(),
                })
                .collect(),
        }),
        nodes: v
            .nodes
            .into_iter()
            .map(|n| pb::NodeAddress {
                node: n.node,
                url: n.url,
            })
            .collect(),
        shards: v
            .shards
            .into_iter()
            .map(|s| pb::ShardReplicaStatus {
                shard: s.shard.0,
                role: s.role,
                leader: s.leader,
                term: s.term,
                last_log_index: s.last_log_index,
                committed: s.committed,
                applied: s.applied,
                state_hash: s.state_hash,
                snapshot: s.snapshot,
                voters: s.voters,
                learners: s.learners,
                replication: s
                    .replication
                    .into_iter()
                    .map(|r| pb::ReplicaProgress {
                        node: r.node,
                        matched: r.matched,
                        lag: r.lag,
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn response(a: Answer) -> pb::CommandResponse {
    pb::CommandResponse {
        outcome: Some(a.outcome.into()),
        shard: a.shard.0,
        input: a.input,
    }
}

fn position(s: crate::core::ShardPos) -> Option<pb::ShardPosition> {
    Some(pb::ShardPosition {
        shard: s.shard.0,
        seq: s.seq,
    })
}

fn order(v: &crate::core::OrderView) -> pb::Order {
    pb::Order {
        order_id: v.order.0,
        market_id: v.market.0,
        account_id: v.account.0,
        owner: v.owner.0,
        side: pb::Side::from(v.side).into(),
        price: v.price.0,
        remaining_qty: v.remaining.0,
        held: v.held.0,
        stp: pb::SelfTradePrevention::from(v.stp).into(),
        post_only: v.post_only,
    }
}

fn balance(asset: d::AssetId, b: crate::queries::StatementBalance) -> Option<pb::Balance> {
    Some(pb::Balance {
        asset_id: asset.0,
        available: b.available.0,
        held: b.held.0,
    })
}

fn page(p: Page) -> (Vec<pb::EventRecord>, Option<pb::Position>) {
    (
        p.events.into_iter().map(Into::into).collect(),
        Some(p.position.into()),
    )
}

impl Grpc {
    async fn command<T>(&self, r: Request<T>) -> Result<Response<pb::CommandResponse>, Status>
    where
        d::Command: TryFrom<T, Error = ApiError>,
    {
        let who = identity(&r)?;
        let command = d::Command::try_from(r.into_inner()).map_err(|e| {
            telemetry::command_invalid(INTERFACE, 1);
            Status::from(e)
        })?;
        let a = self.core.submit(who, command, INTERFACE).await?;
        Ok(Response::new(response(a)))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Tradelog for Grpc {
    async fn create_asset(
        &self,
        r: Request<pb::CreateAssetRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.command(r).await
    }

    async fn create_market(
        &self,
        r: Request<pb::CreateMarketRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.command(r).await
    }

    async fn open_account(
        &self,
        r: Request<pb::OpenAccountRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.command(r).await
    }

    async fn deposit(
        &self,
        r: Request<pb::DepositRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.command(r).await
    }

    async fn withdraw(
        &self,
        r: Request<pb::WithdrawRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.command(r).await
    }

    async fn transfer(
        &self,
        r: Request<pb::TransferRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.command(r).await
    }

    async fn linked_transfers(
        &self,
        r: Request<pb::LinkedTransfersRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.command(r).await
    }

    async fn create_pending(
        &self,
        r: Request<pb::CreatePendingRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.command(r).await
    }

    async fn post_pending(
        &self,
        r: Request<pb::PostPendingRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.command(r).await
    }

    async fn void_pending(
        &self,
        r: Request<pb::VoidPendingRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.command(r).await
    }

    async fn freeze_account(
        &self,
        r: Request<pb::FreezeAccountRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.command(r).await
    }

    async fn unfreeze_account(
        &self,
        r: Request<pb::UnfreezeAccountRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.command(r).await
    }

    async fn close_account(
        &self,
        r: Request<pb::CloseAccountRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.command(r).await
    }

    async fn place_order(
        &self,
        r: Request<pb::PlaceOrderRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.command(r).await
    }

    async fn cancel_order(
        &self,
        r: Request<pb::CancelOrderRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.command(r).await
    }

    async fn amend_order(
        &self,
        r: Request<pb::AmendOrderRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.command(r).await
    }

    async fn halt_market(
        &self,
        r: Request<pb::HaltMarketRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.command(r).await
    }

    async fn resume_market(
        &self,
        r: Request<pb::ResumeMarketRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.command(r).await
    }

    /// Every command is submitted before any answer is awaited. A command that got no
    /// answer (overloaded, unavailable) fails the call, naming its index: the others
    /// may have been applied, and a retry with the same idempotency keys is safe.
    async fn submit_batch(
        &self,
        r: Request<pb::CommandBatch>,
    ) -> Result<Response<pb::CommandBatchResponse>, Status> {
        let who = identity(&r)?;
        let commands = Vec::<d::Command>::try_from(r.into_inner()).map_err(|e| {
            telemetry::command_invalid(INTERFACE, 1);
            Status::from(e)
        })?;
        let n = commands.len();
        let answers = self.core.submit_batch(who, commands, INTERFACE).await;
        let mut responses = Vec::with_capacity(n);
        for (i, a) in answers.into_iter().enumerate() {
            match a {
                Ok(a) => responses.push(response(a)),
                Err(e) => {
                    let s = Status::from(e);
                    return Err(Status::new(
                        s.code(),
                        format!(
                            "commands[{i}] of {n}: {}; other commands of the batch may have \
                             been applied: retry with the same idempotency keys",
                            s.message()
                        ),
                    ));
                }
            }
        }
        Ok(Response::new(pb::CommandBatchResponse { responses }))
    }

    async fn get_balances(
        &self,
        r: Request<pb::GetBalancesRequest>,
    ) -> Result<Response<pb::GetBalancesResponse>, Status> {
        let q = BalancesQuery::try_from(r.into_inner())?;
        let v = self.core.balances(q).await?;
        let status = match v.status {
            tradelog_ledger::AccountStatus::Active => pb::AccountStatus::Active,
            tradelog_ledger::AccountStatus::Frozen => pb::AccountStatus::Frozen,
            tradelog_ledger::AccountStatus::Closed => pb::AccountStatus::Closed,
        };
        Ok(Response::new(pb::GetBalancesResponse {
            account_id: v.account.0,
            owner: v.owner.0,
            status: status.into(),
            balances: v
                .balances
                .iter()
                .map(|b| pb::Balance {
                    asset_id: b.asset.0,
                    available: b.available.0,
                    held: b.held.0,
                })
                .collect(),
            open_orders: v.open_orders,
            position: position(v.position),
            log_index: v.log_index,
        }))
    }

    async fn get_balance_history(
        &self,
        r: Request<pb::GetBalanceHistoryRequest>,
    ) -> Result<Response<pb::GetBalanceHistoryResponse>, Status> {
        let q = BalanceHistoryQuery::try_from(r.into_inner())?;
        let (points, truncated) = self.core.balance_history(&q)?;
        Ok(Response::new(pb::GetBalanceHistoryResponse {
            points: points
                .into_iter()
                .map(|p| pb::BalancePoint {
                    timestamp_ns: p.timestamp.0,
                    seq: p.seq,
                    available: p.available.0,
                    held: p.held.0,
                })
                .collect(),
            truncated,
        }))
    }

    async fn get_order(
        &self,
        r: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::GetOrderResponse>, Status> {
        let q = OrderQuery::try_from(r.into_inner())?;
        let v = self.core.order(q).await?;
        Ok(Response::new(pb::GetOrderResponse {
            order: Some(order(&v)),
            position: position(v.position),
            log_index: v.log_index,
        }))
    }

    async fn get_book(
        &self,
        r: Request<pb::GetBookRequest>,
    ) -> Result<Response<pb::GetBookResponse>, Status> {
        let q = BookQuery::try_from(r.into_inner())?;
        let v = self.core.book(q).await?;
        let levels = |l: &[crate::core::LevelView]| -> Vec<pb::PriceLevel> {
            l.iter()
                .map(|l| pb::PriceLevel {
                    price: l.price.0,
                    qty: l.qty.0,
                    order_count: l.orders,
                })
                .collect()
        };
        Ok(Response::new(pb::GetBookResponse {
            market_id: v.market.0,
            bids: levels(&v.bids),
            asks: levels(&v.asks),
            halted: v.halted,
            last_price: v.last_price.map(|p| p.0),
            position: position(v.position),
            log_index: v.log_index,
        }))
    }

    async fn get_catalog(
        &self,
        r: Request<pb::GetCatalogRequest>,
    ) -> Result<Response<pb::GetCatalogResponse>, Status> {
        let v = self.core.catalog(r.into_inner().into()).await?;
        Ok(Response::new(pb::GetCatalogResponse {
            assets: v.assets.into_iter().map(Into::into).collect(),
            markets: v.markets.into_iter().map(Into::into).collect(),
        }))
    }

    async fn get_cluster_status(
        &self,
        r: Request<pb::GetClusterStatusRequest>,
    ) -> Result<Response<pb::GetClusterStatusResponse>, Status> {
        let routing_only = r.into_inner().routing_only;
        let v = self.core.cluster_status(!routing_only).await?;
        Ok(Response::new(status_pb(v)))
    }

    async fn run_shard_task(
        &self,
        r: Request<pb::RunShardTaskRequest>,
    ) -> Result<Response<pb::RunShardTaskResponse>, Status> {
        Ok(Response::new(
            self.core.run_shard_task(r.into_inner()).await?,
        ))
    }

    async fn get_node_load(
        &self,
        _r: Request<pb::GetNodeLoadRequest>,
    ) -> Result<Response<pb::GetNodeLoadResponse>, Status> {
        Ok(Response::new(self.core.node_load()))
    }

    async fn change_cluster(
        &self,
        r: Request<pb::ChangeClusterRequest>,
    ) -> Result<Response<pb::GetClusterStatusResponse>, Status> {
        use pb::change_cluster_request::Change;
        let who = identity(&r)?;
        let change = match r.into_inner().change {
            Some(Change::AddNode(a)) => ClusterChange::AddNode {
                node: a.node,
                url: a.url,
            },
            Some(Change::RemoveNode(a)) => ClusterChange::RemoveNode { node: a.node },
            Some(Change::TransferLeader(a)) => ClusterChange::TransferLeader {
                shard: a.shard,
                to: a.to,
            },
            Some(Change::BalanceLeaders(_)) => ClusterChange::BalanceLeaders,
            Some(Change::MoveShard(a)) => ClusterChange::MoveShard {
                shard: a.shard,
                nodes: a.nodes,
            },
            Some(Change::SetReplicationFactor(a)) => ClusterChange::SetReplicationFactor {
                replication_factor: u64::from(a.replication_factor),
            },
            Some(Change::SplitShard(a)) => ClusterChange::SplitShard {
                shard: a.shard,
                modulus: a.modulus,
                residue: a.residue,
                markets: a.markets,
            },
            None => return Err(Status::invalid_argument("missing field `change`")),
        };
        let v = self.core.change_cluster(&who, change).await?;
        Ok(Response::new(status_pb(v)))
    }

    async fn read_events(
        &self,
        r: Request<pb::ReadEventsRequest>,
    ) -> Result<Response<pb::ReadEventsResponse>, Status> {
        let q = ReadEventsQuery::try_from(r.into_inner())?;
        let p = self
            .core
            .read_events(
                &Select {
                    stream: q.stream,
                    shards: q.shards,
                },
                &q.after,
                q.limit as usize,
            )
            .await?;
        let (events, position) = page(p);
        Ok(Response::new(pb::ReadEventsResponse { events, position }))
    }

    type SubscribeEventsStream = EventStream;

    async fn subscribe_events(
        &self,
        r: Request<pb::SubscribeEventsRequest>,
    ) -> Result<Response<Self::SubscribeEventsStream>, Status> {
        let q = SubscribeQuery::try_from(r.into_inner())?;
        // Refuse a position that cannot be served now, as a status rather than a stream
        // that fails at once.
        self.core.check_position(&q.after, &q.shards)?;
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
        tokio::spawn(events::subscribe(
            self.core.clone(),
            self.core.events.clone(),
            Select {
                stream: q.stream,
                shards: q.shards,
            },
            q.after,
            tx,
            self.core.stop_signal(),
        ));
        let stream = ReceiverStream::new(rx).map(|r: Result<Page, Error>| {
            r.map(|p| {
                let (events, position) = page(p);
                pb::SubscribeEventsResponse { events, position }
            })
            .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_trades(
        &self,
        r: Request<pb::GetTradesRequest>,
    ) -> Result<Response<pb::GetTradesResponse>, Status> {
        let q = TradesQuery::try_from(r.into_inner())?;
        let v = self.core.trades(q).await?;
        let trades = v
            .trades
            .into_iter()
            .map(|t| pb::TradeRecord {
                seq: t.seq,
                input: t.input,
                timestamp_ns: t.timestamp.0,
                trade: Some(pb::event::Trade {
                    market_id: t.market.0,
                    price: t.price.0,
                    qty: t.qty.0,
                    taker_side: pb::Side::from(t.taker_side).into(),
                    taker_order_id: t.taker.0,
                    maker_order_id: t.maker.0,
                    taker_account_id: t.taker_account.0,
                    maker_account_id: t.maker_account.0,
                    taker_fee: t.taker_fee.0,
                    maker_fee: t.maker_fee.0,
                }),
            })
            .collect();
        Ok(Response::new(pb::GetTradesResponse {
            trades,
            position: position(v.position),
            at_end: v.at_end,
        }))
    }

    async fn get_candles(
        &self,
        r: Request<pb::GetCandlesRequest>,
    ) -> Result<Response<pb::GetCandlesResponse>, Status> {
        let q = CandlesQuery::try_from(r.into_inner())?;
        let v = self.core.candles(q).await?;
        Ok(Response::new(pb::GetCandlesResponse {
            candles: v.candles.into_iter().map(Into::into).collect(),
            position: position(v.position),
        }))
    }

    async fn get_open_orders(
        &self,
        r: Request<pb::GetOpenOrdersRequest>,
    ) -> Result<Response<pb::GetOpenOrdersResponse>, Status> {
        let q = OpenOrdersQuery::try_from(r.into_inner())?;
        let v = self.core.open_orders(q).await?;
        Ok(Response::new(pb::GetOpenOrdersResponse {
            orders: v.orders.iter().map(order).collect(),
            positions: v
                .positions
                .iter()
                .map(|p| pb::ShardPosition {
                    shard: p.shard.0,
                    seq: p.seq,
                })
                .collect(),
            unread_shards: v.unread_shards.iter().map(|s| s.0).collect(),
            unresolved_order_ids: v.unresolved_order_ids.iter().map(|o| o.0).collect(),
        }))
    }

    async fn get_statement(
        &self,
        r: Request<pb::GetStatementRequest>,
    ) -> Result<Response<pb::GetStatementResponse>, Status> {
        let q = StatementQuery::try_from(r.into_inner())?;
        let v = self.core.statement(q).await?;
        Ok(Response::new(pb::GetStatementResponse {
            opening: balance(v.asset, v.opening),
            entries: v
                .entries
                .into_iter()
                .map(|e| pb::StatementEntry {
                    seq: e.seq,
                    input: e.input,
                    timestamp_ns: e.timestamp.0,
                    cause: e.cause.map(Into::into),
                    available: e.available.0,
                    held: e.held.0,
                    credit: e.credit.0,
                    debit: e.debit.0,
                })
                .collect(),
            closing: balance(v.asset, v.closing),
            truncated: v.truncated,
            position: position(v.position),
        }))
    }
}
