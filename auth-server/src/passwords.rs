//! argon2id password hashing on the blocking pool (bounded), the password policy, and a dummy
//! hash so unknown accounts cost the same time as known ones.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;
use tokio::sync::Semaphore;

use crate::config::PasswordsConfig;

#[derive(Clone)]
pub struct Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    dummy: Arc<String>,
    min_length: usize,
}

/// Passwords of at least 12 characters that lists of breached passwords show again and again.
const COMMON: &[&str] = &[
    "123456789012",
    "1234567890123",
    "12345678901234",
    "123456789123",
    "111111111111",
    "000000000000",
    "password1234",
    "password12345",
    "password123456",
    "passwordpassword",
    "password1!",
    "Password1234",
    "Password123!",
    "P@ssw0rd1234",
    "p@ssw0rd1234",
    "qwertyuiopas",
    "qwertyuiop12",
    "qwerty123456",
    "qwertyqwerty",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "zaq12wsxcde3",
    "abcdefghijkl",
    "abc123abc123",
    "iloveyou1234",
    "letmein12345",
    "welcome12345",
    "welcome123456",
    "administrator",
    "adminadmin12",
    "changeme1234",
    "trustno11234",
    "monkey123456",
    "dragon123456",
    "football1234",
    "baseball1234",
    "superman1234",
    "sunshine1234",
    "princess1234",
    "starwars1234",
    "whatever1234",
    "aaaaaaaaaaaa",
    "asdfghjkl123",
    "asdfasdfasdf",
    "q1w2e3r4t5y6",
    "passw0rd1234",
    "correcthorsebatterystaple",
    "masterkey1234",
    "secret123456",
    "987654321098",
    "1234qwerasdf",
    "qwerasdfzxcv",
];

#[derive(Debug, PartialEq, Eq)]
pub enum PolicyError {
    TooShort(usize),
    TooLong,
    Common,
    ContainsEmail,
}

impl PolicyError {
    pub fn message(&self) -> String {
        match self {
            PolicyError::TooShort(n) => format!("the password must have at least {n} characters"),
            PolicyError::TooLong => "the password must have at most 256 characters".into(),
            PolicyError::Common => "this password is too common".into(),
            PolicyError::ContainsEmail => "the password must not contain the email address".into(),
        }
    }
}

impl Hasher {
    pub fn new(cfg: &PasswordsConfig) -> anyhow::Result<Hasher> {
        let params = Params::new(cfg.argon2_memory_kib, cfg.argon2_iterations, cfg.argon2_parallelism, None)
            .map_err(|e| anyhow::anyhow!("passwords: invalid argon2 parameters: {e}"))?;
        let mut h = Hasher {
            params,
            permits: Arc::new(Semaphore::new(cfg.max_concurrent_hashes)),
            dummy: Arc::new(String::new()),
            min_length: cfg.min_length,
        };
        h.dummy = Arc::new(h.hash_blocking("authgate-dummy-password-for-timing")?);
        Ok(h)
    }

    fn argon(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    fn hash_blocking(&self, password: &str) -> anyhow::Result<String> {
        let salt = SaltString::generate(&mut OsRng);
        Ok(self.argon().hash_password(password.as_bytes(), &salt).map_err(|e| anyhow::anyhow!("argon2: {e}"))?.to_string())
    }

    pub fn check_policy(&self, password: &str, email: &str) -> Result<(), PolicyError> {
        let chars = password.chars().count();
        if chars < self.min_length {
            return Err(PolicyError::TooShort(self.min_length));
        }
        if chars > 256 {
            return Err(PolicyError::TooLong);
        }
        let lower = password.to_lowercase();
        if COMMON.iter().any(|c| c.eq_ignore_ascii_case(&lower)) || lower.chars().all(|c| Some(c) == lower.chars().next()) {
            return Err(PolicyError::Common);
        }
        let local = email.split('@').next().unwrap_or("");
        if local.len() >= 4 && lower.contains(&local.to_lowercase()) {
            return Err(PolicyError::ContainsEmail);
        }
        Ok(())
    }

    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        let this = self.clone();
        let password = zeroize::Zeroizing::new(password.to_string());
        tokio::task::spawn_blocking(move || this.hash_blocking(&password)).await?
    }

