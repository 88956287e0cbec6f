//! Small error enums, one per operation, each with a lowercase `Display`.

use std::fmt;

/// Why a subscriber was closed. It first drains what its ring already holds, then
/// sees [`RecvError::Closed`] with this reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CloseReason {
    /// The hub shut down (or its last handle was dropped).
    Shutdown = 0,
    /// Its ring was full under [`Overflow::Evict`](crate::Overflow::Evict).
    SlowConsumer = 1,
    /// Removed by [`Hub::kick`](crate::Hub::kick).
    Kicked = 2,
    /// Closed by its owner ([`Subscriber::close`](crate::Subscriber::close) or drop).
    Unsubscribed = 3,
}

impl CloseReason {
    pub(crate) const ALL: [CloseReason; 4] =
        [CloseReason::Shutdown, CloseReason::SlowConsumer, CloseReason::Kicked, CloseReason::Unsubscribed];

    pub(crate) fn from_u8(v: u8) -> CloseReason {
        Self::ALL[(v as usize) & 3]
    }

    /// A short name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Shutdown => "shutdown",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Kicked => "kicked",
            CloseReason::Unsubscribed => "unsubscribed",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`Subscriber::recv`](crate::Subscriber::recv) and
/// [`Subscriber::recv_many`](crate::Subscriber::recv_many).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// The subscriber is closed and its ring is empty: no message will come.
    Closed(CloseReason),
    /// This many messages were dropped for this subscriber since it last heard.
    /// Not a close: the next call goes on with the messages still queued.
    Lagged(u64),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Closed(r) => write!(f, "subscriber closed ({r})"),
            RecvError::Lagged(n) => write!(f, "subscriber lagged, {n} messages dropped"),
        }
    }
}

impl std::error::Error for RecvError {}

/// Error of [`Subscriber::try_recv`](crate::Subscriber::try_recv).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing queued right now.
    Empty,
    /// Closed and drained.
    Closed(CloseReason),
    /// Messages were dropped; see [`RecvError::Lagged`].
    Lagged(u64),
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("no message queued"),
            TryRecvError::Closed(r) => write!(f, "subscriber closed ({r})"),
            TryRecvError::Lagged(n) => write!(f, "subscriber lagged, {n} messages dropped"),
        }
    }
}

impl std::error::Error for TryRecvError {}

/// Error of a publish: the hub no longer accepts messages, or the engine's
/// broker did not take it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishError {
    /// [`Hub::shutdown`](crate::Hub::shutdown) was called.
    Shutdown,
    /// The engine numbers its messages at a broker (a cluster) and the
    /// broker did not confirm this one in time: it may or may not have been
    /// published (a retry may publish it twice).
    Unavailable,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Shutdown => f.write_str("hub is shut down"),
            PublishError::Unavailable => f.write_str("broker unavailable: the publish was not confirmed"),
        }
    }
}

impl std::error::Error for PublishError {}

/// Error of [`Hub::send_to`](crate::Hub::send_to); hands the payload back.
#[derive(Clone, PartialEq, Eq)]
pub enum SendError<T> {
    /// No subscriber has that id (never had, or already removed).
    NoSuchSubscriber(T),
    /// The subscriber is closing or closed.
    Closed(T),
    /// Its ring had no room, under its policy and the message's priority. Under
    /// [`Overflow::Evict`](crate::Overflow::Evict) the subscriber is now closing.
    Full(T),
    /// The hub is shut down.
    Shutdown(T),
}

impl<T> SendError<T> {
    /// The payload that was not delivered.
    pub fn into_inner(self) -> T {
        match self {
            SendError::NoSuchSubscriber(t)
            | SendError::Closed(t)
            | SendError::Full(t)
            | SendError::Shutdown(t) => t,
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::NoSuchSubscriber(_) => "NoSuchSubscriber(..)",
            SendError::Closed(_) => "Closed(..)",
            SendError::Full(_) => "Full(..)",
            SendError::Shutdown(_) => "Shutdown(..)",
        })
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::NoSuchSubscriber(_) => "no subscriber with that id",
            SendError::Closed(_) => "subscriber is closed",
            SendError::Full(_) => "subscriber's ring is full",
            SendError::Shutdown(_) => "hub is shut down",
        })
    }
}

impl<T> std::error::Error for SendError<T> {}

/// Error of subscribe, join and leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscribeError {
    /// The hub is shut down.
    Shutdown,
    /// No subscriber has that id.
    NoSuchSubscriber,
    /// The subscriber is closing or closed.
    Closed,
    /// A setting in [`SubscribeOptions`](crate::SubscribeOptions) is out of range.
    InvalidOptions(&'static str),
    /// The engine needs its broker for this join (a cluster node taking an
    /// interest in a topic) and could not reach it: not joined.
    Unavailable,
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscribeError::Shutdown => f.write_str("hub is shut down"),
            SubscribeError::NoSuchSubscriber => f.write_str("no subscriber with that id"),
            SubscribeError::Closed => f.write_str("subscriber is closed"),
            SubscribeError::InvalidOptions(field) => {
                write!(f, "invalid subscribe option `{field}`")
            }
            SubscribeError::Unavailable => f.write_str("broker unavailable: not joined"),
        }
    }
}

impl std::error::Error for SubscribeError {}
