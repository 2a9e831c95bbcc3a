//! The cluster map: what the metadata group replicates (docs/design/0013, step 2).
//!
//! A [`ClusterMap`] names the nodes (id, address, draining or not), the replication
//! factor, per shard its **target** replica set (where the shard should live), and for a
//! shard whose move has not settled, the nodes it is **leaving** (they keep their replica
//! until then). Where a shard's replicas actually are is its own Raft group's membership;
//! each shard's leader drives its group towards the target
//! ([`next_step`](crate::next_step)) and records [`MapCommand::ShardSettled`], and each
//! node opens and closes its replicas by [`ClusterMap::shards_of`] (the reconciler of
//! crate cluster, docs/design/0013 step 3b).
//!
//! The map changes only through [`MapCommand`]s applied in log order by
//! [`ClusterMap::apply`]: deterministic (ordered maps, no clock), and a refused command
//! changes nothing and says why with a typed [`MapReject`] whose [`code`](MapReject::code)
//! is stable. Every accepted command bumps [`ClusterMap::version`], which routes carry so
//! that a node or client can tell that what it knows is stale.

use crate::{Layout, NodeId, NodeState, Replicas, NODES_MAX, REPLICATION_FACTOR_MAX};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use tradelog_domain::routing::{Placement, Split, SplitError};
use tradelog_domain::{MarketId, ShardId, SHARD_COUNT_MAX};

/// Most bytes of a node's address.
pub const NODE_ADDR_BYTES_MAX: usize = 256;

/// A node as the map knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapNode {
    /// Where its node-to-node service answers (a URL such as `http://127.0.0.1:7001`).
    pub addr: String,
    /// Leaving the cluster: it takes no new replicas and its replicas move elsewhere.
    pub draining: bool,
}

/// The replicated cluster map. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMap {
    /// Bumped by every accepted command; 0 before [`MapCommand::Init`].
    pub version: u64,
    /// Replicas each shard should have; 0 before [`MapCommand::Init`].
    pub replication_factor: usize,
    /// Every member node.
    pub nodes: BTreeMap<NodeId, MapNode>,
    /// Per shard, the nodes that should hold its replicas (its target replica set).
    pub shards: BTreeMap<ShardId, BTreeSet<NodeId>>,
    /// Every shard with a move under way (its target changed and its group was not yet
    /// seen with exactly the target as voters), with the nodes of earlier targets that may
    /// still hold a replica (disjoint from the target, possibly none): they keep it until
    /// the move settles ([`MapCommand::ShardSettled`]). A node opens a replica of the
    /// shards whose target or leaving set names it ([`ClusterMap::shards_of`]) and closes
    /// the others.
    pub leaving: BTreeMap<ShardId, BTreeSet<NodeId>>,
    /// Every split recorded ([`MapCommand::SplitShard`]), oldest first: the `k`-th made
    /// shard `base + k`, where `base` is the number of shards the cluster was formed with.
    /// With them, [`ClusterMap::placement`] is where every account and market lives.
    pub splits: Vec<Split>,
}

/// The map as version 1 metadata snapshots hold it (before splits), still read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMapV1 {
    version: u64,
    replication_factor: usize,
    nodes: BTreeMap<NodeId, MapNode>,
    shards: BTreeMap<ShardId, BTreeSet<NodeId>>,
    leaving: BTreeMap<ShardId, BTreeSet<NodeId>>,
}

impl From<ClusterMapV1> for ClusterMap {
    fn from(v: ClusterMapV1) -> ClusterMap {
        ClusterMap {
            version: v.version,
            replication_factor: v.replication_factor,
            nodes: v.nodes,
            shards: v.shards,
            leaving: v.leaving,
            splits: Vec::new(),
        }
    }
}

