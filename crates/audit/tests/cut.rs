//! The cut search and the solvency reduction over recorded histories of real engines: three
//! shards take cross-shard transfers and orders while their messages and acknowledgements
//! are delivered one at a time in a seeded random order, so at most moments value is in
//! flight. The figures of every shard after every input are recorded; the cut search then
//! starts from deliberately inconsistent indexes and must end at a consistent cut where
//! the solvency audit passes, and a shard whose figures are tampered with is named.

use std::sync::atomic::{AtomicUsize, Ordering};
use tradelog_audit::{find_cut, AuditError, FiguresSource};
use tradelog_domain::audit::{
    check_cut, solvency, AuditFailure, CutFault, ShardFigures, SplitOrigin,
};
use tradelog_domain::*;
use tradelog_engine::routing::{route, Route};
use tradelog_engine::{Engine, Input, Placement, Split};

const SHARDS: u32 = 3;
const USD: AssetId = AssetId(1);
const BTC: AssetId = AssetId(2);
const MARKET: MarketId = MarketId(1);

/// A tiny deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Every shard's figures after every input it applied (`[s][i]`: at index `i`; a child
/// made by a split starts at its start state, index 0).
struct Recorded {
    shards: Vec<Engine>,
    history: Vec<Vec<ShardFigures>>,
    /// Inputs applied with at least one message in flight somewhere.
    busy: usize,
    /// Splits made: (parent, child, the parent's index after the split).
    splits: Vec<(ShardId, ShardId, u64)>,
}

impl Recorded {
    fn new() -> Recorded {
        let placement = Placement::new(SHARDS);
        let shards: Vec<Engine> = (0..SHARDS)
            .map(|s| Engine::new(ShardId(s), placement.clone()))
            .collect();
        let history = shards
            .iter()
            .map(|e| vec![e.audit_figures().unwrap()])
            .collect();
        Recorded {
            shards,
            history,
            busy: 0,
            splits: Vec::new(),
        }
    }

    /// Splits `parent`: accounts with `id % modulus == residue` and `markets` go to a new
    /// shard, numbered next. Messages may be in flight; the parent forwards them.
    fn split(
        &mut self,
        t: u64,
        parent: ShardId,
        modulus: u64,
        residue: u64,
        markets: Vec<MarketId>,
    ) {
        let child = ShardId(self.shards.len() as u32);
        let p = parent.0 as usize;
        let mut out = Vec::new();
        let split = Split {
            parent,
            child,
            modulus,
            residue,
            markets,
        };
        let c = self.shards[p]
            .split(Timestamp(t), split, &mut out)
            .expect("split accepted");
        let f = self.shards[p].audit_figures().unwrap();
        assert_eq!(self.history[p].len() as u64, f.index);
        self.splits.push((parent, child, f.index));
        self.history[p].push(f);
        let f = c.audit_figures().unwrap();
        assert_eq!(0, f.index);
        self.history.push(vec![f]);
        self.shards.push(c);
    }

    fn apply(&mut self, s: usize, input: Input) {
        let mut out = Vec::new();
        self.shards[s].apply(&input, &mut out);
        self.shards[s].validate().expect("shard invariants");
        let f = self.shards[s].audit_figures().unwrap();
        assert_eq!(self.history[s].len() as u64, f.index);
        self.history[s].push(f);
        if self
            .shards
            .iter()
            .any(|e| !e.outbox_destinations().is_empty())
        {
            self.busy += 1;
        }
    }

    fn submit(&mut self, t: u64, command: Command) {
        let meta = Meta {
            timestamp: Timestamp(t),
            principal: Principal(1),
            authority: Authority::Operator,
        };
        let targets: Vec<usize> = match route(
            &command,
            self.shards[0].placement(),
            self.shards[0].markets(),
        ) {
            Route::All => (0..self.shards.len()).collect(),
            Route::Shard(s) => vec![s.0 as usize],
        };
        for s in targets {
            self.apply(
                s,
                Input::Command {
                    meta,
                    command: command.clone(),
                },
            );
        }
    }

