//! Event streams of a cluster whose nodes hold only some shards: the client reads each
//! node's part (`ReadEventsRequest.shards`) and merges the parts into one page or one
//! subscription. Positions are per shard and every shard is read from exactly one part, so
//! merging is a union of positions; a merged page keeps the server's order (leader time,
//! then shard) and stays within the caller's limit.

use crate::types::EventPage;
use crate::ClientError;
use std::collections::BTreeSet;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio_stream::Stream;
use tradelog_api::proto as pb;
use tradelog_api::query::Position;
use tradelog_domain as d;

/// Merges the pages that parts (each the shards it read) returned for one read after
/// `after` into one page of at most `limit` events, in leader-time order (ties: lower
/// shard first).
///
/// A shard whose events all made it keeps its part's position (which may lie past events
/// of other streams the server skipped); a shard with events cut by the limit ends at its
/// last event kept (or stays at `after`), so the next read starts with the first one cut.
pub(crate) fn merge_pages(
    after: &Position,
    parts: Vec<(BTreeSet<d::ShardId>, EventPage)>,
    limit: usize,
) -> EventPage {
    let mut position = after.clone();
    let mut events: Vec<d::EventRecord> = Vec::new();
    for (shards, page) in &parts {
        for s in shards {
            position.set(*s, page.position.get(*s));
        }
        events.extend(
            page.events
                .iter()
                .filter(|e| shards.contains(&e.shard))
                .cloned(),
        );
    }
    // Each shard's events stay in sequence order: its timestamps never go back.
    events.sort_by_key(|e| (e.timestamp, e.shard, e.seq));
    if events.len() > limit {
        let cut: BTreeSet<d::ShardId> = events[limit..].iter().map(|e| e.shard).collect();
        events.truncate(limit);
        for s in cut {
            let last = events
                .iter()
                .rev()
                .find(|e| e.shard == s)
                .map(|e| e.seq)
                .unwrap_or_else(|| after.get(s));
            position.set(s, last);
        }
    }
    EventPage { events, position }
}

/// One node's part of a merged subscription.
pub(crate) struct Part {
    pub(crate) shards: BTreeSet<d::ShardId>,
    pub(crate) inner: tonic::Streaming<pb::SubscribeEventsResponse>,
    pub(crate) endpoint: String,
}

/// The parts of a merged subscription, polled in turn; the first to end or fail ends the
/// whole (resume from the merged position).
pub(crate) struct Merged {
    pub(crate) parts: Vec<Part>,
    /// The part polled first next time (so a busy part cannot starve the others).
    pub(crate) next: usize,
    pub(crate) done: bool,
    /// The endpoint of the part whose error ended it.
    pub(crate) failed: Option<String>,
}

impl Merged {
    /// The next page of any part, its position merged into `position`.
    pub(crate) fn poll_page(
        &mut self,
        cx: &mut Context<'_>,
        position: &mut Position,
    ) -> Poll<Option<Result<EventPage, ClientError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let n = self.parts.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            let part = &mut self.parts[i];
            match Pin::new(&mut part.inner).poll_next(cx) {
                Poll::Pending => continue,
                Poll::Ready(None) => {
                    self.done = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(s))) => {
                    self.done = true;
                    self.failed = Some(part.endpoint.clone());
                    return Poll::Ready(Some(Err(ClientError::from_status(s, &part.endpoint))));
                }
                Poll::Ready(Some(Ok(r))) => {
                    self.next = (i + 1) % n;
                    let page = match EventPage::from_wire(r.events, r.position) {
                        Ok(p) => p,
                        Err(e) => {
                            self.done = true;
                            return Poll::Ready(Some(Err(e)));
                        }
                    };
                    for s in &part.shards {
                        position.set(*s, page.position.get(*s));
                    }
                    let events = page
                        .events
                        .into_iter()
                        .filter(|e| part.shards.contains(&e.shard))
                        .collect();
                    return Poll::Ready(Some(Ok(EventPage {
                        events,
                        position: position.clone(),
                    })));
                }
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use d::{AccountId, Event, EventRecord, ShardId, Timestamp};

    fn rec(shard: u32, seq: u64, ts: u64) -> EventRecord {
        EventRecord {
            shard: ShardId(shard),
            seq,
            input: seq,
            timestamp: Timestamp(ts),
            principal: d::Principal(0),
            event: Event::AccountOpened {
                account: AccountId(seq),
                owner: d::Principal(0),
            },
        }
    }

    fn pos(entries: &[(u32, u64)]) -> Position {
        Position(entries.iter().map(|&(s, q)| (ShardId(s), q)).collect())
    }

    fn set(shards: &[u32]) -> BTreeSet<ShardId> {
        shards.iter().map(|&s| ShardId(s)).collect()
    }

    fn ids(p: &EventPage) -> Vec<(u32, u64)> {
        p.events.iter().map(|e| (e.shard.0, e.seq)).collect()
    }

    #[test]
    fn parts_merge_by_time_and_positions_unite() {
        let after = pos(&[(0, 4), (1, 0), (2, 9)]);
        let a = EventPage {
            events: vec![rec(0, 5, 10), rec(2, 10, 30)],
            // Shard 0 read past events of other streams, up to 7.
            position: pos(&[(0, 7), (1, 0), (2, 10)]),
        };
        let b = EventPage {
            events: vec![rec(1, 1, 20), rec(1, 2, 40)],
            // A node's position also names shards it did not read: ignored.
            position: pos(&[(0, 99), (1, 2), (2, 99)]),
        };
        let page = merge_pages(&after, vec![(set(&[0, 2]), a), (set(&[1]), b)], 10);
        assert_eq!(vec![(0, 5), (1, 1), (2, 10), (1, 2)], ids(&page));
        assert_eq!(pos(&[(0, 7), (1, 2), (2, 10)]), page.position);
    }

    #[test]
    fn a_limit_cuts_the_latest_events_and_their_shards_resume_before_them() {
        let after = pos(&[(0, 4), (2, 9)]);
        let a = EventPage {
            events: vec![rec(0, 5, 10), rec(0, 6, 50), rec(2, 10, 30)],
            position: pos(&[(0, 8), (2, 10)]),
        };
        let b = EventPage {
            events: vec![rec(1, 1, 20), rec(1, 2, 40), rec(1, 3, 60)],
            position: pos(&[(1, 3)]),
        };
        let page = merge_pages(
            &after,
            vec![(set(&[0, 2]), a.clone()), (set(&[1]), b.clone())],
            3,
        );
        assert_eq!(vec![(0, 5), (1, 1), (2, 10)], ids(&page));
        // Shard 0 stops at 5 (6 was cut), shard 1 at 1, shard 2 read everything.
        assert_eq!(pos(&[(0, 5), (1, 1), (2, 10)]), page.position);
        // Reading on from there gives the rest, with nothing twice.
        let page = merge_pages(&after, vec![(set(&[0, 2]), a), (set(&[1]), b)], 1);
        assert_eq!(vec![(0, 5)], ids(&page));
        // Shards with nothing kept stay where they were.
        assert_eq!(pos(&[(0, 5), (1, 0), (2, 9)]), page.position);
    }
}
