//! [`MemLog`]: the log in memory, for tests and simulations.

use crate::format::chain_next;
use crate::{read_bounds, ChainHash, LogStore, Record, StorageError, GENESIS_HASH};
use std::ops::Range;

/// A log in memory with the same semantics as [`FileLog`](crate::FileLog), including
/// durability: [`MemLog::crash`] loses what was not synced, as a power loss would.
///
/// Archived records are kept (in memory) and readable through [`MemLog::archived`].
#[derive(Clone, Debug)]
pub struct MemLog {
    record_bytes_max: usize,
    /// Chain hash of the record before `records[0]`.
    prev_hash: ChainHash,
    /// Index of `records[0]`.
    first: u64,
    records: Vec<Record>,
    archived: Vec<Record>,
    durable: u64,
}

impl Default for MemLog {
    fn default() -> Self {
        MemLog::new(crate::RECORD_BYTES_MAX)
    }
}

impl MemLog {
    /// An empty log accepting payloads of up to `record_bytes_max` bytes.
    pub fn new(record_bytes_max: usize) -> Self {
        MemLog {
            record_bytes_max,
            prev_hash: GENESIS_HASH,
            first: 1,
            records: Vec::new(),
            archived: Vec::new(),
            durable: 0,
        }
    }

    /// A clean restart: everything appended is still there, and now durable (a reopened
    /// [`FileLog`](crate::FileLog) syncs what it finds).
    pub fn reopen(mut self) -> Self {
        self.durable = self.last_index();
        self
    }

    /// A crash: every record that was not durable is lost.
    pub fn crash(self) -> Self {
        self.crash_keeping(0)
    }

    /// A crash after which `unsynced` of the records that were not durable survive (the
    /// kernel had written some of them): models any outcome a real crash can have.
    pub fn crash_keeping(mut self, unsynced: u64) -> Self {
        let keep = self.durable.saturating_add(unsynced).min(self.last_index());
        self.records.truncate((keep + 1 - self.first) as usize);
        self.durable = keep;
        self
    }

    /// Records moved out by [`LogStore::archive_before`] and [`LogStore::reset_to`].
    pub fn archived(&self) -> &[Record] {
        &self.archived
    }
}

impl LogStore for MemLog {
    fn append(&mut self, entries: &[&[u8]]) -> Result<Range<u64>, StorageError> {
        if let Some(big) = entries.iter().find(|e| e.len() > self.record_bytes_max) {
            return Err(StorageError::TooLarge {
                len: big.len(),
                max: self.record_bytes_max,
            });
        }
        let start = self.last_index() + 1;
        for payload in entries {
            let index = self.last_index() + 1;
            let prev = self.chain_hash(index - 1)?;
            self.records.push(Record {
                index,
                chain_hash: chain_next(&prev, index, payload),
                payload: payload.to_vec(),
            });
        }
        Ok(start..self.last_index() + 1)
    }

    fn sync(&mut self) -> Result<u64, StorageError> {
        self.durable = self.last_index();
        Ok(self.durable)
    }

    fn read(&self, from: u64, max: usize) -> Result<Vec<Record>, StorageError> {
        let range = read_bounds(from, max, self.first, self.last_index())?;
        let a = (range.start - self.first) as usize;
        let b = (range.end - self.first) as usize;
        Ok(self.records[a..b].to_vec())
    }

    fn first_index(&self) -> u64 {
        self.first
    }

    fn last_index(&self) -> u64 {
        self.first + self.records.len() as u64 - 1
    }

    fn durable_index(&self) -> u64 {
        self.durable
    }

    fn chain_hash(&self, index: u64) -> Result<ChainHash, StorageError> {
        let (first, last) = (self.first, self.last_index());
        if index + 1 == first {
            return Ok(self.prev_hash);
        }
        if index < first || index > last {
            return Err(StorageError::OutOfRange { index, first, last });
        }
        Ok(self.records[(index - first) as usize].chain_hash)
    }

    fn truncate_after(&mut self, index: u64) -> Result<(), StorageError> {
        let (first, last) = (self.first, self.last_index());
        if index >= last {
            return Ok(());
        }
        if index + 1 < first {
            return Err(StorageError::OutOfRange { index, first, last });
        }
        self.records.truncate((index + 1 - first) as usize);
        self.durable = self.durable.min(index);
        Ok(())
    }

    fn archive_before(&mut self, index: u64) -> Result<u64, StorageError> {
        let upto = index.min(self.durable + 1).max(self.first);
        let n = (upto - self.first) as usize;
        if n > 0 {
            self.prev_hash = self.records[n - 1].chain_hash;
            self.archived.extend(self.records.drain(..n));
            self.first = upto;
        }
        Ok(self.first)
    }

    fn reset_to(&mut self, index: u64, chain_hash: ChainHash) -> Result<(), StorageError> {
        let (first, last) = (self.first, self.last_index());
        if index < last || index >= crate::INDEX_MAX {
            return Err(StorageError::OutOfRange { index, first, last });
        }
        self.archived.append(&mut self.records);
        self.first = index + 1;
        self.prev_hash = chain_hash;
        self.durable = index;
        Ok(())
    }
}
