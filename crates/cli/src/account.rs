//! `tradelog account ...`: open accounts, move money, read balances and their history.

use crate::output::{self, Table};
use crate::remote::{self, Ctx, Global};
use anyhow::Result;
use serde_json::json;
use tradelog_domain as d;

/// Accounts and money: open, deposit, withdraw, transfer, balances, history.
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
    #[command(after_help = "Examples:\n  tradelog account balances 7\n  \
        tradelog account balances 7 --json")]
    Balances {
        /// The account.
        account: u64,
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
        Cmd::Balances { account } => {
            let b = c.balances(d::AccountId(account)).await?;
            if ctx.json {
                output::json(&b);
                return Ok(());
            }
            let cat = c.catalog().await.ok();
            let status = match b.status {
                tradelog_client::AccountStatus::Active => "active",
                tradelog_client::AccountStatus::Frozen => "frozen",
                tradelog_client::AccountStatus::Closed => "closed",
            };
            println!(
                "account {}  owner {}  {status}  open orders {}  (shard {}, event {})",
                b.account, b.owner, b.open_orders, b.position.shard, b.position.seq
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
