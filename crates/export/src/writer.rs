//! The export directory: Hive-style partitions by shard, part files written under a
//! temporary name and renamed when complete, and a manifest recording the position
//! exported up to, so that the next run appends only what is new.

use crate::schema::{schema, to_batch};
use crate::ExportError;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use tradelog_domain::{EventRecord, ShardId};

/// Rows of one row group (the unit a query engine skips or reads in parallel): the
/// writer buffers at most this many rows per open part file.
pub const ROW_GROUP_ROWS_MAX: usize = 64 * 1024;
/// Rows of one part file; a shard with more new events gets several part files.
pub const FILE_ROWS_MAX: u64 = 1024 * 1024;
/// The manifest's file name in the export directory (a leading `_` makes Spark, Trino
/// and Hive skip it when they list the table's files).
pub const MANIFEST_FILE: &str = "_tradelog_export.json";
/// The lock file held while an export runs (one export per directory at a time).
pub const LOCK_FILE: &str = ".tradelog-export.lock";
/// What the manifest's `format` says.
pub const MANIFEST_FORMAT: &str = "tradelog-events-parquet";
/// The version of the manifest and of the schema this crate writes (2: the columns of
/// `shard_split` added; a version 1 directory is refused, so one directory never mixes
/// schemas: export into a new one).
pub const MANIFEST_VERSION: u32 = 2;

/// What an export directory holds: the position exported up to and every part file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Always [`MANIFEST_VERSION`].
    pub version: u32,
    /// Per shard, the last event sequence number exported (the API's event position:
    /// the next run reads after it).
    pub position: BTreeMap<u32, u64>,
    /// Every part file, in the order written.
    pub files: Vec<PartFile>,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            format: MANIFEST_FORMAT.into(),
            version: MANIFEST_VERSION,
            position: BTreeMap::new(),
            files: Vec::new(),
        }
    }
}

/// One complete part file of the export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartFile {
    /// Path relative to the export directory: `shard=N/part-<first seq, 20 digits>.parquet`.
    pub path: String,
    /// Its shard.
    pub shard: u32,
    /// Sequence number of its first event.
    pub first_seq: u64,
    /// Sequence number of its last event.
    pub last_seq: u64,
    /// Its number of rows (events).
    pub rows: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// What a run added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Events written.
    pub events: u64,
    /// Part files written.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Leftovers of an interrupted run removed when the directory was opened
    /// (temporary files, and part files the manifest does not list).
    pub removed: u64,
}

/// A part file being written.
struct OpenPart {
    writer: ArrowWriter<File>,
    file: File,
    tmp: PathBuf,
    path: String,
    first_seq: u64,
    last_seq: u64,
    rows: u64,
}

/// An export directory open for appending events.
///
/// Feed it pages of events with [`Exporter::write`] (each with the position after it, as
/// the API's `ReadEvents` returns), then [`Exporter::finish`]. Only complete part files
/// carry a name ending in `.parquet`, and the manifest is replaced atomically after the
/// files it lists are durable; what an interrupted run leaves is removed by the next
/// [`Exporter::open`], which then resumes from the manifest's position: no event is
/// exported twice or skipped.
pub struct Exporter {
    dir: PathBuf,
    _lock: File,
    manifest: Manifest,
    /// Position including the events written to open parts.
    pending: BTreeMap<u32, u64>,
    open: BTreeMap<u32, OpenPart>,
    summary: Summary,
    props: WriterProperties,
    /// Rows per part file ([`FILE_ROWS_MAX`]; smaller in tests).
    file_rows: u64,
    /// A write failed after it began changing files: the state of the open parts is
    /// unknown, so nothing more is written or completed.
    broken: bool,
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ExportError + 'a {
    move |source| ExportError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), ExportError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", dir))
}

/// Whether `name` is one this crate gives a part file: `part-` 20 digits `.parquet`
/// (other files, such as another tool's `part-00000-<uuid>.parquet`, are never touched).
fn is_part_name(name: &str) -> bool {
    name.strip_prefix("part-")
        .and_then(|n| n.strip_suffix(".parquet"))
        .is_some_and(|seq| seq.len() == 20 && seq.bytes().all(|b| b.is_ascii_digit()))
}

/// `shard=N`.
fn shard_dir(shard: u32) -> String {
    format!("shard={shard}")
}

