//! `tradelog admin`: the replicated cluster as one node sees it.

use crate::output::{self, Table};
use crate::remote::{self, Global};
use anyhow::Result;
use clap::Subcommand;
use serde::Serialize;
use tradelog_client::{Client, ClientError, ClusterChange, ClusterStatus};
use tradelog_domain::ShardId;
use tradelog_placement::{Layout, NodeState, Replicas, Step};

/// `tradelog admin` subcommands.
#[derive(Subcommand)]
pub enum Cmd {
    /// Per shard: this node's role, the leader, term, log/commit/apply indexes, snapshot,
    /// voters, and (where this node leads) every replica's lag.
    #[command(
        after_help = "Ask any node (--server); the leader of a shard also shows how \
        far each replica's log is behind it (LAG, in log entries).\n\nExamples:\n  \
        tradelog admin status\n  tradelog --server http://127.0.0.1:7710 admin status --json"
    )]
    Status,
    /// Adds a node (started with `tradelog serve --node-id ID` and no --members) and gives
    /// it replicas: every shard's, or, when shards are placed on fewer nodes than all, its
    /// fair share taken from the most loaded nodes. Returns once they have moved.
    #[command(
        after_help = "Each new replica joins its shard's group as a learner, catches up, \
        then votes; a replica it replaces is removed after (its leadership handed over \
        first). Commands keep flowing meanwhile.\n\n\
        Examples:\n  tradelog serve --node-id 4 --grpc-addr 127.0.0.1:7730 \
        --http-addr 127.0.0.1:7731 --data-dir ./n4 &\n  \
        tradelog admin add-node 4 http://127.0.0.1:7730"
    )]
    AddNode {
        /// The new node's id (unique, never reused).
        node: u64,
        /// The URL of its gRPC port.
        url: String,
    },
    /// Removes a node: its replicas move to the other nodes first (stop its process
    /// afterwards; its shard directories are in its DATA_DIR/archive).
    #[command(
        after_help = "Refused when too few nodes would be left to hold every shard's \
        replicas.\n\nExamples:\n  tradelog admin remove-node 1"
    )]
    RemoveNode {
        /// The node's id.
        node: u64,
    },
    /// Hands one shard's leadership to a node (a voter of its group).
    #[command(
        after_help = "Examples:\n  tradelog admin transfer-leader 0 2   # shard 0 led by node 2"
    )]
    TransferLeader {
        /// The shard.
        shard: u32,
        /// The new leader.
        to: u64,
    },
    /// Moves one shard's replicas to exactly the nodes named; returns once moved.
    #[command(
        after_help = "Each node named that does not hold the shard gets a replica (a \
        learner that catches up, then a voter); then the replicas on nodes not named are \
        removed (the leadership handed over first). Refused for a draining node or one \
        that is not a member.\n\nExamples:\n  \
        tradelog admin move-shard 2 1 3 4   # shard 2 on nodes 1, 3 and 4"
    )]
    MoveShard {
        /// The shard.
        shard: u32,
        /// The nodes that hold it afterwards (1 to 7, distinct).
        #[arg(required = true, num_args = 1..=7)]
        nodes: Vec<u64>,
    },
    /// Gives every shard this many replicas, placed by the placement policy (replicas and
    /// leaders within one of each other per node, the fewest moves); returns once moved.
    #[command(
        after_help = "A cluster formed with every node holding every shard spreads its \
        shards this way (each node then holds its share, and a node added later receives \
        its fair share instead of every shard); a higher factor adds replicas. At most \
        the number of nodes that are not leaving; preview the moves with `tradelog admin \
        plan --replicas RF`.\n\nExamples:\n  \
        tradelog admin set-replication-factor 2"
    )]
    SetReplicationFactor {
        /// Replicas per shard (1 to 7).
        #[arg(value_parser = clap::value_parser!(u32).range(1..=7))]
        replication_factor: u32,
    },
    /// Splits a shard: the accounts and markets named become a new shard (the next shard
    /// id), whose replicas start on the shard's; returns once the new shard runs.
    #[command(
        group(clap::ArgGroup::new("what").required(true).multiple(true).args(["accounts", "markets"])),
        after_help = "Each replica of the shard writes the new shard's state when it applies \
        the split, and the new shard's group starts on those replicas: nothing is copied \
        over the network. Commands for what moved wait until the new shard runs. Refused \
        while the shard's replicas are moving, or for a market that does not live on the \
        shard. Move the new shard like any other with `tradelog admin move-shard`.\n\n\
        Examples:\n  \
        tradelog admin split-shard 1 --accounts 4:1      # ids 1 mod 4 of shard 1\n  \
        tradelog admin split-shard 0 --markets 1,2       # markets 1 and 2, no account\n  \
        tradelog admin split-shard 0 --accounts 2:0 --markets 3"
    )]
    SplitShard {
        /// The shard that splits.
        shard: u32,
        /// The accounts that move: those of the shard with id % MOD == RESIDUE (MOD 2 to
        /// 4294967296, RESIDUE below it).
        #[arg(long, value_name = "MOD:RESIDUE", value_parser = parse_rule)]
        accounts: Option<(u64, u64)>,
        /// Markets that move with their books (ids, comma-separated).
        #[arg(long, value_delimiter = ',', value_name = "ID,...")]
        markets: Vec<u32>,
    },
    /// Spreads leaders evenly over the nodes (shard s led by the (s mod n)-th voter; on a
    /// cluster whose shards live on different nodes, each shard the node asked holds is led
    /// by its preferred leader from the cluster map).
    #[command(after_help = "Examples:\n  tradelog admin balance-leaders\n  \
        tradelog admin balance-leaders --json")]
    BalanceLeaders,
    /// Previews where every shard's replicas and leader should be for a replication factor,
    /// and the membership steps that would get there. Changes nothing.
    #[command(
        after_help = "The plan: every shard on --replicas distinct live nodes, replicas per \
        node within one of each other, leaders spread evenly, the fewest replicas moved; per \
        shard, each replica added as a learner and promoted before the one it replaces is \
        removed (its leadership handed over first). Nodes are live unless named with \
        --draining or --down; --join previews a node that is not in the cluster yet.\n\n\
        Exit status 2 when the layout cannot be placed (too few live nodes, say).\n\n\
        Examples:\n  tradelog admin plan --replicas 3\n  \
        tradelog admin plan --join 4\n  \
        tradelog admin plan --replicas 2 --draining 3 --json"
    )]
    Plan {
        /// The replication factor to place (default: the most voters any shard has now).
        #[arg(long)]
        replicas: Option<usize>,
        /// A node that is leaving: its replicas move elsewhere (repeatable).
        #[arg(long = "draining", value_name = "NODE")]
        draining: Vec<u64>,
        /// A node that does not answer: its replicas are replaced elsewhere (repeatable).
        #[arg(long = "down", value_name = "NODE")]
        down: Vec<u64>,
        /// A node to add before planning (repeatable).
        #[arg(long = "join", value_name = "NODE")]
        join: Vec<u64>,
    },
}

