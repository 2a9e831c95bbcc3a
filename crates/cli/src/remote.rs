//! What every client command shares: the global flags, the connection, the exit status
//! of an error, and how a command's answer is printed.

use crate::output;
use anyhow::{anyhow, Context, Result};
use serde_json::json;
use std::future::Future;
use tradelog_client::{Catalog, Client, ClientConfig, ClientError, Receipt, ENDPOINT_DEFAULT};
use tradelog_domain as d;

/// Exit status: the engine rejected the command (a business rule), or something was not
/// found.
pub const EXIT_REJECTED: u8 = 1;
/// Exit status: bad usage or an argument the server refused as malformed (clap uses 2
/// for usage errors too).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the server could not be reached, is stopping, or is overloaded: retry
/// later (with the same ids: retries are safe).
pub const EXIT_UNAVAILABLE: u8 = 3;

/// Options of every command that talks to a server.
#[derive(clap::Args, Clone, Debug)]
pub struct Global {
    /// gRPC address of the tradelog server, or of several nodes of a cluster separated by
    /// commas (the client learns the others and sends commands to their shard's leader).
    #[arg(
        long,
        global = true,
        env = "TRADELOG_SERVER",
        default_value = ENDPOINT_DEFAULT,
        help_heading = "Connection (client commands)"
    )]
    pub server: String,
    /// Act as this principal (a number). DEVELOPMENT ONLY: declared, not authenticated.
    /// Default: the server's default principal, 1.
    #[arg(
        long,
        global = true,
        env = "TRADELOG_PRINCIPAL",
        help_heading = "Connection (client commands)"
    )]
    pub principal: Option<u64>,
    /// Act with this authority: operator (anything), trader (only its own accounts and
    /// orders) or read-only. DEVELOPMENT ONLY: declared, not authenticated. Default:
    /// operator.
    #[arg(
        long,
        global = true,
        env = "TRADELOG_AUTHORITY",
        value_enum,
        help_heading = "Connection (client commands)"
    )]
    pub authority: Option<AuthorityArg>,
    /// Print JSON for scripts instead of tables: one document, or one JSON document per
    /// line for streams (`events tail`, `replay --events`).
    #[arg(long, global = true, help_heading = "Output")]
    pub json: bool,
}

/// An authority on the command line: operator (anything), trader (only its own accounts
/// and orders), read-only (nothing that changes state).
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum AuthorityArg {
    Operator,
    Trader,
    ReadOnly,
}

/// A connected command: the client and how to print.
pub struct Ctx {
    pub client: Client,
    pub json: bool,
    /// The declared principal (the server's default when not given).
    pub principal: d::Principal,
}

impl Global {
    pub(crate) fn config(&self) -> ClientConfig {
        ClientConfig {
            principal: self.principal.map(d::Principal),
            authority: self.authority.map(|a| match a {
                AuthorityArg::Operator => d::Authority::Operator,
                AuthorityArg::Trader => d::Authority::Trader,
                AuthorityArg::ReadOnly => d::Authority::ReadOnly,
            }),
            ..ClientConfig::cluster(
                self.server
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            )
        }
    }
}

/// Runs a client command on a single-threaded runtime.
pub fn run<F, Fut>(g: &Global, f: F) -> Result<()>
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let client = Client::new(g.config())?;
        f(Ctx {
            client,
            json: g.json,
            principal: d::Principal(g.principal.unwrap_or(tradelog_server::PRINCIPAL_DEFAULT)),
        })
        .await
    })
}

/// The exit status for an error, and prints it on stderr.
pub fn report_error(e: &anyhow::Error) -> u8 {
    if let Some(f) = e.downcast_ref::<crate::audit::Failed>() {
        eprintln!("error: {f}");
        return crate::audit::EXIT_AUDIT_FAILED;
    }
    if let Some(a) = e.downcast_ref::<tradelog_audit::AuditError>() {
        eprintln!("error: {a}");
        return match a {
            // The job's own request was refused (a bad range, a limit).
            tradelog_audit::AuditError::Task {
                error: ClientError::InvalidArgument(_),
                ..
            } => EXIT_USAGE,
            tradelog_audit::AuditError::Task { .. }
            | tradelog_audit::AuditError::Inconsistent(_) => EXIT_REJECTED,
            _ => EXIT_UNAVAILABLE,
        };
    }
    if e.downcast_ref::<tradelog_placement::PlacementError>()
        .is_some()
    {
        // The layout asked for cannot be placed (too few live nodes, say).
        eprintln!("error: {}", chain(e));
        return EXIT_USAGE;
    }
    if let Some(x) = e.downcast_ref::<tradelog_export::ExportError>() {
        eprintln!("error: {}", chain(e));
        return match x {
            // The directory given with --out cannot be used.
            tradelog_export::ExportError::Io { .. }
            | tradelog_export::ExportError::Busy { .. }
            | tradelog_export::ExportError::Manifest { .. } => EXIT_USAGE,
            _ => EXIT_REJECTED,
        };
    }
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Rejected(_)) => {
            eprintln!("{e}");
            EXIT_REJECTED
        }
        Some(c @ (ClientError::Unavailable { .. } | ClientError::Timeout { .. })) => {
            eprintln!("error: {c}");
            eprintln!(
                "hint: is `tradelog serve` running there? Point the CLI at a server with \
                 --server URL (or TRADELOG_SERVER)."
            );
            EXIT_UNAVAILABLE
        }
        Some(c @ ClientError::Overloaded { .. }) => {
            eprintln!("error: {c}");
            EXIT_UNAVAILABLE
        }
        Some(ClientError::InvalidArgument(_) | ClientError::Config(_)) => {
            eprintln!("error: {}", chain(e));
            EXIT_USAGE
        }
        _ => {
            eprintln!("error: {}", chain(e));
            EXIT_REJECTED
        }
    }
}

