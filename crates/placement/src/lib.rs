//! Replica placement: where each shard's replicas and leader should be, and the steps that
//! move a cluster there (docs/design/0013, step 1).
//!
//! Owns: the placement policy as pure functions of a [`Layout`] (the nodes with their
//! state, and per shard its voters, learners and leader) and a replication factor:
//!
//! * [`targets`]: per shard, `rf` distinct live nodes and a leader among them, such that
//!   replicas per live node are within one of each other, no live node leads more than
//!   `ceil(shards / live nodes)` shards and leaders are spread as evenly as the replica sets
//!   allow, with the fewest changes to the current layout (replicas already on live nodes
//!   stay unless balance needs them elsewhere; a replica moves only from the most to the
//!   least loaded node);
//! * [`preferred_leaders`]: the leaders of given target sets by the same rule, from the sets
//!   alone (what a partial cluster's leader balancer aims for);
//! * [`plan`]: per shard, the ordered membership steps from the current replicas to the
//!   target: add a learner, promote it once caught up, hand the leadership away from a
//!   replica about to leave, remove it. One change at a time per shard, each addition before
//!   the removal it replaces, so a shard never has fewer voters than
//!   `min(its voters now, rf)` and two replicas of one shard never share a node;
//! * [`Layout::apply`]: one step's effect, refused with a typed [`StepError`] when it does
//!   not fit the layout (how tests and a reconciler follow a plan);
//! * [`ClusterMap`]: the state the metadata group replicates (nodes, replication factor,
//!   every shard's target replica set), changed only by [`MapCommand`]s, refused with a
//!   typed [`MapReject`] (step 2).
//!
//! Deterministic: ordered maps and sets only, ties broken by the lowest node or shard id, no
//! clock, no randomness, no I/O; the same layout always gives the same plan.
//!
//! Must never depend on: the network, Raft, storage or the engine. Running the steps (Raft
//! membership changes, catching a learner up, the metadata group recording progress) belongs
//! to the crates that own those.

mod map;

pub use map::{ClusterMap, ClusterMapV1, MapCommand, MapNode, MapReject, NODE_ADDR_BYTES_MAX};

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use tradelog_domain::{ShardId, SHARD_COUNT_MAX};

/// A node's id (the same number as its Raft node id).
pub type NodeId = u64;

/// The largest replication factor accepted.
pub const REPLICATION_FACTOR_MAX: usize = 7;
/// The most nodes a layout may name.
pub const NODES_MAX: usize = 1_024;

/// What a node may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeState {
    /// Up and taking replicas.
    Live,
    /// Up, but leaving: its replicas move elsewhere, it takes none.
    Draining,
    /// Not answering: its replicas are replaced elsewhere, it takes none.
    Down,
}

/// One shard's replicas as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replicas {
    /// The voting members.
    pub voters: BTreeSet<NodeId>,
    /// The non-voting members (catching up).
    pub learners: BTreeSet<NodeId>,
    /// The current leader, if known (one of the voters).
    pub leader: Option<NodeId>,
}

/// The nodes and every shard's replicas.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// Every node and its state.
    pub nodes: BTreeMap<NodeId, NodeState>,
    /// Every shard's replicas.
    pub shards: BTreeMap<ShardId, Replicas>,
}

/// Where one shard should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Its replicas: `rf` distinct live nodes.
    pub replicas: BTreeSet<NodeId>,
    /// Its leader: one of `replicas`.
    pub leader: NodeId,
}

/// One membership step of one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Add the node as a learner (it starts catching up).
    AddLearner(NodeId),
    /// Make the learner a voter (once caught up).
    Promote(NodeId),
    /// Hand the leadership to this voter.
    TransferLeader(NodeId),
    /// Remove the replica on this node (never the leader: a transfer comes first).
    Remove(NodeId),
}

/// The steps of one shard, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardPlan {
    /// The shard.
    pub shard: ShardId,
    /// Its steps, in the order to run them.
    pub steps: Vec<Step>,
}

