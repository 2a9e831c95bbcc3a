//! `tradelog asset create` and `tradelog catalog`.

use crate::output::{self, Table};
use crate::remote::{self, Ctx, Global};
use anyhow::Result;
use tradelog_domain as d;

/// Assets of the catalog.
#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Adds an asset to the catalog (operators; every shard applies it; repeating the same
    /// definition is answered with the original result).
    #[command(
        after_help = "SCALE is the number of decimal digits of the minor unit: with \
        USD at scale 2, amounts are cents (12345 = 123.45 USD).\n\nExamples:\n  \
        tradelog asset create 1 USD 2\n  tradelog asset create 2 BTC 8"
    )]
    Create {
        /// Asset id (non-zero).
        id: u32,
        /// Ticker: 1 to 12 upper-case ASCII letters and digits.
        code: String,
        /// Decimal digits of the minor unit (at most 18).
        scale: u8,
    },
}

pub fn run(cmd: Cmd, g: &Global) -> Result<()> {
    remote::run(g, |ctx| async move {
        match cmd {
            Cmd::Create { id, code, scale } => {
                let what = format!("asset {id} {code} (scale {scale})");
                let r = ctx
                    .client
                    .create_asset(d::Asset {
                        id: d::AssetId(id),
                        code,
                        scale,
                    })
                    .await;
                remote::answer(&ctx, &what, r)
            }
        }
    })
}

/// Options of `tradelog catalog`.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  tradelog catalog\n  tradelog catalog --json\n  \
    tradelog catalog --stale"
)]
pub struct CatalogArgs {
    #[command(flatten)]
    stale: remote::StaleArg,
}

/// `tradelog catalog`: every asset and market.
pub fn catalog(a: CatalogArgs, g: &Global) -> Result<()> {
    remote::run(g, |ctx: Ctx| async move {
        let c = a.stale.client(&ctx.client).catalog().await?;
        if ctx.json {
            output::json(&c);
            return Ok(());
        }
        let mut t = Table::new(&["ASSET", "CODE", "SCALE"]);
        for a in &c.assets {
            t.row(vec![a.id.to_string(), a.code.clone(), a.scale.to_string()]);
        }
        t.print();
        println!();
        let mut t = Table::new(&[
            "MARKET",
            "BASE",
            "QUOTE",
            "LOT",
            "TICK",
            "MIN QTY",
            "MAX QTY",
            "MAKER BPS",
            "TAKER BPS",
            "FEE ACCOUNT",
            "COLLAR BPS",
            "SHARD",
        ]);
        let code = |id: d::AssetId| {
            c.asset(id)
                .map(|a| a.code.clone())
                .unwrap_or_else(|| id.to_string())
        };
        for m in &c.markets {
            t.row(vec![
                m.id.to_string(),
                code(m.base),
                code(m.quote),
                m.lot_size.to_string(),
                m.tick_size.to_string(),
                m.min_qty.to_string(),
                m.max_qty.to_string(),
                m.maker_fee_bps.to_string(),
                m.taker_fee_bps.to_string(),
                m.fee_account.to_string(),
                m.collar_bps.to_string(),
                m.shard.to_string(),
            ]);
        }
        t.print();
        Ok(())
    })
}
