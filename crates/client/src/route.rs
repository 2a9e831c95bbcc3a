//! Which node a call goes to.
//!
//! A client knows the endpoints it was configured with and, once it has asked a node of a
//! replicated cluster for its status, every node of the cluster and each shard's leader.
//! A command goes to its shard's leader (the shard is computed with the same
//! [`route`](tradelog_domain::routing::route) the server uses), so it is not forwarded
//! between nodes; anything else goes to the preferred node. A node that fails a call is
//! avoided for [`NODE_DOWN_MS`] and the preferred node moves on to the next one, so a
//! retry reaches a live node. Routing is only a hint: any node accepts any command and
//! forwards it to the leader, so a stale map costs a hop, never a wrong answer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use tradelog_api::proto::tradelog_client::TradelogClient;
use tradelog_domain as d;
use tradelog_domain::routing::{route, Placement, Route};

use crate::{ClientError, ClusterStatus};

/// How long a node that failed a call (unreachable, stopping, no answer) is avoided, in
/// milliseconds.
pub const NODE_DOWN_MS: u64 = 1_000;
/// Age after which the map of leaders is asked for again on the next command, in
/// milliseconds (leaders move without any call failing, e.g. when they are balanced).
pub const ROUTES_TTL_MS: u64 = 5_000;
/// Most nodes a client keeps connections to (configured plus learned).
pub const NODES_MAX: usize = 64;

/// The generated client over one node's channel.
pub(crate) type Grpc = TradelogClient<Channel>;

/// A node the client can talk to.
struct Node {
    /// Its URL (`http://host:port`).
    url: String,
    /// Its cluster node id, once learned.
    id: Option<u64>,
    grpc: Grpc,
    /// Avoided until then.
    down_until: Option<Instant>,
}

/// What the client knows about the deployment behind its endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Not asked yet (or the last attempt failed).
    Unknown,
    /// A single node (it answered that it is not a member of a cluster): nothing to route.
    Single,
    /// A replicated cluster: commands go to their shard's leader.
    Cluster,
}

/// The routing table of a client and its clones.
pub(crate) struct Routes {
    nodes: Vec<Node>,
    /// Index in `nodes` of the node for calls not routed to a leader.
    preferred: usize,
    mode: Mode,
    placement: Option<Placement>,
    markets: BTreeMap<d::MarketId, d::MarketSpec>,
    /// Per shard: index in `nodes` of its leader.
    leaders: Vec<Option<usize>>,
    /// Per shard: indexes in `nodes` of the nodes holding a replica (in a cluster whose
    /// nodes hold only some shards, a read of the shard must go to one of them).
    holders: Vec<Vec<usize>>,
    refreshed_at: Option<Instant>,
    connect_timeout: Duration,
}

/// The node picked for one attempt.
pub(crate) struct Pick {
    pub index: usize,
    pub url: String,
    pub grpc: Grpc,
}

/// `http://` prepended to a bare `host:port`.
pub(crate) fn normalize(url: &str) -> String {
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    }
}

/// Where accounts and markets live by a node's status: the base shards (the shards
/// minus the splits) and every split the map records, or `None` when the status does not
/// describe a valid placement.
pub(crate) fn placement_of(status: &ClusterStatus) -> Option<Placement> {
    let shards = status.shards.len() as u32;
    let splits = &status.metadata.splits;
    let base = shards.checked_sub(splits.len() as u32)?;
    Placement::with_splits(base, splits).ok()
}

fn channel(url: &str, connect_timeout: Duration) -> Result<Endpoint, ClientError> {
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|e| ClientError::Config(format!("endpoint {url:?}: {e}")))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true))
}

