//! Distributed audit jobs of tradelog (docs/design/0012-distributed-audit.md): a job is
//! split into one task per shard, each task is sent to the least-loaded live replica of
//! its shard (the nodes holding it, from the cluster status; load from `GetNodeLoad`),
//! retried on another replica when a node fails (unavailable, timeout, overloaded), and the answers
//! are reduced to one result. Built in: the solvency audit at a consistent cut of the
//! shards' logs ([`Auditor::solvency`], cut search in [`find_cut`]), the trial balance
//! ([`Auditor::trial_balance`]), the replay verification of every shard
//! ([`Auditor::verify`]), account statements over a time range with every line checked
//! against the shard's state ([`Auditor::statements`]), and VWAP and OHLCV candles of the
//! markets over a time range ([`Auditor::activity`]). `tradelog audit` runs them.
//!
//! Owns: scheduling, retries, the cut search and the reduction of per-shard answers.
//! Every audit rule (what balances, what a consistent cut is, what conservation means) is
//! the domain's ([`tradelog_domain::audit`]); the figures are computed by the engine on
//! the answering node.
//!
//! Must never depend on: the server, node, engine or storage crates (it talks to nodes
//! through `tradelog-client` only).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use futures_util::future::join_all;
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tradelog_client::{Client, ClientConfig, ClientError, ShardVerification};
use tradelog_domain::audit::SplitOrigin;
use tradelog_domain::audit::{check_cut, solvency, AuditFailure, CutFault, ShardFigures, Solvency};
use tradelog_domain::jobs::{
    MarketActivity, StatementFault, StatementLine, ACTIVITY_MARKETS_MAX, STATEMENT_ACCOUNTS_MAX,
};
use tradelog_domain::routing::{market_path, Split};
use tradelog_domain::{AccountId, AssetId, MarketId, ShardId, Timestamp};

/// Most figures tasks the cut search sends (all shards together) before it gives up.
pub const CUT_PROBES_MAX: usize = 4_096;
/// The weight of one task this auditor has running on a node, added to the load the node
/// reported (the server weighs a shard task as this many queued commands too).
pub const TASK_LOAD_WEIGHT: u64 = 1_000;
/// Most nodes an auditor talks to.
pub const AUDIT_NODES_MAX: usize = 64;

/// Why a job could not give a result (an audit that ran and found a fault is not an
/// error: it is a result with failures).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// No configured node answered.
    #[error("no node answered: {0}")]
    NoNode(ClientError),
    /// Every replica of a shard failed its task (down, busy, or behind the index asked);
    /// the last error.
    #[error("shard {shard}: every replica failed (last: {error})")]
    ShardUnavailable {
        /// The shard.
        shard: ShardId,
        /// The last failure.
        error: ClientError,
    },
    /// A replica refused a shard's task (not a failure of the node: a bad request, an
    /// index out of range, a limit).
    #[error("shard {shard}: {error}")]
    Task {
        /// The shard.
        shard: ShardId,
        /// What the node answered.
        error: ClientError,
    },
    /// The cut search needed more probes than [`CUT_PROBES_MAX`].
    #[error("no consistent cut found within {0} probes (limit `CUT_PROBES_MAX`)")]
    CutProbes(usize),
    /// Two shards answered for the same market, or a shard for an account of another.
    #[error("{0}")]
    Inconsistent(String),
    /// A node answered figures of another shard or index than asked.
    #[error("shard {shard}: answered figures of shard {got_shard} at index {got_index}, asked index {asked:?}")]
    WrongFigures {
        /// The shard asked.
        shard: ShardId,
        /// The index asked.
        asked: Option<u64>,
        /// The shard answered.
        got_shard: ShardId,
        /// The index answered.
        got_index: u64,
    },
}

/// One finished shard task, for progress reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskDone {
    /// The shard.
    pub shard: ShardId,
    /// The node that answered it.
    pub node: String,
    /// Attempts it took (1 = no retry).
    pub attempts: u32,
}

/// Called after every finished shard task.
pub type Progress = Arc<dyn Fn(&TaskDone) + Send + Sync>;

/// Figures of shards at log indexes: what the cut search asks (an [`Auditor`] asks the
/// nodes; tests give recorded histories).
pub trait FiguresSource {
    /// Shard `shard`'s figures at `index` (its current index when `None`).
    fn figures(
        &self,
        shard: ShardId,
        index: Option<u64>,
    ) -> impl Future<Output = Result<ShardFigures, AuditError>> + Send;
}

