//! A connection's mailbox: deliveries and control messages for its task.
//!
//! A bounded queue with one receiver and any number of senders, like a tokio `mpsc`
//! channel, but sized for tens of thousands of idle connections: it allocates nothing until
//! mail arrives and gives its room back whenever the receiver has emptied it and waits again.
//! (A tokio channel allocates a block of 32 slots and a cache-padded header up front: about
//! 2.8 KB per connection for a `Mail`, four times what Mosquitto spends on a whole idle
//! client.) Control messages ([`Mail::TakeOver`], [`Mail::SettingsChanged`],
//! [`Mail::Shutdown`]) are never refused for lack of room: only deliveries count against the
//! capacity.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use super::Mail;
use crate::message::Delivery;

struct Shared {
    state: Mutex<State>,
}

/// (Laid out for 64 bytes with its `Arc` and lock: one per connected client.)
struct State {
    /// The mail waiting, on the heap while there is any.
    #[expect(
        clippy::box_collection,
        reason = "one pointer rather than a VecDeque in every connected client's mailbox"
    )]
    queue: Option<Box<VecDeque<Mail>>>,
    /// Deliveries in `queue`.
    deliveries: u32,
    /// Deliveries that may wait at once. (Here rather than beside the lock, and 32 bits
    /// like the counts: a mailbox is 64 bytes, one per connected client.)
    capacity: u32,
    /// The receiver, waiting for mail.
    waker: Option<Waker>,
    /// The receiver is gone: nothing more is accepted.
    closed: bool,
    /// Live [`Mailbox`] handles; the receiver sees the end of the stream when none is left.
    senders: u32,
}

impl State {
    fn has_mail(&self) -> bool {
        self.queue.as_ref().is_some_and(|q| !q.is_empty())
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `mail` (its room counted already) and wakes the receiver, once unlocked.
    fn push(mut state: MutexGuard<'_, State>, mail: Mail) {
        state.queue.get_or_insert_default().push_back(mail);
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The sending half of a connection's mailbox (cheap to clone).
pub struct Mailbox(Arc<Shared>);

/// The receiving half, owned by the connection's task.
pub struct MailboxReceiver(Arc<Shared>);

/// Why mail was not accepted; the mail is handed back.
#[derive(Debug)]
pub enum SendError {
    /// As many deliveries as the capacity allows are waiting.
    Full(Mail),
    /// The receiver is gone.
    Closed(Mail),
}

/// A mailbox for up to `capacity` waiting deliveries (at least 1).
#[must_use]
pub fn mailbox(capacity: usize) -> (Mailbox, MailboxReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: None,
            deliveries: 0,
            capacity: u32::try_from(capacity.max(1)).unwrap_or(u32::MAX),
            waker: None,
            closed: false,
            senders: 1,
        }),
    });
    (Mailbox(Arc::clone(&shared)), MailboxReceiver(shared))
}

impl Mailbox {
    /// Queues `mail` unless the receiver is gone or, for a delivery, the mailbox is full.
    ///
    /// # Errors
    /// [`SendError::Full`] or [`SendError::Closed`], with the mail.
    pub fn try_send(&self, mail: Mail) -> Result<(), SendError> {
        let mut state = self.0.lock();
        if state.closed {
            return Err(SendError::Closed(mail));
        }
        if matches!(mail, Mail::Deliver(_)) {
            if state.deliveries >= state.capacity {
                return Err(SendError::Full(mail));
            }
            state.deliveries += 1;
        }
        Shared::push(state, mail);
        Ok(())
    }

    /// Deliveries waiting to be taken.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.0.lock().deliveries as usize
    }

    /// Mail the receiver could take now (room reserved but not yet sent is not counted).
    #[cfg(test)]
    pub fn visible(&self) -> usize {
        self.0.lock().queue.as_ref().map_or(0, |q| q.len())
    }

    /// Takes room for one delivery, to be sent later with [`Reserved::send`]; `None` when
    /// the mailbox is full or its receiver gone. The broker reserves first where a
    /// delivery's record must be appended before the connection can see the delivery (and
    /// record what it does with it): the room taken, the record is appended, then the
    /// delivery is sent, and cannot be refused for lack of room.
    #[must_use]
    pub fn reserve(&self) -> Option<Reserved> {
        let mut state = self.0.lock();
        if state.closed || state.deliveries >= state.capacity {
            return None;
        }
        state.deliveries += 1;
        Some(Reserved(Some(Arc::clone(&self.0))))
    }
}