/// How long a cluster change may take: adding a node waits for its replicas to move, at
/// most the node's `tradelog_cluster::SETTLE_WAIT_MS` (300 s), plus the steps around it.
const CHANGE_TIMEOUT_MS: u64 = 330_000;

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

pub fn run(cmd: Cmd, g: &Global) -> Result<()> {
    let change = match cmd {
        Cmd::Plan {
            replicas,
            draining,
            down,
            join,
        } => {
            let nodes = NodeStates {
                draining,
                down,
                join,
            };
            return remote::run(g, |ctx| async move {
                let status = ctx.client.cluster_status().await?;
                plan(&status, replicas, &nodes, ctx.json)
            });
        }
        Cmd::Status => None,
        Cmd::AddNode { node, url } => Some(ClusterChange::AddNode { node, url }),
        Cmd::RemoveNode { node } => Some(ClusterChange::RemoveNode { node }),
        Cmd::TransferLeader { shard, to } => Some(ClusterChange::TransferLeader { shard, to }),
        Cmd::BalanceLeaders => Some(ClusterChange::BalanceLeaders),
        Cmd::MoveShard { shard, nodes } => Some(ClusterChange::MoveShard { shard, nodes }),
        Cmd::SetReplicationFactor { replication_factor } => {
            Some(ClusterChange::SetReplicationFactor { replication_factor })
        }
        Cmd::SplitShard {
            shard,
            accounts,
            mut markets,
        } => {
            markets.sort_unstable();
            markets.dedup();
            let (modulus, residue) = accounts.unwrap_or((0, 0));
            Some(ClusterChange::SplitShard {
                shard,
                modulus,
                residue,
                markets,
            })
        }
    };
    let mut config = g.config();
    config.request_timeout_ms = CHANGE_TIMEOUT_MS;
    remote::run(g, |ctx| async move {
        let s = match &change {
            None => ctx.client.cluster_status().await?,
            Some(c) => Client::new(config)?.change_cluster(c).await?,
        };
        if ctx.json {
            output::json(&s);
            return Ok(());
        }
        println!("node {} (as it sees the cluster)", s.node);
        let mut t = Table::new(&[
            "SHARD",
            "ROLE",
            "LEADER",
            "TERM",
            "LAST LOG",
            "COMMITTED",
            "APPLIED",
            "STATE HASH",
            "SNAPSHOT",
            "VOTERS",
            "LEARNERS",
            "LAG (node:entries)",
        ]);
        let ids = |v: &[u64]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            }
        };
        for r in &s.shards {
            let lag = if r.replication.is_empty() {
                "-".to_string()
            } else {
                r.replication
                    .iter()
                    .map(|p| format!("{}:{}", p.node, p.lag))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            t.row(vec![
                r.shard.to_string(),
                r.role.clone(),
                opt(r.leader),
                r.term.to_string(),
                opt(r.last_log_index),
                opt(r.committed),
                opt(r.applied),
                r.state_hash.chars().take(12).collect(),
                opt(r.snapshot),
                ids(&r.voters),
                ids(&r.learners),
                lag,
            ]);
        }
        t.print();
        let m = &s.metadata;
        println!(
            "\ncluster map version {} (replication factor {}); metadata group: {} here, leader {}, voters {}, learners {}",
            m.version,
            m.replication_factor,
            m.role,
            opt(m.leader),
            ids(&m.voters),
            ids(&m.learners)
        );
        let mut t = Table::new(&["NODE", "URL", "STATE"]);
        for n in &m.nodes {
            let state = if n.draining { "draining" } else { "member" };
            t.row(vec![n.node.to_string(), n.url.clone(), state.to_string()]);
        }
        t.print();
        Ok(())
    })
}

