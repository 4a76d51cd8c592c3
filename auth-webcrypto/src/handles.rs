//! Numbered slots for what JavaScript holds a handle to (a decision waiting for WebCrypto): a
//! handle names one entry from `insert` until `release`, never two at once, whatever happens
//! to the entry in between (taken out for a pass, put back).

pub struct Handles<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
}

enum Slot<T> {
    Free,
    /// Handed out; the entry is out (being worked on) when `None`.
    Held(Option<T>),
}

impl<T> Default for Handles<T> {
    fn default() -> Self {
        Handles { slots: Vec::new(), free: Vec::new() }
    }
}

impl<T> Handles<T> {
    /// A new handle holding `entry`.
    pub fn insert(&mut self, entry: T) -> u32 {
        match self.free.pop() {
            Some(h) => {
                self.slots[h as usize] = Slot::Held(Some(entry));
                h
            }
            None => {
                self.slots.push(Slot::Held(Some(entry)));
                (self.slots.len() - 1) as u32
            }
        }
    }

    pub fn get(&self, h: u32) -> Option<&T> {
        match self.slots.get(h as usize) {
            Some(Slot::Held(entry)) => entry.as_ref(),
            _ => None,
        }
    }

    /// The entry, out of its slot; the handle stays taken until `put` or `release`.
    pub fn take(&mut self, h: u32) -> Option<T> {
        match self.slots.get_mut(h as usize) {
            Some(Slot::Held(entry)) => entry.take(),
            _ => None,
        }
    }

    /// Puts an entry back under a handle `take` emptied; `false` (nothing stored) for a handle
    /// that is not held or not empty.
    pub fn put(&mut self, h: u32, entry: T) -> bool {
        match self.slots.get_mut(h as usize) {
            Some(Slot::Held(slot @ None)) => {
                *slot = Some(entry);
                true
            }
            _ => false,
        }
    }

    /// The handle is free for another entry (its entry dropped if still there).
    pub fn release(&mut self, h: u32) {
        if let Some(slot @ Slot::Held(_)) = self.slots.get_mut(h as usize) {
            *slot = Slot::Free;
            self.free.push(h);
        }
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.slots.iter().filter(|s| matches!(s, Slot::Held(_))).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_taken_out_and_put_back_is_never_handed_out_again_meanwhile() {
        let mut h = Handles::default();
        let a = h.insert("a");
        assert_eq!(h.take(a), Some("a"));
        // While `a`'s entry is out (a pass running, WebCrypto awaited), new entries get new
        // handles: `a` is still taken.
        let b = h.insert("b");
        assert_ne!(a, b);
        assert!(h.put(a, "a again"));
        assert_eq!(h.get(a), Some(&"a again"));
        assert_eq!(h.get(b), Some(&"b"));
        assert!(!h.put(a, "twice"), "a held, full slot is not overwritten");
        assert!(!h.put(b, "over b"));
        assert_eq!(h.get(b), Some(&"b"));
    }

    #[test]
    fn released_handles_are_reused_and_refuse_stale_use() {
        let mut h = Handles::default();
        let a = h.insert(1);
        let b = h.insert(2);
        h.release(a);
        assert_eq!(h.get(a), None);
        assert_eq!(h.take(a), None);
        assert!(!h.put(a, 9), "a released handle takes nothing back");
        h.release(a); // twice: still one free entry
        let c = h.insert(3);
        assert_eq!(c, a, "reused");
        let d = h.insert(4);
        assert!(d != a && d != b, "released once, handed out once");
        assert_eq!((h.get(b), h.get(c), h.get(d)), (Some(&2), Some(&3), Some(&4)));
        assert_eq!(h.get(99), None);
        assert_eq!(h.take(99), None);
        assert!(!h.put(99, 0));
        h.release(99);
        assert_eq!(h.held(), 3);
    }
}
