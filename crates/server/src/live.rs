//! The live event hub: one per node. It reads each new stretch of the event log once
//! (rendered for clients, with each event's audience) and hands every open stream, in
//! memory, the events it may see — decided from the event's audience and the caller's teams
//! the hub keeps for the stream (`kontor_app::Viewer`, the app layer's in-memory form of
//! the visibility rule). An open stream costs no database query per
//! commit, and a stream that gets nothing is not even woken. A stream whose queue
//! overflowed catches up from the database by itself (see `api::events::stream`).
//!
//! The hub publishes every event after its start in id order, and a stream subscribes
//! before it reads the database from its cursor; it skips events at or below its cursor.
//! So a stream never skips or repeats an id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};
use std::time::Duration;

pub use kontor_app::{TeamChange, Viewer};
use kontor_store::{
    events::{Audience, ClientEvent},
    Store, StoreError,
};
use tokio::sync::mpsc;

/// Deliveries the hub queues per stream; a stream further behind reads the database.
pub const DEFAULT_CAPACITY: usize = 256;
/// The shortest time between two reads of the hub: under heavy ingest one read covers the
/// commits of this long (what it adds to a stream's latency at most).
const COALESCE: Duration = Duration::from_millis(10);
/// Events read (and published) at most per batch.
pub const PAGE: i64 = 500;
/// How often the hub looks at the database even without a commit notification (another
/// process writing the same SQLite file, a missed PostgreSQL notification).
const POLL: Duration = Duration::from_secs(2);

/// One event as streams receive it: rendered and serialised once per node.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    /// The event id (the SSE `id:`).
    pub id: i64,
    /// The event's JSON, as `GET /api/v1/events` shows it (the SSE `data:`).
    pub data: String,
    /// Who may see it.
    pub audience: Audience,
    /// When it was committed (for the stream-lag metric).
    pub created_at: kontor_core::Timestamp,
    /// The API token a `token.revoked` event revokes.
    pub revoked_token: Option<i64>,
    /// A membership change that alters what streams of that user may see.
    pub team_change: Option<TeamChange>,
    /// The staff user a `user.updated` event changed (role, deactivation).
    pub user_updated: Option<i64>,
}

impl LiveEvent {
    /// Serialises a rendered event once, and notes what streams must react to.
    pub fn new(e: ClientEvent) -> LiveEvent {
        let p = &e.event.payload;
        let int = |key: &str| p.get(key).and_then(serde_json::Value::as_i64);
        let team_change = match (e.event.kind.as_str(), int("team_id"), int("user_id")) {
            ("team.member_added", Some(team_id), Some(user_id)) => Some(TeamChange::Added { team_id, user_id }),
            ("team.member_removed", Some(team_id), Some(user_id)) => Some(TeamChange::Removed { team_id, user_id }),
            ("team.deleted", Some(team_id), _) => Some(TeamChange::Deleted { team_id }),
            _ => None,
        };
        let revoked_token = (e.event.kind == "token.revoked")
            .then(|| p.pointer("/token/id").and_then(serde_json::Value::as_i64))
            .flatten();
        let user_updated = (e.event.kind == "user.updated").then(|| int("user_id")).flatten();
        LiveEvent {
            id: e.event.id,
            data: serde_json::to_string(&e.event).unwrap_or_default(),
            audience: e.audience,
            created_at: e.event.created_at,
            revoked_token,
            team_change,
            user_updated,
        }
    }
}

/// Every event with `after < id <= upto()`, oldest first (never empty).
#[derive(Debug)]
pub struct LiveBatch {
    /// The id the batch continues from.
    pub after: i64,
    /// The events, in id order.
    pub events: Vec<LiveEvent>,
}

impl LiveBatch {
    /// The newest id in the batch.
    pub fn upto(&self) -> i64 {
        self.events.last().map(|e| e.id).unwrap_or(self.after)
    }
}

/// Reads one page of events after `after`, rendered for streams (for the hub, and for a
/// stream catching up by itself).
pub async fn read_page(store: &Store, after: i64) -> Result<Vec<LiveEvent>, StoreError> {
    Ok(store.client_events_after(after, PAGE).await?.into_iter().map(LiveEvent::new).collect())
}

/// Applies what an event changes about a stream's caller to its [`Viewer`]. True if the
/// event changed the user in a way only the database can tell (role, deactivation): the
/// stream must re-read its session.
pub fn follow(viewer: &mut Viewer, e: &LiveEvent) -> bool {
    if let Some(change) = e.team_change {
        viewer.apply(change);
    }
    if e.user_updated.is_some() && e.user_updated == viewer.user_id {
        viewer.forget();
        return true;
    }
    false
}

/// What the hub hands one stream: the events of a batch that stream may see.
#[derive(Debug)]
pub struct Delivery {
    /// The visible events, in id order (shared with the other streams).
    pub events: Vec<Arc<LiveEvent>>,
    /// An event changed the stream's user (role, deactivation): re-read the session.
    pub recheck: bool,
}