    /// Delivers the oldest undelivered message of one random channel, or acknowledges
    /// one; false if nothing is in flight.
    fn deliver_one(&mut self, t: u64, rng: &mut Rng) -> bool {
        let mut channels = Vec::new();
        for from in 0..self.shards.len() {
            for to in self.shards[from].outbox_destinations() {
                channels.push((from, to));
            }
        }
        if channels.is_empty() {
            return false;
        }
        let (from, to) = channels[rng.below(channels.len() as u64) as usize];
        let applied = self.shards[to.0 as usize].inbox_applied(ShardId(from as u32));
        let next = self.shards[from]
            .outbox(to)
            .find(|m| m.seq > applied)
            .cloned();
        match next {
            Some(message) if rng.below(3) != 0 => self.apply(
                to.0 as usize,
                Input::Message {
                    timestamp: Timestamp(t),
                    message,
                },
            ),
            _ if applied > 0 => self.apply(
                from,
                Input::Ack {
                    timestamp: Timestamp(t),
                    to,
                    upto: applied,
                },
            ),
            Some(message) => self.apply(
                to.0 as usize,
                Input::Message {
                    timestamp: Timestamp(t),
                    message,
                },
            ),
            None => return false,
        }
        true
    }
}

/// A seeded run: catalog, accounts on every shard, deposits, then transfers, orders and
/// withdrawals interleaved with message deliveries.
fn run(seed: u64, steps: u64) -> Recorded {
    run_splitting(seed, steps, false)
}

/// [`run`]; with `splits`, shard 0 gives half its accounts to a new shard a third of the
/// way in, and shard 1 gives the market and half its accounts to another two thirds of
/// the way in, while messages are in flight.
fn run_splitting(seed: u64, steps: u64, splits: bool) -> Recorded {
    let mut r = Recorded::new();
    let mut rng = Rng(seed | 1);
    let mut t = 1;
    for (id, code) in [(USD, "USD"), (BTC, "BTC")] {
        r.submit(
            t,
            Command::CreateAsset(Asset {
                id,
                code: code.into(),
                scale: 2,
            }),
        );
    }
    r.submit(
        t,
        Command::CreateMarket(MarketSpec {
            id: MARKET,
            base: BTC,
            quote: USD,
            lot_size: 1,
            tick_size: 1,
            min_qty: Qty(1),
            max_qty: Qty(1_000),
            maker_fee_bps: 5,
            taker_fee_bps: 10,
            fee_account: AccountId(99),
            collar_bps: 0,
            shard: ShardId(1),
        }),
    );
    let accounts: Vec<AccountId> = (1..=9).map(AccountId).chain([AccountId(99)]).collect();
    for a in &accounts {
        r.submit(
            t,
            Command::OpenAccount {
                account: *a,
                owner: Principal(1),
            },
        );
    }
    let mut id = 1;
    for a in &accounts[..9] {
        for asset in [USD, BTC] {
            id += 1;
            r.submit(
                t,
                Command::Deposit {
                    id: TransferId(id),
                    account: *a,
                    asset,
                    amount: Amount(1_000_000),
                },
            );
        }
    }
    for step in 0..steps {
        t += 1;
        if splits && step == steps / 3 {
            // Accounts 3, 9 and the fee account 99 move.
            r.split(t, ShardId(0), 2, 1, Vec::new());
        }
        if splits && step == 2 * steps / 3 {
            // Account 4 and the market's book move.
            r.split(t, ShardId(1), 2, 0, vec![MARKET]);
        }
        let a = accounts[rng.below(9) as usize];
        let b = accounts[rng.below(9) as usize];
        id += 1;
        match rng.below(10) {
            0..=2 if a != b => r.submit(
                t,
                Command::Transfer(TransferSpec {
                    id: TransferId(id),
                    debit: a,
                    credit: b,
                    asset: if rng.below(2) == 0 { USD } else { BTC },
                    amount: Amount(1 + rng.below(5_000)),
                    balancing: false,
                }),
            ),
            3..=4 => r.submit(
                t,
                Command::PlaceOrder(NewOrder {
                    account: a,
                    market: MARKET,
                    side: if rng.below(2) == 0 {
                        Side::Buy
                    } else {
                        Side::Sell
                    },
                    order_type: OrderType::Limit,
                    tif: TimeInForce::Gtc,
                    price: Price(95 + rng.below(10)),
                    qty: Qty(1 + rng.below(20)),
                    post_only: false,
                    client_order_id: 0,
                    stp: SelfTradePrevention::CancelResting,
                }),
            ),
            5 => r.submit(
                t,
                Command::Withdraw {
                    id: TransferId(id),
                    account: a,
                    asset: USD,
                    amount: Amount(1 + rng.below(100)),
                },
            ),
            _ => {
                r.deliver_one(t, &mut rng);
            }
        }
    }
    r
}