/// A change to the map, applied in log order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MapCommand {
    /// Creates the map of a new cluster: its nodes, the replication factor and where each
    /// of the shards `0..shards` lives now. Only once.
    Init {
        /// The number of shards.
        shards: u32,
        /// Replicas per shard.
        replication_factor: usize,
        /// The first nodes and their addresses.
        nodes: BTreeMap<NodeId, String>,
        /// Every shard's replica set now (each within `nodes`).
        replicas: BTreeMap<ShardId, BTreeSet<NodeId>>,
    },
    /// A node joins (it takes replicas once the reconciler moves some to it).
    AddNode {
        /// Its id (also its Raft node id).
        node: NodeId,
        /// Its address.
        addr: String,
    },
    /// A node starts leaving: no new replicas go to it, and the reconciler moves its
    /// replicas away.
    DrainNode {
        /// The node.
        node: NodeId,
    },
    /// A drained node leaves the map (refused while a target replica set names it).
    RemoveNode {
        /// The node.
        node: NodeId,
    },
    /// Sets where a shard should live (a move by command, or the placement's new target).
    /// The nodes of the old target that the new one leaves out join the shard's leaving
    /// set; those it names leave that set.
    SetShardReplicas {
        /// The shard.
        shard: ShardId,
        /// Its target replica set.
        replicas: BTreeSet<NodeId>,
        /// Applied only if the map is still at this version (compare and set), when given.
        if_version: Option<u64>,
    },
    /// The shard's group has exactly `replicas` as voters and no learner: its leaving
    /// set is emptied (those nodes close their replicas). Refused unless `replicas` is
    /// still the shard's target.
    ShardSettled {
        /// The shard.
        shard: ShardId,
        /// The voters its leader saw, which must be the target.
        replicas: BTreeSet<NodeId>,
    },
    /// Changes how many replicas each shard should have (the placement's targets follow:
    /// the caller then sets each shard's new replicas). At most the number of nodes
    /// that are not leaving.
    SetReplicationFactor {
        /// Replicas per shard, 1 to [`REPLICATION_FACTOR_MAX`].
        replication_factor: usize,
    },
    /// Splits a shard (docs/design/0014): the accounts `parent` owns with
    /// `id % modulus == residue` (none when `modulus` is 0) and the `markets` it holds
    /// will belong to a new shard, the next shard id, whose target replica set is the
    /// parent's. Recorded before the parent's group applies the split, so that whoever is
    /// told `WrongShard` by the parent finds the split in the map. Refused while the
    /// parent has a move under way or a replica on a draining node (the child starts on
    /// the parent's replicas).
    SplitShard {
        /// The shard that gives the accounts and markets.
        parent: ShardId,
        /// See [`Split::modulus`].
        modulus: u64,
        /// See [`Split::residue`].
        residue: u64,
        /// Markets that move with their books (sorted, without repeats).
        markets: Vec<MarketId>,
    },
}

/// Why a [`MapCommand`] was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MapReject {
    /// Any command but `Init` before the map exists.
    #[error("the cluster map is not initialised")]
    NotInitialised,
    /// `Init` on a map that exists.
    #[error("the cluster map is already initialised (version {0})")]
    AlreadyInitialised(u64),
    /// A replication factor of 0 or above [`REPLICATION_FACTOR_MAX`].
    #[error("replication factor must be 1 to {REPLICATION_FACTOR_MAX}, got {0}")]
    ReplicationFactor(usize),
    /// No shards, or more than `SHARD_COUNT_MAX`.
    #[error("shard count must be 1 to {SHARD_COUNT_MAX}, got {0}")]
    ShardCount(u32),
    /// More than [`NODES_MAX`] nodes.
    #[error("at most {NODES_MAX} nodes")]
    TooManyNodes,
    /// An address that is empty, too long or not `http://` / `https://`.
    #[error("bad node address {0:?}")]
    BadAddress(String),
    /// A node id already in the map.
    #[error("node {0} is already a member")]
    NodeExists(NodeId),
    /// An address another node already has.
    #[error("address {addr:?} is already node {node}'s")]
    AddressTaken {
        /// The address.
        addr: String,
        /// Its node.
        node: NodeId,
    },
    /// A node the map does not name.
    #[error("node {0} is not a member")]
    UnknownNode(NodeId),
    /// A shard the map does not name.
    #[error("shard {0} does not exist")]
    UnknownShard(u32),
    /// `Init` without a replica set for exactly the shards `0..shards`.
    #[error("Init must name the replicas of exactly the shards 0..{0}")]
    ShardsMismatch(u32),
    /// An empty replica set, or one larger than [`REPLICATION_FACTOR_MAX`].
    #[error("shard {shard} would have {replicas} replicas (1 to {REPLICATION_FACTOR_MAX})")]
    ReplicaCount {
        /// The shard.
        shard: u32,
        /// The replicas asked for.
        replicas: usize,
    },
    /// A new replica on a draining node.
    #[error("node {0} is draining and takes no new replicas")]
    Draining(NodeId),
    /// `RemoveNode` of a node that is not draining.
    #[error("node {0} must be drained before it is removed")]
    NotDrained(NodeId),
    /// `RemoveNode` of a node a target replica set still names.
    #[error("node {node} still holds shard {shard}")]
    HoldsReplicas {
        /// The node.
        node: NodeId,
        /// A shard it holds.
        shard: u32,
    },
    /// A compare-and-set on an older version.
    #[error("the map is at version {actual}, not {expected}")]
    StaleVersion {
        /// The version the command expected.
        expected: u64,
        /// The map's version.
        actual: u64,
    },
    /// `ShardSettled` with replicas that are not (any more) the shard's target.
    #[error("shard {shard}'s target is no longer {replicas:?}")]
    StaleTarget {
        /// The shard.
        shard: u32,
        /// The replicas the command named.
        replicas: BTreeSet<NodeId>,
    },
    /// A replication factor above the number of nodes that are not leaving.
    #[error(
        "replication factor {replication_factor} needs as many nodes; {nodes} are not leaving"
    )]
    NotEnoughNodes {
        /// The factor asked for.
        replication_factor: usize,
        /// Nodes in the map that are not draining.
        nodes: usize,
    },
    /// A split of a shard whose replicas are moving.
    #[error("shard {0} has a move under way; split it once the move has settled")]
    Moving(u32),
    /// A split the placement refuses.
    #[error("split refused: {0}")]
    Split(SplitError),
    /// A split of `parent` by the same rule and markets as one recorded: it would move
    /// nothing (the first one took all of it). What a repeated split command gets, so a
    /// retry does not make a second shard.
    #[error("shard {parent} was already split by that rule: its child is shard {child}")]
    SplitExists {
        /// The shard split.
        parent: u32,
        /// The child the recorded split made.
        child: u32,
    },
}