impl Exporter {
    /// Opens (creating it if needed) the export directory `dir`: takes its lock, reads
    /// its manifest (none: an empty export), and removes what an interrupted run left.
    pub fn open(dir: &Path) -> Result<Exporter, ExportError> {
        fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("creating", &lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |_| ExportError::Busy {
                path: dir.to_owned(),
            },
        )?;
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest = match fs::read(&manifest_path) {
            Ok(bytes) => {
                let m: Manifest =
                    serde_json::from_slice(&bytes).map_err(|e| ExportError::Manifest {
                        path: manifest_path.clone(),
                        message: e.to_string(),
                    })?;
                if m.format != MANIFEST_FORMAT || m.version != MANIFEST_VERSION {
                    return Err(ExportError::Manifest {
                        path: manifest_path,
                        message: format!(
                            "format {:?} version {}; this tradelog writes {MANIFEST_FORMAT:?} \
                             version {MANIFEST_VERSION}",
                            m.format, m.version
                        ),
                    });
                }
                m
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
            Err(e) => return Err(io("reading", &manifest_path)(e)),
        };
        let mut x = Exporter {
            dir: dir.to_owned(),
            _lock: lock,
            pending: manifest.position.clone(),
            manifest,
            open: BTreeMap::new(),
            summary: Summary::default(),
            props: WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(ROW_GROUP_ROWS_MAX))
                .set_created_by(format!("tradelog {}", env!("CARGO_PKG_VERSION")))
                .build(),
            file_rows: FILE_ROWS_MAX,
            broken: false,
        };
        x.summary.removed = x.remove_leftovers()?;
        Ok(x)
    }

