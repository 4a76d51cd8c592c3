//! Stable error codes. The string form of each code is part of the gateway contract: hosts send it
//! as `x-error-code`, clients and tests match on it, so a code is never renamed once released.

use core::fmt;

macro_rules! error_codes {
    ($( $variant:ident = ($code:literal, $status:literal, $desc:literal), )*) => {
        /// Why a request was denied (or why the host could not serve it).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode { $( $variant, )* }

        impl ErrorCode {
            /// Every code, for documentation and exhaustive tests.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )* ];

            /// The stable machine-readable code sent as `x-error-code`.
            pub const fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $code, )* }
            }

            /// The HTTP status a gateway answers with.
            pub const fn status(self) -> u16 {
                match self { $( ErrorCode::$variant => $status, )* }
            }

            /// A human description, sent as `x-error`. Never contains request data.
            pub const fn description(self) -> &'static str {
                match self { $( ErrorCode::$variant => $desc, )* }
            }

            /// Parses the stable string form back (used by tests and tooling).
            pub fn from_code(code: &str) -> Option<ErrorCode> {
                match code { $( $code => Some(ErrorCode::$variant), )* _ => None }
            }
        }
    };
}

error_codes! {
    ConflictingCredentials = ("conflicting_credentials", 400, "the request carries more than one credential"),
    InvalidPath = ("invalid_path", 400, "the request path is not in canonical form"),
    InvalidMethod = ("invalid_method", 400, "the request method (or a method-override header) is not a valid HTTP method"),
    CredentialMissing = ("credential_missing", 401, "this route requires a credential"),
    UnsupportedScheme = ("unsupported_scheme", 401, "the authorization scheme is not supported"),
    CredentialNotAccepted = ("credential_not_accepted", 401, "this kind of credential is not accepted on this route"),
    TokenMalformed = ("token_malformed", 401, "the token is not a well-formed compact JWS"),
    TokenTooLarge = ("token_too_large", 401, "the token exceeds the size limit"),
    AlgNotAllowed = ("alg_not_allowed", 401, "the token's algorithm is not allowed"),
    CritUnsupported = ("crit_unsupported", 401, "the token has critical header parameters that are not supported"),
    IssuerUnknown = ("issuer_unknown", 401, "the token's issuer is not trusted"),
    UnknownKid = ("unknown_kid", 401, "the token's key id is not known"),
    KeyAlgMismatch = ("key_alg_mismatch", 401, "the token's algorithm does not match its key"),
    SignatureInvalid = ("signature_invalid", 401, "the token's signature is invalid"),
    SignatureNotCanonical = ("signature_not_canonical", 401, "the token's ES256 signature is in its high-s form, which this issuer's configuration does not accept (es256_accept_high_s)"),
    TokenExpired = ("token_expired", 401, "the token has expired"),
    TokenNotYetValid = ("token_not_yet_valid", 401, "the token is not valid yet"),
    ClaimsInvalid = ("claims_invalid", 401, "the token's claims are missing or invalid"),
    AudienceMismatch = ("audience_mismatch", 401, "the token is not meant for this audience"),
    TypNotAllowed = ("typ_not_allowed", 401, "the token's type is not accepted"),
    TokenRevoked = ("token_revoked", 401, "the token has been revoked"),
    SessionRevoked = ("session_revoked", 401, "the session has been revoked"),
    SubjectRevoked = ("subject_revoked", 401, "the subject's credentials have been revoked"),
    ApiKeyMalformed = ("api_key_malformed", 401, "the API key is malformed"),
    ApiKeyInvalid = ("api_key_invalid", 401, "the API key is invalid"),
    ApiKeyUnknownKid = ("api_key_unknown_kid", 401, "the API key names an unknown signing key"),
    ApiKeyExpired = ("api_key_expired", 401, "the API key has expired"),
    ApiKeyRevoked = ("api_key_revoked", 401, "the API key has been revoked"),
    ApiKeyPending = ("api_key_pending", 401, "the API key is not verified yet"),
    OrgNotAllowed = ("org_not_allowed", 403, "the credential's organisation may not use this route"),
    OrgSuspended = ("org_suspended", 403, "the credential's organisation is suspended"),
    InsufficientRole = ("insufficient_role", 403, "the credential lacks a required role"),
    InsufficientScope = ("insufficient_scope", 403, "the credential lacks a required scope"),
    NoMatchingRoute = ("no_matching_route", 403, "no route rule allows this request"),
    CsrfTokenInvalid = ("csrf_token_invalid", 403, "a cookie-authenticated request must repeat the CSRF cookie in the CSRF header"),
    CsrfOriginMismatch = ("csrf_origin_mismatch", 403, "cross-origin request refused"),
    KeysUnavailable = ("keys_unavailable", 503, "the issuer's signing keys are unavailable"),
    RevocationsStale = ("revocations_stale", 503, "the revocation feed is stale"),
    ConfigInvalid = ("config_invalid", 500, "the gateway configuration is invalid"),
}

impl ErrorCode {
    /// True for 401 answers, which carry a `www-authenticate` challenge.
    pub const fn is_unauthenticated(self) -> bool {
        self.status() == 401
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configuration error naming the offending field, e.g.
/// `routes[2].require.any_role: invalid type: string "admin", expected a sequence`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Path of the bad field (`providers[0].jwks_uri`); `.` for the document itself.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate code {}", code.as_str());
            assert_eq!(ErrorCode::from_code(code.as_str()), Some(*code));
            assert!(matches!(code.status(), 400 | 401 | 403 | 500 | 503));
            assert!(!code.description().is_empty());
        }
        assert_eq!(ErrorCode::from_code("nope"), None);
    }
}