/// One open stream as the hub sees it.
struct Slot {
    /// What the stream may see; the hub applies membership events to it as it publishes
    /// them, the stream replaces it when it re-reads its session.
    viewer: Mutex<Viewer>,
    sender: mpsc::Sender<Delivery>,
    /// Set when a delivery did not fit: the stream must read the database itself.
    lagged: AtomicBool,
}

/// A stream's subscription to the hub.
pub struct Subscription {
    slot: Arc<Slot>,
    receiver: mpsc::Receiver<Delivery>,
}

impl Subscription {
    /// The next delivery (`None` once the hub is gone).
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.receiver.recv().await
    }

    /// True (once) if deliveries were dropped since the last call: the stream must catch
    /// up from the database.
    pub fn take_lagged(&self) -> bool {
        self.slot.lagged.swap(false, Ordering::AcqRel)
    }

    /// The viewer as the hub applies it now.
    pub fn viewer(&self) -> Viewer {
        self.slot.viewer.lock().map(|v| v.clone()).unwrap_or_else(|_| Viewer::nobody())
    }

    /// Replaces the viewer (after re-reading the session).
    pub fn set_viewer(&self, viewer: Viewer) {
        if let Ok(mut v) = self.slot.viewer.lock() {
            *v = viewer;
        }
    }
}

/// The node's hub: reads new events once and hands each stream what it may see.
///
/// Not a `broadcast`: a broadcast wakes every stream for every batch, and with a thousand
/// streams of agents who see none of it, those wake-ups alone cost the write path more
/// than half its throughput. The hub instead decides per stream (in memory, from the
/// viewer it keeps for it) and wakes only streams that get something.
pub struct Hub {
    store: Store,
    slots: Mutex<Vec<Arc<Slot>>>,
    capacity: usize,
    started: Once,
    /// The newest id published (or passed over while no stream listened).
    position: AtomicI64,
    /// Open streams per caller.
    pub limits: StreamLimits,
}

/// Open streams per caller (a user or a token) on this node, against a limit: bounds what
/// one caller (a leaked token, a script gone wrong, a browser with many tabs) can hold of
/// the hub's memory and wake-ups.
#[derive(Default)]
pub struct StreamLimits {
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl StreamLimits {
    /// Counts a new stream of `caller`; `None` if the caller has `limit` streams open
    /// already.
    pub fn admit(&self, caller: String, limit: usize) -> Option<StreamPermit> {
        let mut open = self.open.lock().ok()?;
        let n = open.entry(caller.clone()).or_insert(0);
        if *n >= limit.max(1) {
            return None;
        }
        *n += 1;
        Some(StreamPermit { open: self.open.clone(), caller })
    }
}

/// One open stream counted against its caller's limit; dropping it (the stream ends)
/// gives the place back.
pub struct StreamPermit {
    open: Arc<Mutex<HashMap<String, usize>>>,
    caller: String,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock() {
            if let Some(n) = open.get_mut(&self.caller) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.remove(&self.caller);
                }
            }
        }
    }
}

impl Hub {
    /// A hub over `store` keeping up to [`DEFAULT_CAPACITY`] deliveries per stream; its
    /// task starts with the first subscriber.
    pub fn new(store: Store) -> Arc<Hub> {
        Self::with_capacity(store, DEFAULT_CAPACITY)
    }

    /// A hub keeping up to `capacity` deliveries per stream; a stream further behind reads
    /// the database.
    pub fn with_capacity(store: Store, capacity: usize) -> Arc<Hub> {
        Arc::new(Hub {
            store,
            slots: Mutex::default(),
            capacity: capacity.max(1),
            started: Once::new(),
            position: AtomicI64::new(0),
            limits: StreamLimits::default(),
        })
    }

    /// Receives what `viewer` may see of every batch published from now on (starts the
    /// hub's task if needed; must be called inside a Tokio runtime).
    pub fn subscribe(self: &Arc<Self>, viewer: Viewer) -> Subscription {
        let (sender, receiver) = mpsc::channel(self.capacity);
        let slot = Arc::new(Slot { viewer: Mutex::new(viewer), sender, lagged: AtomicBool::new(false) });
        if let Ok(mut slots) = self.slots.lock() {
            slots.push(slot.clone());
        }
        self.started.call_once(|| {
            tokio::spawn(run(Arc::downgrade(self), self.store.clone()));
        });
        Subscription { slot, receiver }
    }

    /// The newest event id the hub has published (or passed over while no stream listened).
    pub fn position(&self) -> i64 {
        self.position.load(Ordering::Acquire)
    }

    /// Streams subscribed now.
    pub fn subscribers(&self) -> usize {
        self.slots
            .lock()
            .map(|mut s| {
                s.retain(|slot| !slot.sender.is_closed());
                s.len()
            })
            .unwrap_or(0)
    }

