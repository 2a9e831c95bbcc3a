//! The server's in-memory event index: per shard, the events the node published since the
//! server started (at most `retained_max` each), fed by one thread from
//! `Node::subscribe()`, and re-published to live subscribers.
//!
//! Reads merge the shards' streams by leader time; a subscription subscribes to the live
//! feed first, then reads the stored part, then skips live events it already sent (by
//! shard and sequence number), so nothing is missed or sent twice across the switch. A
//! subscriber that falls behind the live feed goes back to the index to catch up.

use crate::core::Error;
use crossbeam_channel::Receiver;
use std::collections::VecDeque;
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{broadcast, mpsc, watch};
use tradelog_api::query::{BalanceHistoryQuery, EventStream, Position, ShardFilter};
use tradelog_domain::{Event, EventRecord, ShardId, Subject, Timestamp};
use tradelog_engine::projection::BalancePoint;

/// Live batches buffered per subscriber before it must catch up from the index.
const LIVE_BATCHES_MAX: usize = 1_024;
/// Events per batch a subscription sends while catching up.
pub(crate) const SUBSCRIBE_PAGE_MAX: usize = 1_000;
/// Most events one read looks at (matching or not) before it returns a page, so a sparse
/// stream cannot hold the index lock long (the index thread must keep up with the node's
/// feed); the page's position says where it stopped.
pub(crate) const READ_SCAN_MAX: usize = 100_000;

/// How [`EventLog::visit`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Visited {
    /// The position is older than the index: read the history first.
    BelowIndex,
    /// The visitor stopped at this sequence number.
    Stopped { last: u64 },
    /// The scan limit was reached at `last`; more events are retained.
    More { last: u64 },
    /// Every retained event was seen (`last`: the last one, or `after` if none).
    End { last: u64 },
}

/// What a read or subscription delivers: the events of a stream, from some shards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Select {
    /// Which events.
    pub stream: EventStream,
    /// From which shards (the others are neither read nor moved in the position).
    pub shards: ShardFilter,
}

impl Select {
    /// Whether shard `s`'s events are read.
    pub(crate) fn covers(&self, s: ShardId) -> bool {
        self.shards.includes(s)
    }

    /// Whether an event of a covered shard is delivered.
    pub(crate) fn wants(&self, e: &Event) -> bool {
        concerns(self.stream, e)
    }
}

impl From<EventStream> for Select {
    /// The stream, from every shard.
    fn from(stream: EventStream) -> Select {
        Select {
            stream,
            shards: ShardFilter::all(),
        }
    }
}

/// How often a live subscription checks that this node still holds its shards.
const HOLDS_CHECK_INTERVAL_MS: u64 = 1_000;

/// A batch of a stream's events and the position after it.
#[derive(Clone, Debug)]
pub(crate) struct Page {
    /// The events, in each shard's order.
    pub events: Vec<EventRecord>,
    /// Pass it back as `after` to go on with no gap and no duplicate.
    pub position: Position,
    /// True when every retained event after the position was looked at.
    pub at_end: bool,
}

struct ShardLog {
    /// Sequence number of `events[0]` (or of the next event, when empty).
    first_seq: u64,
    events: VecDeque<EventRecord>,
    /// Latest leader time of an event of this shard that is not retained (`None`: every
    /// event of the shard since its creation is here).
    horizon: Option<Timestamp>,
}

impl ShardLog {
    fn next_seq(&self) -> u64 {
        self.first_seq + self.events.len() as u64
    }
}

struct Inner {
    shards: Vec<ShardLog>,
    /// Dropped when the feed closes, which ends every live subscription.
    live: Option<broadcast::Sender<Arc<[EventRecord]>>>,
    closed: Option<String>,
}

/// The index.
pub(crate) struct EventLog {
    inner: Mutex<Inner>,
    retained_max: usize,
    /// The shards that exist now (the index has a slot for every shard a split may make;
    /// positions and checks name only these).
    shard_count: ShardCount,
    /// The next sequence number of each shard the index expects: lets a command's answer
    /// wait until its events are readable (read your writes).
    progress: watch::Sender<Vec<u64>>,
}

/// How long an answered command waits for its events to reach the index before it is
/// answered anyway.
pub(crate) const CATCH_UP_WAIT_MS_MAX: u64 = 5_000;

/// The number of shards that exist now.
pub(crate) type ShardCount = Arc<dyn Fn() -> u32 + Send + Sync>;