/// A consistent cut: one index per shard, the figures there, and what it took to find.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cut {
    /// Every shard's figures at its index of the cut, by shard.
    pub figures: Vec<ShardFigures>,
    /// The indexes the search started from (each shard's current index).
    pub started: Vec<u64>,
    /// Figures tasks sent after the first round.
    pub probes: usize,
}

impl Cut {
    /// The cut's index of every shard, by shard.
    pub fn indexes(&self) -> Vec<u64> {
        self.figures.iter().map(|f| f.index).collect()
    }
}

/// Finds a consistent cut of `shards` shards: starts from each shard's current index and,
/// while some shard applied a message its sender had not sent at the sender's index (or
/// saw an acknowledgement its receiver had not applied), moves that shard back to the
/// newest index that fixes it (a binary search over its as-of figures, which only grow
/// with the index). Every move is backwards and index 0 of every shard is consistent, so
/// it ends.
pub async fn find_cut<S: FiguresSource>(source: &S, shards: u32) -> Result<Cut, AuditError> {
    let first = join_all((0..shards).map(|s| source.figures(ShardId(s), None))).await;
    let mut cut = first.into_iter().collect::<Result<Vec<_>, _>>()?;
    let started = cut.iter().map(|f| f.index).collect();
    let mut probes = 0;
    while let Some(fault) = check_cut(&cut) {
        let s = fault.shard().0 as usize;
        // Before the shard's first input (for a shard made by a split, before the split
        // made it) every fault is cured.
        let start = ShardFigures::before_start(fault.shard(), cut[s].origin);
        if let CutFault::ChildBeforeSplit { .. } = fault {
            cut[s] = start;
            continue;
        }
        // Invariant: `lo` is cured, `hi` is not.
        let mut lo = start;
        let mut hi = cut[s].index;
        while hi - lo.index > 1 {
            let mid = lo.index + (hi - lo.index) / 2;
            let f = probe(source, fault.shard(), mid, &mut probes).await?;
            if fault.cured_by(&f) {
                lo = f;
            } else {
                hi = mid;
            }
        }
        // A shard made by a split has figures at index 0 (its start state), which may do.
        if lo.before_start && hi > 0 {
            let f = probe(source, fault.shard(), 0, &mut probes).await?;
            if fault.cured_by(&f) {
                lo = f;
            }
        }
        cut[s] = lo;
    }
    Ok(Cut {
        figures: cut,
        started,
        probes,
    })
}

/// Shard `shard`'s figures at `index`, one more probe of the cut search (at most
/// [`CUT_PROBES_MAX`]).
async fn probe<S: FiguresSource>(
    source: &S,
    shard: ShardId,
    index: u64,
    probes: &mut usize,
) -> Result<ShardFigures, AuditError> {
    *probes += 1;
    if *probes > CUT_PROBES_MAX {
        return Err(AuditError::CutProbes(CUT_PROBES_MAX));
    }
    let f = source.figures(shard, Some(index)).await?;
    if f.shard != shard || f.index != index {
        return Err(AuditError::WrongFigures {
            shard,
            asked: Some(index),
            got_shard: f.shard,
            got_index: f.index,
        });
    }
    Ok(f)
}

/// The solvency audit's result: the cut and the audit at it.
#[derive(Clone, Debug, Serialize)]
pub struct SolvencyReport {
    /// The consistent cut the audit was taken at.
    pub cut: Cut,
    /// Per asset sums and every failure.
    pub solvency: Solvency,
}

impl SolvencyReport {
    /// Whether the audit passed.
    pub fn passed(&self) -> bool {
        self.solvency.failures.is_empty()
    }
}

/// The trial balance: every shard's figures at its current index, each shard checked on
/// its own, and totals per asset.
#[derive(Clone, Debug, Serialize)]
pub struct TrialBalance {
    /// Every shard's figures, by shard.
    pub shards: Vec<ShardFigures>,
    /// Sums over all shards, per asset.
    pub totals: BTreeMap<AssetId, tradelog_domain::audit::AssetFigures>,
    /// Every shard whose balances differ from its flows.
    pub failures: Vec<AuditFailure>,
}