/// A layout or replication factor the policy cannot place.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The replication factor is 0 or above [`REPLICATION_FACTOR_MAX`].
    #[error("replication factor must be 1 to {REPLICATION_FACTOR_MAX}, got {rf}")]
    ReplicationFactor {
        /// The factor asked for.
        rf: usize,
    },
    /// Fewer live nodes than the replication factor.
    #[error("replication factor {rf} needs {rf} live nodes, there are {live}")]
    NotEnoughNodes {
        /// The factor asked for.
        rf: usize,
        /// The live nodes.
        live: usize,
    },
    /// More nodes than [`NODES_MAX`] or shards than `SHARD_COUNT_MAX`.
    #[error("layout too large: {nodes} nodes (at most {NODES_MAX}), {shards} shards (at most {SHARD_COUNT_MAX})")]
    TooLarge {
        /// The nodes named.
        nodes: usize,
        /// The shards named.
        shards: usize,
    },
    /// A replica on a node the layout does not name.
    #[error("shard {shard} has a replica on unknown node {node}")]
    UnknownNode {
        /// The shard.
        shard: u32,
        /// The node.
        node: NodeId,
    },
    /// A shard without voters.
    #[error("shard {shard} has no voters")]
    NoVoters {
        /// The shard.
        shard: u32,
    },
    /// A node both voter and learner of one shard.
    #[error("node {node} is both a voter and a learner of shard {shard}")]
    VoterAndLearner {
        /// The shard.
        shard: u32,
        /// The node.
        node: NodeId,
    },
    /// A leader that is not a voter.
    #[error("the leader {leader} of shard {shard} is not one of its voters")]
    LeaderNotVoter {
        /// The shard.
        shard: u32,
        /// The leader.
        leader: NodeId,
    },
}

/// A step that does not fit the layout it is applied to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The shard is not in the layout.
    #[error("unknown shard {0}")]
    UnknownShard(u32),
    /// The node is not in the layout.
    #[error("unknown node {0}")]
    UnknownNode(NodeId),
    /// Adding a learner on a node that already holds a replica of the shard.
    #[error("node {0} already holds a replica of the shard")]
    AlreadyMember(NodeId),
    /// Adding a learner on a node that takes no replicas.
    #[error("node {0} is not live")]
    NotLive(NodeId),
    /// Promoting a node that is not a learner.
    #[error("node {0} is not a learner")]
    NotLearner(NodeId),
    /// Handing the leadership to a node that is not a voter.
    #[error("node {0} is not a voter")]
    NotVoter(NodeId),
    /// Removing a node that holds no replica of the shard.
    #[error("node {0} holds no replica of the shard")]
    NotMember(NodeId),
    /// Removing the leader (hand the leadership over first).
    #[error("node {0} leads the shard; transfer the leadership first")]
    RemovesLeader(NodeId),
    /// Removing the last voter.
    #[error("node {0} is the shard's last voter")]
    LastVoter(NodeId),
}

impl Layout {
    /// The effect of `step` on `shard`, or why it does not fit.
    pub fn apply(&mut self, shard: ShardId, step: Step) -> Result<(), StepError> {
        let node = match step {
            Step::AddLearner(n) | Step::Promote(n) | Step::TransferLeader(n) | Step::Remove(n) => n,
        };
        let state = *self.nodes.get(&node).ok_or(StepError::UnknownNode(node))?;
        let r = self
            .shards
            .get_mut(&shard)
            .ok_or(StepError::UnknownShard(shard.0))?;
        match step {
            Step::AddLearner(n) => {
                if r.voters.contains(&n) || r.learners.contains(&n) {
                    return Err(StepError::AlreadyMember(n));
                }
                if state != NodeState::Live {
                    return Err(StepError::NotLive(n));
                }
                r.learners.insert(n);
            }
            Step::Promote(n) => {
                if !r.learners.remove(&n) {
                    return Err(StepError::NotLearner(n));
                }
                r.voters.insert(n);
            }
            Step::TransferLeader(n) => {
                if !r.voters.contains(&n) {
                    return Err(StepError::NotVoter(n));
                }
                r.leader = Some(n);
            }
            Step::Remove(n) => {
                if r.learners.remove(&n) {
                    return Ok(());
                }
                if !r.voters.contains(&n) {
                    return Err(StepError::NotMember(n));
                }
                if r.leader == Some(n) {
                    return Err(StepError::RemovesLeader(n));
                }
                if r.voters.len() == 1 {
                    return Err(StepError::LastVoter(n));
                }
                r.voters.remove(&n);
            }
        }
        Ok(())
    }