impl EventLog {
    /// Starts the index thread on `feed`; `next[s]` is the sequence number of the first
    /// event of shard `s` the index will hold (events before it, also on the feed, are
    /// skipped), for every shard slot; `shard_count` says how many shards exist now.
    pub(crate) fn start(
        feed: Receiver<Arc<[EventRecord]>>,
        next: &[u64],
        shard_count: ShardCount,
        retained_max: usize,
    ) -> (Arc<EventLog>, std::thread::JoinHandle<()>) {
        let started = tradelog_node::runtime::now();
        let (live, _) = broadcast::channel(LIVE_BATCHES_MAX);
        let log = Arc::new(EventLog {
            inner: Mutex::new(Inner {
                shards: next
                    .iter()
                    .map(|&n| ShardLog {
                        first_seq: n.max(1),
                        events: VecDeque::new(),
                        horizon: (n > 1).then_some(started),
                    })
                    .collect(),
                live: Some(live),
                closed: None,
            }),
            retained_max,
            shard_count,
            progress: watch::channel(next.iter().map(|&n| n.max(1)).collect()).0,
        });
        let l = log.clone();
        let thread = std::thread::Builder::new()
            .name("event-index".into())
            .spawn(move || {
                while let Ok(batch) = feed.recv() {
                    l.append(batch);
                }
                l.close("the node's event feed closed (the node stopped)");
            })
            .expect("spawn the event index thread");
        (log, thread)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the index half-updated in a way
        // that matters more than stopping to serve it: keep going with what is there.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn append(&self, batch: Arc<[EventRecord]>) {
        let mut inner = self.lock();
        for r in batch.iter() {
            let Some(sl) = inner.shards.get_mut(r.shard.0 as usize) else {
                continue;
            };
            let next = sl.next_seq();
            if r.seq < next {
                continue;
            }
            if r.seq > next {
                // The node never skips a sequence number; if the feed ever did, say so and
                // answer positions before it with OUT_OF_RANGE rather than with a gap.
                if sl.events.is_empty() && sl.horizon.is_none() {
                    // A replica this node opened while running starts where the snapshot
                    // it received ends; the earlier events are the history's.
                    tracing::info!(shard = %r.shard, first = r.seq, "the index starts the shard's events");
                } else {
                    tracing::error!(shard = %r.shard, expected = next, got = r.seq, "gap in the event feed");
                }
                let horizon = sl.events.back().map(|e| e.timestamp).or(sl.horizon);
                sl.events.clear();
                sl.first_seq = r.seq;
                sl.horizon = horizon.or(Some(r.timestamp));
            }
            sl.events.push_back(r.clone());
            while sl.events.len() > self.retained_max {
                if let Some(old) = sl.events.pop_front() {
                    sl.first_seq += 1;
                    sl.horizon = Some(old.timestamp);
                }
            }
        }
        let next: Vec<u64> = inner.shards.iter().map(|s| s.next_seq()).collect();
        self.progress.send_replace(next);
        if let Some(live) = &inner.live {
            // No receiver is not an error.
            let _ = live.send(batch);
        }
    }