    /// Hands each stream the events of `batch` it may see; streams that get nothing are not
    /// woken. Registration and publishing share the lock, so a stream misses no batch
    /// published after it subscribed.
    fn publish(&self, batch: &LiveBatch) {
        let events: Vec<Arc<LiveEvent>> = batch.events.iter().cloned().map(Arc::new).collect();
        let Ok(mut slots) = self.slots.lock() else { return };
        slots.retain(|slot| !slot.sender.is_closed());
        for slot in slots.iter() {
            let Ok(mut viewer) = slot.viewer.lock() else { continue };
            let mut recheck = false;
            let mut picked = Vec::new();
            for e in &events {
                if follow(&mut viewer, e) {
                    // The stream's user changed (role, deactivation): hand it nothing more
                    // until it has re-read its session; it then reads the rest from the
                    // database with what it may see now.
                    recheck = true;
                    break;
                }
                if viewer.sees(&e.audience) {
                    picked.push(e.clone());
                }
            }
            drop(viewer);
            if (picked.is_empty() && !recheck) || slot.lagged.load(Ordering::Acquire) {
                continue;
            }
            let full = matches!(
                slot.sender.try_send(Delivery { events: picked, recheck }),
                Err(mpsc::error::TrySendError::Full(_))
            );
            if full || recheck {
                slot.lagged.store(true, Ordering::Release);
            }
        }
    }
}

/// The hub's task: after each commit notification (or [`POLL`]), reads what is new in
/// pages and publishes each page. Ends when the hub is dropped. Reads at most every
/// [`COALESCE`], so that under heavy ingest one read covers several commits. While no
/// stream listens it reads nothing and moves on (a new stream starts from the database).
async fn run(hub: Weak<Hub>, store: Store) {
    let mut latest = store.subscribe();
    let mut cursor = *latest.borrow_and_update();
    if let Some(hub) = hub.upgrade() {
        hub.position.store(cursor, Ordering::Release);
    }
    loop {
        let known = *latest.borrow_and_update();
        let read_at = tokio::time::Instant::now();
        {
            let Some(hub) = hub.upgrade() else { return };
            if hub.subscribers() == 0 {
                cursor = cursor.max(known);
                hub.position.store(cursor, Ordering::Release);
            } else {
                loop {
                    match read_page(&store, cursor).await {
                        Ok(events) if events.is_empty() => break,
                        Ok(events) => {
                            let full = events.len() as i64 >= PAGE;
                            let batch = LiveBatch { after: cursor, events };
                            cursor = batch.upto();
                            hub.publish(&batch);
                            hub.position.store(cursor, Ordering::Release);
                            if !full {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "Live event hub cannot read events; retrying.");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
            }
        }
        tokio::select! {
            changed = latest.changed() => {
                if changed.is_err() {
                    return;
                }
                tokio::time::sleep_until(read_at + COALESCE).await;
            }
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn event(id: i64, audience: Audience) -> LiveEvent {
        LiveEvent {
            id,
            data: String::new(),
            audience,
            created_at: kontor_core::Timestamp::from_micros(0),
            revoked_token: None,
            team_change: None,
            user_updated: None,
        }
    }

    #[test]
    fn a_caller_gets_no_more_streams_than_its_limit_and_a_closed_one_frees_a_place() {
        let limits = StreamLimits::default();
        let first = limits.admit("user:1".into(), 2).expect("first");
        let _second = limits.admit("user:1".into(), 2).expect("second");
        assert!(limits.admit("user:1".into(), 2).is_none(), "a third is refused");
        assert!(limits.admit("user:2".into(), 2).is_some(), "another caller has its own limit");
        drop(first);
        assert!(limits.admit("user:1".into(), 2).is_some(), "a closed stream frees its place");
    }

    #[test]
    fn a_stream_follows_membership_events_and_rereads_its_session_when_its_user_changes() {
        let mut v = Viewer { user_id: Some(5), unrestricted: false, teams: HashSet::from([1]) };
        let of_team_2 = event(1, Audience::Teams(vec![Some(2)]));
        assert!(!v.sees(&of_team_2.audience));
        let mut change = event(2, Audience::Unrestricted);
        change.team_change = Some(TeamChange::Added { team_id: 2, user_id: 5 });
        assert!(!follow(&mut v, &change), "a membership change needs no session re-read");
        assert!(v.sees(&of_team_2.audience));
        let mut updated = event(3, Audience::Unrestricted);
        updated.user_updated = Some(6);
        assert!(!follow(&mut v, &updated), "another user's change is not ours");
        updated.user_updated = Some(5);
        assert!(follow(&mut v, &updated), "a change of the user asks for a session re-read");
        assert!(!v.sees(&of_team_2.audience), "and until then it sees the least");
    }

    #[test]
    fn a_batch_ends_at_its_newest_event() {
        let b =
            LiveBatch { after: 10, events: vec![event(12, Audience::Unrestricted), event(15, Audience::Unrestricted)] };
        assert_eq!(b.upto(), 15);
        assert_eq!(LiveBatch { after: 10, events: vec![] }.upto(), 10);
    }
}