    /// The live nodes.
    pub fn live(&self) -> BTreeSet<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, s)| **s == NodeState::Live)
            .map(|(n, _)| *n)
            .collect()
    }

    fn validate(&self, rf: usize) -> Result<(), PlacementError> {
        if rf == 0 || rf > REPLICATION_FACTOR_MAX {
            return Err(PlacementError::ReplicationFactor { rf });
        }
        if self.nodes.len() > NODES_MAX || self.shards.len() > SHARD_COUNT_MAX as usize {
            return Err(PlacementError::TooLarge {
                nodes: self.nodes.len(),
                shards: self.shards.len(),
            });
        }
        for (shard, r) in &self.shards {
            let s = shard.0;
            if r.voters.is_empty() {
                return Err(PlacementError::NoVoters { shard: s });
            }
            for n in r.voters.iter().chain(&r.learners) {
                if !self.nodes.contains_key(n) {
                    return Err(PlacementError::UnknownNode { shard: s, node: *n });
                }
            }
            if let Some(n) = r.voters.intersection(&r.learners).next() {
                return Err(PlacementError::VoterAndLearner { shard: s, node: *n });
            }
            if let Some(l) = r.leader {
                if !r.voters.contains(&l) {
                    return Err(PlacementError::LeaderNotVoter {
                        shard: s,
                        leader: l,
                    });
                }
            }
        }
        let live = self.live().len();
        if live < rf {
            return Err(PlacementError::NotEnoughNodes { rf, live });
        }
        Ok(())
    }
}

/// What moving a replica planned on a node costs: a replica only planned is free to plan
/// elsewhere; a learner has some data; a voter has all of it; the leader also leads.
fn keep_cost(r: &Replicas, node: NodeId) -> u8 {
    if r.leader == Some(node) {
        3
    } else if r.voters.contains(&node) {
        2
    } else if r.learners.contains(&node) {
        1
    } else {
        0
    }
}

/// The target of every shard of `layout` with replication factor `rf` (see the crate
/// documentation for the policy).
pub fn targets(layout: &Layout, rf: usize) -> Result<BTreeMap<ShardId, Target>, PlacementError> {
    layout.validate(rf)?;
    Ok(place(layout, rf))
}

/// Where the shards `0..shards` of a new cluster of `nodes` (all live, no replica yet) go
/// with replication factor `rf`: the same policy as [`targets`] from nothing, so the
/// replica loads and the leaders per node are within one of each other. A pure function
/// of its arguments: every member of a new cluster computes the same.
pub fn initial_targets(
    nodes: &BTreeSet<NodeId>,
    shards: u32,
    rf: usize,
) -> Result<BTreeMap<ShardId, Target>, PlacementError> {
    let layout = Layout {
        nodes: nodes.iter().map(|n| (*n, NodeState::Live)).collect(),
        shards: BTreeMap::new(),
    };
    layout.validate(rf)?;
    if shards > SHARD_COUNT_MAX {
        return Err(PlacementError::TooLarge {
            nodes: nodes.len(),
            shards: shards as usize,
        });
    }
    let layout = Layout {
        shards: (0..shards)
            .map(|s| (ShardId(s), Replicas::default()))
            .collect(),
        ..layout
    };
    Ok(place(&layout, rf))
}

