//! What happened to material, as hosts are told it ([`MaterialEvent`], drained with
//! `Gateway::poll_event`): typed reasons, stable codes, one log line per event for every host.

use std::fmt;

use crate::fetch::{FetchId, Source};
use crate::keys::JwksError;

use super::copy::MaterialCopy;

/// How material reached the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// A fetch this gateway made (`handle_fetch`).
    Fetch,
    /// Handed in by the host (`apply_material`): another VM's fetch, a cached copy, a file.
    Host,
}

/// What happened to material. Drain with `Gateway::poll_event` after every material input.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MaterialEvent {
    /// New material of `source` is in use.
    Applied { source: Source, via: Via, copy: MaterialCopy },
    /// `source` answered with what is already in use (a 304, or the same document): it is
    /// current as of `copy.fetched_at`.
    Confirmed { source: Source, via: Via, copy: MaterialCopy },
    /// Valid so far but not usable yet; applied (an `Applied` event) once the reason is gone.
    KeptPending { source: Source, via: Via, reason: PendingReason },
    /// Not applied; what was in use stays in use.
    Rejected { source: Source, via: Via, reason: RejectReason },
    /// A fetch ended without a body to look at; retried with backoff.
    FetchFailed { source: Source, reason: FetchFailure },
    /// An answer to a fetch that is no longer in flight (late, or duplicate): ignored.
    Ignored { id: FetchId },
    /// Every source has material now (once, after a cold start).
    Ready,
}

/// How much a host should say about an event in its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Debug,
    Info,
    Warn,
}

impl MaterialEvent {
    pub fn severity(&self) -> Severity {
        match self {
            MaterialEvent::Applied { .. } | MaterialEvent::KeptPending { .. } | MaterialEvent::Ready => Severity::Info,
            MaterialEvent::Rejected { .. } | MaterialEvent::FetchFailed { .. } => Severity::Warn,
            MaterialEvent::Confirmed { .. } | MaterialEvent::Ignored { .. } => Severity::Debug,
        }
    }
}

/// One log line per event, the same on every host.
impl fmt::Display for MaterialEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let via = |v: &Via| if *v == Via::Fetch { "fetched" } else { "handed over by the host" };
        match self {
            MaterialEvent::Applied { source, via: v, copy } => {
                write!(f, "{} updated, {} ({} bytes)", source.key(), via(v), copy.body.len())
            }
            MaterialEvent::Confirmed { source, copy, .. } => write!(f, "{} current as of {}", source.key(), copy.fetched_at.secs()),
            MaterialEvent::KeptPending { source, reason: PendingReason::FeedKeyUnknown, .. } => {
                write!(f, "{} kept until the key that signed it arrives (JWKS refetch asked for)", source.key())
            }
            MaterialEvent::Rejected { source, via: v, reason } => write!(f, "{} {} but not applied: {reason}", source.key(), via(v)),
            MaterialEvent::FetchFailed { source, reason } => write!(f, "{} fetch failed: {reason}", source.key()),
            MaterialEvent::Ignored { id } => write!(f, "late answer to fetch {} ignored", id.0),
            MaterialEvent::Ready => f.write_str("every JWKS and the feed are in: ready"),
        }
    }
}

/// Why material waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PendingReason {
    /// The feed is signed by a key this gateway does not have yet; a JWKS refetch is asked for.
    FeedKeyUnknown,
}

/// Why material was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// The body is larger than the limit for its kind.
    TooLarge { limit: usize },
    /// Not a usable JWKS.
    Jwks(JwksError),
    /// Not a compact JWS (or not UTF-8).
    FeedNotJws,
    /// The JWS `typ` is not `revocations+jwt`.
    FeedTyp,
    /// The algorithm is not allowed for the feed's issuer.
    FeedAlg,
    /// The signature does not verify with the issuer's keys.
    FeedSignature,
    /// The claims are not a revocation feed.
    FeedClaims,
    /// `iss` is not the feed issuer.
    FeedIssuer,
    /// An older version than the one in use (a rollback or replay).
    FeedRollback { applied: u64, received: u64 },
    /// The gateway has no such source.
    UnknownSource,
}

impl RejectReason {
    /// A stable code, for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::TooLarge { .. } => "too_large",
            RejectReason::Jwks(_) => "jwks_invalid",
            RejectReason::FeedNotJws => "feed_not_jws",
            RejectReason::FeedTyp => "feed_typ",
            RejectReason::FeedAlg => "feed_alg",
            RejectReason::FeedSignature => "feed_signature",
            RejectReason::FeedClaims => "feed_claims",
            RejectReason::FeedIssuer => "feed_issuer",
            RejectReason::FeedRollback { .. } => "feed_rollback",
            RejectReason::UnknownSource => "unknown_source",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::TooLarge { limit } => write!(f, "larger than {limit} bytes"),
            RejectReason::Jwks(e) => write!(f, "not a usable JWKS: {e}"),
            RejectReason::FeedNotJws => f.write_str("the feed is not a compact JWS"),
            RejectReason::FeedTyp => f.write_str("the feed's typ is not revocations+jwt"),
            RejectReason::FeedAlg => f.write_str("the feed's algorithm is not allowed for its issuer"),
            RejectReason::FeedSignature => f.write_str("the feed's signature is invalid"),
            RejectReason::FeedClaims => f.write_str("the feed's claims are not a revocation feed"),
            RejectReason::FeedIssuer => f.write_str("the feed's issuer does not match"),
            RejectReason::FeedRollback { applied, received } => {
                write!(f, "feed version {received} is older than {applied} in use")
            }
            RejectReason::UnknownSource => f.write_str("no such source"),
        }
    }
}

/// Why a fetch gave nothing to look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchFailure {
    /// The host could not complete it (connection refused, reset, its own timeout).
    Transport,
    /// No answer within `fetch.timeout_s`.
    Timeout,
    /// The server answered with this status (a 304 counts when there is nothing to confirm).
    HttpStatus(u16),
}

impl FetchFailure {
    pub fn code(&self) -> &'static str {
        match self {
            FetchFailure::Transport => "transport",
            FetchFailure::Timeout => "timeout",
            FetchFailure::HttpStatus(_) => "http_status",
        }
    }
}

impl fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchFailure::HttpStatus(s) => write!(f, "http_status {s}"),
            other => f.write_str(other.code()),
        }
    }
}