impl TrialBalance {
    /// Reduces every shard's figures.
    pub fn of(shards: Vec<ShardFigures>) -> TrialBalance {
        let mut totals: BTreeMap<AssetId, tradelog_domain::audit::AssetFigures> = BTreeMap::new();
        let mut failures = Vec::new();
        for f in &shards {
            failures.extend(f.trial_balance());
            for (a, v) in &f.assets {
                totals.entry(*a).or_default().add(v);
            }
        }
        TrialBalance {
            shards,
            totals,
            failures,
        }
    }

    /// Whether every shard balanced.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Every shard's replay verification.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    /// By shard.
    pub shards: Vec<ShardVerification>,
}

impl Verification {
    /// The shards whose regenerated state differs from the live one.
    pub fn failed_shards(&self) -> Vec<ShardId> {
        self.shards
            .iter()
            .filter(|v| !v.matches())
            .map(|v| v.shard)
            .collect()
    }

    /// Whether every shard matched.
    pub fn passed(&self) -> bool {
        self.failed_shards().is_empty()
    }
}

/// One statement line and the shard it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShardLine {
    /// The account's shard.
    pub shard: ShardId,
    /// The line.
    #[serde(flatten)]
    pub line: StatementLine,
}

/// One asset's statement lines summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatementTotals {
    /// Accounts with a line in the asset.
    pub accounts: u64,
    /// Sum of the opening balances (available + held).
    pub opening: u128,
    /// Sum of the credits.
    pub credits: u128,
    /// Sum of the debits.
    pub debits: u128,
    /// Sum of the closing balances.
    pub closing: u128,
    /// Number of balance changes.
    pub changes: u64,
}

/// Account statements over `[from, to)`: every line, each checked (opening + credits -
/// debits == closing, and the events' closing == the state's), and totals per asset.
#[derive(Clone, Debug, Serialize)]
pub struct StatementsReport {
    /// Range start (inclusive).
    pub from: Timestamp,
    /// Range end (exclusive).
    pub to: Timestamp,
    /// By shard, then account, then asset.
    pub lines: Vec<ShardLine>,
    /// Per asset.
    pub totals: BTreeMap<AssetId, StatementTotals>,
    /// Accounts asked for that no shard holds.
    pub unknown_accounts: Vec<AccountId>,
    /// Every line that does not add up.
    pub failures: Vec<StatementFault>,
    /// Tasks sent (pages of every shard).
    pub tasks: usize,
}