impl MapReject {
    /// The stable numeric code of the rejection (never reused or renumbered).
    pub fn code(&self) -> u16 {
        match self {
            MapReject::NotInitialised => 1,
            MapReject::AlreadyInitialised(_) => 2,
            MapReject::ReplicationFactor(_) => 3,
            MapReject::ShardCount(_) => 4,
            MapReject::TooManyNodes => 5,
            MapReject::BadAddress(_) => 6,
            MapReject::NodeExists(_) => 7,
            MapReject::AddressTaken { .. } => 8,
            MapReject::UnknownNode(_) => 9,
            MapReject::UnknownShard(_) => 10,
            MapReject::ShardsMismatch(_) => 11,
            MapReject::ReplicaCount { .. } => 12,
            MapReject::Draining(_) => 13,
            MapReject::NotDrained(_) => 14,
            MapReject::HoldsReplicas { .. } => 15,
            MapReject::StaleVersion { .. } => 16,
            MapReject::StaleTarget { .. } => 17,
            MapReject::NotEnoughNodes { .. } => 18,
            MapReject::Moving(_) => 19,
            MapReject::Split(_) => 20,
            MapReject::SplitExists { .. } => 21,
        }
    }
}

fn check_addr(addr: &str) -> Result<(), MapReject> {
    let scheme = addr
        .strip_prefix("http://")
        .or_else(|| addr.strip_prefix("https://"));
    match scheme {
        Some(rest)
            if !rest.is_empty()
                && addr.len() <= NODE_ADDR_BYTES_MAX
                && !addr.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(())
        }
        _ => Err(MapReject::BadAddress(addr.to_string())),
    }
}

impl ClusterMap {
    /// True once [`MapCommand::Init`] was applied.
    pub fn is_initialised(&self) -> bool {
        self.version > 0
    }

