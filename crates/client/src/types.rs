//! What calls return: command answers and query views in domain types, decoded (and
//! checked) from the wire with the api crate's conversions.

use crate::error::{ClientError, Rejection};
use serde::Serialize;
use tradelog_api::proto as pb;
use tradelog_api::query::Position;
use tradelog_domain as d;

fn invalid(what: impl std::fmt::Display) -> ClientError {
    ClientError::InvalidResponse(what.to_string())
}

fn required<T>(v: Option<T>, field: &str) -> Result<T, ClientError> {
    v.ok_or_else(|| invalid(format!("`{field}` is missing")))
}

/// The engine's answer to one command, with where it was recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Answer {
    /// Accepted, or rejected (a business rule).
    pub result: Result<d::Accepted, Rejection>,
    /// True when this answers a repeat of an idempotency key already seen (a retry): the
    /// result is the original one and nothing was applied again.
    pub duplicate: bool,
    /// The shard whose log recorded the command.
    pub shard: d::ShardId,
    /// Position of the command in that shard's input log (0 for a duplicate, which
    /// records nothing).
    pub input: u64,
}

impl Answer {
    pub(crate) fn from_wire(r: pb::CommandResponse) -> Result<Answer, ClientError> {
        use pb::outcome::Result as R;
        let o = required(r.outcome, "outcome")?;
        let result = match required(o.result, "outcome.result")? {
            R::Accepted(a) => {
                Ok(d::Accepted::try_from(a).map_err(|e| invalid(e.inside("outcome.accepted")))?)
            }
            R::Rejection(r) => Err(Rejection::from_wire(r)),
        };
        Ok(Answer {
            result,
            duplicate: o.duplicate,
            shard: d::ShardId(r.shard),
            input: r.input,
        })
    }

    /// The receipt of an accepted command, or [`ClientError::Rejected`].
    pub fn into_receipt(self) -> Result<Receipt, ClientError> {
        match self.result {
            Ok(accepted) => Ok(Receipt {
                accepted,
                duplicate: self.duplicate,
                shard: self.shard,
                input: self.input,
            }),
            Err(r) => Err(ClientError::Rejected(r)),
        }
    }
}

/// An accepted command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// What it did: done, in flight to another shard, or the new order's id.
    pub accepted: d::Accepted,
    /// True when this answers a repeat of an idempotency key (see [`Answer::duplicate`]).
    pub duplicate: bool,
    /// The shard whose log recorded it.
    pub shard: d::ShardId,
    /// Its position in that shard's input log (0 for a duplicate).
    pub input: u64,
}

impl Receipt {
    /// The id of the order an accepted `PlaceOrder` created.
    pub fn order_id(&self) -> Option<d::OrderId> {
        match self.accepted {
            d::Accepted::Order(id) => Some(id),
            _ => None,
        }
    }
}

/// A position in one shard's event stream: what a query's answer reflects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ShardPosition {
    /// The shard.
    pub shard: d::ShardId,
    /// Its last applied event's sequence number.
    pub seq: u64,
}

fn shard_position(p: Option<pb::ShardPosition>) -> Result<ShardPosition, ClientError> {
    let p = required(p, "position")?;
    Ok(ShardPosition {
        shard: d::ShardId(p.shard),
        seq: p.seq,
    })
}

/// Lifecycle of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AccountStatus {
    /// Normal.
    Active,
    /// No debits, credits or new orders until unfrozen.
    Frozen,
    /// Closed for good.
    Closed,
}

/// One asset's balance of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Balance {
    /// The asset.
    pub asset: d::AssetId,
    /// Spendable, in minor units.
    pub available: d::Amount,
    /// Reserved for open orders, pending and in-flight transfers, in minor units.
    pub held: d::Amount,
}

/// An account and its balances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Balances {
    /// The account.
    pub account: d::AccountId,
    /// Its owner.
    pub owner: d::Principal,
    /// Its status.
    pub status: AccountStatus,
    /// One entry per asset it ever held, in the order first touched.
    pub balances: Vec<Balance>,
    /// Open orders holding its funds.
    pub open_orders: u32,
    /// The state the answer reflects.
    pub position: ShardPosition,
    /// The same state as an index of the shard's input log: every input up to it,
    /// nothing after (pass it as an as-of point to read this state again).
    pub log_index: u64,
}

