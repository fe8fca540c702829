//! Parking: idle plain-TCP connections held without a task of their own.
//!
//! An idle connection's task (its future, tokio's header, the socket's registration with
//! tokio's reactor) is most of what it costs, and an idle connection needs none of it until
//! bytes, mail or its Keep Alive deadline arrive. So a connection with nothing to do hands
//! its socket and its state ([`Resume`]) to the broker's one [`Parker`]: the socket goes into
//! an epoll set of the parker's own, the mailbox is given a waker that names it, and its
//! deadline goes into a wheel of one-second buckets. The parker's thread waits for any of the
//! three; then it takes the connection out of the set and [`Resume::resume`]s it, which
//! registers the socket with tokio again and spawns a task that carries on where the parked
//! one stopped.
//! See `ARCHITECTURE.md`, "Memory per connection".

use std::collections::BTreeMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::broker::MailboxReceiver;
use crate::server::Shared;

/// A parked connection: what it needs to carry on once woken.
pub(crate) trait Resume: Send {
    /// Its socket, for the parker's epoll set.
    fn fd(&self) -> RawFd;
    /// When its state machine must next be run whatever happens (Keep Alive), if ever.
    fn deadline(&self) -> Option<Instant>;
    /// Its mailbox, to be given the parker's waker.
    fn mailbox(&mut self) -> &mut MailboxReceiver;
    /// Gives the connection a task again, which runs it from where it parked.
    fn resume(self: Box<Self>, shared: &Arc<Shared>);
    /// The generation of the slot it is parked in (kept by the connection, in room it has
    /// anyway, so that a slot is one pointer wide).
    fn generation(&self) -> u32;
    /// Sets [`generation`](Self::generation).
    fn set_generation(&mut self, generation: u32);
}

/// The broker's parked connections, and the thread that wakes them. Started with the first
/// connection that parks.
#[derive(Default)]
pub struct Parker {
    core: OnceLock<Option<Arc<Core>>>,
}

impl std::fmt::Debug for Parker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parker")
            .field("parked", &self.parked())
            .finish()
    }
}

struct Core {
    /// Registers and deregisters sockets in the epoll set the thread waits on.
    registry: mio::Registry,
    slots: Mutex<Slots>,
    /// Wakes the thread: mail arrived for a parked connection.
    waker: mio::Waker,
}

struct Slots {
    /// Parked connections by slot; a key is a slot and its generation, so that a wake meant
    /// for a connection that has since left the slot is recognised and ignored.
    /// In chunks of [`CHUNK`] slots, so that the table grows without the slack of a
    /// doubling `Vec` (as much again as the slots in use, at worst).
    entries: Vec<Box<[Slot]>>,
    /// Slots handed out so far.
    len: u32,
    free: Vec<u32>,
    /// Keys whose mailbox received mail, not yet acted on.
    mailed: Vec<u64>,
    /// Keys of parked connections by the second (counted from `epoch`) in which their
    /// deadline falls, rounded up: eight bytes per connection. Lazily kept: a connection
    /// that leaves before its second comes stays listed, and is skipped then.
    deadlines: BTreeMap<u64, Vec<u64>>,
    /// What deadline seconds count from: when the parker started, before any deadline it
    /// is given (a deadline already past counts as second 0, due at once).
    epoch: Instant,
    parked: usize,
}

/// A slot of the parker: free (with the generation its next connection gets), or holding a
/// parked connection (which keeps its generation). 16 bytes.
enum Slot {
    Free(u32),
    Parked(Box<dyn Resume>),
}

impl Slot {
    fn generation(&self) -> u32 {
        match self {
            Slot::Free(generation) => *generation,
            Slot::Parked(parked) => parked.generation(),
        }
    }
}

/// Slots per chunk of [`Slots::entries`].
const CHUNK: usize = 1024;

fn key(slot: u32, generation: u32) -> u64 {
    (u64::from(slot) << 32) | u64::from(generation)
}

fn slot_of(key: u64) -> (usize, u32) {
    ((key >> 32) as usize, key as u32)
}