/// The node states an operator names for `admin plan`.
struct NodeStates {
    draining: Vec<u64>,
    down: Vec<u64>,
    join: Vec<u64>,
}

/// The placement layout of the cluster `status` describes: every node it names (in a
/// membership or in the address list) and every `join` node, live unless named draining
/// or down; every shard's voters, learners and leader.
fn layout(status: &ClusterStatus, nodes: &NodeStates) -> Result<Layout> {
    let mut l = Layout::default();
    let known = status.nodes.iter().map(|n| n.node).chain(
        status
            .shards
            .iter()
            .flat_map(|s| s.voters.iter().chain(&s.learners).copied()),
    );
    for n in known.chain(nodes.join.iter().copied()) {
        l.nodes.insert(n, NodeState::Live);
    }
    for (list, state) in [
        (&nodes.draining, NodeState::Draining),
        (&nodes.down, NodeState::Down),
    ] {
        for n in list {
            match l.nodes.get_mut(n) {
                Some(s) => *s = state,
                None => {
                    return Err(ClientError::InvalidArgument(format!(
                        "node {n} is not in the cluster"
                    ))
                    .into())
                }
            }
        }
    }
    for s in &status.shards {
        l.shards.insert(
            s.shard,
            Replicas {
                voters: s.voters.iter().copied().collect(),
                learners: s.learners.iter().copied().collect(),
                leader: s.leader,
            },
        );
    }
    Ok(l)
}

/// One node's replicas and leaderships now and as planned.
#[derive(Serialize)]
struct NodeLoad {
    node: u64,
    state: &'static str,
    replicas_now: usize,
    replicas_planned: usize,
    leads_now: usize,
    leads_planned: usize,
}

/// One step of one shard, as printed.
#[derive(Serialize)]
struct PlannedStep {
    shard: ShardId,
    step: &'static str,
    node: u64,
}