    /// Verifies against `hash`, or against the dummy hash when `hash` is `None` (unknown account:
    /// same work, always false).
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await?;
        let known = hash.is_some();
        let hash = hash.map(str::to_string).unwrap_or_else(|| self.dummy.as_ref().clone());
        let password = zeroize::Zeroizing::new(password.to_string());
        let argon = self.argon();
        let ok = tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
            // Verification uses the parameters stored in the hash (older costs still verify).
            Ok::<bool, anyhow::Error>(argon.verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await??;
        Ok(ok && known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> Hasher {
        Hasher::new(&PasswordsConfig {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            argon2_parallelism: 1,
            min_length: 12,
            max_concurrent_hashes: 2,
        })
        .unwrap()
    }

    #[test]
    fn policy() {
        let h = hasher();
        assert_eq!(h.check_policy("short", "a@b.c"), Err(PolicyError::TooShort(12)));
        assert_eq!(h.check_policy("password1234", "a@b.c"), Err(PolicyError::Common));
        assert_eq!(h.check_policy("zzzzzzzzzzzzzz", "a@b.c"), Err(PolicyError::Common));
        assert_eq!(h.check_policy("alice-is-my-password", "alice@example.com"), Err(PolicyError::ContainsEmail));
        assert_eq!(h.check_policy("correct horse battery", "bob@example.com"), Ok(()));
    }

    #[test]
    fn policy_boundaries() {
        let h = hasher();
        // Characters, not bytes: twelve two-byte letters are long enough, eleven are not.
        assert_eq!(h.check_policy(&"é".repeat(11), "a@b.c"), Err(PolicyError::TooShort(12)));
        assert_eq!(h.check_policy("éèêëēėęěĕȩḝx", "a@b.c"), Ok(()));
        assert_eq!(h.check_policy("abcdefghijk", "a@b.c"), Err(PolicyError::TooShort(12)));
        assert_eq!(h.check_policy("abcdefghijkm", "a@b.c"), Ok(()));
        let long = |n: usize| "abcdefghij".repeat(26)[..n].to_string();
        assert_eq!(h.check_policy(&long(256), "a@b.c"), Ok(()));
        assert_eq!(h.check_policy(&long(257), "a@b.c"), Err(PolicyError::TooLong));
        // The list ignores case; one character repeated is common whatever it is.
        assert_eq!(h.check_policy("PASSWORD1234", "a@b.c"), Err(PolicyError::Common));
        assert_eq!(h.check_policy("ÅÅÅÅÅÅÅÅÅÅÅÅÅ", "a@b.c"), Err(PolicyError::Common));
        assert_eq!(h.check_policy("ÅÅÅÅÅÅÅÅÅÅÅÅB", "a@b.c"), Ok(()));
        // The address's local part counts from four characters, in any case.
        assert_eq!(h.check_policy("my name is bob, hello", "bob@example.com"), Ok(()));
        assert_eq!(h.check_policy("my name is anna, hello", "anna@example.com"), Err(PolicyError::ContainsEmail));
        assert_eq!(h.check_policy("my name is ANNA, hello", "Anna@example.com"), Err(PolicyError::ContainsEmail));
    }

    #[test]
    fn policy_messages_say_what_is_wrong() {
        assert_eq!(PolicyError::TooShort(14).message(), "the password must have at least 14 characters");
        assert_eq!(PolicyError::TooLong.message(), "the password must have at most 256 characters");
        assert_eq!(PolicyError::Common.message(), "this password is too common");
        assert_eq!(PolicyError::ContainsEmail.message(), "the password must not contain the email address");
    }

    #[tokio::test]
    async fn hashes_use_the_configured_cost_and_older_costs_still_verify() {
        let h = hasher();
        let hash = h.hash("correct horse battery").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        // Two hashes of one password differ (a salt each).
        assert_ne!(hash, h.hash("correct horse battery").await.unwrap());
        let costlier = Hasher::new(&PasswordsConfig {
            argon2_memory_kib: 128,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            min_length: 12,
            max_concurrent_hashes: 1,
        })
        .unwrap();
        let old = costlier.hash("correct horse battery").await.unwrap();
        assert!(old.starts_with("$argon2id$v=19$m=128,t=2,p=1$"), "{old}");
        assert!(h.verify("correct horse battery", Some(&old)).await.unwrap());
        assert!(h.verify("not a stored hash", Some("plain text")).await.is_err(), "a corrupt stored hash is an error, not a match");
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hasher();
        let hash = h.hash("correct horse battery").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(h.verify("correct horse battery", Some(&hash)).await.unwrap());
        assert!(!h.verify("wrong horse battery", Some(&hash)).await.unwrap());
        assert!(!h.verify("authgate-dummy-password-for-timing", None).await.unwrap());
    }
}
