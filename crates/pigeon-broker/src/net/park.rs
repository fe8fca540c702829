//! Parking: idle plain-TCP connections held without a task of their own.
//!
//! An idle connection's task (its future, tokio's header, the socket's registration with
//! tokio's reactor) is most of what it costs, and an idle connection needs none of it until
//! bytes, mail or its Keep Alive deadline arrive. So a connection with nothing to do hands
//! its socket and its state ([`Resume`]) to the broker's one [`Parker`]: the socket goes into
//! an epoll set of the parker's own, the mailbox is given a waker that names it, and its
//! deadline goes into one ordered set. The parker's task waits for any of the three; then it
//! takes the connection out of the set and [`Resume::resume`]s it, which registers the socket
//! with tokio again and spawns a task that carries on where the parked one stopped.
//! See `ARCHITECTURE.md`, "Memory per connection".

use std::collections::BTreeSet;
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
}

/// The broker's parked connections, and the task that wakes them. Started with the first
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
    /// Registers and deregisters sockets in the epoll set the task waits on.
    registry: mio::Registry,
    slots: Mutex<Slots>,
    /// Wakes the thread: mail arrived for a parked connection.
    waker: mio::Waker,
}

#[derive(Default)]
struct Slots {
    /// Parked connections by slot; a key is a slot and its generation, so that a wake meant
    /// for a connection that has since left the slot is recognised and ignored.
    entries: Vec<Slot>,
    free: Vec<u32>,
    /// Keys whose mailbox received mail, not yet acted on.
    mailed: Vec<u64>,
    /// Deadlines of parked connections, soonest first.
    deadlines: BTreeSet<(Instant, u64)>,
    parked: usize,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    parked: Option<Box<dyn Resume>>,
}

fn key(slot: u32, generation: u32) -> u64 {
    (u64::from(slot) << 32) | u64::from(generation)
}

fn slot_of(key: u64) -> (usize, u32) {
    ((key >> 32) as usize, key as u32)
}

impl Slots {
    fn lock(slots: &Mutex<Slots>) -> MutexGuard<'_, Slots> {
        slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the connection `key` names, if it is still parked there.
    fn take(&mut self, key: u64) -> Option<Box<dyn Resume>> {
        let (index, generation) = slot_of(key);
        let slot = self.entries.get_mut(index)?;
        if slot.generation != generation {
            return None;
        }
        let parked = slot.parked.take()?;
        if let Some(deadline) = parked.deadline() {
            self.deadlines.remove(&(deadline, key));
        }
        slot.generation = slot.generation.wrapping_add(1);
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
        let index = match slots.free.pop() {
            Some(index) => index,
            None => {
                let Ok(index) = u32::try_from(slots.entries.len()) else {
                    drop(slots);
                    return connection.resume(shared);
                };
                slots.entries.push(Slot::default());
                index
            }
        };
        let key = key(index, slots.entries[index as usize].generation);
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
        if let Some(deadline) = connection.deadline() {
            slots.deadlines.insert((deadline, key));
        }
        slots.entries[index as usize].parked = Some(connection);
        slots.parked += 1;
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
        slots: Mutex::new(Slots::default()),
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
        let wait = Slots::lock(&core.slots)
            .deadlines
            .first()
            .map_or(CHECK_EVERY, |&(at, _)| {
                at.saturating_duration_since(now).min(CHECK_EVERY)
            });
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
            let now = crate::clock::now();
            while let Some(&(at, key)) = slots.deadlines.first()
                && at <= now
            {
                slots.deadlines.pop_first();
                keys.push(key);
            }
            for key in keys.drain(..) {
                if let Some(parked) = slots.take(key) {
                    due.push(parked);
                }
            }
        }
        let _entered = runtime.enter();
        for parked in due.drain(..) {
            // Out of the set before tokio's reactor takes the socket back.
            let _ = core.registry.deregister(&mut SourceFd(&parked.fd()));
            parked.resume(&shared);
        }
    }
}