impl Slots {
    /// The second, from `epoch`, by the end of which `at` has passed.
    fn second_of(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.epoch);
        since.as_secs() + u64::from(since.subsec_nanos() > 0)
    }

    /// When the second `second` ends.
    fn end_of(&self, second: u64) -> Option<Instant> {
        self.epoch.checked_add(Duration::from_secs(second))
    }

    /// Takes out the keys of the connections whose deadline may have come by `now`.
    fn due(&mut self, now: Instant, keys: &mut Vec<u64>) {
        // The seconds that have ended by `now` (see `end_of`).
        let Some(ended) = now.checked_duration_since(self.epoch).map(|d| d.as_secs()) else {
            return;
        };
        while let Some(entry) = self.deadlines.first_entry()
            && *entry.key() <= ended
        {
            keys.extend(entry.remove());
        }
    }

    fn lock(slots: &Mutex<Slots>) -> MutexGuard<'_, Slots> {
        slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn new(epoch: Instant) -> Self {
        Slots {
            entries: Vec::new(),
            len: 0,
            free: Vec::new(),
            mailed: Vec::new(),
            deadlines: BTreeMap::new(),
            epoch,
            parked: 0,
        }
    }

    fn slot(&self, index: usize) -> Option<&Slot> {
        self.entries.get(index / CHUNK)?.get(index % CHUNK)
    }

    fn slot_mut(&mut self, index: usize) -> Option<&mut Slot> {
        self.entries.get_mut(index / CHUNK)?.get_mut(index % CHUNK)
    }

    /// A free slot for a connection about to park, and the key that will name it there.
    fn reserve(&mut self) -> Option<(u32, u64)> {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = self.len;
                if index as usize == self.entries.len() * CHUNK {
                    self.entries
                        .push((0..CHUNK).map(|_| Slot::Free(0)).collect());
                }
                self.len = index.checked_add(1)?;
                index
            }
        };
        Some((index, key(index, self.slot(index as usize)?.generation())))
    }

    /// Puts `connection` in the slot [`reserve`](Self::reserve) gave, listing its deadline.
    fn fill(&mut self, index: u32, key: u64, mut connection: Box<dyn Resume>) {
        if let Some(deadline) = connection.deadline() {
            let second = self.second_of(deadline);
            self.deadlines.entry(second).or_default().push(key);
        }
        connection.set_generation(slot_of(key).1);
        if let Some(slot) = self.slot_mut(index as usize) {
            *slot = Slot::Parked(connection);
        }
        self.parked += 1;
    }

    /// Takes out the connections whose deadline has come by `now`.
    fn take_due(&mut self, now: Instant, out: &mut Vec<Box<dyn Resume>>) {
        let mut keys = Vec::new();
        self.due(now, &mut keys);
        for key in keys {
            // Listed for a second that has passed; but one that left and parked again since
            // is listed again, later, and not due yet.
            if self
                .peek(key)
                .and_then(|p| p.deadline())
                .is_some_and(|at| at <= now)
                && let Some(parked) = self.take(key)
            {
                out.push(parked);
            }
        }
    }

    /// The connection `key` names, if it is still parked there.
    fn peek(&self, key: u64) -> Option<&dyn Resume> {
        let (index, generation) = slot_of(key);
        match self.slot(index)? {
            Slot::Parked(parked) if parked.generation() == generation => Some(&**parked),
            _ => None,
        }
    }

    /// Takes the connection `key` names, if it is still parked there.
    fn take(&mut self, key: u64) -> Option<Box<dyn Resume>> {
        let (index, generation) = slot_of(key);
        let slot = self.slot_mut(index)?;
        if !matches!(slot, Slot::Parked(p) if p.generation() == generation) {
            return None;
        }
        let Slot::Parked(parked) = std::mem::replace(slot, Slot::Free(generation.wrapping_add(1)))
        else {
            return None;
        };
        self.free.push(index as u32);
        self.parked -= 1;
        Some(parked)
    }
}

/// The waker a parked connection's mailbox holds.
struct MailWake {
    core: Weak<Core>,
    key: u64,
}

impl Wake for MailWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(core) = self.core.upgrade() {
            let mut slots = Slots::lock(&core.slots);
            slots.mailed.push(self.key);
            // The thread takes every key mailed at once: one wake is enough for them all.
            let first = slots.mailed.len() == 1;
            drop(slots);
            if first {
                let _ = core.waker.wake();
            }
        }
    }
}

impl Parker {
    /// Connections parked now.
    pub fn parked(&self) -> usize {
        match self.core.get() {
            Some(Some(core)) => Slots::lock(&core.slots).parked,
            _ => 0,
        }
    }

