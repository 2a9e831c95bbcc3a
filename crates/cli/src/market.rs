//! `tradelog market create|halt|resume`.

use crate::remote::{self, Global};
use anyhow::Result;
use tradelog_domain as d;

/// Markets: create, halt, resume.
#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Adds a market (a base/quote pair with its trading rules) to the catalog
    /// (operators; repeating the same definition is answered with the original result).
    #[command(
        after_help = "Units: quantities are base-asset minor units, multiples of \
        --lot-size; prices are quote-asset minor units PER LOT, multiples of --tick-size. \
        With BTC at scale 8 and USD at scale 2, --lot-size 1000000 makes a lot 0.01 BTC, and \
        a price of 30000.00 USD/BTC is 300.00 USD per lot = 30000.\n\nExamples:\n  \
        tradelog market create 1 --base BTC --quote USD --lot-size 1000000 --tick-size 100 \
        --fee-account 100\n  \
        tradelog market create 2 --base 2 --quote 1 --lot-size 1 --tick-size 1 \
        --maker-fee-bps 10 --taker-fee-bps 20 --fee-account 100 --shard 1"
    )]
    Create(CreateArgs),
    /// Stops matching in a market (operators; cancels are still accepted).
    #[command(after_help = "Examples:\n  tradelog market halt 1")]
    Halt {
        /// The market.
        market: u32,
    },
    /// Resumes a halted market (operators).
    #[command(after_help = "Examples:\n  tradelog market resume 1")]
    Resume {
        /// The market.
        market: u32,
    },
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// Market id (non-zero).
    id: u32,
    /// What is traded: an asset id or code.
    #[arg(long)]
    base: String,
    /// What it is paid with: an asset id or code.
    #[arg(long)]
    quote: String,
    /// One lot, in base minor units: quantities are multiples of it.
    #[arg(long)]
    lot_size: u64,
    /// Prices (quote minor units per lot) are multiples of this.
    #[arg(long)]
    tick_size: u64,
    /// Smallest order quantity in base minor units (default: one lot).
    #[arg(long)]
    min_qty: Option<u64>,
    /// Largest order quantity in base minor units (default: 1,000,000 lots).
    #[arg(long)]
    max_qty: Option<u64>,
    /// Fee of the resting side, basis points of the notional (at most 1000).
    #[arg(long, default_value_t = 0)]
    maker_fee_bps: u32,
    /// Fee of the incoming side, basis points of the notional (at most 1000).
    #[arg(long, default_value_t = 0)]
    taker_fee_bps: u32,
    /// Account that collects the fees (in the quote asset).
    #[arg(long)]
    fee_account: u64,
    /// Limit prices must lie within this many bps of the last trade (0: no collar).
    #[arg(long, default_value_t = 0)]
    collar_bps: u32,
    /// The shard that keeps the market's book.
    #[arg(long, default_value_t = 0)]
    shard: u32,
}

/// Default largest order, in lots.
const MAX_QTY_LOTS_DEFAULT: u64 = 1_000_000;

pub fn run(cmd: Cmd, g: &Global) -> Result<()> {
    remote::run(g, |ctx| async move {
        let c = &ctx.client;
        match cmd {
            Cmd::Create(a) => {
                let mut catalog = None;
                let base = remote::asset(&ctx, &a.base, &mut catalog).await?;
                let quote = remote::asset(&ctx, &a.quote, &mut catalog).await?;
                let spec = d::MarketSpec {
                    id: d::MarketId(a.id),
                    base,
                    quote,
                    lot_size: a.lot_size,
                    tick_size: a.tick_size,
                    min_qty: d::Qty(a.min_qty.unwrap_or(a.lot_size)),
                    max_qty: d::Qty(
                        a.max_qty
                            .unwrap_or(a.lot_size.saturating_mul(MAX_QTY_LOTS_DEFAULT)),
                    ),
                    maker_fee_bps: a.maker_fee_bps,
                    taker_fee_bps: a.taker_fee_bps,
                    fee_account: d::AccountId(a.fee_account),
                    collar_bps: a.collar_bps,
                    shard: d::ShardId(a.shard),
                };
                let what = format!(
                    "market {} (base {base}, quote {quote}) on shard {}",
                    a.id, a.shard
                );
                let r = c.create_market(spec).await;
                remote::answer(&ctx, &what, r)
            }
            Cmd::Halt { market } => {
                let r = c.halt_market(d::MarketId(market)).await;
                remote::answer(&ctx, &format!("market {market} halted"), r)
            }
            Cmd::Resume { market } => {
                let r = c.resume_market(d::MarketId(market)).await;
                remote::answer(&ctx, &format!("market {market} resumed"), r)
            }
        }
    })
}
