//! Prometheus metrics: one process-wide recorder (the `metrics` facade is global), rendered
//! by `GET /metrics`.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tradelog_node::{CommandReply, SubmitError};

/// Commands answered, by interface and outcome (`accepted`, `rejected`, `overloaded`,
/// `unavailable`; `invalid` for requests refused at the edge).
pub(crate) const COMMANDS_TOTAL: &str = "tradelog_commands_total";
/// Time from submission to answer of a command, in seconds.
pub(crate) const COMMAND_SECONDS: &str = "tradelog_command_duration_seconds";
/// Commands refused because a shard queue was full.
pub(crate) const OVERLOADED_TOTAL: &str = "tradelog_queue_overloaded_total";
/// Histogram buckets of [`COMMAND_SECONDS`] (100 us to 5 s: a group commit is one fsync).
const LATENCY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0,
];
/// Histogram buckets of the node's fsync and apply times (10 us to 1 s).
const STEP_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Histogram buckets of the inputs per group commit (powers of two up to the node's
/// largest group).
const GROUP_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
];
/// How often histogram storage is compacted.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use; `None` when another
/// recorder was installed first.
pub(crate) fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            use tradelog_node::metrics as node;
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(COMMAND_SECONDS.into()), LATENCY_BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full(node::FSYNC_SECONDS.into()), STEP_BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full(node::APPLY_SECONDS.into()), STEP_BUCKETS)
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full(node::GROUP_COMMIT_INPUTS.into()),
                    GROUP_BUCKETS,
                )
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    metrics::describe_counter!(
                        COMMANDS_TOTAL,
                        "Commands answered, by interface and outcome."
                    );
                    metrics::describe_histogram!(
                        COMMAND_SECONDS,
                        metrics::Unit::Seconds,
                        "Time from submission to answer of a command."
                    );
                    metrics::describe_counter!(
                        OVERLOADED_TOTAL,
                        "Commands refused because a shard queue was full."
                    );
                    for (name, text) in node::DESCRIPTIONS {
                        metrics::describe_histogram!(*name, *text);
                    }
                    Some(handle)
                }
                Err(_) => {
                    tracing::warn!("another metrics recorder is installed; /metrics is disabled");
                    None
                }
            }
        })
        .as_ref()
}

/// Compacts histogram storage now and then until `stop` fires.
pub(crate) fn start_upkeep(mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    let h = handle();
    tokio::spawn(async move {
        let Some(h) = h else { return };
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tokio::select! {
                _ = every.tick() => h.run_upkeep(),
                r = stop.changed() => if r.is_err() || *stop.borrow() { return },
            }
        }
    })
}

/// The command metrics of one interface, registered once (registering on every command,
/// as the `metrics` macros do, hashed and allocated the labels each time).
struct InterfaceMetrics {
    accepted: metrics::Counter,
    rejected: metrics::Counter,
    overloaded: metrics::Counter,
    unavailable: metrics::Counter,
    invalid: metrics::Counter,
    refused_overloaded: metrics::Counter,
    seconds: metrics::Histogram,
}

impl InterfaceMetrics {
    fn new(interface: &'static str) -> InterfaceMetrics {
        let outcome = |o: &'static str| metrics::counter!(COMMANDS_TOTAL, "interface" => interface, "outcome" => o);
        InterfaceMetrics {
            accepted: outcome("accepted"),
            rejected: outcome("rejected"),
            overloaded: outcome("overloaded"),
            unavailable: outcome("unavailable"),
            invalid: outcome("invalid"),
            refused_overloaded: metrics::counter!(OVERLOADED_TOTAL, "interface" => interface),
            seconds: metrics::histogram!(COMMAND_SECONDS, "interface" => interface),
        }
    }
}

/// The interfaces whose metrics are registered once; another name registers per call.
static INTERFACES: [(&str, OnceLock<InterfaceMetrics>); 2] =
    [("grpc", OnceLock::new()), ("http", OnceLock::new())];

/// Runs `f` on `interface`'s metrics (after the recorder is installed).
fn with_interface(interface: &'static str, f: impl FnOnce(&InterfaceMetrics)) {
    let _ = handle();
    match INTERFACES.iter().find(|(name, _)| *name == interface) {
        Some((_, m)) => f(m.get_or_init(|| InterfaceMetrics::new(interface))),
        None => f(&InterfaceMetrics::new(interface)),
    }
}

/// Records one answered command.
pub(crate) fn command_done(
    interface: &'static str,
    r: &Result<CommandReply, SubmitError>,
    elapsed: Duration,
) {
    with_interface(interface, |m| {
        match r {
            Ok(rep) if rep.outcome.result.is_ok() => m.accepted.increment(1),
            Ok(_) => m.rejected.increment(1),
            Err(SubmitError::Overloaded(_)) => {
                m.refused_overloaded.increment(1);
                m.overloaded.increment(1);
            }
            Err(_) => m.unavailable.increment(1),
        }
        m.seconds.record(elapsed.as_secs_f64());
    });
}

pub(crate) fn command_invalid(interface: &'static str, n: u64) {
    with_interface(interface, |m| m.invalid.increment(n));
}

pub(crate) fn render() -> Option<String> {
    handle().map(|h| {
        h.run_upkeep();
        h.render()
    })
}
