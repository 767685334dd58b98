//! Password hashing with argon2id at OWASP's recommended parameters
//! (19 MiB, 2 passes, 1 lane: the `argon2` crate's defaults), off the async
//! runtime and bounded.
//!
//! Each hash takes tens of milliseconds of CPU and 19 MiB of memory, so hashing
//! runs on the blocking pool behind a semaphore of one permit per core: a burst
//! of sign-ins queues instead of starving request handling or memory. Signing
//! in with an unknown email verifies against a dummy hash, so it takes as long
//! as a wrong password and does not reveal which emails exist.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// The hash unknown emails are checked against.
    dummy_hash: Arc<str>,
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
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self {
            permits: Arc::new(Semaphore::new(cores)),
            dummy_hash: hash_now("not-anybody's-password-0").into(),
        }
    }

    /// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) of `password`.
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        Ok(tokio::task::spawn_blocking(move || hash_now(&password)).await?)
    }

    /// Whether `password` matches `hash`; with `None` (no such user) checks a
    /// dummy hash and answers false, in the same time.
    pub async fn verify(&self, password: String, hash: Option<String>) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await?;
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let matches = tokio::task::spawn_blocking(move || verify_now(&password, &hash)).await?;
        Ok(known && matches)
    }
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_with_argon2id_owasp_parameters_and_verifies() {
        let passwords = Passwords::new();
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
}