/// The leader each shard should have, given only its target replica set: a pure function
/// of `sets`, so every node computes the same without talking to the others. Each shard's
/// leader is one of its replicas, and leaders are spread as evenly as the sets allow: no
/// node leads two more shards than a node it could hand one to along a chain of handovers
/// (the leader rule of [`targets`], from no current leader). The leader balancer of a
/// cluster whose shards live on different nodes hands each leadership to this node.
pub fn preferred_leaders(sets: &BTreeMap<ShardId, BTreeSet<NodeId>>) -> BTreeMap<ShardId, NodeId> {
    let live: BTreeSet<NodeId> = sets.values().flatten().copied().collect();
    let layout = Layout {
        nodes: live.iter().map(|n| (*n, NodeState::Live)).collect(),
        shards: sets
            .iter()
            .filter(|(_, set)| !set.is_empty())
            .map(|(s, set)| {
                let r = Replicas {
                    voters: set.clone(),
                    learners: BTreeSet::new(),
                    leader: None,
                };
                (*s, r)
            })
            .collect(),
    };
    let sets: BTreeMap<ShardId, BTreeSet<NodeId>> = sets
        .iter()
        .filter(|(_, set)| !set.is_empty())
        .map(|(s, set)| (*s, set.clone()))
        .collect();
    leaders(&layout, &sets, &live)
}

/// [`targets`] of a validated layout (shards without replicas are placed from nothing).
fn place(layout: &Layout, rf: usize) -> BTreeMap<ShardId, Target> {
    let live = layout.live();
    let mut load: BTreeMap<NodeId, usize> = live.iter().map(|n| (*n, 0)).collect();

    // Keep what is on live nodes: voters (the leader first), then learners, at most rf.
    let mut sets: BTreeMap<ShardId, BTreeSet<NodeId>> = BTreeMap::new();
    for (shard, r) in &layout.shards {
        let mut candidates: Vec<NodeId> = r
            .voters
            .iter()
            .chain(&r.learners)
            .copied()
            .filter(|n| live.contains(n))
            .collect();
        candidates.sort_by_key(|n| std::cmp::Reverse(keep_cost(r, *n)));
        let set: BTreeSet<NodeId> = candidates.into_iter().take(rf).collect();
        for n in &set {
            *load.get_mut(n).expect("a live node") += 1;
        }
        sets.insert(*shard, set);
    }
    // Fill every shard up to rf on the least loaded live nodes it is not on.
    for set in sets.values_mut() {
        while set.len() < rf {
            let (&n, _) = load
                .iter()
                .filter(|(n, _)| !set.contains(n))
                .min_by_key(|(n, l)| (**l, **n))
                .expect("at least rf live nodes");
            set.insert(n);
            *load.get_mut(&n).expect("a live node") += 1;
        }
    }
    // Even out: move one replica at a time from the most to the least loaded node. Each
    // node's replicas are kept ordered by what moving them costs (then highest shard
    // first), so the cheapest one to move is found without a scan of every shard.
    type Key = (u8, std::cmp::Reverse<ShardId>);
    let key = |shard: ShardId, node: NodeId| -> Key {
        (
            keep_cost(&layout.shards[&shard], node),
            std::cmp::Reverse(shard),
        )
    };
    let mut on: BTreeMap<NodeId, BTreeSet<Key>> =
        live.iter().map(|n| (*n, BTreeSet::new())).collect();
    for (shard, set) in &sets {
        for n in set {
            on.get_mut(n).expect("a live node").insert(key(*shard, *n));
        }
    }
    loop {
        let (&most, high) = on
            .iter()
            .map(|(n, s)| (n, s.len()))
            .max_by_key(|(n, l)| (*l, std::cmp::Reverse(**n)))
            .expect("live nodes");
        let (&least, low) = on
            .iter()
            .map(|(n, s)| (n, s.len()))
            .min_by_key(|(n, l)| (*l, **n))
            .expect("live nodes");
        if high <= low + 1 {
            break;
        }
        // Some shard on `most` is not on `least` (else `least` would carry as many): the
        // first such in cost order.
        let moved = *on[&most]
            .iter()
            .find(|(_, s)| !sets[&s.0].contains(&least))
            .expect("a node carrying two more replicas has a shard the other lacks");
        let shard = moved.1 .0;
        let set = sets.get_mut(&shard).expect("a shard");
        set.remove(&most);
        set.insert(least);
        on.get_mut(&most).expect("a live node").remove(&moved);
        on.get_mut(&least)
            .expect("a live node")
            .insert(key(shard, least));
    }
    let leaders = leaders(layout, &sets, &live);
    sets.into_iter()
        .map(|(shard, replicas)| {
            let leader = leaders[&shard];
            (shard, Target { replicas, leader })
        })
        .collect()
}

