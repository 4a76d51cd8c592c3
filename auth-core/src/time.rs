//! Time as the host hands it in: one type, millisecond resolution, so seconds (token claims,
//! config) and milliseconds (proxy ticks, `Date.now()`) never meet as bare integers.

use core::fmt;

/// A point in time: milliseconds since the unix epoch. Hosts convert their clock once
/// ([`UnixTime::from_millis`], [`UnixTime::from_secs`]); auth-core compares claims (whole
/// seconds) with [`UnixTime::secs`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixTime(i64);

impl UnixTime {
    /// The epoch itself; also "never" for state that has not happened yet.
    pub const EPOCH: UnixTime = UnixTime(0);

    pub const fn from_secs(secs: i64) -> UnixTime {
        UnixTime(secs.saturating_mul(1000))
    }

    pub const fn from_millis(millis: i64) -> UnixTime {
        UnixTime(millis)
    }

    /// Whole seconds (floor), as JWT NumericDates are compared.
    pub const fn secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    pub const fn plus_secs(self, secs: i64) -> UnixTime {
        UnixTime(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    pub const fn plus_millis(self, millis: i64) -> UnixTime {
        UnixTime(self.0.saturating_add(millis))
    }

    /// Whole seconds from `earlier` to `self` (negative when `earlier` is later).
    pub const fn secs_since(self, earlier: UnixTime) -> i64 {
        self.0.saturating_sub(earlier.0).div_euclid(1000)
    }
}

impl fmt::Debug for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnixTime({}.{:03})", self.secs(), self.0.rem_euclid(1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_floor_and_arithmetic() {
        let t = UnixTime::from_millis(1_700_000_000_999);
        assert_eq!(t.secs(), 1_700_000_000);
        assert_eq!(UnixTime::from_millis(-1).secs(), -1, "floor, not truncation");
        assert_eq!(UnixTime::from_secs(10).plus_secs(5), UnixTime::from_secs(15));
        assert_eq!(UnixTime::from_secs(10).plus_millis(1500).millis(), 11_500);
        assert_eq!(UnixTime::from_secs(20).secs_since(UnixTime::from_secs(5)), 15);
        assert_eq!(UnixTime::from_secs(i64::MAX / 1000 + 1).plus_secs(i64::MAX), UnixTime::from_millis(i64::MAX));
    }

    #[test]
    fn debug_shows_seconds_and_millis() {
        assert_eq!(format!("{:?}", UnixTime::from_millis(1_500)), "UnixTime(1.500)");
        assert_eq!(format!("{:?}", UnixTime::from_millis(-1)), "UnixTime(-1.999)");
    }
}
