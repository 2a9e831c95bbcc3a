//! Automatic leader balancing: every node that leads more shards than its share hands one
//! leadership at a time to the live, caught-up voter that leads the fewest.
//!
//! Every node runs [`balancer`] every [`ClusterConfig::leader_balance_interval_ms`]
//! (`crate::ClusterConfig`). Only a leader ever hands its own leadership over, so two
//! nodes never fight over one shard. The decision is [`next_handover`], a pure function of
//! what this node sees (each group's voters and leader, and which voters answered the
//! groups this node leads recently and are caught up):
//!
//! * nothing happens while any group has no leader (an election is running) or the groups'
//!   voter sets differ (a membership change is under way);
//! * the target is the live voter leading the fewest groups (lowest id on a tie);
//! * this node hands over only when it leads at least two more groups than the target, so
//!   a balanced cluster (every voter within one of every other) never moves, and a command
//!   that moved one leadership without unbalancing the counts is not undone;
//! * of its groups, it gives the one whose preferred leader ([`ClusterNode::balance_leaders`]'s
//!   layout: shard `s` led by the `s mod n`-th voter) is the target, else its highest shard.
//!
//! Each handover lowers the largest count, so the counts converge to within one of each
//! other; a node that was down leads again once it is back and caught up.
//!
//! On a cluster whose shards live on different nodes (a replication factor below the node
//! count, or a node that does not hold every shard), no node sees every group, so counts
//! cannot be compared. There every node computes the same preferred leader per shard from
//! the cluster map alone ([`tradelog_placement::preferred_leaders`]: leaders spread as
//! evenly as the replica sets allow), and a shard's leader hands over to its preferred
//! leader once the map is settled, the group's voters are its target, and that node is
//! live and caught up in the group ([`preferred_handover`]). A leadership moved by command
//! on such a cluster returns to the preferred node after a round.

use crate::ClusterNode;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::Instant as _;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;
use tradelog_domain::ShardId;
use tradelog_raft::{ManageOp, NodeId};

/// Default [`crate::ClusterConfig::leader_balance_interval_ms`]: how often a node looks for
/// an uneven spread of leaders.
pub const LEADER_BALANCE_INTERVAL_MS: u64 = 5_000;
/// A voter counts as live for balancing when it acknowledged a heartbeat or an append of
/// every group this node leads within this many milliseconds.
pub const LEADER_BALANCE_ACK_AGE_MAX_MS: u64 = 1_000;
/// ... and is at most this many entries behind this node's log in every such group.
pub const LEADER_BALANCE_LAG_ENTRIES_MAX: u64 = 64;

/// One group as the balancer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupView {
    /// The shard.
    pub shard: ShardId,
    /// Its voters.
    pub voters: BTreeSet<NodeId>,
    /// Its current leader, if known.
    pub leader: Option<NodeId>,
}

/// The one leadership node `me` should hand over now, as `(shard, to)`, if any (see the
/// module documentation). `live` holds the voters that may receive a leadership.
pub fn next_handover(
    me: NodeId,
    groups: &[GroupView],
    live: &BTreeSet<NodeId>,
) -> Option<(ShardId, NodeId)> {
    let voters = &groups.first()?.voters;
    if groups
        .iter()
        .any(|g| g.leader.is_none() || g.voters != *voters)
    {
        return None;
    }
    if !voters.contains(&me) {
        return None;
    }
    let mut led: BTreeMap<NodeId, usize> = voters.iter().map(|v| (*v, 0)).collect();
    for g in groups {
        if let Some(n) = g.leader.and_then(|l| led.get_mut(&l)) {
            *n += 1;
        }
    }
    let mine = led[&me];
    let (target, fewest) = led
        .iter()
        .filter(|(v, _)| **v != me && live.contains(v))
        .min_by_key(|(v, n)| (**n, **v))
        .map(|(v, n)| (*v, *n))?;
    if mine < fewest + 2 {
        return None;
    }
    let order: Vec<NodeId> = voters.iter().copied().collect();
    let preferred = |s: ShardId| order[s.0 as usize % order.len()];
    let mut own = groups.iter().filter(|g| g.leader == Some(me));
    let pick = own
        .clone()
        .find(|g| preferred(g.shard) == target)
        .or_else(|| own.next_back())?;
    Some((pick.shard, target))
}