    /// Parks `connection`; or, when that cannot be done (mail is already waiting, or the
    /// parker could not start), resumes it at once.
    pub(crate) fn park(&self, shared: &Arc<Shared>, mut connection: Box<dyn Resume>) {
        let Some(core) = self.core.get_or_init(|| start(shared)) else {
            return connection.resume(shared);
        };
        let mut slots = Slots::lock(&core.slots);
        let Some((index, key)) = slots.reserve() else {
            drop(slots);
            return connection.resume(shared);
        };
        // Under the lock: a wake for this key waits until the connection is in its slot.
        let waker = Waker::from(Arc::new(MailWake {
            core: Arc::downgrade(core),
            key,
        }));
        let registered = connection.mailbox().rest(&waker)
            && core
                .registry
                .register(
                    &mut SourceFd(&connection.fd()),
                    Token(key as usize),
                    Interest::READABLE,
                )
                .is_ok();
        if !registered {
            slots.free.push(index);
            drop(slots);
            return connection.resume(shared);
        }
        slots.fill(index, key, connection);
    }
}

/// Creates the epoll set and starts the thread that waits on it; `None` (and connections are
/// then never parked) if either cannot be made.
fn start(shared: &Arc<Shared>) -> Option<Arc<Core>> {
    let made = Poll::new().and_then(|poll| {
        let registry = poll.registry().try_clone()?;
        let waker = mio::Waker::new(&registry, WAKE)?;
        Ok((poll, registry, waker))
    });
    let (poll, registry, waker) = match made {
        Ok(made) => made,
        Err(e) => {
            shared.log.warning(format_args!(
                "Idle connections will keep their tasks: no epoll set for them ({e})."
            ));
            return None;
        }
    };
    let core = Arc::new(Core {
        registry,
        slots: Mutex::new(Slots::new(crate::clock::now())),
        waker,
    });
    let runtime = tokio::runtime::Handle::current();
    let weak = Arc::downgrade(shared);
    let waiting = Arc::clone(&core);
    let spawned = std::thread::Builder::new()
        .name("pigeon-parker".into())
        .spawn(move || wake_parked(&weak, &waiting, poll, &runtime));
    if let Err(e) = spawned {
        shared.log.warning(format_args!(
            "Idle connections will keep their tasks: no thread to watch them ({e})."
        ));
        return None;
    }
    Some(core)
}

/// The token of the mio waker that mail for parked connections sets off (no key is all ones:
/// slots are counted from 0 up).
const WAKE: Token = Token(usize::MAX);

/// Most socket events taken from the epoll set at once.
const EVENTS: usize = 256;