#[derive(Serialize)]
struct PlanOutput {
    replicas: usize,
    nodes: Vec<NodeLoad>,
    steps: Vec<PlannedStep>,
}

fn plan(status: &ClusterStatus, rf: Option<usize>, nodes: &NodeStates, json: bool) -> Result<()> {
    let l = layout(status, nodes)?;
    let rf = rf.unwrap_or_else(|| l.shards.values().map(|r| r.voters.len()).max().unwrap_or(0));
    let targets = tradelog_placement::targets(&l, rf)?;
    let plans = tradelog_placement::plan(&l, rf)?;
    let loads = l
        .nodes
        .iter()
        .map(|(n, state)| NodeLoad {
            node: *n,
            state: match state {
                NodeState::Live => "live",
                NodeState::Draining => "draining",
                NodeState::Down => "down",
            },
            replicas_now: l
                .shards
                .values()
                .filter(|r| r.voters.contains(n) || r.learners.contains(n))
                .count(),
            replicas_planned: targets.values().filter(|t| t.replicas.contains(n)).count(),
            leads_now: l.shards.values().filter(|r| r.leader == Some(*n)).count(),
            leads_planned: targets.values().filter(|t| t.leader == *n).count(),
        })
        .collect();
    let steps = plans
        .iter()
        .flat_map(|p| {
            p.steps.iter().map(|s| {
                let (step, node) = match *s {
                    Step::AddLearner(n) => ("add-learner", n),
                    Step::Promote(n) => ("promote", n),
                    Step::TransferLeader(n) => ("transfer-leader", n),
                    Step::Remove(n) => ("remove", n),
                };
                PlannedStep {
                    shard: p.shard,
                    step,
                    node,
                }
            })
        })
        .collect();
    let out = PlanOutput {
        replicas: rf,
        nodes: loads,
        steps,
    };
    if json {
        output::json(&out);
        return Ok(());
    }
    println!(
        "replication factor {rf}, {} shards (a preview: nothing was changed)",
        l.shards.len()
    );
    let mut t = Table::new(&["NODE", "STATE", "REPLICAS", "PLANNED", "LEADS", "PLANNED"]);
    for n in &out.nodes {
        t.row(vec![
            n.node.to_string(),
            n.state.to_string(),
            n.replicas_now.to_string(),
            n.replicas_planned.to_string(),
            n.leads_now.to_string(),
            n.leads_planned.to_string(),
        ]);
    }
    t.print();
    if out.steps.is_empty() {
        println!("nothing to do: every shard is where it should be");
        return Ok(());
    }
    println!("steps (each shard's in order; shards may proceed side by side):");
    let mut t = Table::new(&["SHARD", "STEP", "NODE"]);
    for s in &out.steps {
        t.row(vec![
            s.shard.0.to_string(),
            s.step.to_string(),
            s.node.to_string(),
        ]);
    }
    t.print();
    Ok(())
}

/// `MOD:RESIDUE` of `--accounts`.
fn parse_rule(s: &str) -> Result<(u64, u64), String> {
    let (m, r) = s
        .split_once(':')
        .ok_or_else(|| format!("expected MOD:RESIDUE, such as 4:1, got {s:?}"))?;
    let modulus: u64 = m
        .trim()
        .parse()
        .map_err(|_| format!("MOD must be a number, got {m:?}"))?;
    let residue: u64 = r
        .trim()
        .parse()
        .map_err(|_| format!("RESIDUE must be a number, got {r:?}"))?;
    let max = tradelog_domain::SPLIT_MODULUS_MAX;
    if !(2..=max).contains(&modulus) || residue >= modulus {
        return Err(format!(
            "MOD must be 2 to {max} and RESIDUE below it, got {modulus}:{residue}"
        ));
    }
    Ok((modulus, residue))
}

#[cfg(test)]
mod rule_tests {
    use super::parse_rule;

    #[test]
    fn split_rules_parse_or_say_why_not() {
        assert_eq!(parse_rule("4:1"), Ok((4, 1)));
        assert_eq!(parse_rule(" 2 : 0 "), Ok((2, 0)));
        for bad in ["4", "x:1", "4:y", "1:0", "4:4", "0:0", "4294967297:0"] {
            assert!(parse_rule(bad).is_err(), "{bad}");
        }
    }
}