impl Balances {
    pub(crate) fn from_wire(r: pb::GetBalancesResponse) -> Result<Balances, ClientError> {
        let status = match pb::AccountStatus::try_from(r.status) {
            Ok(pb::AccountStatus::Active) => AccountStatus::Active,
            Ok(pb::AccountStatus::Frozen) => AccountStatus::Frozen,
            Ok(pb::AccountStatus::Closed) => AccountStatus::Closed,
            _ => return Err(invalid(format!("unknown account status {}", r.status))),
        };
        Ok(Balances {
            account: d::AccountId(r.account_id),
            owner: d::Principal(r.owner),
            status,
            balances: r
                .balances
                .into_iter()
                .map(|b| Balance {
                    asset: d::AssetId(b.asset_id),
                    available: d::Amount(b.available),
                    held: d::Amount(b.held),
                })
                .collect(),
            open_orders: r.open_orders,
            position: shard_position(r.position)?,
            log_index: r.log_index,
        })
    }

    /// The balance of `asset` (zero if the account never held it).
    pub fn of(&self, asset: d::AssetId) -> Balance {
        self.balances
            .iter()
            .find(|b| b.asset == asset)
            .copied()
            .unwrap_or(Balance {
                asset,
                available: d::Amount::ZERO,
                held: d::Amount::ZERO,
            })
    }
}

/// One change of a balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BalancePoint {
    /// Leader time of the change.
    pub timestamp: d::Timestamp,
    /// Event sequence number of the change, on the account's shard.
    pub seq: u64,
    /// Available after the change, in minor units.
    pub available: d::Amount,
    /// Held after the change, in minor units.
    pub held: d::Amount,
}

/// Balance changes of one (account, asset), oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BalanceHistory {
    /// The changes.
    pub points: Vec<BalancePoint>,
    /// More changes lie in the range (ask again from the last point's timestamp).
    pub truncated: bool,
}

impl BalanceHistory {
    pub(crate) fn from_wire(r: pb::GetBalanceHistoryResponse) -> BalanceHistory {
        BalanceHistory {
            points: r
                .points
                .into_iter()
                .map(|p| BalancePoint {
                    timestamp: d::Timestamp(p.timestamp_ns),
                    seq: p.seq,
                    available: d::Amount(p.available),
                    held: d::Amount(p.held),
                })
                .collect(),
            truncated: r.truncated,
        }
    }
}

/// An open (resting) order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Order {
    /// The order.
    pub order: d::OrderId,
    /// Its market.
    pub market: d::MarketId,
    /// The trading account.
    pub account: d::AccountId,
    /// The account's owner.
    pub owner: d::Principal,
    /// Buy or sell.
    pub side: d::Side,
    /// Limit price, quote minor units per lot.
    pub price: d::Price,
    /// Unfilled quantity, base minor units.
    pub remaining: d::Qty,
    /// Still held for it on the account's shard (quote for buys, base for sells).
    pub held: d::Amount,
    /// Self-trade prevention mode.
    pub stp: d::SelfTradePrevention,
    /// Post-only.
    pub post_only: bool,
    /// The state the answer reflects.
    pub position: ShardPosition,
    /// The same state as an index of the shard's input log: every input up to it,
    /// nothing after (pass it as an as-of point to read this state again).
    pub log_index: u64,
}

impl Order {
    pub(crate) fn from_wire(r: pb::GetOrderResponse) -> Result<Order, ClientError> {
        let o = OpenOrder::from_wire(required(r.order, "order")?)?;
        Ok(Order {
            order: o.order,
            market: o.market,
            account: o.account,
            owner: o.owner,
            side: o.side,
            price: o.price,
            remaining: o.remaining,
            held: o.held,
            stp: o.stp,
            post_only: o.post_only,
            position: shard_position(r.position)?,
            log_index: r.log_index,
        })
    }
}

/// One price level of a book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Level {
    /// Price, quote minor units per lot.
    pub price: d::Price,
    /// Resting quantity at this price, base minor units.
    pub qty: d::Qty,
    /// Resting orders at this price.
    pub orders: u32,
}

