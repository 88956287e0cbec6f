//! Connections by token subject: the per-user connection cap, and sending to
//! a user rather than to a connection.
//!
//! # Why
//!
//! A token holder may open as many connections as the per-IP cap allows from
//! each of its addresses; `max_connections_per_subject` bounds them per `sub`
//! (a leaked token cannot take every slot). And unicast by connection id
//! targets a sequential number that any client can guess and that changes on
//! every reconnect: a backend that wants to reach *alice* should name alice,
//! and reach each of her connections.
//!
//! # How
//!
//! A map from subject to the subscriber ids of its open connections, behind
//! one mutex taken when a connection with a subject opens or closes, and when
//! a backend sends to a subject (never by a delivery). A connection holds a
//! [`SubjectSlot`] (inside its connection [`Slot`](crate::limits::Slot)) for
//! its life; dropping it removes the id, and the subject at its last one.
//! Anonymous connections (no `sub`) are not in the map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fanout_core::SubscriberId;

pub(crate) struct Subjects {
    /// Connections per subject (0 = no cap).
    max_per_subject: usize,
    /// Open connections per subject; an entry is removed at zero.
    ids: Mutex<HashMap<Box<str>, Vec<SubscriberId>>>,
}

/// One connection's place in [`Subjects`]; dropping it frees it.
pub(crate) struct SubjectSlot {
    subjects: Arc<Subjects>,
    subject: Box<str>,
    id: SubscriberId,
}

/// The subject already has `max_connections_per_subject` connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SubjectFull;

impl Subjects {
    pub(crate) fn new(max_per_subject: usize) -> Self {
        Subjects { max_per_subject, ids: Mutex::new(HashMap::new()) }
    }

    /// Registers connection `id` of `subject`, within the cap.
    pub(crate) fn acquire(
        self: &Arc<Self>,
        subject: &str,
        id: SubscriberId,
    ) -> Result<SubjectSlot, SubjectFull> {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        match ids.get_mut(subject) {
            Some(v) if self.max_per_subject != 0 && v.len() >= self.max_per_subject => {
                return Err(SubjectFull)
            }
            Some(v) => v.push(id),
            None => {
                ids.insert(subject.into(), vec![id]);
            }
        }
        Ok(SubjectSlot { subjects: self.clone(), subject: subject.into(), id })
    }

    /// The ids of `subject`'s open connections (empty if none).
    pub(crate) fn connections(&self, subject: &str) -> Vec<SubscriberId> {
        let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        ids.get(subject).cloned().unwrap_or_default()
    }
}

impl Drop for SubjectSlot {
    fn drop(&mut self) {
        let mut ids = self.subjects.ids.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = ids.get_mut(&*self.subject) {
            v.retain(|&i| i != self.id);
            if v.is_empty() {
                ids.remove(&*self.subject);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_per_subject_and_lookup() {
        let s = Arc::new(Subjects::new(2));
        let id = SubscriberId::new;
        let a = s.acquire("alice", id(1)).unwrap();
        let _b = s.acquire("alice", id(2)).unwrap();
        assert!(s.acquire("alice", id(3)).is_err());
        let _c = s.acquire("bob", id(4)).unwrap();
        assert_eq!(s.connections("alice"), vec![id(1), id(2)]);
        drop(a);
        assert_eq!(s.connections("alice"), vec![id(2)]);
        assert!(s.acquire("alice", id(5)).is_ok());
        assert!(s.connections("carol").is_empty());
    }
}
