//! What a shard reports through the `metrics` facade (a no-op unless the process installed
//! a recorder, as the server does for `/metrics`). Handles are taken once per shard, so
//! recording costs no lookup; everything is recorded per group commit, not per input.

use metrics::{Counter, Gauge, Histogram};
use tradelog_domain::ShardId;

/// Inputs made durable by one group commit (one fsync).
pub const GROUP_COMMIT_INPUTS: &str = "tradelog_group_commit_inputs";
/// Time of the log's fsync of one group commit, in seconds.
pub const FSYNC_SECONDS: &str = "tradelog_fsync_duration_seconds";
/// Time the engine took to apply one group commit, in seconds.
pub const APPLY_SECONDS: &str = "tradelog_apply_duration_seconds";
/// Inputs applied (and durable).
pub const INPUTS_TOTAL: &str = "tradelog_inputs_total";
/// Log index of the last applied input.
pub const APPLIED_INDEX: &str = "tradelog_applied_index";
/// Client jobs waiting in a shard's queue.
pub const QUEUE_DEPTH: &str = "tradelog_shard_queue_depth";
/// Snapshot files written.
pub const SNAPSHOTS_TOTAL: &str = "tradelog_snapshots_total";
/// Time a shard waited for its snapshotter, in microseconds (zero while snapshots keep up).
pub const SNAPSHOTTER_STALL_US: &str = "tradelog_snapshotter_stall_microseconds_total";

/// Every metric of this crate with its unit and description, for exporters to describe.
pub const DESCRIPTIONS: &[(&str, &str)] = &[
    (
        GROUP_COMMIT_INPUTS,
        "Inputs made durable by one group commit (one fsync).",
    ),
    (
        FSYNC_SECONDS,
        "Time of the log fsync of one group commit, in seconds.",
    ),
    (
        APPLY_SECONDS,
        "Time the engine took to apply one group commit, in seconds.",
    ),
    (INPUTS_TOTAL, "Inputs applied (and durable)."),
    (APPLIED_INDEX, "Log index of the last applied input."),
    (QUEUE_DEPTH, "Client jobs waiting in a shard's queue."),
    (SNAPSHOTS_TOTAL, "Snapshot files written."),
    (
        SNAPSHOTTER_STALL_US,
        "Time a shard waited for its snapshotter, in microseconds.",
    ),
];

/// One shard's handles (label `shard`).
#[derive(Clone)]
pub(crate) struct ShardMetrics {
    pub group_inputs: Histogram,
    pub fsync_seconds: Histogram,
    pub apply_seconds: Histogram,
    pub inputs: Counter,
    pub applied_index: Gauge,
    pub queue_depth: Gauge,
    pub snapshots: Counter,
    pub stall_us: Counter,
}

impl ShardMetrics {
    pub fn new(shard: ShardId) -> ShardMetrics {
        let s = shard.0.to_string();
        ShardMetrics {
            group_inputs: metrics::histogram!(GROUP_COMMIT_INPUTS, "shard" => s.clone()),
            fsync_seconds: metrics::histogram!(FSYNC_SECONDS, "shard" => s.clone()),
            apply_seconds: metrics::histogram!(APPLY_SECONDS, "shard" => s.clone()),
            inputs: metrics::counter!(INPUTS_TOTAL, "shard" => s.clone()),
            applied_index: metrics::gauge!(APPLIED_INDEX, "shard" => s.clone()),
            queue_depth: metrics::gauge!(QUEUE_DEPTH, "shard" => s.clone()),
            snapshots: metrics::counter!(SNAPSHOTS_TOTAL, "shard" => s.clone()),
            stall_us: metrics::counter!(SNAPSHOTTER_STALL_US, "shard" => s),
        }
    }
}
