//! Crash-test load for a durable shard: opens (recovering) a shard in the given directory,
//! prints what it recovered, then submits transfers of 1 unit from account 1 to account 2
//! in groups, printing `ACK <n>` after each group is durable and applied (n = transfers
//! applied so far). The crash test kills it with SIGKILL at random moments and checks that
//! every acknowledged transfer survives.
//!
//! Usage: `crashload DIR [SNAPSHOT_EVERY_RECORDS]`

use std::io::Write;
use tradelog_domain::*;
use tradelog_engine::{Input, Placement};
use tradelog_node::{DurableShard, ShardConfig};
use tradelog_storage::FileLogConfig;

const FUNDS: u64 = 1_000_000_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .expect("usage: crashload DIR [SNAPSHOT_EVERY_RECORDS]");
    let every = args
        .next()
        .map(|s| s.parse().expect("a number"))
        .unwrap_or(500);
    let config = ShardConfig {
        dir: dir.into(),
        shard: ShardId(0),
        placement: Placement::new(1),
        snapshot_every_records: every,
        snapshot_interval_min_ms: 0,
        log: FileLogConfig {
            segment_bytes_max: 256 << 10,
            record_bytes_max: 64 << 10,
            ..FileLogConfig::default()
        },
        watermark_every_ms: 0,
    };
    let (mut shard, report) = DurableShard::open(config).expect("open shard");
    let meta = |t: u64| Meta {
        timestamp: Timestamp(t),
        principal: Principal(1),
        authority: Authority::Operator,
    };
    let balance = |s: &DurableShard, a: u64| {
        s.engine()
            .ledger()
            .account(AccountId(a))
            .map(|x| x.balance(AssetId(1)))
            .map(|b| (b.available.0, b.held.0))
            .unwrap_or((0, 0))
    };
    let mut events = Vec::new();
    if shard.engine().assets().is_empty() {
        let setup = [
            Command::CreateAsset(Asset {
                id: AssetId(1),
                code: "USD".into(),
                scale: 2,
            }),
            Command::OpenAccount {
                account: AccountId(1),
                owner: Principal(1),
            },
            Command::OpenAccount {
                account: AccountId(2),
                owner: Principal(2),
            },
            Command::Deposit {
                id: TransferId(1),
                account: AccountId(1),
                asset: AssetId(1),
                amount: Amount(FUNDS),
            },
        ];
        let inputs: Vec<Input> = setup
            .into_iter()
            .map(|command| Input::Command {
                meta: meta(1),
                command,
            })
            .collect();
        shard.submit(&inputs, &mut events).expect("setup");
    }
    let (a1, _) = balance(&shard, 1);
    let (mut done, _) = balance(&shard, 2);
    shard
        .engine()
        .validate()
        .expect("invariants after recovery");
    println!(
        "OPEN applied={} done={} sum={} replayed={} snapshot={} torn={}",
        shard.applied_index(),
        done,
        a1 + done,
        report.replayed,
        report.snapshot_index,
        report.log.torn_tail.as_ref().map(|t| t.bytes).unwrap_or(0)
    );
    let mut out = std::io::stdout().lock();
    let mut rng = done.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    loop {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let n = 1 + rng % 64;
        let inputs: Vec<Input> = (0..n)
            .map(|i| Input::Command {
                meta: meta(10 + done + i),
                command: Command::Transfer(TransferSpec {
                    id: TransferId(1_000_000 + done + i),
                    debit: AccountId(1),
                    credit: AccountId(2),
                    asset: AssetId(1),
                    amount: Amount(1),
                    balancing: false,
                }),
            })
            .collect();
        events.clear();
        shard.submit(&inputs, &mut events).expect("submit");
        done += n;
        writeln!(out, "ACK {done}").expect("stdout");
        out.flush().expect("stdout");
    }
}
