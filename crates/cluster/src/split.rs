//! Splitting a shard of a running cluster (docs/design/0014): part of a shard's accounts
//! and markets become a new shard, whose group starts on the parent's voters, each from
//! the state its own replica of the parent wrote when it applied the split. No state
//! crosses the network, except for a parent's voter that skipped the split (sent the
//! parent's state as a snapshot past it): it copies the child's start file from another
//! node (module `reconcile`).
//!
//! [`ClusterNode::split_shard`] runs it:
//!
//! 1. the markets named must exist and live on the parent now;
//! 2. the cluster map records the split ([`MapCommand::SplitShard`]): it names the child
//!    (the next shard id) and places it on the parent's target replicas; from now on the
//!    nodes route by the map's placement, and commands for the child wait in its queue or
//!    are retried until its group runs;
//! 3. the parent's leader commits `Input::Split` as an entry of its own: every replica of
//!    the parent, applying it, writes the child's initial state to `DATA_DIR/shard-CHILD`
//!    before the entry counts as applied;
//! 4. each node's reconciler opens the child's replica once its replica of the parent has
//!    applied the split (module `reconcile`), and initialises the child's group with the
//!    parent's voters at the split (every one of them proposes the same membership; the
//!    vote decides, as when a cluster forms);
//! 5. this waits until the child's group commits an entry.
//!
//! A replica of the child added later (a move, a new node) starts from a snapshot: the
//! child's leader snapshots and purges its log before it adds a learner (module
//! `reconcile`), since the child's log does not start from an empty state.

use crate::membership::ChangeError;
use crate::{now, ClusterNode};
use std::time::{Duration, Instant};
use tradelog_domain::routing::{Split, SplitError};
use tradelog_domain::{MarketId, ShardId};
use tradelog_engine::{Applied, Input};
use tradelog_placement::{MapCommand, MapReject};
use tradelog_raft::Batch;

/// Longest [`ClusterNode::split_shard`] waits for the parent to apply the split and for
/// the child's group to commit its first entry (ms).
pub const SPLIT_WAIT_MS: u64 = 60_000;
/// Pause between attempts while the child's group is not running yet (ms).
const SPLIT_RETRY_MS: u64 = 50;

/// What a split did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitDone {
    /// The split as the map recorded it (with the child's id).
    pub split: Split,
    /// Accounts that moved to the child (0 when the parent had applied the split on an
    /// earlier attempt whose answer was lost).
    pub accounts: u64,
    /// The map version this node saw the split in (the one that recorded it, unless
    /// this was a repeat).
    pub map_version: u64,
    /// The map had this split already (a repeated command): no new shard was made, and
    /// this finished what the first one started.
    pub repeat: bool,
}

impl ClusterNode {
    /// Splits shard `parent`: its accounts with `id % modulus == residue` (none when
    /// `modulus` is 0) and the `markets` named (sorted, each living on `parent`) move to
    /// a new shard, whose replicas start on the parent's. Returns once the new shard's
    /// group runs. Refused, with nothing changed, when a market does not exist or lives
    /// elsewhere, or when the map refuses the split (the parent is moving, a bad rule,
    /// too many splits). Repeating a call is safe: the same split of the same parent is
    /// made once, and a repeat finishes it and answers with the same child
    /// ([`SplitDone::repeat`]).
    pub async fn split_shard(
        &self,
        parent: ShardId,
        modulus: u64,
        residue: u64,
        markets: Vec<MarketId>,
    ) -> Result<SplitDone, ChangeError> {
        self.wait_for_map_init().await;
        // A repeated command (its answer lost, say) finds its split recorded: it goes on
        // from there instead of making a second shard. The map refuses a second record of
        // the same split too (`MapReject::SplitExists`), for two calls at once.
        let mut repeat = self
            .map()
            .recorded_split(parent, modulus, residue, &markets)
            .is_some();
        if !repeat {
            {
                let placement = self.current_placement();
                let catalog = self.markets.read().expect("markets lock");
                for m in &markets {
                    let Some(spec) = catalog.get(m) else {
                        return Err(ChangeError::Refused(format!("market {m} does not exist")));
                    };
                    let at = placement.market_shard(*m, spec.shard);
                    if at != parent {
                        return Err(ChangeError::Refused(format!(
                            "market {m} lives on shard {at}, not on shard {parent}"
                        )));
                    }
                }
            }
            let command = MapCommand::SplitShard {
                parent,
                modulus,
                residue,
                markets: markets.clone(),
            };
            let answer = self
                .propose_map(command)
                .await
                .map_err(ChangeError::Propose)?;
            match answer.rejected {
                None => {}
                Some(MapReject::SplitExists { .. }) => repeat = true,
                Some(r) => {
                    return Err(ChangeError::Refused(format!(
                        "the cluster map refused the split: {r}"
                    )))
                }
            }
            self.see_map_version(answer.version)
                .await
                .map_err(ChangeError::Propose)?;
        }
        let map = self.map();
        let map_version = map.version;
        let split = map
            .recorded_split(parent, modulus, residue, &markets)
            .cloned()
            .ok_or_else(|| {
                ChangeError::Refused(format!(
                    "the map at version {} does not have the split it recorded",
                    map.version
                ))
            })?;
        let deadline = Instant::now() + Duration::from_millis(SPLIT_WAIT_MS);
        let input = Input::Split {
            timestamp: now(),
            split: split.clone(),
        };
        let batch = Batch::new(vec![input]).expect("a lone split is a valid batch");
        let answer = self.propose_until(parent, batch, deadline).await?;
        let accounts = match answer.results.first() {
            Some(Applied::Split(Ok(n))) => *n,
            Some(Applied::Split(Err(SplitError::ChildExists(c)))) if *c == split.child => 0,
            Some(Applied::Split(Err(e))) => {
                return Err(ChangeError::Refused(format!(
                    "shard {parent} refused the split: {e} (the map names shard {}, which \
                     stays empty)",
                    split.child
                )))
            }
            other => panic!("a split answered {other:?}"),
        };
        // The child's group runs once it commits an entry (a tick: what its leader
        // proposes anyway to expire pending transfers).
        let tick = Batch::new(vec![Input::Tick { timestamp: now() }]).expect("a tick");
        self.propose_until(split.child, tick, deadline).await?;
        tracing::info!(?split, accounts, map_version, repeat, "split a shard");
        Ok(SplitDone {
            split,
            accounts,
            map_version,
            repeat,
        })
    }

    /// Proposes `batch` to shard `shard` through this node's proposer for it, again while
    /// the group cannot take it yet (no leader, not opened anywhere), until `deadline`.
    async fn propose_until(
        &self,
        shard: ShardId,
        batch: Batch,
        deadline: Instant,
    ) -> Result<tradelog_raft::BatchResponse, ChangeError> {
        loop {
            let proposer = self
                .groups
                .get(shard.0 as usize)
                .map(|g| {
                    g.proposer
                        .read()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone()
                })
                .ok_or_else(|| ChangeError::Refused(format!("shard {shard} does not exist")))?;
            match proposer.propose(batch.clone()).await {
                Ok(r) => return Ok(r),
                // Safe to repeat even if it was appended: the parent refuses a split it
                // made (`ChildExists`), and a tick only moves the clock.
                Err(e)
                    if Instant::now() < deadline
                        && !self.stopped.load(std::sync::atomic::Ordering::Acquire) =>
                {
                    tracing::debug!(%shard, "waiting for the group: {e}");
                    tokio::time::sleep(Duration::from_millis(SPLIT_RETRY_MS)).await;
                }
                Err(e) => return Err(ChangeError::Propose(e)),
            }
        }
    }
}
