//! How often hosts log denials that mean an outage (5xx: keys or feed unavailable): at most
//! one line a second, with a count of the rest, so an outage is one line, not one per request.

use crate::time::UnixTime;

/// One per host instance (an Envoy worker VM, a Worker isolate).
#[derive(Clone, Debug, Default)]
pub struct OutageLog {
    last: Option<UnixTime>,
    suppressed: u64,
}

impl OutageLog {
    /// A 5xx denial at `now`: `Some(n)` when the host should write a line now (`n` lines held
    /// back since the last one), `None` when it should not.
    pub fn note(&mut self, now: UnixTime) -> Option<u64> {
        if self.last.is_some_and(|t| now.millis().saturating_sub(t.millis()) < 1000) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(core::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_with_a_count() {
        let mut log = OutageLog::default();
        let at = |ms: i64| UnixTime::from_millis(1_700_000_000_000 + ms);
        assert_eq!(log.note(at(0)), Some(0));
        assert_eq!(log.note(at(10)), None);
        assert_eq!(log.note(at(999)), None);
        assert_eq!(log.note(at(1000)), Some(2));
        assert_eq!(log.note(at(5000)), Some(0));
    }
}