/// Recorded figures, served as if the shards stood at `current`; counts probes.
struct Source<'a> {
    history: &'a [Vec<ShardFigures>],
    current: Vec<u64>,
    asked: AtomicUsize,
}

impl FiguresSource for Source<'_> {
    async fn figures(
        &self,
        shard: ShardId,
        index: Option<u64>,
    ) -> Result<ShardFigures, AuditError> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        let s = shard.0 as usize;
        let i = index.unwrap_or(self.current[s]);
        assert!(
            i <= self.current[s],
            "asked beyond the shard's current index"
        );
        Ok(self.history[s][i as usize].clone())
    }
}

/// The solvency audit at `cut`, which must pass: per asset, balances == deposits -
/// withdrawals + value in flight (`what`: the case, for failures).
fn solvent(cut: &tradelog_audit::Cut, what: &str) -> tradelog_domain::audit::Solvency {
    let audit = solvency(&cut.figures);
    assert_eq!(
        Vec::<AuditFailure>::new(),
        audit.failures,
        "{what} at {:?}",
        cut.indexes()
    );
    for (asset, l) in &audit.assets {
        assert_eq!(
            l.balances + l.withdrawn + l.in_flight_received,
            l.deposited + l.in_flight_sent,
            "{what}: asset {asset}: balances == deposits - withdrawals + value in flight"
        );
    }
    audit
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn the_cut_search_ends_consistent_and_solvent_from_any_start() {
    for seed in 1..=6u64 {
        let r = run(seed * 7919, 600);
        assert!(
            r.busy > 100,
            "seed {seed}: too little in flight ({})",
            r.busy
        );
        let ends: Vec<u64> = r.history.iter().map(|h| h.len() as u64 - 1).collect();
        let mut rng = Rng(seed);
        let mut moved = 0;
        let mut in_flight_seen = false;
        for _ in 0..40 {
            // Each shard somewhere in its history: most such cuts are inconsistent.
            let current: Vec<u64> = ends.iter().map(|e| rng.below(e + 1)).collect();
            let source = Source {
                history: &r.history,
                current: current.clone(),
                asked: AtomicUsize::new(0),
            };
            let cut = block_on(find_cut(&source, SHARDS)).unwrap();
            assert_eq!(current, cut.started);
            assert_eq!(
                None,
                check_cut(&cut.figures),
                "seed {seed} from {current:?}"
            );
            for (s, (c, i)) in current.iter().zip(cut.indexes()).enumerate() {
                assert!(i <= *c, "seed {seed}: shard {s} moved forward");
            }
            if cut.indexes() != current {
                moved += 1;
            }
            let audit = solvent(&cut, &format!("seed {seed} from {current:?}"));
            in_flight_seen |= audit
                .assets
                .values()
                .any(|l| l.in_flight_sent > 0 || l.in_flight_received > 0);
        }
        assert!(moved > 5, "seed {seed}: only {moved} starts needed a move");
        assert!(
            in_flight_seen,
            "seed {seed}: never any value in flight at a cut"
        );
    }
}

#[test]
fn the_cut_search_across_splits_ends_consistent_and_solvent_from_any_start() {
    // Shard 0 splits into shard 3 and shard 1 (with the market) into shard 4 while value
    // is in flight. A cut that has a parent before its split must not count the child
    // (what moved is still on the parent), and one that has a child must have its parent
    // after the split (else what moved is counted twice).
    let mut before_split_seen = 0;
    let mut child_counted = 0;
    for seed in 1..=6u64 {
        let r = run_splitting(seed * 104_729, 600, true);
        assert_eq!(5, r.shards.len());
        let ends: Vec<u64> = r.history.iter().map(|h| h.len() as u64 - 1).collect();
        // At the end every shard's figures together are a consistent, solvent cut.
        let last: Vec<ShardFigures> = r
            .history
            .iter()
            .map(|h| h.last().unwrap().clone())
            .collect();
        assert_eq!(None, check_cut(&last), "seed {seed}");
        assert_eq!(
            Vec::<AuditFailure>::new(),
            solvency(&last).failures,
            "seed {seed}"
        );
        let mut rng = Rng(seed);
        for _ in 0..60 {
            let mut current: Vec<u64> = ends.iter().map(|e| rng.below(e + 1)).collect();
            // Often a parent that lags behind its split while its child runs.
            for (parent, _, index) in &r.splits {
                if rng.below(2) == 0 {
                    current[parent.0 as usize] = rng.below(*index);
                }
            }
            let source = Source {
                history: &r.history,
                current: current.clone(),
                asked: AtomicUsize::new(0),
            };
            let cut = block_on(find_cut(&source, r.shards.len() as u32)).unwrap();
            assert_eq!(
                None,
                check_cut(&cut.figures),
                "seed {seed} from {current:?}"
            );
            for (parent, child, index) in &r.splits {
                let (p, c) = (
                    &cut.figures[parent.0 as usize],
                    &cut.figures[child.0 as usize],
                );
                if c.before_start {
                    before_split_seen += 1;
                    assert!(p.before_start || p.index < *index, "seed {seed}: {p:?}");
                    assert!(c.assets.is_empty() && c.peers.is_empty(), "{c:?}");
                } else {
                    child_counted += 1;
                    assert!(
                        p.index >= *index,
                        "seed {seed} from {current:?}: parent {} at {}",
                        parent,
                        p.index
                    );
                    assert_eq!(
                        Some(SplitOrigin {
                            parent: *parent,
                            index: *index
                        }),
                        c.origin
                    );
                }
            }
            solvent(&cut, &format!("seed {seed} from {current:?}"));
        }
    }
    assert!(
        before_split_seen > 20,
        "{before_split_seen} cuts before a split"
    );
    assert!(child_counted > 20, "{child_counted} cuts with a child");
}

#[test]
fn every_moment_of_the_run_is_a_consistent_solvent_cut() {
    // The shards' states at the same moment are always a consistent cut, whatever is in
    // flight: replaying the run's global order gives such moments.
    let r = run(42, 400);
    let ends: Vec<usize> = r.history.iter().map(|h| h.len() - 1).collect();
    let cut: Vec<ShardFigures> = (0..SHARDS as usize)
        .map(|s| r.history[s][ends[s]].clone())
        .collect();
    assert_eq!(None, check_cut(&cut));
    assert_eq!(Vec::<AuditFailure>::new(), solvency(&cut).failures);
}

#[test]
fn an_inconsistent_cut_names_the_shard_that_must_move_back() {
    let r = run(5, 300);
    // Find a message applied by some shard: the receiver at its end, the sender at the
    // index before it sent it.
    let ends: Vec<u64> = r.history.iter().map(|h| h.len() as u64 - 1).collect();
    let dst = (0..SHARDS as usize)
        .find(|d| {
            r.history[*d]
                .last()
                .unwrap()
                .peers
                .values()
                .any(|p| p.received > 0)
        })
        .unwrap();
    let (src, seqs) = r.history[dst]
        .last()
        .unwrap()
        .peers
        .iter()
        .find(|(_, p)| p.received > 0)
        .map(|(s, p)| (*s, *p))
        .unwrap();
    let mut cut: Vec<ShardFigures> = (0..SHARDS as usize)
        .map(|s| r.history[s][ends[s] as usize].clone())
        .collect();
    cut[src.0 as usize] = r.history[src.0 as usize][0].clone();
    let fault = check_cut(&cut).expect("inconsistent");
    assert!(
        matches!(
            fault,
            CutFault::ReceivedUnsent { .. } | CutFault::AckedUnapplied { .. }
        ),
        "{fault:?}"
    );
    assert!(seqs.received > 0);
    let audit = solvency(&cut);
    assert!(
        audit
            .failures
            .iter()
            .any(|f| matches!(f, AuditFailure::InconsistentCut(_))),
        "{:?}",
        audit.failures
    );
}

#[test]
fn a_shard_whose_figures_do_not_add_up_is_named() {
    let r = run(9, 300);
    let mut cut: Vec<ShardFigures> = r
        .history
        .iter()
        .map(|h| h.last().unwrap().clone())
        .collect();
    assert_eq!(Vec::<AuditFailure>::new(), solvency(&cut).failures);
    // Shard 2 shows 7 more USD than its flows explain.
    cut[2].assets.get_mut(&USD).unwrap().available += 7;
    let f = &cut[2].assets[&USD];
    let expected = AuditFailure::ShardUnbalanced {
        shard: ShardId(2),
        asset: USD,
        balances: f.balances(),
        deposited: f.deposited,
        withdrawn: f.withdrawn,
        received: f.received,
        sent: f.sent,
    };
    assert_eq!(vec![expected.clone()], solvency(&cut).failures);
    assert!(expected
        .to_string()
        .starts_with("shard 2, asset 1: balances "));
    // A shard that recorded a receipt that nobody sent (balances and its own flows agree):
    // the sum over all shards does not.
    let mut cut: Vec<ShardFigures> = r
        .history
        .iter()
        .map(|h| h.last().unwrap().clone())
        .collect();
    let a = cut[1].assets.get_mut(&BTC).unwrap();
    a.available += 11;
    a.received += 11;
    let failures = solvency(&cut).failures;
    assert_eq!(1, failures.len(), "{failures:?}");
    assert!(
        matches!(&failures[0], AuditFailure::NotConserved { asset, .. } if *asset == BTC),
        "{failures:?}"
    );
}

#[test]
fn a_cut_that_counts_a_split_twice_or_not_at_all_names_the_shard() {
    let r = run_splitting(77, 600, true);
    let (parent, child, index) = r.splits[0];
    let last = |s: ShardId| r.history[s.0 as usize].last().unwrap().clone();
    let mut cut: Vec<ShardFigures> = r
        .history
        .iter()
        .map(|h| h.last().unwrap().clone())
        .collect();
    assert_eq!(None, check_cut(&cut));
    // The parent before the split and the child after it: what moved counts twice.
    cut[parent.0 as usize] = r.history[parent.0 as usize][index as usize - 1].clone();
    let fault = CutFault::ChildBeforeSplit {
        shard: child,
        parent,
        index,
    };
    assert_eq!(Some(fault), check_cut(&cut));
    assert_eq!(child, fault.shard());
    assert!(!fault.cured_by(&last(child)));
    assert!(fault.cured_by(&ShardFigures::before_start(child, last(child).origin)));
    let failures = solvency(&cut).failures;
    assert!(
        failures.contains(&AuditFailure::InconsistentCut(fault)),
        "{failures:?}"
    );
    assert_eq!(
        format!("shard {child}: counted although its parent, shard {parent}, had not applied the split at its index {index} at the cut"),
        AuditFailure::InconsistentCut(fault).to_string()
    );
    // The parent after the split and the child before its start: what moved counts nowhere.
    cut[parent.0 as usize] = last(parent);
    cut[child.0 as usize] = ShardFigures::before_start(child, last(child).origin);
    let fault = CutFault::ParentPastSplit {
        shard: parent,
        child,
        index,
    };
    assert_eq!(Some(fault), check_cut(&cut));
    assert!(!fault.cured_by(&last(parent)));
    assert!(!fault.cured_by(&r.history[parent.0 as usize][index as usize]));
    assert!(fault.cured_by(&r.history[parent.0 as usize][index as usize - 1]));
    assert_eq!(
        format!("shard {parent}: past its split at index {index} while the cut takes shard {child}, which the split made, before its start"),
        AuditFailure::InconsistentCut(fault).to_string()
    );
    // Both before the split: consistent as far as the split goes.
    cut[parent.0 as usize] = r.history[parent.0 as usize][index as usize - 1].clone();
    assert!(!matches!(
        check_cut(&cut),
        Some(CutFault::ChildBeforeSplit { .. } | CutFault::ParentPastSplit { .. })
    ));
}
