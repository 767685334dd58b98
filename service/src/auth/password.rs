//! Password hashing with argon2id at OWASP's recommended parameters
//! (19 MiB, 2 passes, 1 lane: the `argon2` crate's defaults), off the async
//! runtime and bounded.
//!
//! Each hash takes tens of milliseconds of CPU and 19 MiB of memory, so hashing
//! runs on the blocking pool behind a semaphore of slots (by default one per
//! core): a burst of sign-ins cannot starve request handling or memory. The
//! wait for a slot is bounded too: a request that gets none within
//! [`SLOT_WAIT`] fails with [`PasswordError::Busy`] (the API's 503 with
//! `Retry-After`), so a flood cannot build an unbounded queue of requests that
//! each hold a connection and time out anyway. Signing in with an unknown
//! email verifies against a dummy hash, so it takes as long as a wrong
//! password and does not reveal which emails exist.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The longest a request waits for a hashing slot.
pub const SLOT_WAIT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Passwords {
    slots: Arc<Semaphore>,
    /// The hash unknown emails are checked against.
    dummy_hash: Arc<str>,
}

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Every slot stayed busy for [`SLOT_WAIT`].
    #[error("no password hashing slot came free within {SLOT_WAIT:?}")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(#[from] tokio::task::JoinError),
}

/// The right to compute one hash; the slot frees when this is dropped.
pub struct HashingSlot {
    _permit: OwnedSemaphorePermit,
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

fn hash_now(password: &str) -> String {
    let mut salt = [0_u8; 16];
    getrandom::fill(&mut salt).expect("the operating system's random source is available");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt length");
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any password")
        .to_string()
}

fn verify_now(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

impl Passwords {
    /// Hashing with `slots` hashes at once; `None`: one per core.
    pub fn new(slots: Option<u32>) -> Self {
        let slots = slots.map_or_else(
            || std::thread::available_parallelism().map_or(2, usize::from),
            |slots| slots as usize,
        );
        Self {
            slots: Arc::new(Semaphore::new(slots)),
            dummy_hash: hash_now("not-anybody's-password-0").into(),
        }
    }

    /// A hashing slot, waiting at most [`SLOT_WAIT`] for one.
    pub async fn slot(&self) -> Result<HashingSlot, PasswordError> {
        match tokio::time::timeout(SLOT_WAIT, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(HashingSlot { _permit: permit }),
            // The semaphore is never closed; a timeout is the only way to fail.
            Ok(Err(_)) | Err(_) => Err(PasswordError::Busy),
        }
    }

    /// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) of `password`.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let slot = self.slot().await?;
        // The slot goes with the work: a request dropped mid-hash does not
        // free it while the hash still runs.
        Ok(tokio::task::spawn_blocking(move || {
            let _slot = slot;
            hash_now(&password)
        })
        .await?)
    }

    /// Whether `password` matches `hash`; with `None` (no such user) checks a
    /// dummy hash and answers false, in the same time.
    pub async fn verify(
        &self,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, PasswordError> {
        let slot = self.slot().await?;
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let matches = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            verify_now(&password, &hash)
        })
        .await?;
        Ok(known && matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_with_argon2id_owasp_parameters_and_verifies() {
        let passwords = Passwords::new(None);
        let hash = passwords.hash("correct horse 1".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            passwords
                .verify("correct horse 1".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify("wrong horse 1".into(), Some(hash))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify("not-anybody's-password-0".into(), None)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_busy_slot_fails_after_the_wait_instead_of_queueing() {
        let passwords = Passwords::new(Some(1));
        let held = passwords.slot().await.unwrap();
        let started = std::time::Instant::now();
        let answer = passwords.hash("queued horse 1".into()).await;
        assert!(matches!(answer, Err(PasswordError::Busy)), "{answer:?}");
        assert!(started.elapsed() >= SLOT_WAIT, "{:?}", started.elapsed());
        drop(held);
        assert!(passwords.hash("queued horse 1".into()).await.is_ok());
    }
}