impl Routes {
    /// A table over the configured endpoints (at least one), connecting lazily.
    pub(crate) fn new(urls: &[String], connect_timeout: Duration) -> Result<Routes, ClientError> {
        if urls.is_empty() {
            return Err(ClientError::Config("no endpoint".into()));
        }
        if urls.len() > NODES_MAX {
            return Err(ClientError::Config(format!(
                "{} endpoints; at most {NODES_MAX}",
                urls.len()
            )));
        }
        let mut nodes: Vec<Node> = Vec::with_capacity(urls.len());
        for u in urls {
            let url = normalize(u);
            if nodes.iter().any(|n| n.url == url) {
                continue;
            }
            let ch = channel(&url, connect_timeout)?.connect_lazy();
            nodes.push(Node {
                url,
                id: None,
                grpc: TradelogClient::new(ch),
                down_until: None,
            });
        }
        Ok(Routes {
            nodes,
            preferred: 0,
            mode: Mode::Unknown,
            placement: None,
            markets: BTreeMap::new(),
            leaders: Vec::new(),
            holders: Vec::new(),
            refreshed_at: None,
            connect_timeout,
        })
    }

    /// The index of the node with this URL, if it is known.
    pub(crate) fn index_of(&self, url: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.url == url)
    }

    /// The configured URLs, in order (for [`Client::connect`](crate::Client::connect)).
    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url.clone()).collect()
    }

    /// Node `index` is connected by `channel`: use it, and prefer that node.
    pub(crate) fn connected(&mut self, index: usize, channel: Channel) {
        self.nodes[index].grpc = TradelogClient::new(channel);
        self.preferred = index;
    }

    /// A channel's endpoint for `url` (for [`Client::connect`](crate::Client::connect)).
    pub(crate) fn endpoint(&self, url: &str) -> Result<Endpoint, ClientError> {
        channel(url, self.connect_timeout)
    }

    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether the leaders should be asked for before the next command.
    pub(crate) fn stale(&self, now: Instant) -> bool {
        match self.mode {
            Mode::Single => false,
            Mode::Unknown => self
                .refreshed_at
                .is_none_or(|t| now.duration_since(t) >= Duration::from_millis(NODE_DOWN_MS)),
            Mode::Cluster => self
                .refreshed_at
                .is_none_or(|t| now.duration_since(t) >= Duration::from_millis(ROUTES_TTL_MS)),
        }
    }

    /// The shard a command is applied on, when the table knows the placement (`None`:
    /// catalog commands, which every shard applies, or placement unknown).
    pub(crate) fn shard_of(&self, command: &d::Command) -> Option<d::ShardId> {
        let placement = self.placement.as_ref()?;
        match route(command, placement, &self.markets) {
            Route::Shard(s) => Some(s),
            Route::All => None,
        }
    }

    fn is_down(&self, i: usize, now: Instant) -> bool {
        self.nodes[i].down_until.is_some_and(|t| now < t)
    }

    /// The node for an attempt: the shard's leader if known and not avoided, else a node
    /// holding the shard (when the preferred node does not), else the preferred node, else
    /// the next node not avoided (which becomes preferred).
    pub(crate) fn pick(&mut self, shard: Option<d::ShardId>, now: Instant) -> Pick {
        let leader = shard
            .and_then(|s| self.leaders.get(s.0 as usize).copied().flatten())
            .filter(|&i| !self.is_down(i, now))
            .or_else(|| {
                let holders = self.holders.get(shard?.0 as usize)?;
                if holders.contains(&self.preferred) && !self.is_down(self.preferred, now) {
                    return Some(self.preferred);
                }
                holders.iter().copied().find(|&i| !self.is_down(i, now))
            });
        let index = match leader {
            Some(i) => i,
            None => {
                if self.is_down(self.preferred, now) {
                    let n = self.nodes.len();
                    if let Some(i) = (1..n)
                        .map(|k| (self.preferred + k) % n)
                        .find(|&i| !self.is_down(i, now))
                    {
                        self.preferred = i;
                    }
                }
                self.preferred
            }
        };
        let node = &self.nodes[index];
        Pick {
            index,
            url: node.url.clone(),
            grpc: node.grpc.clone(),
        }
    }

    /// The node for a read that needs every shard in `shards` (the shards nodes answered
    /// `WrongNode` for): one holding them all if any is known and not avoided (the
    /// preferred node first), else as [`pick`](Self::pick) for the last of them.
    pub(crate) fn pick_holding(
        &mut self,
        shards: &std::collections::BTreeSet<d::ShardId>,
        now: Instant,
    ) -> Pick {
        let holds_all = |r: &Routes, i: usize| {
            shards
                .iter()
                .all(|s| r.holders.get(s.0 as usize).is_some_and(|h| h.contains(&i)))
        };
        let n = self.nodes.len();
        let found = (0..n)
            .map(|k| (self.preferred + k) % n)
            .find(|&i| !self.is_down(i, now) && holds_all(self, i));
        match found {
            Some(index) if shards.len() > 1 => {
                let node = &self.nodes[index];
                Pick {
                    index,
                    url: node.url.clone(),
                    grpc: node.grpc.clone(),
                }
            }
            _ => self.pick(shards.iter().next_back().copied(), now),
        }
    }

    /// How to read every shard's events when no single node can: `None` when the
    /// preferred node holds every shard (or the routes are unknown, or this is not a
    /// cluster), else [`cover_of`](Self::cover_of) every shard.
    pub(crate) fn cover(&mut self, now: Instant) -> Option<Vec<(Pick, BTreeSet<d::ShardId>)>> {
        if self.mode != Mode::Cluster || self.holders.is_empty() {
            return None;
        }
        let all: BTreeSet<d::ShardId> = (0..self.holders.len() as u32).map(d::ShardId).collect();
        let parts = self.cover_of(&all, now, &BTreeSet::new());
        if parts.len() == 1 && parts[0].0.index == self.preferred {
            return None;
        }
        Some(parts)
    }

    /// As [`cover`](Self::cover), leaving out the nodes in `avoid` where another live
    /// node holds the shard (a node that lacks part of a shard's history), and split
    /// even when one node could serve it all; `None` when this is not a cluster whose
    /// holders are known.
    pub(crate) fn cover_avoiding(
        &mut self,
        now: Instant,
        avoid: &BTreeSet<usize>,
    ) -> Option<Vec<(Pick, BTreeSet<d::ShardId>)>> {
        if self.mode != Mode::Cluster || self.holders.is_empty() {
            return None;
        }
        let all: BTreeSet<d::ShardId> = (0..self.holders.len() as u32).map(d::ShardId).collect();
        Some(self.cover_of(&all, now, avoid))
    }

    /// Parts that together cover `shards` exactly once, each a node and the shards to
    /// read there. Few nodes are asked: the live node holding the most shards takes them
    /// (ties: the preferred node first, then in order), then the live node holding the
    /// most of the rest, and so on; a shard no live node is known to hold goes to
    /// [`pick`](Self::pick) (whose answer says what is wrong).
    pub(crate) fn cover_of(
        &mut self,
        shards: &BTreeSet<d::ShardId>,
        now: Instant,
        avoid: &BTreeSet<usize>,
    ) -> Vec<(Pick, BTreeSet<d::ShardId>)> {
        let holds = |r: &Routes, i: usize, s: d::ShardId| {
            r.holders.get(s.0 as usize).is_some_and(|h| h.contains(&i))
        };
        let n = self.nodes.len();
        let order: Vec<usize> = (0..n)
            .map(|k| (self.preferred + k) % n)
            .filter(|&i| !self.is_down(i, now) && !avoid.contains(&i))
            .collect();
        let mut left = shards.clone();
        let mut parts: Vec<(usize, BTreeSet<d::ShardId>)> = Vec::new();
        while !left.is_empty() {
            // The first node in `order` among those holding the most of what is left.
            let best = order
                .iter()
                .copied()
                .filter(|i| parts.iter().all(|(j, _)| j != i))
                .map(|i| (left.iter().filter(|&&s| holds(self, i, s)).count(), i))
                .fold(
                    None,
                    |best: Option<(usize, usize)>, (count, i)| match best {
                        Some((c, _)) if c >= count => best,
                        _ => Some((count, i)),
                    },
                );
            let Some((count, i)) = best.filter(|(count, _)| *count > 0) else {
                break;
            };
            let mine: BTreeSet<d::ShardId> = left
                .iter()
                .copied()
                .filter(|&s| holds(self, i, s))
                .collect();
            debug_assert_eq!(count, mine.len());
            left.retain(|s| !mine.contains(s));
            parts.push((i, mine));
        }
        for s in left {
            let i = self.pick(Some(s), now).index;
            match parts.iter_mut().find(|(j, _)| *j == i) {
                Some((_, set)) => {
                    set.insert(s);
                }
                None => parts.push((i, BTreeSet::from([s]))),
            }
        }
        parts
            .into_iter()
            .map(|(index, set)| {
                let node = &self.nodes[index];
                let pick = Pick {
                    index,
                    url: node.url.clone(),
                    grpc: node.grpc.clone(),
                };
                (pick, set)
            })
            .collect()
    }

    /// The node at `index` failed a call: avoid it for a while, and stop sending to it as
    /// a leader.
    pub(crate) fn failed(&mut self, index: usize, now: Instant) {
        self.nodes[index].down_until = Some(now + Duration::from_millis(NODE_DOWN_MS));
        for l in &mut self.leaders {
            if *l == Some(index) {
                *l = None;
            }
        }
        if self.preferred == index && self.nodes.len() > 1 {
            self.preferred = (index + 1) % self.nodes.len();
        }
        if self.mode == Mode::Cluster {
            // Ask again before the next command: the leaders may have moved.
            self.refreshed_at = None;
        }
    }

    /// A node answered from an older map than the one it names, or for a shard it does
    /// not hold: ask for the routes again before the next attempt.
    pub(crate) fn expire(&mut self) {
        if self.mode == Mode::Cluster {
            self.refreshed_at = None;
        }
    }

    /// A refresh attempt is starting (also when it fails: no storm of attempts).
    pub(crate) fn refreshing(&mut self, now: Instant) {
        self.refreshed_at = Some(now);
    }

    /// The node answered that it is a single node: no routing from now on.
    pub(crate) fn single(&mut self) {
        self.mode = Mode::Single;
    }

    /// Learns the nodes, the shard count and each shard's leader from a node's status.
    pub(crate) fn learn(&mut self, status: &ClusterStatus) {
        self.mode = Mode::Cluster;
        if let Some(p) = placement_of(status) {
            if self.placement.as_ref() != Some(&p) {
                self.placement = Some(p);
            }
        }
        let mut by_id: BTreeMap<u64, usize> = BTreeMap::new();
        for n in &status.nodes {
            let url = normalize(&n.url);
            let i = match self.nodes.iter().position(|k| k.url == url) {
                Some(i) => i,
                None if self.nodes.len() < NODES_MAX => {
                    let Ok(e) = channel(&url, self.connect_timeout) else {
                        continue;
                    };
                    self.nodes.push(Node {
                        url,
                        id: None,
                        grpc: TradelogClient::new(e.connect_lazy()),
                        down_until: None,
                    });
                    self.nodes.len() - 1
                }
                None => continue,
            };
            self.nodes[i].id = Some(n.node);
            by_id.insert(n.node, i);
        }
        self.leaders = status
            .shards
            .iter()
            .map(|s| s.leader.and_then(|l| by_id.get(&l).copied()))
            .collect();
        self.holders = status
            .shards
            .iter()
            .map(|s| {
                s.voters
                    .iter()
                    .chain(&s.learners)
                    .filter_map(|n| by_id.get(n).copied())
                    .collect()
            })
            .collect();
    }

    /// Learns where the markets live (their commands are routed by market).
    pub(crate) fn learn_markets(&mut self, markets: &[d::MarketSpec]) {
        self.markets = markets.iter().map(|m| (m.id, m.clone())).collect();
    }

    /// Whether market-scoped commands need the catalog to be routed.
    pub(crate) fn sharded(&self) -> bool {
        self.placement.as_ref().is_some_and(|p| p.shard_count() > 1)
    }

    /// The URL and node id (once known) of each node, for diagnostics.
    pub(crate) fn nodes(&self) -> Vec<(String, Option<u64>)> {
        self.nodes.iter().map(|n| (n.url.clone(), n.id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{NodeAddress, ShardReplicaStatus};

    fn routes(urls: &[&str]) -> Routes {
        let urls: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
        Routes::new(&urls, Duration::from_secs(1)).unwrap()
    }

    fn shard(s: u32, leader: Option<u64>) -> ShardReplicaStatus {
        ShardReplicaStatus {
            shard: d::ShardId(s),
            role: "Follower".into(),
            leader,
            term: 1,
            last_log_index: None,
            committed: None,
            applied: None,
            state_hash: String::new(),
            snapshot: None,
            voters: vec![1, 2, 3],
            learners: vec![],
            replication: vec![],
        }
    }

    fn status(leaders: &[Option<u64>]) -> ClusterStatus {
        ClusterStatus {
            node: 1,
            nodes: (1..=3)
                .map(|n| NodeAddress {
                    node: n,
                    url: format!("http://127.0.0.1:{}", 7700 + n),
                })
                .collect(),
            shards: leaders
                .iter()
                .enumerate()
                .map(|(s, l)| shard(s as u32, *l))
                .collect(),
            metadata: Default::default(),
        }
    }

    fn deposit(account: u64) -> d::Command {
        d::Command::Deposit {
            id: d::TransferId(1),
            account: d::AccountId(account),
            asset: d::AssetId(1),
            amount: d::Amount(1),
        }
    }

    #[tokio::test]
    async fn commands_for_a_split_off_account_go_to_the_new_shards_leader() {
        let mut r = routes(&["127.0.0.1:7701"]);
        let now = Instant::now();
        // Shards 0 and 1, and shard 2 made of shard 1's ids 1 mod 4 (1, 5, 9, ...).
        let mut st = status(&[Some(2), Some(3), Some(1)]);
        st.metadata.splits = vec![d::routing::Split {
            parent: d::ShardId(1),
            child: d::ShardId(2),
            modulus: 4,
            residue: 1,
            markets: vec![],
        }];
        r.learn(&st);
        assert_eq!(r.shard_of(&deposit(5)), Some(d::ShardId(2)));
        assert_eq!(r.shard_of(&deposit(3)), Some(d::ShardId(1)));
        assert_eq!(r.shard_of(&deposit(6)), Some(d::ShardId(0)));
        let s = r.shard_of(&deposit(9));
        assert_eq!(r.pick(s, now).url, "http://127.0.0.1:7701");
        // A status whose splits do not fit its shards changes nothing.
        let mut bad = st.clone();
        bad.metadata.splits[0].child = d::ShardId(7);
        r.learn(&bad);
        assert_eq!(r.shard_of(&deposit(5)), Some(d::ShardId(2)));
        assert_eq!(placement_of(&bad), None);
        // Without the splits, three shards would spread by id alone.
        assert_eq!(
            placement_of(&status(&[None, None, None]))
                .unwrap()
                .account_shard(d::AccountId(5)),
            d::ShardId(2)
        );
        assert_eq!(
            placement_of(&status(&[None, None, None]))
                .unwrap()
                .account_shard(d::AccountId(3)),
            d::ShardId(0)
        );
    }

    // Channels are made inside a runtime (connecting lazily spawns nothing yet).
    #[tokio::test]
    async fn commands_go_to_their_shards_leader_once_learned() {
        let mut r = routes(&["127.0.0.1:7701"]);
        let now = Instant::now();
        assert_eq!(r.mode(), Mode::Unknown);
        assert_eq!(r.shard_of(&deposit(5)), None, "no placement yet");
        assert_eq!(r.pick(None, now).url, "http://127.0.0.1:7701");

        r.learn(&status(&[Some(2), Some(3)]));
        assert_eq!(r.mode(), Mode::Cluster);
        // The configured node is matched by URL, the two others are added.
        assert_eq!(
            r.nodes(),
            vec![
                ("http://127.0.0.1:7701".to_string(), Some(1)),
                ("http://127.0.0.1:7702".to_string(), Some(2)),
                ("http://127.0.0.1:7703".to_string(), Some(3)),
            ]
        );
        assert_eq!(r.shard_of(&deposit(5)), Some(d::ShardId(1)));
        assert_eq!(r.shard_of(&deposit(4)), Some(d::ShardId(0)));
        let to = |r: &mut Routes, c: &d::Command| {
            let s = r.shard_of(c);
            r.pick(s, now).url
        };
        assert_eq!(to(&mut r, &deposit(4)), "http://127.0.0.1:7702");
        assert_eq!(to(&mut r, &deposit(5)), "http://127.0.0.1:7703");
        // Catalog commands and queries go to the preferred node.
        let asset = d::Command::CreateAsset(d::Asset {
            id: d::AssetId(1),
            code: "USD".into(),
            scale: 2,
        });
        assert_eq!(to(&mut r, &asset), "http://127.0.0.1:7701");
    }

    #[tokio::test]
    async fn a_failed_node_is_avoided_then_tried_again() {
        let mut r = routes(&["127.0.0.1:7701", "127.0.0.1:7702", "127.0.0.1:7703"]);
        let now = Instant::now();
        r.learn(&status(&[Some(2)]));
        let leader = r.pick(Some(d::ShardId(0)), now);
        assert_eq!(leader.url, "http://127.0.0.1:7702");
        r.failed(leader.index, now);
        // Neither as the leader nor as the preferred node.
        assert_eq!(
            r.pick(Some(d::ShardId(0)), now).url,
            "http://127.0.0.1:7701"
        );
        r.failed(0, now);
        assert_eq!(
            r.pick(Some(d::ShardId(0)), now).url,
            "http://127.0.0.1:7703"
        );
        assert_eq!(r.pick(None, now).url, "http://127.0.0.1:7703");
        // Every node avoided: the preferred one is still tried.
        r.failed(2, now);
        assert_eq!(r.pick(None, now).url, "http://127.0.0.1:7701");
        // After NODE_DOWN_MS they are tried again; a new status names the leader.
        let later = now + Duration::from_millis(NODE_DOWN_MS);
        r.learn(&status(&[Some(3)]));
        assert_eq!(
            r.pick(Some(d::ShardId(0)), later).url,
            "http://127.0.0.1:7703"
        );
    }

    #[tokio::test]
    async fn reads_of_every_shard_are_split_over_the_fewest_holders() {
        let mut r = routes(&["127.0.0.1:7701"]);
        let now = Instant::now();
        let cover = |r: &mut Routes, now| {
            r.cover(now).map(|parts| {
                parts
                    .into_iter()
                    .map(|(p, set)| (p.url, set.iter().map(|s| s.0).collect::<Vec<_>>()))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(None, cover(&mut r, now), "routes unknown: no split");
        // Every node holds every shard: the preferred node serves it all.
        r.learn(&status(&[Some(1), Some(2), Some(3), Some(1)]));
        assert_eq!(None, cover(&mut r, now));
        // Four shards at two replicas on three nodes: 0 -> {1, 2}, 1 -> {2, 3},
        // 2 -> {3, 1}, 3 -> {2, 3}. Node 2 holds the most (0, 1, 3), node 1 the rest.
        let mut st = status(&[Some(1), Some(2), Some(3), Some(2)]);
        for (s, v) in [
            (0, vec![1, 2]),
            (1, vec![2, 3]),
            (2, vec![3, 1]),
            (3, vec![2, 3]),
        ] {
            st.shards[s].voters = v;
        }
        r.learn(&st);
        let url = |n: u64| format!("http://127.0.0.1:{}", 7700 + n);
        assert_eq!(
            Some(vec![(url(2), vec![0, 1, 3]), (url(1), vec![2])]),
            cover(&mut r, now)
        );
        // Some shards only (the books an open-orders read still needs): node 1, preferred,
        // holds shard 2; node 3 holds both 1 and 2.
        let of = |r: &mut Routes, shards: &[u32], now| {
            r.cover_of(
                &shards.iter().map(|s| d::ShardId(*s)).collect(),
                now,
                &BTreeSet::new(),
            )
            .into_iter()
            .map(|(p, set)| (p.url, set.iter().map(|s| s.0).collect::<Vec<_>>()))
            .collect::<Vec<_>>()
        };
        assert_eq!(vec![(url(1), vec![2])], of(&mut r, &[2], now));
        assert_eq!(vec![(url(3), vec![1, 2])], of(&mut r, &[1, 2], now));
        // Each node holds two of 0, 2 and 3: the preferred node 1 takes 0 and 2 (ties go
        // to the first in order), node 2 the rest.
        assert_eq!(
            vec![(url(1), vec![0, 2]), (url(2), vec![3])],
            of(&mut r, &[0, 2, 3], now)
        );
        assert_eq!(Vec::<(String, Vec<u32>)>::new(), of(&mut r, &[], now));
        // Node 1 lacks some history: the other holders serve every shard (node 2 holds 0,
        // 1 and 3, node 3 holds 2), split even where one node could not serve them all.
        let avoiding = |r: &mut Routes, avoid: &[usize], now| {
            r.cover_avoiding(now, &avoid.iter().copied().collect())
                .unwrap()
                .into_iter()
                .map(|(p, set)| (p.url, set.iter().map(|s| s.0).collect::<Vec<_>>()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            vec![(url(2), vec![0, 1, 3]), (url(3), vec![2])],
            avoiding(&mut r, &[0], now)
        );
        // Nodes 2 and 3 avoided: node 1 serves what it holds (0 and 2); shards 1 and 3,
        // on no other node, go where `pick` says (their leader, node 2).
        assert_eq!(
            vec![(url(1), vec![0, 2]), (url(2), vec![1, 3])],
            avoiding(&mut r, &[1, 2], now)
        );
        // Node 2 is down: node 3 holds 1, 2 and 3, node 1 has shard 0.
        r.failed(1, now);
        assert_eq!(
            Some(vec![(url(3), vec![1, 2, 3]), (url(1), vec![0])]),
            cover(&mut r, now)
        );
        // Node 1 is down too, so node 3 is preferred: it takes 1, 2 and 3, and shard 0,
        // whose holders are both down, goes where `pick` says: node 3 as well. One node
        // is asked, as without a split (its answer names the shard it lacks).
        r.failed(0, now);
        assert_eq!(None, cover(&mut r, now));
        // Once node 2 is back, it serves shard 0.
        let later = now + Duration::from_millis(NODE_DOWN_MS);
        r.failed(0, later);
        assert_eq!(
            Some(vec![(url(3), vec![1, 2, 3]), (url(2), vec![0])]),
            cover(&mut r, later)
        );
    }

    #[tokio::test]
    async fn a_shard_without_a_known_leader_goes_to_a_node_holding_it() {
        let mut r = routes(&["127.0.0.1:7701"]);
        let now = Instant::now();
        // Node 1 holds shard 0 only; shard 1 is on nodes 2 and 3, leader unknown here.
        let mut st = status(&[Some(1), None]);
        st.shards[0].voters = vec![1, 2];
        st.shards[1].role = "NotHeld".into();
        st.shards[1].voters = vec![2, 3];
        r.learn(&st);
        assert_eq!(
            r.pick(Some(d::ShardId(1)), now).url,
            "http://127.0.0.1:7702"
        );
        assert_eq!(
            r.pick(Some(d::ShardId(0)), now).url,
            "http://127.0.0.1:7701"
        );
        r.failed(1, now);
        assert_eq!(
            r.pick(Some(d::ShardId(1)), now).url,
            "http://127.0.0.1:7703"
        );
        // A holder that is the preferred node is taken before the others.
        r.failed(2, now);
        let later = now + Duration::from_millis(NODE_DOWN_MS);
        assert_eq!(r.pick(None, later).url, "http://127.0.0.1:7701");
        r.preferred = 2;
        assert_eq!(
            r.pick(Some(d::ShardId(1)), later).url,
            "http://127.0.0.1:7703"
        );
        // Queries without a shard still go to the preferred node.
        assert_eq!(r.pick(None, later).url, "http://127.0.0.1:7703");
    }

    #[tokio::test]
    async fn a_read_of_several_shards_goes_to_a_node_holding_them_all() {
        let mut r = routes(&["127.0.0.1:7701"]);
        let now = Instant::now();
        // Shard 0 on nodes 1 and 2, shard 1 on nodes 2 and 3, shard 2 on 1 and 3.
        let mut st = status(&[None, None, None]);
        st.shards[0].voters = vec![1, 2];
        st.shards[1].voters = vec![2, 3];
        st.shards[2].voters = vec![1, 3];
        r.learn(&st);
        let set = |s: &[u32]| s.iter().map(|s| d::ShardId(*s)).collect();
        assert_eq!(
            r.pick_holding(&set(&[0, 1]), now).url,
            "http://127.0.0.1:7702"
        );
        assert_eq!(
            r.pick_holding(&set(&[1, 2]), now).url,
            "http://127.0.0.1:7703"
        );
        assert_eq!(
            r.pick_holding(&set(&[0, 2]), now).url,
            "http://127.0.0.1:7701"
        );
        // No node holds all three: a holder of the last one named.
        let p = r.pick_holding(&set(&[0, 1, 2]), now);
        assert!(
            p.url.ends_with("7701") || p.url.ends_with("7703"),
            "{}",
            p.url
        );
        // One shard: as `pick`.
        assert_eq!(r.pick_holding(&set(&[1]), now).url, "http://127.0.0.1:7702");
    }

    #[tokio::test]
    async fn a_single_node_is_never_asked_again() {
        let mut r = routes(&["127.0.0.1:7701"]);
        let now = Instant::now();
        assert!(r.stale(now));
        r.refreshing(now);
        assert!(!r.stale(now), "not again at once after a failed attempt");
        assert!(r.stale(now + Duration::from_millis(NODE_DOWN_MS)));
        r.single();
        assert!(!r.stale(now + Duration::from_secs(3600)));
        assert_eq!(r.shard_of(&deposit(5)), None);
    }

    #[tokio::test]
    async fn orders_are_routed_by_account_and_cancels_by_market() {
        let mut r = routes(&["127.0.0.1:7701"]);
        r.learn(&status(&[Some(1), Some(2), Some(3)]));
        assert!(r.sharded());
        let spec = d::MarketSpec {
            id: d::MarketId(7),
            base: d::AssetId(1),
            quote: d::AssetId(2),
            lot_size: 1,
            tick_size: 1,
            min_qty: d::Qty(1),
            max_qty: d::Qty(1_000),
            maker_fee_bps: 0,
            taker_fee_bps: 0,
            fee_account: d::AccountId(1),
            collar_bps: 0,
            shard: d::ShardId(2),
        };
        r.learn_markets(&[spec]);
        let cancel = d::Command::CancelOrder {
            market: d::MarketId(7),
            order: d::OrderId(1),
        };
        assert_eq!(r.shard_of(&cancel), Some(d::ShardId(2)));
    }
}