    /// Applies `command`: the new version, or why it was refused (and nothing changed).
    pub fn apply(&mut self, command: &MapCommand) -> Result<u64, MapReject> {
        if let MapCommand::Init { .. } = command {
            if self.is_initialised() {
                return Err(MapReject::AlreadyInitialised(self.version));
            }
        } else if !self.is_initialised() {
            return Err(MapReject::NotInitialised);
        }
        match command {
            MapCommand::Init {
                shards,
                replication_factor,
                nodes,
                replicas,
            } => {
                if *replication_factor == 0 || *replication_factor > REPLICATION_FACTOR_MAX {
                    return Err(MapReject::ReplicationFactor(*replication_factor));
                }
                if *shards == 0 || *shards > SHARD_COUNT_MAX {
                    return Err(MapReject::ShardCount(*shards));
                }
                if nodes.len() > NODES_MAX {
                    return Err(MapReject::TooManyNodes);
                }
                let mut seen: BTreeMap<&str, NodeId> = BTreeMap::new();
                for (id, addr) in nodes {
                    check_addr(addr)?;
                    if let Some(other) = seen.insert(addr, *id) {
                        return Err(MapReject::AddressTaken {
                            addr: addr.clone(),
                            node: other,
                        });
                    }
                }
                if replicas.len() != *shards as usize
                    || replicas.keys().zip(0..*shards).any(|(s, k)| s.0 != k)
                {
                    return Err(MapReject::ShardsMismatch(*shards));
                }
                for (shard, set) in replicas {
                    check_replicas(*shard, set)?;
                    if let Some(n) = set.iter().find(|n| !nodes.contains_key(n)) {
                        return Err(MapReject::UnknownNode(*n));
                    }
                }
                self.replication_factor = *replication_factor;
                self.nodes = nodes
                    .iter()
                    .map(|(id, addr)| {
                        let node = MapNode {
                            addr: addr.clone(),
                            draining: false,
                        };
                        (*id, node)
                    })
                    .collect();
                self.shards = replicas.clone();
            }
            MapCommand::AddNode { node, addr } => {
                check_addr(addr)?;
                if self.nodes.contains_key(node) {
                    return Err(MapReject::NodeExists(*node));
                }
                if let Some((other, _)) = self.nodes.iter().find(|(_, n)| n.addr == *addr) {
                    return Err(MapReject::AddressTaken {
                        addr: addr.clone(),
                        node: *other,
                    });
                }
                if self.nodes.len() >= NODES_MAX {
                    return Err(MapReject::TooManyNodes);
                }
                let entry = MapNode {
                    addr: addr.clone(),
                    draining: false,
                };
                self.nodes.insert(*node, entry);
            }
            MapCommand::SetReplicationFactor { replication_factor } => {
                let rf = *replication_factor;
                if rf == 0 || rf > REPLICATION_FACTOR_MAX {
                    return Err(MapReject::ReplicationFactor(rf));
                }
                let nodes = self.nodes.values().filter(|n| !n.draining).count();
                if rf > nodes {
                    return Err(MapReject::NotEnoughNodes {
                        replication_factor: rf,
                        nodes,
                    });
                }
                self.replication_factor = rf;
            }
            MapCommand::DrainNode { node } => {
                self.nodes
                    .get_mut(node)
                    .ok_or(MapReject::UnknownNode(*node))?
                    .draining = true;
            }
            MapCommand::RemoveNode { node } => {
                let entry = self.nodes.get(node).ok_or(MapReject::UnknownNode(*node))?;
                if !entry.draining {
                    return Err(MapReject::NotDrained(*node));
                }
                let named = self.shards.iter().chain(&self.leaving);
                if let Some((shard, _)) = named.clone().find(|(_, set)| set.contains(node)) {
                    return Err(MapReject::HoldsReplicas {
                        node: *node,
                        shard: shard.0,
                    });
                }
                self.nodes.remove(node);
            }
            MapCommand::SetShardReplicas {
                shard,
                replicas,
                if_version,
            } => {
                if let Some(expected) = if_version.filter(|v| *v != self.version) {
                    return Err(MapReject::StaleVersion {
                        expected,
                        actual: self.version,
                    });
                }
                let now = self
                    .shards
                    .get(shard)
                    .ok_or(MapReject::UnknownShard(shard.0))?;
                check_replicas(*shard, replicas)?;
                for n in replicas {
                    let entry = self.nodes.get(n).ok_or(MapReject::UnknownNode(*n))?;
                    if entry.draining && !now.contains(n) {
                        return Err(MapReject::Draining(*n));
                    }
                }
                if now != replicas {
                    let mut leaving = self.leaving.remove(shard).unwrap_or_default();
                    leaving.extend(now.difference(replicas).copied());
                    leaving.retain(|n| !replicas.contains(n));
                    self.leaving.insert(*shard, leaving);
                    self.shards.insert(*shard, replicas.clone());
                }
            }
            MapCommand::ShardSettled { shard, replicas } => {
                let now = self
                    .shards
                    .get(shard)
                    .ok_or(MapReject::UnknownShard(shard.0))?;
                if now != replicas {
                    return Err(MapReject::StaleTarget {
                        shard: shard.0,
                        replicas: replicas.clone(),
                    });
                }
                self.leaving.remove(shard);
            }
            MapCommand::SplitShard {
                parent,
                modulus,
                residue,
                markets,
            } => {
                let target = self
                    .shards
                    .get(parent)
                    .ok_or(MapReject::UnknownShard(parent.0))?
                    .clone();
                if self.leaving.contains_key(parent) {
                    return Err(MapReject::Moving(parent.0));
                }
                if let Some(n) = target.iter().find(|n| self.nodes[n].draining) {
                    return Err(MapReject::Draining(*n));
                }
                if let Some(done) = self.recorded_split(*parent, *modulus, *residue, markets) {
                    return Err(MapReject::SplitExists {
                        parent: parent.0,
                        child: done.child.0,
                    });
                }
                let split = Split {
                    parent: *parent,
                    child: ShardId(self.shards.len() as u32),
                    modulus: *modulus,
                    residue: *residue,
                    markets: markets.clone(),
                };
                self.placement()
                    .split(split.clone())
                    .map_err(MapReject::Split)?;
                self.shards.insert(split.child, target);
                self.splits.push(split);
            }
        }
        self.version += 1;
        self.validate();
        Ok(self.version)
    }