/// A leader per shard among its target replicas: the current one where it stays, then the
/// least busy, then evened out along chains of handovers (a shard led by `a` moves to `b`,
/// one led by `b` to `c`, ...) until no node leads two more than one it can reach.
fn leaders(
    layout: &Layout,
    sets: &BTreeMap<ShardId, BTreeSet<NodeId>>,
    live: &BTreeSet<NodeId>,
) -> BTreeMap<ShardId, NodeId> {
    let mut count: BTreeMap<NodeId, usize> = live.iter().map(|n| (*n, 0)).collect();
    let mut leader: BTreeMap<ShardId, NodeId> = BTreeMap::new();
    for (shard, set) in sets {
        if let Some(l) = layout.shards[shard].leader.filter(|l| set.contains(l)) {
            leader.insert(*shard, l);
            *count.get_mut(&l).expect("a live node") += 1;
        }
    }
    for (shard, set) in sets {
        if leader.contains_key(shard) {
            continue;
        }
        let r = &layout.shards[shard];
        let l = *set
            .iter()
            .min_by_key(|n| (count[*n], !r.voters.contains(*n), **n))
            .expect("rf >= 1");
        leader.insert(*shard, l);
        *count.get_mut(&l).expect("a live node") += 1;
    }
    // Shift along a shortest chain from a busy node to one leading at least two fewer.
    let mut led: BTreeMap<NodeId, BTreeSet<ShardId>> =
        live.iter().map(|n| (*n, BTreeSet::new())).collect();
    for (shard, l) in &leader {
        led.get_mut(l).expect("a live node").insert(*shard);
    }
    'shift: loop {
        let fewest = led.values().map(BTreeSet::len).min().expect("live nodes");
        let mut order: Vec<(usize, NodeId)> = led.iter().map(|(n, s)| (s.len(), *n)).collect();
        order.sort_by_key(|(c, n)| (std::cmp::Reverse(*c), *n));
        for (c, from) in order {
            if c < fewest + 2 {
                // No node leads two fewer than this one or any after it.
                break;
            }
            if let Some(chain) = chain_to_lighter(from, &led, sets) {
                for (shard, to) in chain {
                    let old = leader.insert(shard, to).expect("a led shard");
                    led.get_mut(&old).expect("a live node").remove(&shard);
                    led.get_mut(&to).expect("a live node").insert(shard);
                }
                continue 'shift;
            }
        }
        break;
    }
    leader
}

/// The handovers `(shard, to)` of a shortest chain from `from` to a node leading at least
/// two fewer shards, if one exists. Each handover moves a shard led by the previous node of
/// the chain to the next, so only the chain's ends change their counts.
fn chain_to_lighter(
    from: NodeId,
    led: &BTreeMap<NodeId, BTreeSet<ShardId>>,
    sets: &BTreeMap<ShardId, BTreeSet<NodeId>>,
) -> Option<Vec<(ShardId, NodeId)>> {
    let goal = led[&from].len().checked_sub(2)?;
    let mut via: BTreeMap<NodeId, (ShardId, NodeId)> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    while let Some(at) = queue.pop_front() {
        for shard in &led[&at] {
            for &next in &sets[shard] {
                if next == from || via.contains_key(&next) {
                    continue;
                }
                via.insert(next, (*shard, at));
                if led[&next].len() <= goal {
                    let mut chain = Vec::new();
                    let mut node = next;
                    while node != from {
                        let (shard, prev) = via[&node];
                        chain.push((shard, node));
                        node = prev;
                    }
                    chain.reverse();
                    return Some(chain);
                }
                queue.push_back(next);
            }
        }
    }
    None
}