/// How long the thread waits at most, to notice that the broker is gone.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The parker's thread: resumes, on `runtime`, each parked connection whose socket has
/// something to say, whose mailbox has mail, or whose deadline has come. It ends with the
/// broker.
fn wake_parked(
    shared: &Weak<Shared>,
    core: &Core,
    mut poll: Poll,
    runtime: &tokio::runtime::Handle,
) {
    let mut events = Events::with_capacity(EVENTS);
    let mut keys: Vec<u64> = Vec::new();
    let mut due: Vec<Box<dyn Resume>> = Vec::new();
    loop {
        let now = crate::clock::now();
        let wait = {
            let slots = Slots::lock(&core.slots);
            slots
                .deadlines
                .first_key_value()
                .and_then(|(&second, _)| slots.end_of(second))
                .map_or(CHECK_EVERY, |end| {
                    end.saturating_duration_since(now).min(CHECK_EVERY)
                })
        };
        if let Err(e) = poll.poll(&mut events, Some(wait))
            && e.kind() != io::ErrorKind::Interrupted
        {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            shared
                .log
                .error(format_args!("Waiting on parked connections: {e}."));
            std::thread::sleep(Duration::from_millis(100));
        }
        keys.extend(
            events
                .iter()
                .map(|e| e.token())
                .filter(|&t| t != WAKE)
                .map(|t| t.0 as u64),
        );
        let Some(shared) = shared.upgrade() else {
            return;
        };
        {
            let mut slots = Slots::lock(&core.slots);
            let mailed = std::mem::take(&mut slots.mailed);
            keys.extend(mailed);
            for key in keys.drain(..) {
                if let Some(parked) = slots.take(key) {
                    due.push(parked);
                }
            }
            slots.take_due(crate::clock::now(), &mut due);
        }
        let _entered = runtime.enter();
        for parked in due.drain(..) {
            // Out of the set before tokio's reactor takes the socket back.
            let _ = core.registry.deregister(&mut SourceFd(&parked.fd()));
            parked.resume(&shared);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parked connection as the slots see it: a deadline, nothing else.
    struct Still(Option<Instant>, MailboxReceiver, u32);

    impl Resume for Still {
        fn fd(&self) -> RawFd {
            -1
        }

        fn deadline(&self) -> Option<Instant> {
            self.0
        }

        fn mailbox(&mut self) -> &mut MailboxReceiver {
            &mut self.1
        }

        fn resume(self: Box<Self>, _: &Arc<Shared>) {}

        fn generation(&self) -> u32 {
            self.2
        }

        fn set_generation(&mut self, generation: u32) {
            self.2 = generation;
        }
    }

    /// A slot is one pointer and its metadata: 16 bytes for each connection parked at once
    /// (or that was, at most).
    #[test]
    fn a_slot_is_small() {
        assert_eq!(size_of::<Slot>(), 16);
    }

    fn park(slots: &mut Slots, deadline: Option<Instant>) -> u64 {
        let (index, key) = slots.reserve().unwrap();
        slots.fill(
            index,
            key,
            Box::new(Still(deadline, MailboxReceiver::new(1), 0)),
        );
        key
    }

    fn due(slots: &mut Slots, now: Instant) -> Vec<Option<Instant>> {
        let mut out = Vec::new();
        slots.take_due(now, &mut out);
        out.iter().map(|p| p.deadline()).collect()
    }

    /// Keep Alive deadlines of parked connections: each comes within the second after it
    /// is due, never before, whatever order they were parked in.
    #[test]
    fn deadlines_come_in_their_second_and_not_before() {
        let t0 = crate::clock::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut slots = Slots::new(t0);
        park(&mut slots, Some(at(90_000)));
        park(&mut slots, Some(at(2_500)));
        park(&mut slots, None);
        park(&mut slots, Some(at(2_000)));
        assert_eq!(slots.parked, 4);
        assert!(due(&mut slots, at(1_999)).is_empty());
        assert_eq!(due(&mut slots, at(2_000)), [Some(at(2_000))]);
        assert!(
            due(&mut slots, at(2_400)).is_empty(),
            "2.5 s is not due yet"
        );
        assert_eq!(due(&mut slots, at(3_000)), [Some(at(2_500))]);
        assert!(due(&mut slots, at(89_000)).is_empty());
        assert_eq!(due(&mut slots, at(90_000)), [Some(at(90_000))]);
        assert_eq!(slots.parked, 1, "the one without a deadline stays");
    }

    /// A connection that leaves before its deadline and parks again with a later one is
    /// resumed at the later one only; a wake for a key whose slot has moved on is ignored.
    #[test]
    fn a_connection_that_moved_on_is_not_woken_for_its_old_key() {
        let t0 = crate::clock::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut slots = Slots::new(t0);
        let old = park(&mut slots, Some(at(5)));
        assert!(slots.take(old).is_some(), "bytes came: it leaves");
        let new = park(&mut slots, Some(at(20)));
        assert_ne!(old, new, "the slot is used again under another generation");
        assert!(slots.take(old).is_none());
        assert!(due(&mut slots, at(6)).is_empty());
        assert_eq!(due(&mut slots, at(20)), [Some(at(20))]);
        assert_eq!(slots.parked, 0);
    }

    /// Slots come in chunks: across chunk boundaries every key names its own connection,
    /// and freed slots are used again before the table grows.
    #[test]
    fn slots_across_chunks() {
        let mut slots = Slots::new(crate::clock::now());
        let keys: Vec<u64> = (0..2 * CHUNK + 5).map(|_| park(&mut slots, None)).collect();
        assert_eq!(slots.entries.len(), 3);
        let unique: std::collections::BTreeSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len());
        for key in keys.iter().step_by(3) {
            assert!(slots.take(*key).is_some());
            assert!(slots.take(*key).is_none(), "taken once");
        }
        let again: Vec<u64> = (0..keys.len().div_ceil(3))
            .map(|_| park(&mut slots, None))
            .collect();
        assert_eq!(slots.entries.len(), 3, "freed slots were used again");
        assert_eq!(slots.parked, keys.len());
        for key in keys.iter().skip(1).step_by(3).chain(&again) {
            assert!(slots.take(*key).is_some());
        }
    }
}