/// A group this node leads, as [`preferred_handover`] sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedGroup {
    /// The shard.
    pub shard: ShardId,
    /// Its voters.
    pub voters: BTreeSet<NodeId>,
    /// The voters that acknowledged this node recently and are caught up in this group.
    pub live: BTreeSet<NodeId>,
}

/// The one leadership node `me` should hand over now on a cluster whose shards live on
/// different nodes, as `(shard, to)`: the first group it leads (lowest shard) whose
/// preferred leader (computed from `targets`, the map's target replica sets) is another
/// node that is live and caught up there, when the map is `settled` (no move under way)
/// and the group's voters are its target.
pub fn preferred_handover(
    me: NodeId,
    targets: &BTreeMap<ShardId, BTreeSet<NodeId>>,
    settled: bool,
    led: &[LedGroup],
) -> Option<(ShardId, NodeId)> {
    if !settled || led.is_empty() {
        return None;
    }
    let preferred = tradelog_placement::preferred_leaders(targets);
    led.iter().find_map(|g| {
        let to = *preferred.get(&g.shard)?;
        let ready = to != me && targets.get(&g.shard) == Some(&g.voters) && g.live.contains(&to);
        ready.then_some((g.shard, to))
    })
}

/// What the balancer sees of this node's groups.
struct BalanceView {
    /// Every group's voters and leader.
    views: Vec<GroupView>,
    /// The voters live and caught up in every group this node leads.
    live: BTreeSet<NodeId>,
    /// The groups this node leads, each with its own live voters.
    led: Vec<LedGroup>,
}

impl ClusterNode {
    /// What the balancer sees: every group's voters and leader, and the voters that are
    /// live and caught up in the groups this node leads.
    fn balance_view(&self) -> BalanceView {
        let mut views = Vec::with_capacity(self.groups.len());
        let mut live: Option<BTreeSet<NodeId>> = None;
        let mut led = Vec::new();
        for g in self.replicas() {
            let m = g.handle.raft().metrics().borrow_watched().clone();
            let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
            if m.current_leader == Some(self.id) {
                let last = m.last_log_index.unwrap_or(0);
                let heard = m.heartbeat.clone().unwrap_or_default();
                let matched = m.replication.clone().unwrap_or_default();
                let here: BTreeSet<NodeId> = voters
                    .iter()
                    .copied()
                    .filter(|v| {
                        let recent = heard.get(v).and_then(|t| t.as_ref()).is_some_and(|t| {
                            t.elapsed() <= Duration::from_millis(LEADER_BALANCE_ACK_AGE_MAX_MS)
                        });
                        let caught_up = matched
                            .get(v)
                            .and_then(|l| l.as_ref())
                            .is_some_and(|l| l.index + LEADER_BALANCE_LAG_ENTRIES_MAX >= last);
                        recent && caught_up
                    })
                    .collect();
                live = Some(match live {
                    None => here.clone(),
                    Some(l) => l.intersection(&here).copied().collect(),
                });
                led.push(LedGroup {
                    shard: g.handle.group(),
                    voters: voters.clone(),
                    live: here,
                });
            }
            views.push(GroupView {
                shard: g.handle.group(),
                voters,
                leader: m.current_leader,
            });
        }
        BalanceView {
            views,
            live: live.unwrap_or_default(),
            led,
        }
    }

    /// How many leaderships this node's automatic balancing handed over since it started.
    pub fn leader_handovers(&self) -> u64 {
        self.handovers.load(Ordering::Relaxed)
    }

    /// One round of automatic balancing: hands over at most one leadership this node holds
    /// (see [`next_handover`]). Returns what it handed over.
    pub async fn balance_step(&self) -> Option<(ShardId, NodeId)> {
        let view = self.balance_view();
        // Every shard here, all with the same voters: counts compare (the first rule);
        // else the map's preferred leaders decide.
        let everywhere = view.views.len() == self.shard_count_u32() as usize
            && view.views.windows(2).all(|w| w[0].voters == w[1].voters);
        let (shard, to) = if everywhere {
            next_handover(self.id, &view.views, &view.live)?
        } else {
            let map = self.map();
            preferred_handover(self.id, &map.shards, map.is_settled(), &view.led)?
        };
        let g = self.group(shard)?;
        match g.manage(ManageOp::TransferLeader { to }).await {
            Ok(()) => {
                self.handovers.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%shard, from = self.id, to, "leader balancing: handed over");
                Some((shard, to))
            }
            Err(e) => {
                tracing::debug!(%shard, to, "leader balancing: {e}");
                None
            }
        }
    }
}

