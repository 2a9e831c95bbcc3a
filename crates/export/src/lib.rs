//! `tradelog-export`: the event history as Parquet files that any query engine (DuckDB,
//! Spark, Trino, DataFusion, pandas/polars) reads directly.
//!
//! Owns: the Parquet schema of tradelog events ([`schema`]: one flat, typed table, one
//! row per [`EventRecord`], see `docs/export.md`), the mapping of every event to a row and
//! back ([`to_batch`], [`from_batch`]), and the export directory ([`Exporter`]): Hive-style
//! partitions `shard=N/part-<first seq>.parquet`, row groups of at most
//! [`ROW_GROUP_ROWS_MAX`] rows, files of at most [`FILE_ROWS_MAX`] rows, each written under
//! a temporary name and renamed when complete, and a JSON [`Manifest`] recording the
//! position exported up to, so a second run exports exactly what is new. [`read_dir`]
//! reads an export back.
//!
//! Runs outside the node: it takes pages of events as the API returns them (the CLI's
//! `tradelog export parquet` reads them through the client). Must never depend on the
//! server, node, storage, engine or client crates: only on `tradelog-domain` and the
//! arrow/parquet crates.

mod schema;
mod writer;

pub use schema::{from_batch, kind_name, schema, to_batch, COLUMNS, TIME_ZONE};
pub use writer::{
    Exporter, Manifest, PartFile, Summary, FILE_ROWS_MAX, LOCK_FILE, MANIFEST_FILE,
    MANIFEST_FORMAT, MANIFEST_VERSION, ROW_GROUP_ROWS_MAX,
};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::{Path, PathBuf};
use tradelog_domain::EventRecord;

/// Why an export (or reading one back) failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A file system operation failed (the directory is not writable, the disk is full...).
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done: creating, writing, renaming...
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another export is writing to the same directory.
    #[error("{path}: another export is running into this directory")]
    Busy {
        /// The export directory.
        path: PathBuf,
    },
    /// The manifest cannot be read as one this version writes.
    #[error("{path}: not a tradelog export manifest this version reads: {message}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An event is not after the position exported so far, or past the page's position.
    #[error(
        "event {seq} of shard {shard} is out of order: expected after {after} and at most {until}"
    )]
    OutOfOrder {
        /// Its shard.
        shard: u32,
        /// Its sequence number.
        seq: u64,
        /// The shard's position before it.
        after: u64,
        /// The shard's position after the page.
        until: u64,
    },
    /// A page's position is behind what was already exported.
    #[error("the position of shard {shard} goes back from {from} to {to}")]
    PositionBack {
        /// The shard.
        shard: u32,
        /// Its position so far.
        from: u64,
        /// The page's position.
        to: u64,
    },
    /// A timestamp past 2262-04-11, the end of a Parquet TIMESTAMP in nanoseconds.
    #[error("event {seq} of shard {shard}: timestamp {nanos} ns does not fit a Parquet TIMESTAMP")]
    TimestampOutOfRange {
        /// Its shard.
        shard: u32,
        /// Its sequence number.
        seq: u64,
        /// The timestamp, nanoseconds since the Unix epoch.
        nanos: u64,
    },
    /// An earlier write failed part-way; this exporter writes nothing more (open the
    /// directory again: what was not complete is discarded).
    #[error("an earlier write of this export failed; run the export again")]
    Broken,
    /// A row read back is not one an event could have written.
    #[error("column {column}, row {row}: {message}")]
    Decode {
        /// The column.
        column: &'static str,
        /// The row in its batch.
        row: usize,
        /// What is wrong.
        message: String,
    },
    /// The Parquet library failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// The Arrow library failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// The manifest of the export in `dir` and every event of its part files, in the order
/// the manifest lists the files (per shard: in sequence order).
pub fn read_dir(dir: &Path) -> Result<(Manifest, Vec<EventRecord>), ExportError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&path).map_err(|source| ExportError::Io {
        action: "reading",
        path: path.clone(),
        source,
    })?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| ExportError::Manifest {
        path,
        message: e.to_string(),
    })?;
    let mut events = Vec::new();
    for f in &manifest.files {
        events.extend(read_file(&dir.join(&f.path))?);
    }
    Ok((manifest, events))
}

/// Every event of one part file, in row order.
pub fn read_file(path: &Path) -> Result<Vec<EventRecord>, ExportError> {
    let file = std::fs::File::open(path).map_err(|source| ExportError::Io {
        action: "opening",
        path: path.to_owned(),
        source,
    })?;
    let mut events = Vec::new();
    for batch in ParquetRecordBatchReaderBuilder::try_new(file)?.build()? {
        events.extend(from_batch(&batch?)?);
    }
    Ok(events)
}

#[cfg(test)]
mod tests;