/// Aggregated depth of a market's book.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Book {
    /// The market.
    pub market: d::MarketId,
    /// Bids, best (highest) first.
    pub bids: Vec<Level>,
    /// Asks, best (lowest) first.
    pub asks: Vec<Level>,
    /// True while the market is halted.
    pub halted: bool,
    /// Price of the last trade.
    pub last_price: Option<d::Price>,
    /// The state the answer reflects.
    pub position: ShardPosition,
    /// The same state as an index of the shard's input log: every input up to it,
    /// nothing after (pass it as an as-of point to read this state again).
    pub log_index: u64,
}

impl Book {
    pub(crate) fn from_wire(r: pb::GetBookResponse) -> Result<Book, ClientError> {
        let levels = |l: Vec<pb::PriceLevel>| -> Vec<Level> {
            l.into_iter()
                .map(|l| Level {
                    price: d::Price(l.price),
                    qty: d::Qty(l.qty),
                    orders: l.order_count,
                })
                .collect()
        };
        Ok(Book {
            market: d::MarketId(r.market_id),
            bids: levels(r.bids),
            asks: levels(r.asks),
            halted: r.halted,
            last_price: r.last_price.map(d::Price),
            position: shard_position(r.position)?,
            log_index: r.log_index,
        })
    }
}

/// Every asset and market.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Catalog {
    /// Assets, by id.
    pub assets: Vec<d::Asset>,
    /// Markets, by id.
    pub markets: Vec<d::MarketSpec>,
}

impl Catalog {
    pub(crate) fn from_wire(r: pb::GetCatalogResponse) -> Result<Catalog, ClientError> {
        Ok(Catalog {
            assets: r
                .assets
                .into_iter()
                .enumerate()
                .map(|(i, a)| {
                    d::Asset::try_from(a).map_err(|e| invalid(e.inside_item("assets", i)))
                })
                .collect::<Result<_, _>>()?,
            markets: r.markets.into_iter().map(d::MarketSpec::from).collect(),
        })
    }

    /// The asset with this id.
    pub fn asset(&self, id: d::AssetId) -> Option<&d::Asset> {
        self.assets.iter().find(|a| a.id == id)
    }

    /// The asset with this code (exact match).
    pub fn asset_by_code(&self, code: &str) -> Option<&d::Asset> {
        self.assets.iter().find(|a| a.code == code)
    }

    /// The market with this id.
    pub fn market(&self, id: d::MarketId) -> Option<&d::MarketSpec> {
        self.markets.iter().find(|m| m.id == id)
    }
}

/// Events of a stream and the position after them: pass it back as `after` to go on
/// with no gap and no duplicate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventPage {
    /// The events, in each shard's order (shards interleaved). Events of kinds this
    /// client does not know (from a newer server) are skipped.
    pub events: Vec<d::EventRecord>,
    /// The position after them (and after any events of other streams skipped).
    pub position: Position,
}

impl EventPage {
    pub(crate) fn from_wire(
        events: Vec<pb::EventRecord>,
        position: Option<pb::Position>,
    ) -> Result<EventPage, ClientError> {
        let position = Position::try_from(required(position, "position")?)
            .map_err(|e| invalid(e.inside("position")))?;
        let mut out = Vec::with_capacity(events.len());
        for (i, r) in events.into_iter().enumerate() {
            // A kind added after this client was built decodes as an empty oneof: skip it
            // (the API's rule for clients).
            if r.event.as_ref().is_some_and(|e| e.kind.is_none()) {
                continue;
            }
            out.push(d::EventRecord::try_from(r).map_err(|e| invalid(e.inside_item("events", i)))?);
        }
        Ok(EventPage {
            events: out,
            position,
        })
    }
}