    /// The split of `parent` by the rule `id % modulus == residue` and `markets`, if the
    /// map records one (what a repeated split command finds).
    pub fn recorded_split(
        &self,
        parent: ShardId,
        modulus: u64,
        residue: u64,
        markets: &[MarketId],
    ) -> Option<&Split> {
        self.splits.iter().find(|s| {
            s.parent == parent
                && s.modulus == modulus
                && s.residue == residue
                && s.markets == markets
        })
    }

    /// Where every account and market lives: the shards the cluster was formed with and
    /// every split recorded. Before [`MapCommand::Init`], one shard.
    pub fn placement(&self) -> Placement {
        let base = (self.shards.len() - self.splits.len()).max(1) as u32;
        Placement::with_splits(base, &self.splits)
            .expect("the map's splits were checked when recorded")
    }

    /// The split that made `shard`, if a split did.
    pub fn split_of(&self, shard: ShardId) -> Option<&Split> {
        self.splits.iter().find(|s| s.child == shard)
    }

    /// The nodes that should hold `shard`, if it exists.
    pub fn replicas(&self, shard: ShardId) -> Option<&BTreeSet<NodeId>> {
        self.shards.get(&shard)
    }

    /// The shards `node` should hold a replica of: those whose target names it, and
    /// those it is leaving but whose move has not settled.
    pub fn shards_of(&self, node: NodeId) -> BTreeSet<ShardId> {
        self.shards
            .iter()
            .chain(&self.leaving)
            .filter(|(_, set)| set.contains(&node))
            .map(|(s, _)| *s)
            .collect()
    }

    /// Every node that may hold a replica of `shard` now: its target and its leaving set
    /// (where to send a proposal for it).
    pub fn holders(&self, shard: ShardId) -> BTreeSet<NodeId> {
        let mut all = self.shards.get(&shard).cloned().unwrap_or_default();
        all.extend(self.leaving.get(&shard).into_iter().flatten().copied());
        all
    }

    /// True when no shard has a move under way.
    pub fn is_settled(&self) -> bool {
        self.leaving.is_empty()
    }

    /// The layout the placement policy plans from: the map's nodes (draining ones as
    /// such, and those in `down` as down) with each shard's actual replicas as given by
    /// `actual` (from the shard groups' memberships; a shard missing there is taken to be
    /// where the map says, all voters, leader unknown).
    pub fn layout(&self, down: &BTreeSet<NodeId>, actual: &BTreeMap<ShardId, Replicas>) -> Layout {
        let nodes = self
            .nodes
            .iter()
            .map(|(id, n)| {
                let state = if down.contains(id) {
                    NodeState::Down
                } else if n.draining {
                    NodeState::Draining
                } else {
                    NodeState::Live
                };
                (*id, state)
            })
            .collect();
        let shards = self
            .shards
            .iter()
            .map(|(s, set)| {
                let r = actual.get(s).cloned().unwrap_or_else(|| Replicas {
                    voters: set.clone(),
                    learners: BTreeSet::new(),
                    leader: None,
                });
                (*s, r)
            })
            .collect();
        Layout { nodes, shards }
    }

    /// Checks the map's invariants; a violation is a bug (the assertion stays on in
    /// release builds). See [`check`](Self::check).
    pub fn validate(&self) {
        if let Err(e) = self.check() {
            panic!("cluster map invariant broken: {e}");
        }
    }