/// Room for one delivery in a mailbox (see [`Mailbox::reserve`]); given back if dropped
/// unsent.
pub struct Reserved(Option<Arc<Shared>>);

impl Reserved {
    /// Sends `delivery` into the room taken for it.
    ///
    /// # Errors
    /// The delivery back, if the receiver has gone since the room was taken.
    pub fn send(mut self, delivery: Delivery) -> Result<(), Delivery> {
        let Some(shared) = self.0.take() else {
            return Err(delivery);
        };
        let state = shared.lock();
        if state.closed {
            return Err(delivery);
        }
        Shared::push(state, Mail::Deliver(delivery));
        Ok(())
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            let mut state = shared.lock();
            // A closed mailbox counts nothing any more.
            if !state.closed {
                state.deliveries -= 1;
            }
        }
    }
}

impl std::fmt::Debug for Reserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reserved").finish_non_exhaustive()
    }
}

impl Clone for Mailbox {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        Mailbox(Arc::clone(&self.0))
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.senders -= 1;
        if state.senders == 0 {
            // The last sender: a waiting receiver learns that no more mail can come.
            let waker = state.waker.take();
            drop(state);
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("capacity", &self.0.lock().capacity)
            .finish_non_exhaustive()
    }
}

impl MailboxReceiver {
    /// Takes the next mail, if one is waiting.
    pub fn try_recv(&mut self) -> Option<Mail> {
        let mut state = self.0.lock();
        let mail = state.queue.as_mut()?.pop_front()?;
        if matches!(mail, Mail::Deliver(_)) {
            state.deliveries -= 1;
        }
        Some(mail)
    }

    /// Waits for the next mail; `None` once every sender is gone and the mailbox is empty.
    pub async fn recv(&mut self) -> Option<Mail> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// A mailbox with no sender yet (see [`sender`](Self::sender)), for up to `capacity`
    /// waiting deliveries.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        mailbox(capacity).1
    }

    /// A new sending half.
    #[must_use]
    pub fn sender(&self) -> Mailbox {
        self.0.lock().senders += 1;
        Mailbox(Arc::clone(&self.0))
    }

    /// Waits until mail is there to take with [`try_recv`](Self::try_recv); for ever while
    /// there is none, senders or not. Unlike [`recv`](Self::recv), its future holds no mail:
    /// it is what an idle connection waits on.
    pub fn ready(&mut self) -> impl Future<Output = ()> + Send + '_ {
        poll_fn(|cx| {
            let mut state = self.0.lock();
            if state.has_mail() {
                return Poll::Ready(());
            }
            Self::park(&mut state, cx);
            Poll::Pending
        })
    }

    /// For a connection about to park: if no mail is waiting, `waker` is what the next mail
    /// wakes, the mailbox's room is given back and `true` is returned; `false` if mail is
    /// already there to take.
    pub fn rest(&mut self, waker: &Waker) -> bool {
        let mut state = self.0.lock();
        if state.has_mail() {
            return false;
        }
        state.queue = None;
        state.waker = Some(waker.clone());
        true
    }

    /// Registers the receiver's waker, the mailbox being empty; and gives back its room.
    fn park(state: &mut State, cx: &mut Context<'_>) {
        // Empty and about to wait: no room kept for mail (the box stays for a busy
        // connection's next mail; a parking one gives it back too, see `rest`).
        if let Some(queue) = &mut state.queue
            && queue.capacity() > 0
        {
            **queue = VecDeque::new();
        }
        match &mut state.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            none => *none = Some(cx.waker().clone()),
        }
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Mail>> {
        let mut state = self.0.lock();
        if let Some(mail) = state.queue.as_mut().and_then(|q| q.pop_front()) {
            if matches!(mail, Mail::Deliver(_)) {
                state.deliveries -= 1;
            }
            return Poll::Ready(Some(mail));
        }
        if state.senders == 0 {
            return Poll::Ready(None);
        }
        Self::park(&mut state, cx);
        Poll::Pending
    }
}