    /// Waits (at most [`CATCH_UP_WAIT_MS_MAX`]) until the index holds shard `shard`'s
    /// event `seq`, so that a client reading right after its command's answer sees it.
    pub(crate) async fn caught_up(&self, shard: ShardId, seq: u64) {
        let mut rx = self.progress.subscribe();
        let wait = async {
            loop {
                let next = rx.borrow_and_update().get(shard.0 as usize).copied();
                if next.is_none_or(|n| n > seq) || self.closed().is_some() {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        let limit = std::time::Duration::from_millis(CATCH_UP_WAIT_MS_MAX);
        let _ = tokio::time::timeout(limit, wait).await;
    }

    fn close(&self, why: &str) {
        let mut inner = self.lock();
        inner.closed = Some(why.to_owned());
        inner.live = None;
        drop(inner);
        // Wake whoever waits for progress: nothing more will come.
        self.progress.send_modify(|_| {});
    }

    /// A receiver of every batch appended from now on.
    fn live(&self) -> Result<broadcast::Receiver<Arc<[EventRecord]>>, Error> {
        let inner = self.lock();
        match (&inner.live, &inner.closed) {
            (Some(l), _) => Ok(l.subscribe()),
            (None, why) => Err(Error::Unavailable(
                why.clone().unwrap_or_else(|| "event feed closed".into()),
            )),
        }
    }

    /// Up to `limit` events of `sel` after `after`, the shards merged by leader time. The
    /// position returned carries `after`'s entries for shards `sel` does not cover.
    pub(crate) fn read(&self, sel: &Select, after: &Position, limit: usize) -> Result<Page, Error> {
        let inner = self.lock();
        self.servable(&inner, sel, after)?;
        let n = self.shards_now(&inner);
        let mut position = after.clone();
        // Per shard, the index of its next event to look at (past the end: not read).
        let mut cursor = Vec::with_capacity(n);
        for (i, sl) in inner.shards.iter().enumerate().take(n) {
            let s = ShardId(i as u32);
            if !sel.covers(s) {
                cursor.push(usize::MAX);
                continue;
            }
            let consumed = after.get(s);
            position.set(s, consumed);
            // `servable` checked consumed + 1 >= first_seq.
            let skip = consumed.saturating_add(1) - sl.first_seq;
            cursor.push(usize::try_from(skip).unwrap_or(usize::MAX));
        }
        let mut events = Vec::new();
        let mut scanned = 0;
        let mut at_end = false;
        while events.len() < limit && scanned < READ_SCAN_MAX {
            // The shard whose next event is the oldest (ties: lowest shard).
            let next = (0..n)
                .filter_map(|i| inner.shards[i].events.get(cursor[i]).map(|e| (e, i)))
                .min_by_key(|(e, i)| (e.timestamp, *i));
            let Some((e, i)) = next else {
                at_end = true;
                break;
            };
            cursor[i] += 1;
            scanned += 1;
            position.set(e.shard, e.seq);
            if sel.wants(&e.event) {
                events.push(e.clone());
            }
        }
        if !at_end {
            at_end = (0..n).all(|i| cursor[i] >= inner.shards[i].events.len());
        }
        Ok(Page {
            events,
            position,
            at_end,
        })
    }

    /// Per shard, the sequence number of the first event the index holds (of the next
    /// one, when it holds none): the seam between regenerated history and the index.
    pub(crate) fn seams(&self) -> Result<Vec<u64>, Error> {
        let inner = self.lock();
        if let Some(why) = &inner.closed {
            return Err(Error::Unavailable(why.clone()));
        }
        Ok(inner.shards.iter().map(|s| s.first_seq).collect())
    }

    /// Shows `visit` the retained events of shard `shard` after sequence number `after`,
    /// in order, at most [`READ_SCAN_MAX`] of them (the lock is held meanwhile).
    pub(crate) fn visit(
        &self,
        shard: ShardId,
        after: u64,
        visit: &mut dyn FnMut(&EventRecord) -> ControlFlow<()>,
    ) -> Result<Visited, Error> {
        let inner = self.lock();
        if let Some(why) = &inner.closed {
            return Err(Error::Unavailable(why.clone()));
        }
        let Some(sl) = inner.shards.get(shard.0 as usize) else {
            return Err(Error::Unavailable(format!("shard {shard} is not indexed")));
        };
        if after.saturating_add(1) < sl.first_seq {
            return Ok(Visited::BelowIndex);
        }
        let skip = usize::try_from(after.saturating_add(1) - sl.first_seq).unwrap_or(usize::MAX);
        let mut last = after;
        for e in sl.events.iter().skip(skip).take(READ_SCAN_MAX) {
            last = e.seq;
            if visit(e).is_break() {
                return Ok(Visited::Stopped { last });
            }
        }
        if last.saturating_add(1) < sl.next_seq() {
            Ok(Visited::More { last })
        } else {
            Ok(Visited::End { last })
        }
    }

    /// The sequence number after which shard `shard`'s events are stamped at or after `t`,
    /// if the index holds every such event (`None`: ask the history).
    pub(crate) fn seq_before_time(&self, shard: ShardId, t: Timestamp) -> Option<u64> {
        let inner = self.lock();
        let sl = inner.shards.get(shard.0 as usize)?;
        if sl.horizon.is_some_and(|h| h >= t) {
            return None;
        }
        // Event timestamps of one shard never go back (the shard clock).
        let n = sl.events.partition_point(|e| e.timestamp < t);
        Some(sl.first_seq + n as u64 - 1)
    }

    /// Why the index cannot serve reads at all, if it cannot (its feed closed).
    pub(crate) fn closed(&self) -> Option<String> {
        self.lock().closed.clone()
    }

    /// The shards that exist now, at most the index's slots.
    fn shards_now(&self, inner: &Inner) -> usize {
        ((self.shard_count)() as usize).min(inner.shards.len())
    }

    fn servable(&self, inner: &Inner, sel: &Select, after: &Position) -> Result<(), Error> {
        if let Some(why) = &inner.closed {
            return Err(Error::Unavailable(why.clone()));
        }
        let n = self.shards_now(inner);
        if let Some((s, _)) = after.0.iter().find(|(s, _)| s.0 as usize >= n) {
            return Err(Error::Invalid(format!(
                "invalid field `after.shards`: shard {s} does not exist (this node has {n} shards)"
            )));
        }
        if let Some(s) = sel.shards.0.iter().find(|s| s.0 as usize >= n) {
            return Err(Error::Invalid(format!(
                "invalid field `shards`: shard {s} does not exist (this node has {n} shards)"
            )));
        }
        for (i, sl) in inner.shards.iter().enumerate().take(n) {
            let s = ShardId(i as u32);
            let consumed = after.get(s);
            if sel.covers(s) && consumed.saturating_add(1) < sl.first_seq {
                return Err(Error::OutOfRange(format!(
                    "position {s}:{consumed} is older than the events this server retains: \
                     shard {s} starts at sequence number {first} (the server keeps the events \
                     published since it started, at most {max} per shard); read after {s}:{last} \
                     or later",
                    first = sl.first_seq,
                    max = self.retained_max,
                    last = sl.first_seq - 1,
                )));
            }
        }
        Ok(())
    }

    /// The balance changes of one (account, asset) on its shard `shard`, from the
    /// retained events; `OUT_OF_RANGE` when part of the range is no longer retained.
    pub(crate) fn balance_history(
        &self,
        shard: ShardId,
        q: &BalanceHistoryQuery,
    ) -> Result<(Vec<BalancePoint>, bool), Error> {
        let inner = self.lock();
        if let Some(why) = &inner.closed {
            return Err(Error::Unavailable(why.clone()));
        }
        let Some(sl) = inner.shards.get(shard.0 as usize) else {
            return Err(Error::Unavailable(format!("shard {shard} is not indexed")));
        };
        if let Some(h) = sl.horizon {
            if q.from <= h {
                return Err(Error::OutOfRange(format!(
                    "balance history of shard {shard} up to {h} ns is not retained by this \
                     server (it keeps the events published since it started, at most {} per \
                     shard); ask from_ns > {h}",
                    self.retained_max
                )));
            }
        }
        let mut points = Vec::new();
        let mut truncated = false;
        for r in &sl.events {
            if let Event::Balance {
                account,
                asset,
                available,
                held,
            } = r.event
            {
                let in_range = r.timestamp >= q.from && q.to.is_none_or(|t| r.timestamp < t);
                if account == q.account && asset == q.asset && in_range {
                    if points.len() == q.limit as usize {
                        truncated = true;
                        break;
                    }
                    points.push(BalancePoint {
                        timestamp: r.timestamp,
                        seq: r.seq,
                        available,
                        held,
                    });
                }
            }
        }
        Ok((points, truncated))
    }
}

/// Where a subscription reads the events it catches up with.
pub(crate) trait Pages: Send + Sync + 'static {
    /// Up to `limit` events of `sel` after `after` (see [`EventLog::read`]).
    fn page(
        &self,
        sel: &Select,
        after: &Position,
        limit: usize,
    ) -> impl Future<Output = Result<Page, Error>> + Send;

    /// Whether this node still holds every shard `shards` covers (a cluster node's
    /// replicas move): a live subscription ends with the error when it no longer does.
    fn holds(&self, shards: &ShardFilter) -> Result<(), Error>;
}

impl Pages for EventLog {
    fn page(
        &self,
        sel: &Select,
        after: &Position,
        limit: usize,
    ) -> impl Future<Output = Result<Page, Error>> + Send {
        std::future::ready(self.read(sel, after, limit))
    }

    fn holds(&self, _: &ShardFilter) -> Result<(), Error> {
        Ok(())
    }
}

/// Serves a subscription into `tx`: the stored events of `stream` after `after` (read from
/// `pages`), then live ones, until the client goes away, the server stops, or an error
/// (sent last).
pub(crate) async fn subscribe<P: Pages>(
    pages: Arc<P>,
    log: Arc<EventLog>,
    sel: Select,
    after: Position,
    tx: mpsc::Sender<Result<Page, Error>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut position = after;
    'catch_up: loop {
        // Live first, then the stored part: whatever is appended meanwhile arrives live,
        // possibly twice, and is skipped by sequence number.
        let mut live = match log.live() {
            Ok(l) => l,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        loop {
            // A long catch-up (regenerated history) still ends promptly on shutdown.
            let page = tokio::select! {
                _ = stopped(&mut stop) => return,
                _ = tx.closed() => return,
                p = pages.page(&sel, &position, SUBSCRIBE_PAGE_MAX) => p,
            };
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            position = page.position.clone();
            let at_end = page.at_end;
            if !page.events.is_empty() && !send(&tx, page, &mut stop).await {
                return;
            }
            if at_end {
                break;
            }
        }
        let mut check =
            tokio::time::interval(std::time::Duration::from_millis(HOLDS_CHECK_INTERVAL_MS));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let batch = tokio::select! {
                _ = stopped(&mut stop) => return,
                _ = tx.closed() => return,
                _ = check.tick() => {
                    if let Err(e) = pages.holds(&sel.shards) {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    continue;
                }
                r = live.recv() => r,
            };
            match batch {
                Ok(batch) => {
                    let (events, gap) = live_part(&batch, &mut position, &sel);
                    if !events.is_empty() {
                        let page = Page {
                            events,
                            position: position.clone(),
                            at_end: true,
                        };
                        if !send(&tx, page, &mut stop).await {
                            return;
                        }
                    }
                    if gap {
                        continue 'catch_up;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue 'catch_up,
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = tx
                        .send(Err(Error::Unavailable("event feed closed".into())))
                        .await;
                    return;
                }
            }
        }
    }
}

/// Sends a page to a subscriber; false if it went away or the server is stopping.
async fn send(
    tx: &mpsc::Sender<Result<Page, Error>>,
    page: Page,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = stopped(stop) => false,
        r = tx.send(Ok(page)) => r.is_ok(),
    }
}

/// The events of a live batch that come after `position` (advancing it over them),
/// and whether one is missing before the rest of the batch (`true`: catch up from the
/// index). Events at or before the position were sent already, from the index.
fn live_part(
    batch: &[EventRecord],
    position: &mut Position,
    sel: &Select,
) -> (Vec<EventRecord>, bool) {
    let mut events = Vec::new();
    for r in batch {
        if !sel.covers(r.shard) {
            continue;
        }
        let consumed = position.get(r.shard);
        if r.seq <= consumed {
            continue;
        }
        if r.seq > consumed.saturating_add(1) {
            return (events, true);
        }
        position.set(r.shard, r.seq);
        if sel.wants(&r.event) {
            events.push(r.clone());
        }
    }
    (events, false)
}

/// Resolves once `stop` says the server is stopping (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Whether an event belongs to a stream: the ids an event names (accounts, market,
/// orders). Transfer-only events (refund, pending posted or voided) name no account and
/// are in the `all` stream only.
pub(crate) fn concerns(stream: EventStream, e: &Event) -> bool {
    match stream {
        EventStream::All => true,
        EventStream::Account(a) => accounts(e).contains(&Some(a)),
        EventStream::Market(m) => market(e) == Some(m),
        EventStream::Order(o) => orders(e).contains(&Some(o)),
    }
}

fn accounts(e: &Event) -> [Option<tradelog_domain::AccountId>; 2] {
    use Event::*;
    match e {
        AccountOpened { account, .. }
        | AccountFrozen { account }
        | AccountUnfrozen { account }
        | AccountClosed { account }
        | Deposited { account, .. }
        | Withdrawn { account, .. }
        | FundsHeld { account, .. }
        | FundsReleased { account, .. }
        | OrderSubmitted { account, .. }
        | OrderAccepted { account, .. }
        | Settled { account, .. }
        | FeeCollected { account, .. }
        | Balance { account, .. } => [Some(*account), None],
        TransferPosted { debit, credit, .. }
        | TransferInitiated { debit, credit, .. }
        | TransferCredited { debit, credit, .. }
        | PendingCreated { debit, credit, .. } => [Some(*debit), Some(*credit)],
        Trade {
            taker_account,
            maker_account,
            ..
        } => [Some(*taker_account), Some(*maker_account)],
        Rejected {
            subject: Subject::Account(account),
            ..
        }
        | Rejected {
            subject: Subject::ClientOrder { account, .. },
            ..
        } => [Some(*account), None],
        _ => [None, None],
    }
}

fn market(e: &Event) -> Option<tradelog_domain::MarketId> {
    use Event::*;
    match e {
        MarketCreated(spec) => Some(spec.id),
        OrderSubmitted { market, .. }
        | OrderAccepted { market, .. }
        | OrderRejected { market, .. }
        | Trade { market, .. }
        | OrderFilled { market, .. }
        | OrderCancelled { market, .. }
        | OrderAmended { market, .. }
        | FeeCollected { market, .. }
        | MarketHalted { market }
        | MarketResumed { market } => Some(*market),
        Rejected {
            subject: Subject::Market(market),
            ..
        } => Some(*market),
        _ => None,
    }
}

fn orders(e: &Event) -> [Option<tradelog_domain::OrderId>; 2] {
    use Event::*;
    match e {
        FundsHeld { order, .. }
        | FundsReleased { order, .. }
        | OrderAccepted { order, .. }
        | OrderRejected { order, .. }
        | OrderFilled { order, .. }
        | OrderCancelled { order, .. }
        | OrderAmended { order, .. }
        | Settled { order, .. } => [Some(*order), None],
        OrderSubmitted {
            order, replaces, ..
        } => [Some(*order), *replaces],
        Trade { taker, maker, .. } => [Some(*taker), Some(*maker)],
        Rejected {
            subject: Subject::Order(order),
            ..
        } => [Some(*order), None],
        _ => [None, None],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradelog_domain::*;

    fn rec(shard: u32, seq: u64, ts: u64, event: Event) -> EventRecord {
        EventRecord {
            shard: ShardId(shard),
            seq,
            input: seq,
            timestamp: Timestamp(ts),
            principal: Principal(1),
            event,
        }
    }

    fn opened(a: u64) -> Event {
        Event::AccountOpened {
            account: AccountId(a),
            owner: Principal(a),
        }
    }

    fn log(
        next: &[u64],
        max: usize,
    ) -> (Arc<EventLog>, crossbeam_channel::Sender<Arc<[EventRecord]>>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let count = next.len() as u32;
        let (log, _thread) = EventLog::start(rx, next, Arc::new(move || count), max);
        (log, tx)
    }

    fn wait_for(log: &EventLog, shard: usize, next: u64) {
        for _ in 0..1000 {
            if log.lock().shards[shard].next_seq() >= next {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("index did not reach {next}");
    }

    #[test]
    fn reads_merge_shards_by_time_and_positions_resume_without_gap() {
        let (log, tx) = log(&[1, 1], 100);
        tx.send(vec![rec(0, 1, 10, opened(2)), rec(0, 2, 30, opened(4))].into())
            .unwrap();
        tx.send(vec![rec(1, 1, 20, opened(1)), rec(1, 2, 40, opened(3))].into())
            .unwrap();
        wait_for(&log, 0, 3);
        wait_for(&log, 1, 3);
        let p = log
            .read(&EventStream::All.into(), &Position::default(), 3)
            .unwrap();
        let got: Vec<_> = p.events.iter().map(|e| (e.shard.0, e.seq)).collect();
        assert_eq!(got, vec![(0, 1), (1, 1), (0, 2)]);
        assert!(!p.at_end);
        let p = log.read(&EventStream::All.into(), &p.position, 3).unwrap();
        let got: Vec<_> = p.events.iter().map(|e| (e.shard.0, e.seq)).collect();
        assert_eq!(got, vec![(1, 2)]);
        assert!(p.at_end);
        // A filtered stream still moves the position past what it skipped.
        let p = log
            .read(
                &EventStream::Account(AccountId(3)).into(),
                &Position::default(),
                10,
            )
            .unwrap();
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.position.get(ShardId(0)), 2);
        assert_eq!(p.position.get(ShardId(1)), 2);
    }

    #[test]
    fn a_shard_filter_reads_and_moves_only_its_shards() {
        let (log, tx) = log(&[1, 1, 1], 100);
        tx.send(
            vec![
                rec(0, 1, 10, opened(1)),
                rec(1, 1, 20, opened(2)),
                rec(2, 1, 30, opened(3)),
                rec(0, 2, 40, opened(4)),
                rec(1, 2, 50, opened(5)),
            ]
            .into(),
        )
        .unwrap();
        wait_for(&log, 0, 3);
        wait_for(&log, 1, 3);
        wait_for(&log, 2, 2);
        let sel = Select {
            stream: EventStream::All,
            shards: ShardFilter::only([ShardId(0), ShardId(2)]),
        };
        // Another part's position (shard 1, read from another node) is carried through.
        let mut after = Position::default();
        after.set(ShardId(1), 7);
        let p = log.read(&sel, &after, 10).unwrap();
        let got: Vec<_> = p.events.iter().map(|e| (e.shard.0, e.seq)).collect();
        assert_eq!(got, vec![(0, 1), (2, 1), (0, 2)]);
        assert!(p.at_end);
        assert_eq!(
            Position([(ShardId(0), 2), (ShardId(1), 7), (ShardId(2), 1)].into()),
            p.position
        );
        // A page ends within the covered shards, merged by time.
        let p = log.read(&sel, &Position::default(), 2).unwrap();
        let got: Vec<_> = p.events.iter().map(|e| (e.shard.0, e.seq)).collect();
        assert_eq!(got, vec![(0, 1), (2, 1)]);
        assert_eq!(
            Position([(ShardId(0), 1), (ShardId(2), 1)].into()),
            p.position
        );
        // A shard this node does not have.
        let bad = Select {
            stream: EventStream::All,
            shards: ShardFilter::only([ShardId(3)]),
        };
        assert!(matches!(
            log.read(&bad, &Position::default(), 10),
            Err(Error::Invalid(m)) if m.contains("shard 3 does not exist")
        ));
        // Live batches: an uncovered shard neither moves the position nor is a gap.
        let mut p = Position([(ShardId(0), 2), (ShardId(1), 7), (ShardId(2), 1)].into());
        let batch = [
            rec(1, 3, 60, opened(6)),
            rec(0, 3, 70, opened(7)),
            rec(2, 2, 80, opened(8)),
        ];
        let (events, gap) = live_part(&batch, &mut p, &sel);
        let got: Vec<_> = events.iter().map(|e| (e.shard.0, e.seq)).collect();
        assert_eq!(got, vec![(0, 3), (2, 2)]);
        assert!(!gap);
        assert_eq!(
            Position([(ShardId(0), 3), (ShardId(1), 7), (ShardId(2), 2)].into()),
            p
        );
    }

    /// The index, as a node that may stop holding its shards.
    struct Moving {
        log: Arc<EventLog>,
        holds: std::sync::atomic::AtomicBool,
    }

    impl Pages for Moving {
        fn page(
            &self,
            sel: &Select,
            after: &Position,
            limit: usize,
        ) -> impl Future<Output = Result<Page, Error>> + Send {
            std::future::ready(self.log.read(sel, after, limit))
        }

        fn holds(&self, shards: &ShardFilter) -> Result<(), Error> {
            if self.holds.load(std::sync::atomic::Ordering::SeqCst) {
                Ok(())
            } else {
                Err(Error::WrongNode {
                    shard: shards.0.first().copied().unwrap_or(ShardId(0)),
                    map_version: 9,
                })
            }
        }
    }

    #[tokio::test]
    async fn a_subscription_ends_typed_when_the_node_stops_holding_its_shards() {
        let (log, tx) = log(&[1, 1], 100);
        tx.send(vec![rec(1, 1, 10, opened(1))].into()).unwrap();
        wait_for(&log, 1, 2);
        let pages = Arc::new(Moving {
            log: log.clone(),
            holds: true.into(),
        });
        let (out_tx, mut out_rx) = mpsc::channel(4);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let sel = Select {
            stream: EventStream::All,
            shards: ShardFilter::only([ShardId(1)]),
        };
        tokio::spawn(subscribe(
            pages.clone(),
            log.clone(),
            sel,
            Position::default(),
            out_tx,
            stop_rx,
        ));
        let wait = std::time::Duration::from_secs(10);
        let page = tokio::time::timeout(wait, out_rx.recv())
            .await
            .expect("a page")
            .expect("open")
            .expect("no error");
        assert_eq!(
            vec![(1, 1)],
            page.events
                .iter()
                .map(|e| (e.shard.0, e.seq))
                .collect::<Vec<_>>()
        );
        pages
            .holds
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let end = tokio::time::timeout(wait, out_rx.recv())
            .await
            .expect("the end in time")
            .expect("an error before the end");
        assert!(
            matches!(
                end,
                Err(Error::WrongNode {
                    shard: ShardId(1),
                    ..
                })
            ),
            "{end:?}"
        );
        assert!(out_rx.recv().await.is_none(), "nothing after the error");
        drop(tx);
    }

    #[test]
    fn positions_older_than_retained_are_out_of_range() {
        let (log, tx) = log(&[5], 2);
        tx.send(
            vec![
                rec(0, 3, 1, opened(1)), // before the start: skipped
                rec(0, 5, 2, opened(2)),
                rec(0, 6, 3, opened(3)),
                rec(0, 7, 4, opened(4)),
            ]
            .into(),
        )
        .unwrap();
        wait_for(&log, 0, 8);
        let err = log
            .read(&EventStream::All.into(), &Position::default(), 10)
            .unwrap_err();
        assert!(
            matches!(&err, Error::OutOfRange(m) if m.contains("starts at sequence number 6")),
            "{err:?}"
        );
        let mut after = Position::default();
        after.set(ShardId(0), 5);
        let p = log.read(&EventStream::All.into(), &after, 10).unwrap();
        assert_eq!(
            p.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![6, 7]
        );
        // The largest position is past everything, not an overflow.
        after.set(ShardId(0), u64::MAX);
        let p = log.read(&EventStream::All.into(), &after, 10).unwrap();
        assert!(p.events.is_empty() && p.at_end);
        assert_eq!(p.position.get(ShardId(0)), u64::MAX);
        let (events, gap) = live_part(
            &[rec(0, 8, 5, opened(5))],
            &mut after,
            &EventStream::All.into(),
        );
        assert!(events.is_empty() && !gap);
        after.set(ShardId(1), 0);
        assert!(matches!(
            log.read(&EventStream::All.into(), &after, 10),
            Err(Error::Invalid(_))
        ));
    }

    /// Events appended while a subscription catches up are both in the index and on the
    /// live feed, and a slow subscriber lags the live feed: it still gets each event once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn subscriptions_switch_to_live_without_gap_or_duplicate() {
        const N: u64 = 6_000;
        let (log, tx) = log(&[1, 1], 100_000);
        fn feed(tx: &crossbeam_channel::Sender<Arc<[EventRecord]>>, from: u64, to: u64) {
            for seq in from..to {
                let batch: Vec<EventRecord> = (0..2)
                    .map(|s| rec(s, seq, seq * 10 + s as u64, opened(seq)))
                    .collect();
                tx.send(batch.into()).unwrap();
            }
        }
        feed(&tx, 1, N / 2);
        wait_for(&log, 1, N / 2);
        let (out_tx, mut out_rx) = mpsc::channel(2);
        let (_stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(subscribe(
            log.clone(),
            log.clone(),
            EventStream::All.into(),
            Position::default(),
            out_tx,
            stop_rx,
        ));
        let writer = {
            let tx = tx.clone();
            std::thread::spawn(move || feed(&tx, N / 2, N + 1))
        };
        let mut seen = [0u64; 2];
        let mut pages = 0;
        while seen != [N, N] {
            let page = tokio::time::timeout(std::time::Duration::from_secs(20), out_rx.recv())
                .await
                .expect("events in time")
                .expect("open")
                .expect("no error");
            pages += 1;
            if pages % 8 == 0 {
                // A slow consumer: the live feed runs ahead of it.
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            for e in page.events {
                let s = e.shard.0 as usize;
                assert_eq!(e.seq, seen[s] + 1, "shard {s}: next event, exactly once");
                seen[s] = e.seq;
            }
            assert_eq!(page.position.get(ShardId(0)), seen[0]);
            assert_eq!(page.position.get(ShardId(1)), seen[1]);
        }
        writer.join().unwrap();
        drop(tx);
    }

    #[test]
    fn live_batches_skip_what_was_sent_and_stop_at_a_gap() {
        let mut p = Position::default();
        p.set(ShardId(0), 3);
        let batch: Vec<EventRecord> = [(0, 2), (0, 3), (1, 1), (0, 4), (0, 5), (1, 3), (0, 6)]
            .iter()
            .map(|&(s, seq)| rec(s, seq, seq, opened(seq)))
            .collect();
        let (events, gap) = live_part(&batch, &mut p, &EventStream::All.into());
        let got: Vec<_> = events.iter().map(|e| (e.shard.0, e.seq)).collect();
        assert_eq!(got, vec![(1, 1), (0, 4), (0, 5)]);
        assert!(gap, "shard 1 jumps from 1 to 3");
        assert_eq!((p.get(ShardId(0)), p.get(ShardId(1))), (5, 1));
        // The same batch again: everything up to the position is skipped.
        let (events, _) = live_part(&batch[..5], &mut p, &EventStream::All.into());
        assert!(events.is_empty());
        // A filtered stream advances over what it does not send.
        let (events, gap) = live_part(
            &batch[6..],
            &mut p,
            &EventStream::Account(AccountId(99)).into(),
        );
        assert!(events.is_empty() && !gap);
        assert_eq!(p.get(ShardId(0)), 6);
    }

    #[test]
    fn streams_select_by_account_market_and_order() {
        let trade = Event::Trade {
            market: MarketId(7),
            price: Price(1),
            qty: Qty(1),
            taker_side: Side::Buy,
            taker: OrderId(11),
            maker: OrderId(12),
            taker_account: AccountId(1),
            maker_account: AccountId(2),
            taker_fee: Amount(0),
            maker_fee: Amount(0),
        };
        assert!(concerns(EventStream::Account(AccountId(2)), &trade));
        assert!(!concerns(EventStream::Account(AccountId(3)), &trade));
        assert!(concerns(EventStream::Market(MarketId(7)), &trade));
        assert!(concerns(EventStream::Order(OrderId(12)), &trade));
        assert!(!concerns(EventStream::Order(OrderId(13)), &trade));
        assert!(!concerns(EventStream::Market(MarketId(7)), &opened(1)));
    }
}