/// A position as `SHARD:SEQ,SHARD:SEQ,...` (the form of the HTTP API's `after`
/// parameter and of the CLI's `--after`), shards in ascending order.
pub fn format_position(p: &Position) -> String {
    p.0.iter()
        .map(|(s, seq)| format!("{s}:{seq}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses `SHARD:SEQ,SHARD:SEQ,...` (empty: the beginning). Each shard at most once.
pub fn parse_position(s: &str) -> Result<Position, String> {
    let mut p = Position::default();
    let s = s.trim();
    if s.is_empty() {
        return Ok(p);
    }
    for part in s.split(',') {
        let bad = || format!("{part:?} is not SHARD:SEQ (e.g. 0:12,1:40)");
        let (shard, seq) = part.trim().split_once(':').ok_or_else(bad)?;
        let shard: u32 = shard.trim().parse().map_err(|_| bad())?;
        let seq: u64 = seq.trim().parse().map_err(|_| bad())?;
        if shard >= d::SHARD_COUNT_MAX {
            return Err(format!(
                "shard {shard} is out of range (below {})",
                d::SHARD_COUNT_MAX
            ));
        }
        if p.0.insert(d::ShardId(shard), seq).is_some() {
            return Err(format!("shard {shard} is named twice"));
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_print_and_parse_back() {
        let p = parse_position(" 1:40, 0:12 ").unwrap();
        assert_eq!(format_position(&p), "0:12,1:40");
        assert_eq!(parse_position("").unwrap(), Position::default());
        assert_eq!(
            parse_position("0:1,0:2").unwrap_err(),
            "shard 0 is named twice"
        );
        assert_eq!(
            parse_position("0-1").unwrap_err(),
            "\"0-1\" is not SHARD:SEQ (e.g. 0:12,1:40)"
        );
        assert!(parse_position("99999:1").is_err());
    }

    #[test]
    fn rejections_keep_the_stable_code_and_tolerate_unknown_ones() {
        let r = Rejection::from(d::Rejection {
            code: d::RejectCode::InsufficientFunds,
            index: 0,
        });
        assert_eq!(r.to_string(), "INSUFFICIENT_FUNDS (10): insufficient funds");
        let unknown = Rejection::from_wire(pb::Rejection {
            reject_code: 999,
            name: String::new(),
            message: String::new(),
            index: 2,
        });
        assert_eq!(unknown.code, None);
        assert_eq!(
            unknown.to_string(),
            "UNKNOWN (999): rejected (transfer #2 of the batch)"
        );
    }

    #[test]
    fn events_of_unknown_kinds_are_skipped_and_malformed_ones_refused() {
        let known: pb::EventRecord = d::EventRecord {
            shard: d::ShardId(0),
            seq: 1,
            input: 1,
            timestamp: d::Timestamp(5),
            principal: d::Principal(1),
            event: d::Event::MarketHalted {
                market: d::MarketId(1),
            },
        }
        .into();
        let mut unknown = known.clone();
        unknown.seq = 2;
        unknown.event = Some(pb::Event { kind: None });
        let position = Some(pb::Position {
            shards: vec![pb::ShardPosition { shard: 0, seq: 2 }],
        });
        let page = EventPage::from_wire(vec![known.clone(), unknown], position.clone()).unwrap();
        assert_eq!(page.events.len(), 1);
        assert_eq!(format_position(&page.position), "0:2");
        let mut malformed = known;
        malformed.event = None;
        assert!(matches!(
            EventPage::from_wire(vec![malformed], position),
            Err(ClientError::InvalidResponse(_))
        ));
    }
}

/// One change to the replicated cluster (see `ChangeCluster`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterChange {
    /// Add node `node`, reachable at `url` (its gRPC port): it receives every shard's
    /// replica, or its fair share when shards are placed on fewer nodes than all.
    AddNode {
        /// Its id.
        node: u64,
        /// The URL of its gRPC port.
        url: String,
    },
    /// Remove node `node`, moving its replicas to the other nodes first.
    RemoveNode {
        /// Its id.
        node: u64,
    },
    /// Hand shard `shard`'s leadership to node `to`.
    TransferLeader {
        /// The shard.
        shard: u32,
        /// The new leader.
        to: u64,
    },
    /// Spread leaders evenly over the voters.
    BalanceLeaders,
    /// Move shard `shard`'s replicas to exactly the nodes `nodes`.
    MoveShard {
        /// The shard.
        shard: u32,
        /// The nodes that hold it afterwards.
        nodes: Vec<u64>,
    },
    /// Give every shard `replication_factor` replicas, placed by the placement policy.
    SetReplicationFactor {
        /// Replicas per shard.
        replication_factor: u32,
    },
    /// Split shard `shard`: its accounts with `id % modulus == residue` (none when
    /// `modulus` is 0) and the `markets` named become a new shard.
    SplitShard {
        /// The shard that splits.
        shard: u32,
        /// 0, or 2 to 2^32.
        modulus: u64,
        /// Below `modulus`.
        residue: u64,
        /// Markets that move with their books (ascending).
        markets: Vec<u32>,
    },
}

impl ClusterChange {
    pub(crate) fn to_wire(&self) -> pb::ChangeClusterRequest {
        use pb::change_cluster_request::Change;
        let change = match self {
            ClusterChange::AddNode { node, url } => Change::AddNode(pb::AddNode {
                node: *node,
                url: url.clone(),
            }),
            ClusterChange::RemoveNode { node } => {
                Change::RemoveNode(pb::RemoveNode { node: *node })
            }
            ClusterChange::TransferLeader { shard, to } => {
                Change::TransferLeader(pb::TransferLeader {
                    shard: *shard,
                    to: *to,
                })
            }
            ClusterChange::BalanceLeaders => Change::BalanceLeaders(pb::BalanceLeaders {}),
            ClusterChange::MoveShard { shard, nodes } => Change::MoveShard(pb::MoveShard {
                shard: *shard,
                nodes: nodes.clone(),
            }),
            ClusterChange::SetReplicationFactor { replication_factor } => {
                Change::SetReplicationFactor(pb::SetReplicationFactor {
                    replication_factor: *replication_factor,
                })
            }
            ClusterChange::SplitShard {
                shard,
                modulus,
                residue,
                markets,
            } => Change::SplitShard(pb::SplitShard {
                shard: *shard,
                modulus: *modulus,
                residue: *residue,
                markets: markets.clone(),
            }),
        };
        pb::ChangeClusterRequest {
            change: Some(change),
        }
    }
}

/// One node's view of the replicated cluster (see `GetClusterStatus`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    /// The node answering.
    pub node: u64,
    /// Every node in any shard's membership, with the URL of its gRPC port.
    pub nodes: Vec<NodeAddress>,
    /// One entry per shard, by shard id.
    pub shards: Vec<ShardReplicaStatus>,
    /// The metadata group and the cluster map, as the answering node knows them.
    pub metadata: MetadataStatus,
}

/// One node's view of the metadata group and of the cluster map it replicates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MetadataStatus {
    /// The map's version as that node applied it (0: not created yet).
    pub version: u64,
    /// The map's replication factor.
    pub replication_factor: u64,
    /// That node's role in the metadata group.
    pub role: String,
    /// The metadata group's leader it knows of.
    pub leader: Option<u64>,
    /// Voters of the metadata group.
    pub voters: Vec<u64>,
    /// Learners of the metadata group.
    pub learners: Vec<u64>,
    /// The map's nodes.
    pub nodes: Vec<MapNode>,
    /// Every split the map records, oldest first.
    pub splits: Vec<d::routing::Split>,
}

/// A node as the cluster map records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MapNode {
    /// The node.
    pub node: u64,
    /// The URL of its gRPC port.
    pub url: String,
    /// Leaving the cluster.
    pub draining: bool,
}

/// Where a node of the cluster is reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeAddress {
    /// The node.
    pub node: u64,
    /// The URL of its gRPC port.
    pub url: String,
}