/// Runs [`ClusterNode::balance_step`] every `interval_ms` until the node stops (it holds
/// the node only weakly, so it never keeps a stopped node alive).
pub(crate) async fn balancer(node: Weak<ClusterNode>, interval_ms: u64) {
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once: let the groups elect their first leaders first.
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(node) = node.upgrade() else { return };
        if node.stopped.load(Ordering::Acquire) {
            return;
        }
        node.balance_step().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    fn groups(voters: &[NodeId], leaders: &[Option<NodeId>]) -> Vec<GroupView> {
        leaders
            .iter()
            .enumerate()
            .map(|(s, l)| GroupView {
                shard: ShardId(s as u32),
                voters: set(voters),
                leader: *l,
            })
            .collect()
    }

    #[test]
    fn a_node_leading_everything_hands_the_preferred_shard_to_the_least_loaded_voter() {
        let g = groups(&[1, 2, 3], &[Some(1), Some(1), Some(1)]);
        // Shard 1's preferred leader is node 2 (1 mod 3 -> the second voter).
        assert_eq!(
            Some((ShardId(1), 2)),
            next_handover(1, &g, &set(&[1, 2, 3]))
        );
        // Node 2 is down: node 3 gets its preferred shard 2.
        assert_eq!(Some((ShardId(2), 3)), next_handover(1, &g, &set(&[1, 3])));
        // Only the leader acts.
        assert_eq!(None, next_handover(2, &g, &set(&[1, 2, 3])));
    }

    #[test]
    fn two_shards_on_one_of_three_nodes_spread() {
        let g = groups(&[1, 2, 3], &[Some(1), Some(1)]);
        assert_eq!(
            Some((ShardId(1), 2)),
            next_handover(1, &g, &set(&[1, 2, 3]))
        );
    }

    #[test]
    fn without_a_preferred_shard_the_highest_led_shard_goes() {
        // Node 1 leads shards 0 and 3; shard 0 prefers node 1, shard 3 prefers node 1 too.
        let g = groups(&[1, 2, 3], &[Some(1), Some(2), Some(3), Some(1), Some(1)]);
        // Counts: 1 -> 3, 2 -> 1, 3 -> 1. Shard 4 prefers node 2 (4 mod 3 = 1).
        assert_eq!(
            Some((ShardId(4), 2)),
            next_handover(1, &g, &set(&[1, 2, 3]))
        );
        let g = groups(&[1, 2, 3], &[Some(1), Some(2), Some(1), Some(1)]);
        // Counts 3, 1, 0: node 3 is the target; shard 2 prefers node 3.
        assert_eq!(
            Some((ShardId(2), 3)),
            next_handover(1, &g, &set(&[1, 2, 3]))
        );
        let g = groups(&[1, 2, 3], &[Some(1), Some(1), Some(2), Some(2)]);
        // Counts 2, 2, 0: shard 2 (preferred: node 3) is node 2's; node 1 gives shard 1.
        assert_eq!(
            Some((ShardId(1), 3)),
            next_handover(1, &g, &set(&[1, 2, 3]))
        );
        assert_eq!(
            Some((ShardId(2), 3)),
            next_handover(2, &g, &set(&[1, 2, 3]))
        );
    }

    #[test]
    fn a_balanced_or_unsettled_cluster_does_not_move() {
        let all = set(&[1, 2, 3]);
        // Within one of each other.
        let g = groups(&[1, 2, 3], &[Some(1), Some(1), Some(2), Some(3)]);
        assert_eq!(None, next_handover(1, &g, &all));
        assert_eq!(
            None,
            next_handover(1, &groups(&[1, 2, 3], &[Some(1)]), &all)
        );
        // An election is running in one group.
        let g = groups(&[1, 2, 3], &[Some(1), Some(1), None]);
        assert_eq!(None, next_handover(1, &g, &all));
        // The voter sets differ (a membership change).
        let mut g = groups(&[1, 2, 3], &[Some(1), Some(1), Some(1)]);
        g[2].voters = set(&[1, 2, 3, 4]);
        assert_eq!(None, next_handover(1, &g, &all));
        // Nobody else is live.
        let g = groups(&[1, 2, 3], &[Some(1), Some(1), Some(1)]);
        assert_eq!(None, next_handover(1, &g, &set(&[1])));
        // This node is not a voter (it is being removed or was never added).
        assert_eq!(None, next_handover(4, &g, &all));
        assert_eq!(None, next_handover(1, &[], &all));
    }

    fn led(shard: u32, voters: &[NodeId], live: &[NodeId]) -> LedGroup {
        LedGroup {
            shard: ShardId(shard),
            voters: set(voters),
            live: set(live),
        }
    }

    #[test]
    fn on_a_partial_cluster_leaders_go_to_the_maps_preferred_nodes() {
        // Four shards at two replicas on four nodes.
        let targets: BTreeMap<ShardId, BTreeSet<NodeId>> = [
            (0, vec![1, 2]),
            (1, vec![2, 3]),
            (2, vec![3, 4]),
            (3, vec![4, 1]),
        ]
        .into_iter()
        .map(|(s, v)| (ShardId(s), set(&v)))
        .collect();
        let preferred = tradelog_placement::preferred_leaders(&targets);
        // Node 1 leads shards 0 and 3 (after node 4 joined, say); it keeps the one it is
        // preferred for and hands the other to its preferred node.
        let mine: Vec<LedGroup> = [0, 3]
            .iter()
            .map(|s| {
                let v: Vec<NodeId> = targets[&ShardId(*s)].iter().copied().collect();
                led(*s, &v, &v)
            })
            .collect();
        let expect = mine
            .iter()
            .find(|g| preferred[&g.shard] != 1)
            .map(|g| (g.shard, preferred[&g.shard]));
        assert!(
            expect.is_some(),
            "node 1 cannot be preferred for both: {preferred:?}"
        );
        assert_eq!(expect, preferred_handover(1, &targets, true, &mine));
        // Not while a move is under way, nor while the group is not at its target, nor
        // to a preferred node that is not live and caught up there.
        assert_eq!(None, preferred_handover(1, &targets, false, &mine));
        let (shard, to) = expect.unwrap();
        let k = mine.iter().position(|g| g.shard == shard).unwrap();
        let mut joint = mine.clone();
        joint[k].voters.insert(9);
        assert_eq!(None, preferred_handover(1, &targets, true, &joint));
        let mut behind = mine.clone();
        behind[k].live.remove(&to);
        assert_eq!(None, preferred_handover(1, &targets, true, &behind));
        // A node leading only the shards it is preferred for does nothing.
        let kept: Vec<LedGroup> = mine.into_iter().filter(|g| g.shard != shard).collect();
        assert_eq!(None, preferred_handover(1, &targets, true, &kept));
        assert_eq!(None, preferred_handover(1, &targets, true, &[]));
    }

    #[test]
    fn repeated_handovers_converge_to_within_one() {
        // Five shards, all on node 1; apply the leaders' decisions until nothing moves.
        let voters = [1, 2, 3];
        let mut leaders: Vec<Option<NodeId>> = vec![Some(1); 5];
        let live = set(&voters);
        let mut moves = 0;
        loop {
            let g = groups(&voters, &leaders);
            let step = voters.iter().find_map(|me| next_handover(*me, &g, &live));
            let Some((s, to)) = step else { break };
            leaders[s.0 as usize] = Some(to);
            moves += 1;
            assert!(moves <= 5, "no convergence: {leaders:?}");
        }
        let mut led = BTreeMap::new();
        for l in leaders.iter().flatten() {
            *led.entry(*l).or_insert(0) += 1;
        }
        assert_eq!(BTreeMap::from([(1, 2), (2, 2), (3, 1)]), led);
        assert_eq!(3, moves);
    }
}