/// The steps that take every shard of `layout` to its [`targets`]; shards already there
/// are left out. Within a shard: stale learners are removed, then each replica to add is
/// added as a learner and promoted, and a replica to remove follows each addition (the
/// leadership handed over first if it leads; down nodes go first, then draining ones),
/// then any surplus voters are removed, and last the leadership moves to the target
/// leader. Shards are independent: their plans may run side by side.
pub fn plan(layout: &Layout, rf: usize) -> Result<Vec<ShardPlan>, PlacementError> {
    let targets = targets(layout, rf)?;
    let mut plans = Vec::new();
    for (shard, target) in &targets {
        let r = &layout.shards[shard];
        let mut steps = Vec::new();
        let mut voters = r.voters.clone();
        let mut leader = r.leader;
        for n in r.learners.difference(&target.replicas) {
            steps.push(Step::Remove(*n));
        }
        let adds: Vec<NodeId> = target.replicas.difference(&r.voters).copied().collect();
        let mut removes: Vec<NodeId> = r.voters.difference(&target.replicas).copied().collect();
        // Down nodes first (they add nothing to a quorum), then draining, then the rest.
        removes.sort_by_key(|n| (std::cmp::Reverse(layout.nodes[n]), *n));
        let mut removes = removes.into_iter();
        let remove = |voters: &mut BTreeSet<NodeId>,
                      leader: &mut Option<NodeId>,
                      steps: &mut Vec<Step>,
                      n: NodeId| {
            if *leader == Some(n) {
                // Hand over to the target leader if it votes already, else to any voter
                // that stays.
                let to = if voters.contains(&target.leader) {
                    target.leader
                } else {
                    *voters
                        .iter()
                        .find(|v| target.replicas.contains(v))
                        .expect("an addition precedes each removal")
                };
                steps.push(Step::TransferLeader(to));
                *leader = Some(to);
            }
            steps.push(Step::Remove(n));
            voters.remove(&n);
        };
        for a in adds {
            if !r.learners.contains(&a) {
                steps.push(Step::AddLearner(a));
            }
            steps.push(Step::Promote(a));
            voters.insert(a);
            if let Some(n) = removes.next() {
                remove(&mut voters, &mut leader, &mut steps, n);
            }
        }
        for n in removes {
            remove(&mut voters, &mut leader, &mut steps, n);
        }
        if leader != Some(target.leader) {
            steps.push(Step::TransferLeader(target.leader));
        }
        if !steps.is_empty() {
            plans.push(ShardPlan {
                shard: *shard,
                steps,
            });
        }
    }
    Ok(plans)
}

#[cfg(test)]
mod tests;

/// The next membership step that moves one shard's group from `now` towards `target`, as
/// its leader `me` runs it (the reconciler on each shard's leader, docs/design/0013), or
/// `None` when there is nothing to do yet: the group is [`settled`] (its voters are the
/// target and it has no learner), or a learner it needs is still catching up.
///
/// In order: a learner the target does not name is removed; a target node without a
/// replica is added as a learner; a learner in `caught_up` is promoted; once every
/// target node is a voter, a voter the target leaves out is removed, the leader last,
/// after handing its leadership to the lowest target voter. So the voters never drop below
/// `min(voters now, target)`, a node is added before one is removed, and the leader is
/// never removed while it leads. One step at a time: each is a committed membership change
/// (or a leadership transfer) before the next is computed from the group as it then is.
pub fn next_step(
    me: NodeId,
    target: &BTreeSet<NodeId>,
    now: &Replicas,
    caught_up: &BTreeSet<NodeId>,
) -> Option<Step> {
    if let Some(&x) = now.learners.iter().find(|n| !target.contains(n)) {
        return Some(Step::Remove(x));
    }
    if let Some(&x) = target
        .iter()
        .find(|n| !now.voters.contains(n) && !now.learners.contains(n))
    {
        return Some(Step::AddLearner(x));
    }
    if let Some(&x) = now.learners.iter().find(|n| caught_up.contains(n)) {
        return Some(Step::Promote(x));
    }
    if !now.learners.is_empty() {
        return None;
    }
    let mut extra = now.voters.iter().filter(|n| !target.contains(n));
    match extra.clone().find(|n| **n != me).or_else(|| extra.next()) {
        None => None,
        Some(&x) if x != me => Some(Step::Remove(x)),
        Some(_) => target.iter().next().map(|&t| Step::TransferLeader(t)),
    }
}

/// True when a shard's group is where `target` wants it: its voters are the target and it
/// has no learner.
pub fn settled(target: &BTreeSet<NodeId>, now: &Replicas) -> bool {
    now.voters == *target && now.learners.is_empty()
}