/// One replica's view of its shard's Raft group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShardReplicaStatus {
    /// The shard.
    pub shard: d::ShardId,
    /// This replica's role: Leader, Follower, Candidate, Learner or Shutdown.
    pub role: String,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// Its current term.
    pub term: u64,
    /// Index of its last log entry.
    pub last_log_index: Option<u64>,
    /// Highest index it knows is committed.
    pub committed: Option<u64>,
    /// Highest index its state machine applied.
    pub applied: Option<u64>,
    /// The engine's state hash at `applied` (hex).
    pub state_hash: String,
    /// Index its latest snapshot covers.
    pub snapshot: Option<u64>,
    /// Voting members.
    pub voters: Vec<u64>,
    /// Non-voting members.
    pub learners: Vec<u64>,
    /// Where it leads: every replica's progress.
    pub replication: Vec<ReplicaProgress>,
}

/// How far one replica's log matches its leader's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaProgress {
    /// The replica's node.
    pub node: u64,
    /// Highest index known to match.
    pub matched: Option<u64>,
    /// Entries behind the leader's last log entry.
    pub lag: u64,
}

impl ClusterStatus {
    pub(crate) fn from_wire(r: pb::GetClusterStatusResponse) -> ClusterStatus {
        let m = r.metadata.unwrap_or_default();
        ClusterStatus {
            node: r.node,
            metadata: MetadataStatus {
                version: m.version,
                replication_factor: m.replication_factor,
                role: m.role,
                leader: m.leader,
                voters: m.voters,
                learners: m.learners,
                nodes: m
                    .nodes
                    .into_iter()
                    .map(|n| MapNode {
                        node: n.node,
                        url: n.url,
                        draining: n.draining,
                    })
                    .collect(),
                splits: m
                    .splits
                    .into_iter()
                    .map(|s| d::routing::Split {
                        parent: d::ShardId(s.parent),
                        child: d::ShardId(s.child),
                        modulus: s.modulus,
                        residue: s.residue,
                        markets: s.markets.into_iter().map(d::MarketId).collect(),
                    })
                    .collect(),
            },
            nodes: r
                .nodes
                .into_iter()
                .map(|n| NodeAddress {
                    node: n.node,
                    url: n.url,
                })
                .collect(),
            shards: r
                .shards
                .into_iter()
                .map(|s| ShardReplicaStatus {
                    shard: d::ShardId(s.shard),
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
                        .map(|p| ReplicaProgress {
                            node: p.node,
                            matched: p.matched,
                            lag: p.lag,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// How current a query's answer must be (see [`Client::with_consistency`](crate::Client::with_consistency)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum Consistency {
    /// The state after every write the cluster acknowledged before the query (the node
    /// asks the shard's leader for its read index first). Fails with
    /// [`ClientError::Unavailable`] while the shard has no leader.
    #[default]
    Linearizable,
    /// The answering node's replica as it is, without asking the leader: answers while
    /// a majority is down and costs no round trip, but may miss acknowledged writes. The
    /// answer's position says which state it reflects. Not with an as-of point (the
    /// server refuses the combination). On a single node the same as `Linearizable`.
    Stale,
}

/// A resting order, as listed among an account's open orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct OpenOrder {
    /// The order.
    pub order: d::OrderId,
    /// Its market.
    pub market: d::MarketId,
    /// The trading account.
    pub account: d::AccountId,
    /// The account's owner.
    pub owner: d::Principal,
    /// Buy or sell.
    pub side: d::Side,
    /// Limit price, quote minor units per lot.
    pub price: d::Price,
    /// Unfilled quantity, base minor units.
    pub remaining: d::Qty,
    /// Still held for it on the account's shard (quote for buys, base for sells).
    pub held: d::Amount,
    /// Self-trade prevention mode.
    pub stp: d::SelfTradePrevention,
    /// Post-only.
    pub post_only: bool,
}

impl OpenOrder {
    pub(crate) fn from_wire(o: pb::Order) -> Result<OpenOrder, ClientError> {
        let side = side(o.side, "order.side")?;
        let stp = match pb::SelfTradePrevention::try_from(o.stp) {
            Ok(pb::SelfTradePrevention::Unspecified | pb::SelfTradePrevention::CancelResting) => {
                d::SelfTradePrevention::CancelResting
            }
            Ok(pb::SelfTradePrevention::CancelIncoming) => d::SelfTradePrevention::CancelIncoming,
            Ok(pb::SelfTradePrevention::CancelBoth) => d::SelfTradePrevention::CancelBoth,
            Err(_) => return Err(invalid(format!("order.stp: unknown value {}", o.stp))),
        };
        Ok(OpenOrder {
            order: d::OrderId(o.order_id),
            market: d::MarketId(o.market_id),
            account: d::AccountId(o.account_id),
            owner: d::Principal(o.owner),
            side,
            price: d::Price(o.price),
            remaining: d::Qty(o.remaining_qty),
            held: d::Amount(o.held),
            stp,
            post_only: o.post_only,
        })
    }
}

fn side(v: i32, field: &str) -> Result<d::Side, ClientError> {
    match pb::Side::try_from(v) {
        Ok(pb::Side::Buy) => Ok(d::Side::Buy),
        Ok(pb::Side::Sell) => Ok(d::Side::Sell),
        _ => Err(invalid(format!("{field}: unknown value {v}"))),
    }
}

/// The open orders of an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OpenOrders {
    /// Its orders resting on their books, by order id.
    pub orders: Vec<OpenOrder>,
    /// What was read: the account's shard, then each shard whose books were read.
    pub positions: Vec<ShardPosition>,
}

impl OpenOrders {
    pub(crate) fn from_wire(r: pb::GetOpenOrdersResponse) -> Result<OpenOrders, ClientError> {
        Ok(OpenOrders {
            orders: r
                .orders
                .into_iter()
                .map(OpenOrder::from_wire)
                .collect::<Result<_, _>>()?,
            positions: r
                .positions
                .into_iter()
                .map(|p| ShardPosition {
                    shard: d::ShardId(p.shard),
                    seq: p.seq,
                })
                .collect(),
        })
    }
}

/// One trade with its place in the market shard's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Trade {
    /// Event sequence number of the trade on the market's shard.
    pub seq: u64,
    /// Index of the input that caused it in that shard's input log.
    pub input: u64,
    /// Leader time of the trade (the shard clock).
    pub timestamp: d::Timestamp,
    /// The market.
    pub market: d::MarketId,
    /// Price, quote minor units per lot.
    pub price: d::Price,
    /// Quantity, base minor units.
    pub qty: d::Qty,
    /// Side of the incoming (taker) order.
    pub taker_side: d::Side,
    /// The incoming order.
    pub taker: d::OrderId,
    /// The resting order.
    pub maker: d::OrderId,
    /// The taker's account.
    pub taker_account: d::AccountId,
    /// The maker's account.
    pub maker_account: d::AccountId,
    /// Fee the taker paid, in minor units of what it received.
    pub taker_fee: d::Amount,
    /// Fee the maker paid, in minor units of what it received.
    pub maker_fee: d::Amount,
}

/// A page of a market's trades.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TradesPage {
    /// The trades, oldest first.
    pub trades: Vec<Trade>,
    /// Where the read stopped: its `seq` is the `after_seq` of the next page.
    pub position: ShardPosition,
    /// Nothing is left to read now (the range ended, or every event recorded so far was
    /// read).
    pub at_end: bool,
}

impl TradesPage {
    pub(crate) fn from_wire(r: pb::GetTradesResponse) -> Result<TradesPage, ClientError> {
        let trades = r
            .trades
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let x = required(t.trade, &format!("trades[{i}].trade"))?;
                Ok(Trade {
                    seq: t.seq,
                    input: t.input,
                    timestamp: d::Timestamp(t.timestamp_ns),
                    market: d::MarketId(x.market_id),
                    price: d::Price(x.price),
                    qty: d::Qty(x.qty),
                    taker_side: side(x.taker_side, &format!("trades[{i}].trade.taker_side"))?,
                    taker: d::OrderId(x.taker_order_id),
                    maker: d::OrderId(x.maker_order_id),
                    taker_account: d::AccountId(x.taker_account_id),
                    maker_account: d::AccountId(x.maker_account_id),
                    taker_fee: d::Amount(x.taker_fee),
                    maker_fee: d::Amount(x.maker_fee),
                })
            })
            .collect::<Result<_, ClientError>>()?;
        Ok(TradesPage {
            trades,
            position: shard_position(r.position)?,
            at_end: r.at_end,
        })
    }
}