    /// The map's invariants, for a map that came from elsewhere (a snapshot): every
    /// target replica set is non-empty, at most [`REPLICATION_FACTOR_MAX`] and names
    /// member nodes only; addresses are distinct; an initialised map has a replication
    /// factor and the shards `0..n`; an uninitialised one is empty.
    pub fn check(&self) -> Result<(), String> {
        if !self.is_initialised() {
            if self.nodes.is_empty()
                && self.shards.is_empty()
                && self.leaving.is_empty()
                && self.splits.is_empty()
                && self.replication_factor == 0
            {
                return Ok(());
            }
            return Err("an uninitialised map with nodes or shards".into());
        }
        if !(1..=REPLICATION_FACTOR_MAX).contains(&self.replication_factor) {
            return Err(format!("replication factor {}", self.replication_factor));
        }
        if self.nodes.len() > NODES_MAX || self.shards.len() > SHARD_COUNT_MAX as usize {
            return Err(format!(
                "{} nodes, {} shards",
                self.nodes.len(),
                self.shards.len()
            ));
        }
        let addrs: BTreeSet<&str> = self.nodes.values().map(|n| n.addr.as_str()).collect();
        if addrs.len() != self.nodes.len() {
            return Err("two nodes share an address".into());
        }
        for (k, (shard, set)) in self.shards.iter().enumerate() {
            if shard.0 as usize != k {
                return Err(format!("shard {shard} where shard {k} should be"));
            }
            if !(1..=REPLICATION_FACTOR_MAX).contains(&set.len()) {
                return Err(format!("shard {shard} has {} replicas", set.len()));
            }
            if let Some(n) = set.iter().find(|n| !self.nodes.contains_key(n)) {
                return Err(format!("shard {shard} names node {n}, not a member"));
            }
        }
        if self.splits.len() >= self.shards.len() {
            return Err(format!(
                "{} splits of {} shards",
                self.splits.len(),
                self.shards.len()
            ));
        }
        let base = (self.shards.len() - self.splits.len()) as u32;
        Placement::with_splits(base, &self.splits)?;
        for (shard, set) in &self.leaving {
            let Some(target) = self.shards.get(shard) else {
                return Err(format!("shard {shard} is leaving nodes but does not exist"));
            };
            if let Some(n) = set.iter().find(|n| target.contains(n)) {
                return Err(format!("shard {shard} is both on and leaving node {n}"));
            }
            if let Some(n) = set.iter().find(|n| !self.nodes.contains_key(n)) {
                return Err(format!("shard {shard} is leaving node {n}, not a member"));
            }
        }
        Ok(())
    }
}

fn check_replicas(shard: ShardId, set: &BTreeSet<NodeId>) -> Result<(), MapReject> {
    if set.is_empty() || set.len() > REPLICATION_FACTOR_MAX {
        return Err(MapReject::ReplicaCount {
            shard: shard.0,
            replicas: set.len(),
        });
    }
    Ok(())
}

impl std::fmt::Display for MapCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MapCommand::Init {
                shards,
                replication_factor,
                nodes,
                ..
            } => write!(
                f,
                "init {shards} shards on {} nodes, replication factor {replication_factor}",
                nodes.len()
            ),
            MapCommand::AddNode { node, addr } => write!(f, "add node {node} at {addr}"),
            MapCommand::DrainNode { node } => write!(f, "drain node {node}"),
            MapCommand::SetReplicationFactor { replication_factor } => {
                write!(f, "replication factor {replication_factor}")
            }
            MapCommand::RemoveNode { node } => write!(f, "remove node {node}"),
            MapCommand::SetShardReplicas {
                shard, replicas, ..
            } => write!(f, "shard {shard} on nodes {replicas:?}"),
            MapCommand::ShardSettled { shard, replicas } => {
                write!(f, "shard {shard} settled on nodes {replicas:?}")
            }
            MapCommand::SplitShard {
                parent,
                modulus,
                residue,
                markets,
            } => {
                write!(f, "split shard {parent}: ")?;
                if *modulus != 0 {
                    write!(f, "accounts with id % {modulus} == {residue}")?;
                    if !markets.is_empty() {
                        write!(f, " and ")?;
                    }
                }
                if !markets.is_empty() {
                    let ids: Vec<u32> = markets.iter().map(|m| m.0).collect();
                    write!(f, "markets {ids:?}")?;
                }
                write!(f, " move to a new shard")
            }
        }
    }
}