impl StatementsReport {
    /// Whether every line added up.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// VWAP and OHLCV of markets over `[from, to)`.
#[derive(Clone, Debug, Serialize)]
pub struct ActivityReport {
    /// Range start (inclusive).
    pub from: Timestamp,
    /// Range end (exclusive).
    pub to: Timestamp,
    /// Candle length (0: no candles).
    pub interval_s: u32,
    /// By market: the market's shard, the shard's last event read, and its activity.
    pub markets: Vec<(ShardId, u64, MarketActivity)>,
    /// Markets asked for that no shard owns.
    pub unknown_markets: Vec<MarketId>,
}

/// One node the auditor can send tasks to.
struct Node {
    url: String,
    client: Client,
}

struct Book {
    /// Load each node reported when the job started.
    reported: Vec<u64>,
    /// Tasks this auditor has running on each node.
    running: Vec<u64>,
    /// Nodes that failed a call during this job.
    down: Vec<bool>,
}

/// Runs audit jobs against a single node or the nodes of a cluster.
pub struct Auditor {
    nodes: Vec<Node>,
    shards: u32,
    /// Per shard, the indexes in `nodes` of the nodes holding a replica, as the status
    /// said at connection (empty: not known, any node may be asked; one that holds none
    /// answers `WrongNode` and the next is tried).
    holders: Vec<Vec<usize>>,
    /// Every split the cluster map recorded at connection, oldest first.
    splits: Vec<Split>,
    book: Mutex<Book>,
    progress: Option<Progress>,
}

/// A client of one node that does not retry (the auditor retries on other replicas).
fn node_client(url: &str, template: &ClientConfig) -> Result<Client, ClientError> {
    let mut c = template.clone();
    c.endpoints = vec![url.to_owned()];
    c.retry.attempts_max = 1;
    c.route_to_leaders = false;
    Client::new(c)
}

/// What a failed task attempt means for the node that answered.
enum Failure {
    /// The node is down (unavailable, timed out): try another, avoid it for the job.
    Down,
    /// The node is busy, its replica has not applied the index asked yet, or it holds no
    /// replica of the shard: try another node.
    Elsewhere,
    /// The task itself is refused: no replica would answer otherwise.
    Fatal,
}

fn failure(e: &ClientError) -> Failure {
    match e {
        ClientError::Unavailable { .. } | ClientError::Timeout { .. } => Failure::Down,
        // A node that holds no replica of the shard (a cluster formed with fewer replicas
        // than nodes): another node holds one.
        ClientError::Overloaded { .. }
        | ClientError::OutOfRange(_)
        | ClientError::WrongNode { .. } => Failure::Elsewhere,
        _ => Failure::Fatal,
    }
}

impl Auditor {
    /// An auditor of the deployment `config` names: asks its nodes for the cluster's
    /// status to learn every node (a single node answers that it is not in a cluster and
    /// is the only one), then every node for its load and the shard count.
    pub async fn connect(config: &ClientConfig) -> Result<Auditor, AuditError> {
        let mut urls: Vec<String> = Vec::new();
        // Per shard, the ids of the nodes holding it.
        let mut held_by: Vec<Vec<u64>> = Vec::new();
        let mut splits = Vec::new();
        let mut ids: Vec<u64> = Vec::new();
        let mut last = None;
        for url in &config.endpoints {
            let c = node_client(url, config).map_err(AuditError::NoNode)?;
            match c.cluster_status().await {
                Ok(st) => {
                    ids = st.nodes.iter().map(|n| n.node).collect();
                    urls = st.nodes.into_iter().map(|n| n.url).collect();
                    splits = st.metadata.splits.clone();
                    held_by = st
                        .shards
                        .iter()
                        .map(|r| r.voters.iter().chain(&r.learners).copied().collect())
                        .collect();
                    break;
                }
                Err(ClientError::Status { code, .. }) if code == "FailedPrecondition" => {
                    urls = vec![url.clone()];
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if urls.is_empty() {
            return Err(AuditError::NoNode(last.unwrap_or_else(|| {
                ClientError::Config("no endpoint given".into())
            })));
        }
        urls.truncate(AUDIT_NODES_MAX);
        let nodes = urls
            .iter()
            .map(|u| {
                Ok(Node {
                    url: u.clone(),
                    client: node_client(u, config)?,
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()
            .map_err(AuditError::NoNode)?;
        let loads = join_all(nodes.iter().map(|n| n.client.node_load())).await;
        let mut shards = None;
        let mut reported = Vec::new();
        let mut down = Vec::new();
        let mut last = None;
        for l in loads {
            match l {
                Ok(l) => {
                    shards.get_or_insert(l.shard_count);
                    reported.push(l.load);
                    down.push(false);
                }
                Err(e) => {
                    reported.push(u64::MAX);
                    down.push(true);
                    last = Some(e);
                }
            }
        }
        let Some(shards) = shards else {
            return Err(AuditError::NoNode(last.expect("a failure")));
        };
        let n = nodes.len();
        let holders = held_by
            .iter()
            .map(|h| {
                (0..n)
                    .filter(|i| ids.get(*i).is_some_and(|id| h.contains(id)))
                    .collect()
            })
            .collect();
        Ok(Auditor {
            nodes,
            shards,
            holders,
            splits,
            book: Mutex::new(Book {
                reported,
                running: vec![0; n],
                down,
            }),
            progress: None,
        })
    }

    /// Calls `progress` after every finished shard task.
    pub fn with_progress(mut self, progress: Progress) -> Auditor {
        self.progress = Some(progress);
        self
    }

    /// Number of shards.
    pub fn shard_count(&self) -> u32 {
        self.shards
    }

    /// The nodes this auditor sends tasks to, and whether each is considered down.
    pub fn nodes(&self) -> Vec<(String, bool)> {
        let b = self.book.lock().expect("book lock");
        self.nodes
            .iter()
            .zip(&b.down)
            .map(|(n, d)| (n.url.clone(), *d))
            .collect()
    }

    /// The nodes known to hold a replica of `shard` (all of them when not known).
    pub fn holders(&self, shard: ShardId) -> Vec<String> {
        self.candidates(shard)
            .into_iter()
            .map(|i| self.nodes[i].url.clone())
            .collect()
    }

    fn candidates(&self, shard: ShardId) -> Vec<usize> {
        match self.holders.get(shard.0 as usize) {
            Some(h) if !h.is_empty() => h.clone(),
            _ => (0..self.nodes.len()).collect(),
        }
    }

    /// The least-loaded live replica of `shard` not yet tried for this task, else (every
    /// known replica tried: the shard may have moved since) any live node not yet tried;
    /// marked as running one more task.
    fn pick(&self, shard: ShardId, tried: &[bool]) -> Option<usize> {
        let mut b = self.book.lock().expect("book lock");
        let open = |i: &usize| !b.down[*i] && !tried[*i];
        let mut candidates: Vec<usize> = self.candidates(shard).into_iter().filter(open).collect();
        if candidates.is_empty() {
            candidates = (0..self.nodes.len()).filter(open).collect();
        }
        let best = candidates.into_iter().min_by_key(|i| {
            (
                b.reported[*i].saturating_add(b.running[*i].saturating_mul(TASK_LOAD_WEIGHT)),
                *i,
            )
        })?;
        b.running[best] += 1;
        Some(best)
    }

    /// Runs one shard's task: on the least-loaded live replica, then on the others when a
    /// node fails.
    async fn run<T, F, Fut>(&self, shard: ShardId, task: F) -> Result<T, AuditError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut tried = vec![false; self.nodes.len()];
        let mut attempts = 0;
        let mut last = None;
        while let Some(i) = self.pick(shard, &tried) {
            tried[i] = true;
            attempts += 1;
            let r = task(self.nodes[i].client.clone()).await;
            let mut b = self.book.lock().expect("book lock");
            b.running[i] -= 1;
            match r {
                Ok(v) => {
                    drop(b);
                    if let Some(p) = &self.progress {
                        p(&TaskDone {
                            shard,
                            node: self.nodes[i].url.clone(),
                            attempts,
                        });
                    }
                    return Ok(v);
                }
                Err(e) => match failure(&e) {
                    Failure::Down => {
                        b.down[i] = true;
                        last = Some(e);
                    }
                    Failure::Elsewhere => last = Some(e),
                    Failure::Fatal => return Err(AuditError::Task { shard, error: e }),
                },
            }
        }
        Err(AuditError::ShardUnavailable {
            shard,
            error: last.unwrap_or_else(|| ClientError::Config("no live node".into())),
        })
    }

    /// Every shard's figures at its current index.
    async fn all_figures(&self) -> Result<Vec<ShardFigures>, AuditError> {
        join_all((0..self.shards).map(|s| self.figures(ShardId(s), None)))
            .await
            .into_iter()
            .collect()
    }

    /// The solvency audit at a consistent cut.
    pub async fn solvency(&self) -> Result<SolvencyReport, AuditError> {
        let cut = find_cut(self, self.shards).await?;
        let solvency = solvency(&cut.figures);
        Ok(SolvencyReport { cut, solvency })
    }

    /// The trial balance of every shard at its current index.
    pub async fn trial_balance(&self) -> Result<TrialBalance, AuditError> {
        Ok(TrialBalance::of(self.all_figures().await?))
    }

    /// The replay verification of every shard.
    pub async fn verify(&self) -> Result<Verification, AuditError> {
        let shards = join_all((0..self.shards).map(|s| {
            self.run(ShardId(s), move |c| async move {
                c.verify_shard(ShardId(s)).await
            })
        }))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        Ok(Verification { shards })
    }
}

impl Auditor {
    /// Account statements over `[from, to)`: of `accounts`, or with none of every account
    /// (each shard page by page). Each shard answers from one replica's state and events;
    /// every line is checked.
    pub async fn statements(
        &self,
        from: Timestamp,
        to: Timestamp,
        accounts: &[AccountId],
    ) -> Result<StatementsReport, AuditError> {
        let asked = sorted_unique(accounts);
        let per_shard = join_all((0..self.shards).map(|s| {
            let asked = &asked;
            async move {
                let shard = ShardId(s);
                let mut lines = Vec::new();
                let mut tasks = 0;
                let mut from_split = None;
                if asked.is_empty() {
                    let mut after = AccountId(0);
                    loop {
                        tasks += 1;
                        let page = self
                            .run(shard, move |c| async move {
                                c.shard_statements(shard, from, to, &[], after, 0).await
                            })
                            .await?;
                        check_shard(shard, page.shard)?;
                        from_split = from_split.or(page.from_split);
                        lines.extend(page.lines);
                        match page.next_after {
                            Some(n) if n > after => after = n,
                            Some(n) => {
                                return Err(AuditError::Inconsistent(format!(
                                    "shard {shard} answered a page ending at account {n}, \
                                     not after {after}"
                                )))
                            }
                            None => break,
                        }
                    }
                } else {
                    for chunk in asked.chunks(STATEMENT_ACCOUNTS_MAX) {
                        tasks += 1;
                        let chunk = chunk.to_vec();
                        let page = self
                            .run(shard, |c| {
                                let chunk = chunk.clone();
                                async move {
                                    c.shard_statements(shard, from, to, &chunk, AccountId(0), 0)
                                        .await
                                }
                            })
                            .await?;
                        check_shard(shard, page.shard)?;
                        from_split = from_split.or(page.from_split);
                        lines.extend(page.lines);
                    }
                }
                // Accounts a split moved here after `from`: their lines start at the
                // split; the earlier part is on the parent.
                let mut faults = Vec::new();
                if let Some(origin) = from_split.filter(|_| !lines.is_empty()) {
                    let accounts = sorted_unique(
                        &lines
                            .iter()
                            .map(|l: &StatementLine| l.account)
                            .collect::<Vec<_>>(),
                    );
                    let (earlier, t, f) = self.before_split(origin, from, &accounts).await?;
                    tasks += t;
                    faults = f;
                    let (joined, f) = join_lines(earlier, lines, shard);
                    lines = joined;
                    faults.extend(f);
                }
                Ok::<_, AuditError>((lines, tasks, faults))
            }
        }))
        .await;
        let mut report = StatementsReport {
            from,
            to,
            lines: Vec::new(),
            totals: BTreeMap::new(),
            unknown_accounts: Vec::new(),
            failures: Vec::new(),
            tasks: 0,
        };
        let mut seen = std::collections::BTreeSet::new();
        for (s, r) in per_shard.into_iter().enumerate() {
            let shard = ShardId(s as u32);
            let (lines, tasks, faults) = r?;
            report.tasks += tasks;
            report.failures.extend(faults);
            for line in lines {
                if let Some(f) = line.fault(shard) {
                    report.failures.push(f);
                }
                let t = report.totals.entry(line.asset).or_default();
                t.accounts += 1;
                t.opening += line.opening.total();
                t.credits += line.credits;
                t.debits += line.debits;
                t.closing += line.closing.total();
                t.changes += line.changes;
                if !seen.insert((line.account, line.asset)) {
                    return Err(AuditError::Inconsistent(format!(
                        "account {} asset {} was answered by two shards (the second: {shard})",
                        line.account, line.asset
                    )));
                }
                report.lines.push(ShardLine { shard, line });
            }
        }
        let held: std::collections::BTreeSet<AccountId> = seen.iter().map(|(a, _)| *a).collect();
        report.unknown_accounts = asked.into_iter().filter(|a| !held.contains(a)).collect();
        Ok(report)
    }

    /// The statement lines of `accounts` on `origin.parent` from `from` up to the index
    /// before the split that moved them (joined with the grandparent's part if the parent
    /// too was made by a split after `from`), with the tasks sent and the joins' faults.
    async fn before_split(
        &self,
        origin: SplitOrigin,
        from: Timestamp,
        accounts: &[AccountId],
    ) -> Result<(Vec<StatementLine>, usize, Vec<StatementFault>), AuditError> {
        let parent = origin.parent;
        // A split is an input of its parent's log: its index is at least 1.
        let to_index = origin.index.checked_sub(1).ok_or_else(|| {
            AuditError::Inconsistent(format!("a split of shard {parent} at index 0"))
        })?;
        let (mut lines, mut tasks, mut earlier) = (Vec::new(), 0, None);
        for chunk in accounts.chunks(STATEMENT_ACCOUNTS_MAX) {
            tasks += 1;
            let chunk = chunk.to_vec();
            let page = self
                .run(parent, |c| {
                    let chunk = chunk.clone();
                    async move {
                        c.shard_statements_to_index(parent, from, to_index, &chunk)
                            .await
                    }
                })
                .await?;
            check_shard(parent, page.shard)?;
            earlier = earlier.or(page.from_split);
            lines.extend(page.lines);
        }
        let mut faults = Vec::new();
        if let Some(o) = earlier.filter(|_| !lines.is_empty()) {
            let (older, t, f) = Box::pin(self.before_split(o, from, accounts)).await?;
            tasks += t;
            faults = f;
            let (joined, f) = join_lines(older, lines, parent);
            lines = joined;
            faults.extend(f);
        }
        Ok((lines, tasks, faults))
    }

    /// VWAP and OHLCV (candles of `interval_s` seconds, 0: none) of `markets`, or of every
    /// market, over `[from, to)`: one task per shard for the markets it owns.
    pub async fn activity(
        &self,
        from: Timestamp,
        to: Timestamp,
        interval_s: u32,
        markets: &[MarketId],
    ) -> Result<ActivityReport, AuditError> {
        let asked = sorted_unique(markets);
        if asked.len() > ACTIVITY_MARKETS_MAX {
            return Err(AuditError::Inconsistent(format!(
                "at most {ACTIVITY_MARKETS_MAX} markets in one job (limit `ACTIVITY_MARKETS_MAX`)"
            )));
        }
        let per_shard = join_all((0..self.shards).map(|s| {
            let asked = &asked;
            async move {
                let shard = ShardId(s);
                self.run(shard, |c| async move {
                    c.shard_activity(shard, from, to, interval_s, asked).await
                })
                .await
            }
        }))
        .await;
        let mut by_market: BTreeMap<MarketId, (ShardId, u64, MarketActivity)> = BTreeMap::new();
        for (s, r) in per_shard.into_iter().enumerate() {
            let shard = ShardId(s as u32);
            let a = r?;
            check_shard(shard, a.shard)?;
            for m in a.markets {
                // Shards answer in ascending order, and a child is numbered after its
                // parent: a market a split moved comes from its parent first.
                let m = match by_market.get(&m.market) {
                    Some((other, _, earlier))
                        if market_path(&self.splits, m.market, *other).contains(&shard) =>
                    {
                        earlier
                            .then(&m)
                            .map_err(|e| AuditError::Inconsistent(e.to_string()))?
                    }
                    Some((other, ..)) => {
                        return Err(AuditError::Inconsistent(format!(
                            "market {} was answered by shards {other} and {shard}",
                            m.market
                        )))
                    }
                    None => m,
                };
                by_market.insert(m.market, (shard, a.last_seq, m));
            }
        }
        let unknown_markets = asked
            .into_iter()
            .filter(|m| !by_market.contains_key(m))
            .collect();
        Ok(ActivityReport {
            from,
            to,
            interval_s,
            markets: by_market.into_values().collect(),
            unknown_markets,
        })
    }
}

/// Each of `later` (lines of shard `shard` that start at a split) joined with the line of
/// the same account and asset in `earlier` (the parent's, up to the split), and the
/// `earlier` lines no later one continues; by account, then asset. A pair whose balances
/// at the split differ is a fault (the later line is kept as it is).
fn join_lines(
    earlier: Vec<StatementLine>,
    later: Vec<StatementLine>,
    shard: ShardId,
) -> (Vec<StatementLine>, Vec<StatementFault>) {
    let mut before: BTreeMap<(AccountId, AssetId), StatementLine> = earlier
        .into_iter()
        .map(|l| ((l.account, l.asset), l))
        .collect();
    let mut out = BTreeMap::new();
    let mut faults = Vec::new();
    for l in later {
        let key = (l.account, l.asset);
        let line = match before.remove(&key) {
            Some(e) => e.then(&l, shard).unwrap_or_else(|f| {
                faults.push(f);
                l
            }),
            None => l,
        };
        out.insert(key, line);
    }
    out.extend(before);
    (out.into_values().collect(), faults)
}

/// `ids` sorted, each once.
fn sorted_unique<T: Ord + Copy>(ids: &[T]) -> Vec<T> {
    let mut v = ids.to_vec();
    v.sort();
    v.dedup();
    v
}

fn check_shard(asked: ShardId, got: ShardId) -> Result<(), AuditError> {
    if asked == got {
        return Ok(());
    }
    Err(AuditError::Inconsistent(format!(
        "a task of shard {asked} was answered for shard {got}"
    )))
}

impl FiguresSource for Auditor {
    async fn figures(
        &self,
        shard: ShardId,
        index: Option<u64>,
    ) -> Result<ShardFigures, AuditError> {
        let f = self
            .run(shard, move |c| async move {
                c.shard_figures(shard, index).await
            })
            .await?;
        if f.shard != shard || index.is_some_and(|i| i != f.index) {
            return Err(AuditError::WrongFigures {
                shard,
                asked: index,
                got_shard: f.shard,
                got_index: f.index,
            });
        }
        Ok(f)
    }
}