/// One interval of a market's trading (OHLCV).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Candle {
    /// Start of the interval (a whole multiple of its length since the Unix epoch).
    pub start: d::Timestamp,
    /// Price of the first trade, quote minor units per lot.
    pub open: d::Price,
    /// Highest trade price.
    pub high: d::Price,
    /// Lowest trade price.
    pub low: d::Price,
    /// Price of the last trade.
    pub close: d::Price,
    /// Quantity traded, base minor units.
    pub volume: u64,
    /// Notional traded, quote minor units.
    pub quote_volume: u64,
    /// Number of trades.
    pub trades: u64,
}

impl From<d::jobs::Candle> for Candle {
    fn from(c: d::jobs::Candle) -> Candle {
        Candle {
            start: d::Timestamp(c.start),
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            volume: c.volume,
            quote_volume: c.quote_volume,
            trades: c.trades,
        }
    }
}

/// Candles of a range: one per interval that had a trade (intervals without trades are
/// omitted), oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Candles {
    /// The candles.
    pub candles: Vec<Candle>,
    /// The history the answer reflects: the market's shard and the last event read.
    pub position: ShardPosition,
}

impl Candles {
    pub(crate) fn from_wire(r: pb::GetCandlesResponse) -> Result<Candles, ClientError> {
        Ok(Candles {
            candles: r
                .candles
                .into_iter()
                .map(|c| Candle::from(d::jobs::Candle::from(c)))
                .collect(),
            position: shard_position(r.position)?,
        })
    }
}