    /// The same with smaller row groups and files, to test what happens at their limits.
    #[cfg(test)]
    pub(crate) fn with_limits(mut self, row_group_rows: usize, file_rows: u64) -> Exporter {
        assert!(self.open.is_empty());
        self.props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(row_group_rows))
            .build();
        self.file_rows = file_rows;
        self
    }

    /// Deletes temporary files and part files the manifest does not list, in every
    /// `shard=N` directory; other files are left alone. Returns how many it removed.
    fn remove_leftovers(&self) -> Result<u64, ExportError> {
        let listed: std::collections::BTreeSet<&str> = self
            .manifest
            .files
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir).map_err(io("listing", &self.dir))? {
            let entry = entry.map_err(io("listing", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".manifest") && name.ends_with(".tmp") {
                fs::remove_file(entry.path()).map_err(io("removing", &entry.path()))?;
                removed += 1;
                continue;
            }
            if !name.starts_with("shard=") || !entry.path().is_dir() {
                continue;
            }
            for part in fs::read_dir(entry.path()).map_err(io("listing", &entry.path()))? {
                let part = part.map_err(io("listing", &entry.path()))?;
                let file = part.file_name().to_string_lossy().into_owned();
                let rel = format!("{name}/{file}");
                let tmp = file
                    .strip_prefix('.')
                    .and_then(|f| f.strip_suffix(".tmp"))
                    .is_some_and(is_part_name);
                let orphan = is_part_name(&file) && !listed.contains(rel.as_str());
                if tmp || orphan {
                    fs::remove_file(part.path()).map_err(io("removing", &part.path()))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// The manifest as of the last complete part file.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Per shard, the last sequence number taken (written or being written): where the
    /// next page starts.
    pub fn position(&self) -> BTreeMap<ShardId, u64> {
        self.pending
            .iter()
            .map(|(s, q)| (ShardId(*s), *q))
            .collect()
    }

    /// Appends one page of events (each shard's events in order, shards interleaved)
    /// and moves the position to `position`, the position after the page. Every event
    /// must come after the position so far and not after `position`, which must not go
    /// back: a page that breaks this is refused whole ([`ExportError::OutOfOrder`]),
    /// nothing written. After any other error (I/O) the exporter refuses to go on
    /// ([`ExportError::Broken`]): drop it, and the next [`Exporter::open`] discards what
    /// it had not completed.
    pub fn write(
        &mut self,
        events: &[EventRecord],
        position: &BTreeMap<ShardId, u64>,
    ) -> Result<(), ExportError> {
        if self.broken {
            return Err(ExportError::Broken);
        }
        for (shard, &to) in position {
            let from = self.pending.get(&shard.0).copied().unwrap_or(0);
            if to < from {
                return Err(ExportError::PositionBack {
                    shard: shard.0,
                    from,
                    to,
                });
            }
        }
        let mut by_shard: BTreeMap<u32, Vec<&EventRecord>> = BTreeMap::new();
        let mut last = self.pending.clone();
        for e in events {
            let after = last.get(&e.shard.0).copied().unwrap_or(0);
            let until = position.get(&e.shard).copied().unwrap_or(0);
            if e.seq <= after || e.seq > until {
                return Err(ExportError::OutOfOrder {
                    shard: e.shard.0,
                    seq: e.seq,
                    after,
                    until,
                });
            }
            if i64::try_from(e.timestamp.0).is_err() {
                return Err(ExportError::TimestampOutOfRange {
                    shard: e.shard.0,
                    seq: e.seq,
                    nanos: e.timestamp.0,
                });
            }
            last.insert(e.shard.0, e.seq);
            by_shard.entry(e.shard.0).or_default().push(e);
        }
        self.broken = true;
        for (shard, list) in by_shard {
            let mut rest = &list[..];
            while !rest.is_empty() {
                let file_rows = self.file_rows;
                let part = self.part(shard, rest[0].seq)?;
                let room = (file_rows - part.rows) as usize;
                let (now, later) = rest.split_at(room.min(rest.len()));
                let owned: Vec<EventRecord> = now.iter().map(|e| (*e).clone()).collect();
                let batch = to_batch(&owned)?;
                part.writer.write(&batch)?;
                part.rows += owned.len() as u64;
                part.last_seq = owned.last().map(|e| e.seq).unwrap_or(part.last_seq);
                self.summary.events += owned.len() as u64;
                rest = later;
                if self.open[&shard].rows >= self.file_rows {
                    // Full: everything of this shard up to its last event is in it.
                    let last_seq = self.open[&shard].last_seq;
                    let committed = if rest.is_empty() {
                        position.get(&ShardId(shard)).copied().unwrap_or(last_seq)
                    } else {
                        last_seq
                    };
                    self.close(shard, committed)?;
                    self.write_manifest()?;
                }
            }
        }
        for (shard, &to) in position {
            self.pending.insert(shard.0, to);
        }
        self.broken = false;
        Ok(())
    }

    /// The open part of `shard`, created (named after `first_seq`, its first event's)
    /// when none is open.
    fn part(&mut self, shard: u32, first_seq: u64) -> Result<&mut OpenPart, ExportError> {
        if !self.open.contains_key(&shard) {
            let sdir = self.dir.join(shard_dir(shard));
            fs::create_dir_all(&sdir).map_err(io("creating", &sdir))?;
            let name = format!("part-{first_seq:020}.parquet");
            let tmp = sdir.join(format!(".{name}.tmp"));
            let file = File::create(&tmp).map_err(io("creating", &tmp))?;
            let clone = file.try_clone().map_err(io("opening", &tmp))?;
            let writer = ArrowWriter::try_new(clone, schema(), Some(self.props.clone()))?;
            self.open.insert(
                shard,
                OpenPart {
                    writer,
                    file,
                    tmp,
                    path: format!("{}/{name}", shard_dir(shard)),
                    first_seq,
                    last_seq: 0,
                    rows: 0,
                },
            );
        }
        Ok(self.open.get_mut(&shard).expect("just opened"))
    }

    /// Completes `shard`'s open part: footer, fsync, rename, fsync of its directory;
    /// then the manifest's position of the shard is `committed`.
    fn close(&mut self, shard: u32, committed: u64) -> Result<(), ExportError> {
        let p = self.open.remove(&shard).expect("an open part");
        p.writer.close()?;
        p.file.sync_all().map_err(io("syncing", &p.tmp))?;
        drop(p.file);
        let path = self.dir.join(&p.path);
        fs::rename(&p.tmp, &path).map_err(io("renaming", &p.tmp))?;
        sync_dir(path.parent().expect("a shard directory"))?;
        let bytes = fs::metadata(&path).map_err(io("reading", &path))?.len();
        self.manifest.files.push(PartFile {
            path: p.path,
            shard,
            first_seq: p.first_seq,
            last_seq: p.last_seq,
            rows: p.rows,
            bytes,
        });
        self.manifest.position.insert(shard, committed);
        self.summary.files += 1;
        self.summary.bytes += bytes;
        Ok(())
    }

    /// Replaces the manifest atomically (temporary file, fsync, rename, fsync), with the
    /// position of every shard without an open part brought up to date.
    fn write_manifest(&mut self) -> Result<(), ExportError> {
        for (shard, &seq) in &self.pending {
            if !self.open.contains_key(shard) {
                // Mid-page, a part just completed may be ahead of `pending`.
                let p = self.manifest.position.entry(*shard).or_insert(0);
                *p = (*p).max(seq);
            }
        }
        let tmp = self.dir.join(".manifest.json.tmp");
        let mut json = serde_json::to_vec_pretty(&self.manifest).expect("a manifest encodes");
        json.push(b'\n');
        let mut f = File::create(&tmp).map_err(io("creating", &tmp))?;
        f.write_all(&json).map_err(io("writing", &tmp))?;
        f.sync_all().map_err(io("syncing", &tmp))?;
        drop(f);
        let path = self.dir.join(MANIFEST_FILE);
        fs::rename(&tmp, &path).map_err(io("renaming", &tmp))?;
        sync_dir(&self.dir)
    }

    /// Completes every open part and writes the manifest; returns what this run added.
    pub fn finish(mut self) -> Result<Summary, ExportError> {
        if self.broken {
            return Err(ExportError::Broken);
        }
        let shards: Vec<u32> = self.open.keys().copied().collect();
        for shard in shards {
            let committed = self.pending[&shard];
            self.close(shard, committed)?;
        }
        self.write_manifest()?;
        Ok(self.summary.clone())
    }
}