/// The error and its causes on one line, leaving out a cause its parent already quotes.
fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Prints an accepted command (`accepted: WHAT [shard S, input I]`, or a JSON document),
/// or, for a rejection, its JSON document and returns the error (printed by `main`).
pub fn answer(ctx: &Ctx, what: &str, r: Result<Receipt, ClientError>) -> Result<()> {
    match r {
        Ok(r) => {
            if ctx.json {
                output::json(&json!({
                    "status": "accepted",
                    "accepted": r.accepted,
                    "order_id": r.order_id(),
                    "in_flight": r.accepted == d::Accepted::InFlight,
                    "duplicate": r.duplicate,
                    "shard": r.shard,
                    "input": r.input,
                }));
            } else {
                let mut line = format!("accepted: {what}");
                if r.accepted == d::Accepted::InFlight {
                    line.push_str("; in flight: completes on the credit account's shard");
                }
                if r.duplicate {
                    line.push_str(" (duplicate: the original answer to this idempotency key)");
                }
                line.push_str(&format!(" [shard {}, input {}]", r.shard, r.input));
                println!("{line}");
            }
            Ok(())
        }
        Err(ClientError::Rejected(rej)) => {
            if ctx.json {
                output::json(&json!({
                    "status": "rejected",
                    "reject_code": rej.number,
                    "reject_name": rej.name,
                    "message": rej.message,
                    "index": rej.index,
                }));
            }
            Err(ClientError::Rejected(rej).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// An asset named by id (`1`) or code (`USD`, any case), resolved with the catalog.
pub async fn asset(ctx: &Ctx, name: &str, catalog: &mut Option<Catalog>) -> Result<d::AssetId> {
    asset_on(&ctx.client, name, catalog).await
}

/// [`asset`], reading the catalog through `client` (a stale one for stale queries).
pub async fn asset_on(
    client: &Client,
    name: &str,
    catalog: &mut Option<Catalog>,
) -> Result<d::AssetId> {
    if let Ok(id) = name.parse::<u32>() {
        return Ok(d::AssetId(id));
    }
    if catalog.is_none() {
        *catalog = Some(client.catalog().await?);
    }
    let code = name.to_ascii_uppercase();
    catalog
        .as_ref()
        .and_then(|c| c.asset_by_code(&code))
        .map(|a| a.id)
        .ok_or_else(|| anyhow!("unknown asset {name:?}: not an id, and no asset has that code (see `tradelog catalog`)"))
}

/// A transfer id: the one given, or a fresh one from the clock (nanoseconds since the
/// epoch: unique for one user typing commands; pass `--id` to make a retry safe).
pub fn transfer_id(id: Option<u64>) -> d::TransferId {
    d::TransferId(id.unwrap_or_else(|| tradelog_node::runtime::now().0.max(1)))
}

/// `--stale`, for the query commands.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct StaleArg {
    /// Answer from the node you talk to (the first of --server that answers), from its
    /// replica as it is, without asking the shard's leader: works while a cluster has
    /// lost its majority, but may miss acknowledged writes (the shard/event position
    /// printed says which state it reflects). The same as without it on a single node.
    #[arg(long, help_heading = "Consistency")]
    pub stale: bool,
}

impl StaleArg {
    /// The client to query with: stale reads or the normal ones.
    pub fn client(&self, c: &Client) -> Client {
        if self.stale {
            c.stale()
        } else {
            c.clone()
        }
    }
}

/// `--as-of-index`, `--as-of-time` or `--stale` (one of them), for the queries of a
/// shard's state.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct ReadArgs {
    /// Answer as of this index of the owning shard's input log (0: before any input);
    /// the `event` of an answer's position and the `input` of a command's answer are on
    /// the same shard.
    #[arg(long, conflicts_with_all = ["as_of_time", "stale"], help_heading = "Consistency")]
    pub as_of_index: Option<u64>,
    /// Answer as of this time: RFC 3339 (2026-11-25T10:00:00Z, 2026-11-25T11:00:00.25+01:00)
    /// or nanoseconds since the Unix epoch. The state then holds exactly the events
    /// stamped at or before it.
    #[arg(long, value_parser = output::parse_time, conflicts_with = "stale", help_heading = "Consistency")]
    pub as_of_time: Option<d::Timestamp>,
    #[command(flatten)]
    pub stale: StaleArg,
}

impl ReadArgs {
    /// The as-of point asked for, if any.
    pub fn as_of(&self) -> Option<tradelog_client::AsOf> {
        match (self.as_of_index, self.as_of_time) {
            (Some(i), _) => Some(tradelog_client::AsOf::LogIndex(i)),
            (None, Some(t)) => Some(tradelog_client::AsOf::Time(t)),
            (None, None) => None,
        }
    }

    /// " as of ..." for a header line.
    pub fn describe(&self) -> String {
        match self.as_of() {
            None if self.stale.stale => "  stale read".into(),
            None => String::new(),
            Some(tradelog_client::AsOf::LogIndex(i)) => format!("  as of log index {i}"),
            Some(tradelog_client::AsOf::Time(t)) => format!("  as of {}", output::time(t)),
        }
    }
}