/// One change of a balance in a statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatementEntry {
    /// Event sequence number of the change, on the account's shard.
    pub seq: u64,
    /// Index of the input that caused it in that shard's input log.
    pub input: u64,
    /// Leader time of the change.
    pub timestamp: d::Timestamp,
    /// What changed the balance: the event just before the change, when the server sent
    /// one this client knows.
    pub cause: Option<d::Event>,
    /// Available after the change, minor units.
    pub available: d::Amount,
    /// Held after the change, minor units.
    pub held: d::Amount,
    /// Increase of available + held (0 for a decrease or a move between the two).
    pub credit: d::Amount,
    /// Decrease of available + held.
    pub debit: d::Amount,
}

/// An account statement in one asset: opening balance, every change, closing balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Statement {
    /// The balance at the start of the range (or after `after_seq`).
    pub opening: Balance,
    /// The changes, oldest first.
    pub entries: Vec<StatementEntry>,
    /// The balance after the last entry (when not truncated: at the end of the range).
    pub closing: Balance,
    /// More entries lie in the range: ask again with `after_seq` = the last entry's seq.
    pub truncated: bool,
    /// The history the answer reflects: the account's shard and the last event read.
    pub position: ShardPosition,
}

impl Statement {
    pub(crate) fn from_wire(
        asset: d::AssetId,
        r: pb::GetStatementResponse,
    ) -> Result<Statement, ClientError> {
        let balance = |b: Option<pb::Balance>| Balance {
            asset,
            available: d::Amount(b.as_ref().map_or(0, |b| b.available)),
            held: d::Amount(b.as_ref().map_or(0, |b| b.held)),
        };
        let entries = r
            .entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let cause = match e.cause {
                    // A kind this client does not know (from a newer server): no cause.
                    Some(c) if c.kind.is_none() => None,
                    Some(c) => Some(
                        d::Event::try_from(c)
                            .map_err(|x| invalid(x.inside("cause").inside_item("entries", i)))?,
                    ),
                    None => None,
                };
                Ok(StatementEntry {
                    seq: e.seq,
                    input: e.input,
                    timestamp: d::Timestamp(e.timestamp_ns),
                    cause,
                    available: d::Amount(e.available),
                    held: d::Amount(e.held),
                    credit: d::Amount(e.credit),
                    debit: d::Amount(e.debit),
                })
            })
            .collect::<Result<_, ClientError>>()?;
        Ok(Statement {
            opening: balance(r.opening),
            entries,
            closing: balance(r.closing),
            truncated: r.truncated,
            position: shard_position(r.position)?,
        })
    }
}

