//! `tradelog account ...`: open accounts, move money, read balances and their history.

use crate::output::{self, Table};
use crate::remote::{self, Ctx, Global};
use anyhow::Result;
use serde_json::json;
use tradelog_domain as d;

/// Accounts and money: open, deposit, withdraw, transfer, balances, orders, statement,
/// history.
#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Opens an account (its id is yours to choose; it lives on shard ID mod shards).
    #[command(after_help = "Examples:\n  \
        tradelog account open 7 --owner 7\n  \
        tradelog --principal 7 --authority trader account open 7")]
    Open {
        /// New account id (non-zero).
        account: u64,
        /// Owner principal (default: the principal you act as, --principal).
        #[arg(long)]
        owner: Option<u64>,
    },
    /// Money enters the system (operators): credits AMOUNT minor units of ASSET.
    #[command(
        after_help = "Amounts are integers in the asset's minor units (USD scale 2: \
        12345 = 123.45 USD).\n\nExamples:\n  \
        tradelog account deposit 7 USD 12345 --id 1\n  \
        tradelog account deposit 7 1 12345     # asset by id; a fresh transfer id"
    )]
    Deposit(Movement),
    /// Money leaves the system: debits AMOUNT minor units of ASSET.
    #[command(after_help = "Examples:\n  tradelog account withdraw 7 USD 500 --id 2")]
    Withdraw(Movement),
    /// Moves AMOUNT minor units of ASSET from one account to another (across shards it
    /// completes asynchronously: the answer says "in flight").
    #[command(after_help = "Examples:\n  \
        tradelog account transfer 7 8 USD 2500 --id 3\n  \
        tradelog account transfer 7 8 USD 2500 --id 3   # again: the original answer, \
        marked duplicate\n  \
        tradelog account transfer 7 8 USD 999999 --balancing   # moves what is available")]
    Transfer {
        /// Account that pays.
        from: u64,
        /// Account that receives.
        to: u64,
        /// Asset: its id or its code (USD).
        asset: String,
        /// Amount in minor units (with --balancing: the most that moves).
        amount: u64,
        /// Transfer id, the idempotency key: a retry with the same id and content is
        /// answered with the original result. Default: a fresh id from the clock.
        #[arg(long)]
        id: Option<u64>,
        /// Move min(AMOUNT, available) instead of being rejected for insufficient funds.
        #[arg(long)]
        balancing: bool,
    },
    /// An account's balances per asset (available and held), status and open orders.
    #[command(
        after_help = "By default the answer holds every write acknowledged before \
        it. --as-of-index / --as-of-time answer for a past point of the account's shard \
        instead; --stale answers from the node you talk to even when its cluster has no \
        leader (it may miss recent writes).\n\n\
        Examples:\n  tradelog account balances 7\n  \
        tradelog account balances 7 --json\n  \
        tradelog account balances 7 --as-of-index 12     # after input 12 of its shard\n  \
        tradelog account balances 7 --as-of-time 2026-11-25T10:00:00Z\n  \
        tradelog account balances 7 --stale --server http://127.0.0.1:7701"
    )]
    Balances {
        /// The account.
        account: u64,
        #[command(flatten)]
        read: remote::ReadArgs,
    },
    /// An account's open orders: those resting on their books, with what they hold.
    #[command(
        after_help = "Prices are quote minor units per lot, quantities base minor \
        units; HELD is in the held asset (quote for buys, base for sells).\n\n\
        Examples:\n  tradelog account orders 7\n  tradelog account orders 7 --json"
    )]
    Orders {
        /// The account.
        account: u64,
        #[command(flatten)]
        stale: remote::StaleArg,
    },
    /// An account statement in one asset: opening balance, every change with its cause
    /// and the running balance, closing balance.
    #[command(
        after_help = "Times are RFC 3339 (2026-11-25T10:00:00Z) or nanoseconds since \
        the Unix epoch; the range is FROM inclusive to TO exclusive. CREDIT and DEBIT are \
        changes of available + held; a hold for an order moves money from AVAILABLE to \
        HELD without either.\n\n\
        Examples:\n  tradelog account statement 7 USD\n  \
        tradelog account statement 7 USD --from 2026-11-25T00:00:00Z --to 2026-11-26T00:00:00Z\n  \
        tradelog account statement 7 1 --limit 50 --json"
    )]
    Statement {
        /// The account.
        account: u64,
        /// Asset: its id or its code.
        asset: String,
        /// Range start (inclusive); default: the beginning.
        #[arg(long, value_parser = output::parse_time)]
        from: Option<d::Timestamp>,
        /// Range end (exclusive); default: now.
        #[arg(long, value_parser = output::parse_time)]
        to: Option<d::Timestamp>,
        /// Most entries shown (default: all; the first N when given).
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        stale: remote::StaleArg,
    },
    /// The changes of one balance over time (from the events the server retains).
    #[command(
        after_help = "Timestamps are nanoseconds since the Unix epoch (UTC).\n\n\
        Examples:\n  tradelog account history 7 USD\n  \
        tradelog account history 7 USD --from 1764081557000000000 --limit 10"
    )]
    History {
        /// The account.
        account: u64,
        /// Asset: its id or its code.
        asset: String,
        /// Range start (inclusive), ns since the Unix epoch.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Range end (exclusive), ns since the Unix epoch (default: no end).
        #[arg(long)]
        to: Option<u64>,
        /// Most points shown (0: the server's default, 1000).
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
}

