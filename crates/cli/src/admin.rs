//! `tradelog admin`: the replicated cluster as one node sees it.

use crate::output::{self, Table};
use crate::remote::{self, Global};
use anyhow::Result;
use clap::Subcommand;
use tradelog_client::{Client, ClusterChange};

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
    /// Adds a node (started with `tradelog serve --node-id ID` and no --members) to every
    /// shard's group: as a learner that catches up, then as a voter.
    #[command(
        after_help = "Examples:\n  tradelog serve --node-id 4 --grpc-addr 127.0.0.1:7730 \
        --http-addr 127.0.0.1:7731 --data-dir ./n4 &\n  \
        tradelog admin add-node 4 http://127.0.0.1:7730"
    )]
    AddNode {
        /// The new node's id (unique, never reused).
        node: u64,
        /// The URL of its gRPC port.
        url: String,
    },
    /// Removes a node from every shard's group (stop its process afterwards).
    #[command(
        after_help = "Refused when it would leave a group without a voter.\n\n\
        Examples:\n  tradelog admin remove-node 1"
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
    /// Spreads leaders evenly over the nodes (shard s led by the (s mod n)-th voter).
    #[command(after_help = "Examples:\n  tradelog admin balance-leaders\n  \
        tradelog admin balance-leaders --json")]
    BalanceLeaders,
}

/// How long a cluster change may take (adding a node waits for it to catch up).
const CHANGE_TIMEOUT_MS: u64 = 150_000;

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

pub fn run(cmd: Cmd, g: &Global) -> Result<()> {
    let change = match cmd {
        Cmd::Status => None,
        Cmd::AddNode { node, url } => Some(ClusterChange::AddNode { node, url }),
        Cmd::RemoveNode { node } => Some(ClusterChange::RemoveNode { node }),
        Cmd::TransferLeader { shard, to } => Some(ClusterChange::TransferLeader { shard, to }),
        Cmd::BalanceLeaders => Some(ClusterChange::BalanceLeaders),
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
        Ok(())
    })
}