impl Drop for MailboxReceiver {
    fn drop(&mut self) {
        let queue = {
            let mut state = self.0.lock();
            state.closed = true;
            state.deliveries = 0;
            state.waker = None;
            state.queue.take()
        };
        // Dropped outside the lock: a takeover's reply channel closes here.
        drop(queue);
    }
}

impl std::fmt::Debug for MailboxReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxReceiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Delivery, Message};
    use pigeon_proto::QoS;

    fn delivery() -> Mail {
        let message = Message::new(
            pigeon_proto::TopicName::try_from("t").unwrap(),
            bytes::Bytes::from_static(b"x"),
            QoS::AtMostOnce,
            false,
        );
        Mail::Deliver(Delivery::new(Arc::new(message), QoS::AtMostOnce, false))
    }

    #[test]
    fn small() {
        // One per connected client, next to its task: see ARCHITECTURE.md.
        // With the `Arc`'s two counts, 64 bytes: jemalloc's 64-byte class.
        assert!(size_of::<Shared>() <= 48, "{}", size_of::<Shared>());
    }

    #[test]
    fn bounded_for_deliveries_not_for_control() {
        let (tx, mut rx) = mailbox(2);
        assert!(tx.try_send(delivery()).is_ok());
        assert!(tx.try_send(delivery()).is_ok());
        assert!(matches!(tx.try_send(delivery()), Err(SendError::Full(_))));
        assert!(tx.try_send(Mail::Shutdown).is_ok());
        assert_eq!(tx.queued(), 2);
        assert!(matches!(rx.try_recv(), Some(Mail::Deliver(_))));
        assert!(tx.try_send(delivery()).is_ok());
        assert!(matches!(rx.try_recv(), Some(Mail::Deliver(_))));
        assert!(matches!(rx.try_recv(), Some(Mail::Shutdown)));
        assert!(matches!(rx.try_recv(), Some(Mail::Deliver(_))));
        assert!(rx.try_recv().is_none());
        assert_eq!(tx.queued(), 0);
    }

    #[test]
    fn reserved_room_counts_until_sent_or_given_back() {
        let (tx, mut rx) = mailbox(2);
        let first = tx.reserve().expect("room");
        let second = tx.reserve().expect("room");
        // Both places are taken, though nothing is queued yet.
        assert!(tx.reserve().is_none());
        assert!(matches!(tx.try_send(delivery()), Err(SendError::Full(_))));
        assert!(rx.try_recv().is_none());
        drop(second);
        assert_eq!(tx.queued(), 1);
        let Mail::Deliver(d) = delivery() else {
            unreachable!()
        };
        first.send(d).expect("receiver there");
        assert!(matches!(rx.try_recv(), Some(Mail::Deliver(_))));
        assert_eq!(tx.queued(), 0);

        // The receiver goes while room is held: the send fails, and dropping counts nothing.
        let held = tx.reserve().expect("room");
        let unsent = tx.reserve().expect("room");
        drop(rx);
        let Mail::Deliver(d) = delivery() else {
            unreachable!()
        };
        assert!(held.send(d).is_err());
        drop(unsent);
        assert_eq!(tx.queued(), 0);
        assert!(tx.reserve().is_none());
    }

    #[tokio::test]
    async fn ends_with_the_last_sender_and_closes_with_the_receiver() {
        let (tx, mut rx) = mailbox(4);
        let tx2 = tx.clone();
        tx.try_send(Mail::SettingsChanged).unwrap();
        drop(tx);
        let waiting = tokio::spawn(async move {
            let first = rx.recv().await;
            let second = rx.recv().await;
            (first.is_some(), second.is_none(), rx)
        });
        tokio::task::yield_now().await;
        drop(tx2);
        let (first, ended, rx) = waiting.await.unwrap();
        assert!(first && ended);

        let (tx, rx2) = mailbox(4);
        drop(rx2);
        assert!(matches!(
            tx.try_send(Mail::Shutdown),
            Err(SendError::Closed(_))
        ));
        drop(rx);
    }
}