/// A deposit or withdrawal.
#[derive(clap::Args)]
pub struct Movement {
    /// The account.
    account: u64,
    /// Asset: its id or its code (USD).
    asset: String,
    /// Amount in minor units of the asset.
    amount: u64,
    /// Transfer id, the idempotency key: a retry with the same id and content is answered
    /// with the original result. Default: a fresh id from the clock.
    #[arg(long)]
    id: Option<u64>,
}

pub fn run(cmd: Cmd, g: &Global) -> Result<()> {
    remote::run(g, |ctx| async move { exec(cmd, ctx).await })
}

async fn exec(cmd: Cmd, ctx: Ctx) -> Result<()> {
    let c = &ctx.client;
    let mut catalog = None;
    match cmd {
        Cmd::Open { account, owner } => {
            let owner = owner.map(d::Principal).unwrap_or(ctx.principal);
            let r = c.open_account(d::AccountId(account), owner).await;
            remote::answer(
                &ctx,
                &format!("account {account} opened for owner {owner}"),
                r,
            )
        }
        Cmd::Deposit(m) => {
            let asset = remote::asset(&ctx, &m.asset, &mut catalog).await?;
            let id = remote::transfer_id(m.id);
            let r = c
                .deposit(id, d::AccountId(m.account), asset, d::Amount(m.amount))
                .await;
            let what = format!(
                "deposit of {} (asset {asset}) into account {} (transfer {id})",
                m.amount, m.account
            );
            remote::answer(&ctx, &what, r)
        }
        Cmd::Withdraw(m) => {
            let asset = remote::asset(&ctx, &m.asset, &mut catalog).await?;
            let id = remote::transfer_id(m.id);
            let r = c
                .withdraw(id, d::AccountId(m.account), asset, d::Amount(m.amount))
                .await;
            let what = format!(
                "withdrawal of {} (asset {asset}) from account {} (transfer {id})",
                m.amount, m.account
            );
            remote::answer(&ctx, &what, r)
        }
        Cmd::Transfer {
            from,
            to,
            asset,
            amount,
            id,
            balancing,
        } => {
            let asset = remote::asset(&ctx, &asset, &mut catalog).await?;
            let id = remote::transfer_id(id);
            let r = c
                .transfer(d::TransferSpec {
                    id,
                    debit: d::AccountId(from),
                    credit: d::AccountId(to),
                    asset,
                    amount: d::Amount(amount),
                    balancing,
                })
                .await;
            let what = format!(
                "transfer {id} of {amount} (asset {asset}) from account {from} to account {to}"
            );
            remote::answer(&ctx, &what, r)
        }
        Cmd::Balances { account, read } => {
            let q = read.stale.client(c);
            let b = match read.as_of() {
                None => q.balances(d::AccountId(account)).await?,
                Some(at) => q.balances_as_of(d::AccountId(account), at).await?,
            };
            if ctx.json {
                output::json(&b);
                return Ok(());
            }
            let cat = q.catalog().await.ok();
            let status = match b.status {
                tradelog_client::AccountStatus::Active => "active",
                tradelog_client::AccountStatus::Frozen => "frozen",
                tradelog_client::AccountStatus::Closed => "closed",
            };
            println!(
                "account {}  owner {}  {status}  open orders {}  (shard {}, event {}){}",
                b.account,
                b.owner,
                b.open_orders,
                b.position.shard,
                b.position.seq,
                read.describe()
            );
            let mut t = Table::new(&["ASSET", "CODE", "AVAILABLE", "HELD"]);
            for x in &b.balances {
                let code = cat
                    .as_ref()
                    .and_then(|c| c.asset(x.asset))
                    .map(|a| a.code.clone())
                    .unwrap_or_else(|| "?".into());
                t.row(vec![
                    x.asset.to_string(),
                    code,
                    x.available.to_string(),
                    x.held.to_string(),
                ]);
            }
            if t.is_empty() {
                println!("(no balances yet)");
            } else {
                t.print();
            }
            Ok(())
        }
        Cmd::Orders { account, stale } => {
            let o = stale.client(c).open_orders(d::AccountId(account)).await?;
            if ctx.json {
                output::json(&o);
                return Ok(());
            }
            let read: Vec<String> = o
                .positions
                .iter()
                .map(|p| format!("shard {} event {}", p.shard, p.seq))
                .collect();
            println!(
                "account {account}  open orders {}  (read {})",
                o.orders.len(),
                read.join(", ")
            );
            let mut t = Table::new(&[
                "ORDER",
                "MARKET",
                "SIDE",
                "PRICE",
                "REMAINING",
                "HELD",
                "STP",
                "POST-ONLY",
            ]);
            for x in &o.orders {
                t.row(vec![
                    x.order.to_string(),
                    x.market.to_string(),
                    output::side(x.side).into(),
                    x.price.to_string(),
                    x.remaining.to_string(),
                    x.held.to_string(),
                    output::stp(x.stp).into(),
                    if x.post_only { "yes" } else { "no" }.into(),
                ]);
            }
            if t.is_empty() {
                println!("(no open orders)");
            } else {
                t.print();
            }
            Ok(())
        }
        Cmd::Statement {
            account,
            asset,
            from,
            to,
            limit,
            stale,
        } => {
            let q = stale.client(c);
            let asset = remote::asset_on(&q, &asset, &mut catalog).await?;
            let from = from.unwrap_or(d::Timestamp(0));
            let st = q
                .statement_to_end(d::AccountId(account), asset, from, to, limit)
                .await?;
            if ctx.json {
                output::json(&json!({
                    "account": account,
                    "asset": asset,
                    "from": from,
                    "to": to,
                    "opening": st.opening,
                    "entries": st.entries,
                    "closing": st.closing,
                    "truncated": st.truncated,
                    "position": st.position,
                }));
                return Ok(());
            }
            let end = to.map_or_else(|| "now".into(), output::time);
            println!(
                "account {account}  asset {asset}  from {}  to {end}  (shard {}, event {})",
                output::time(from),
                st.position.shard,
                st.position.seq
            );
            println!(
                "opening  available {}  held {}",
                st.opening.available, st.opening.held
            );
            let mut t = Table::new(&[
                "TIME",
                "SEQ",
                "CREDIT",
                "DEBIT",
                "AVAILABLE",
                "HELD",
                "CAUSE",
            ]);
            for e in &st.entries {
                t.row(vec![
                    output::time(e.timestamp),
                    e.seq.to_string(),
                    e.credit.to_string(),
                    e.debit.to_string(),
                    e.available.to_string(),
                    e.held.to_string(),
                    e.cause.as_ref().map_or_else(|| "?".into(), output::event),
                ]);
            }
            if t.is_empty() {
                println!("(no changes in the range)");
            } else {
                t.print();
            }
            println!(
                "closing  available {}  held {}",
                st.closing.available, st.closing.held
            );
            if st.truncated {
                let last = st.entries.last().map_or(0, |e| e.seq);
                println!("(more after event {last}: raise --limit)");
            }
            Ok(())
        }
        Cmd::History {
            account,
            asset,
            from,
            to,
            limit,
        } => {
            let asset = remote::asset(&ctx, &asset, &mut catalog).await?;
            let h = c
                .balance_history(
                    d::AccountId(account),
                    asset,
                    d::Timestamp(from),
                    to.map(d::Timestamp),
                    limit,
                )
                .await?;
            if ctx.json {
                output::json(&json!({
                    "account": account,
                    "asset": asset,
                    "points": h.points,
                    "truncated": h.truncated,
                }));
                return Ok(());
            }
            let mut t = Table::new(&["TIME", "SEQ", "AVAILABLE", "HELD"]);
            for p in &h.points {
                t.row(vec![
                    output::time(p.timestamp),
                    p.seq.to_string(),
                    p.available.to_string(),
                    p.held.to_string(),
                ]);
            }
            t.print();
            if h.truncated {
                let last = h.points.last().map(|p| p.timestamp.0).unwrap_or(from);
                println!("(more: ask again with --from {last})");
            }
            Ok(())
        }
    }
}