/// The outcome of a shard's replay verification (`RunShardTask` with `verify`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShardVerification {
    /// The shard.
    pub shard: d::ShardId,
    /// The log index both states are at.
    pub log_index: u64,
    /// SHA-256 of the live state, hex.
    pub live_hash: String,
    /// SHA-256 of the state regenerated from the log, hex.
    pub replayed_hash: String,
}

impl ShardVerification {
    pub(crate) fn from_wire(v: pb::VerifyResult) -> Result<ShardVerification, ClientError> {
        if v.live_hash.len() != 32 || v.replayed_hash.len() != 32 {
            return Err(invalid("a verification hash is not 32 bytes"));
        }
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        Ok(ShardVerification {
            shard: d::ShardId(v.shard),
            log_index: v.log_index,
            live_hash: hex(&v.live_hash),
            replayed_hash: hex(&v.replayed_hash),
        })
    }

    /// Whether the regenerated state is the live one.
    pub fn matches(&self) -> bool {
        self.live_hash == self.replayed_hash
    }
}

/// How busy a node is (`GetNodeLoad`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct NodeLoad {
    /// Shard tasks running or waiting on the node.
    pub shard_tasks: u64,
    /// Commands waiting in its client queues.
    pub queued_commands: u64,
    /// The figure a scheduler compares (lower is less busy).
    pub load: u64,
    /// Number of shards (the node holds a replica of each).
    pub shard_count: u32,
}

impl NodeLoad {
    pub(crate) fn from_wire(v: pb::GetNodeLoadResponse) -> NodeLoad {
        NodeLoad {
            shard_tasks: v.shard_tasks,
            queued_commands: v.queued_commands,
            load: v.load,
            shard_count: v.shard_count,
        }
    }
}
