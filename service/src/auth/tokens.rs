//! Access tokens (HS256 JWTs) and opaque random tokens (refresh, email, join).
//!
//! An access token names the user and the session it belongs to; the session
//! is checked on every request (see `sessions`), so signing out or a reused
//! refresh token ends it at once. Only HS256 is accepted: a token that names
//! any other algorithm, `none` included, is refused before its signature is read.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use accunode_core::domain::{SessionId, UserId};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Seconds a token's `exp`/`iat` may be off because clocks of servers differ.
const CLOCK_LEEWAY_SECS: u64 = 5;
const ISSUER: &str = "accunode";

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: UserId,
    /// The session (refresh-token family) the token was issued in.
    pub sid: SessionId,
    pub iat: u64,
    pub exp: u64,
    pub iss: String,
}

/// Signs and checks access tokens with the one HS256 key.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_ttl: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid")]
    Invalid,
}

impl TokenKeys {
    pub fn new(secret: &SecretString, access_ttl: Duration) -> Self {
        let key = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = CLOCK_LEEWAY_SECS;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss"]);
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            access_ttl,
        }
    }

    /// A signed access token for `user` in `session`, and its lifetime in seconds.
    pub fn issue(&self, user: UserId, session: SessionId) -> (String, u64) {
        let now = unix_now();
        let ttl = self.access_ttl.as_secs();
        let claims = AccessClaims {
            sub: user,
            sid: session,
            iat: now,
            exp: now + ttl,
            iss: ISSUER.to_owned(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with an in-memory key cannot fail");
        (token, ttl)
    }

    /// The claims of a valid token: HS256, signed with our key, from us, not
    /// expired, not issued in the future.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        if data.claims.iat > unix_now() + CLOCK_LEEWAY_SECS {
            return Err(TokenError::Invalid);
        }
        Ok(data.claims)
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// A new unguessable token (256 random bits, URL-safe base64).
pub fn random_token() -> String {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps of a token: its SHA-256, never the token.
pub fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(
            &SecretString::from("a-test-secret-of-at-least-32-characters!"),
            Duration::from_secs(60),
        )
    }

    fn sign(claims: &serde_json::Value, algorithm: Algorithm, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::new(algorithm),
            claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn issued_tokens_verify_and_name_user_and_session() {
        let keys = keys();
        let (user, session) = (UserId(Uuid::new_v4()), SessionId(Uuid::new_v4()));
        let (token, ttl) = keys.issue(user, session);
        assert_eq!(ttl, 60);
        let claims = keys.verify(&token).unwrap();
        assert_eq!((claims.sub, claims.sid), (user, session));
    }

    #[test]
    fn refuses_other_keys_algorithms_expired_and_future_tokens() {
        let keys = keys();
        let secret = b"a-test-secret-of-at-least-32-characters!";
        let now = unix_now();
        let claims = |iat: u64, exp: u64| serde_json::json!({"sub": Uuid::new_v4(), "sid": Uuid::new_v4(), "iat": iat, "exp": exp, "iss": "accunode"});
        let valid = claims(now, now + 60);
        assert!(keys.verify(&sign(&valid, Algorithm::HS256, secret)).is_ok());
        assert!(matches!(
            keys.verify(&sign(
                &valid,
                Algorithm::HS256,
                b"another-secret-another-secret-xx"
            )),
            Err(TokenError::Invalid)
        ));
        assert!(matches!(
            keys.verify(&sign(&valid, Algorithm::HS512, secret)),
            Err(TokenError::Invalid)
        ));
        assert!(matches!(
            keys.verify(&sign(
                &claims(now - 120, now - 60),
                Algorithm::HS256,
                secret
            )),
            Err(TokenError::Expired)
        ));
        assert!(matches!(
            keys.verify(&sign(
                &claims(now + 600, now + 900),
                Algorithm::HS256,
                secret
            )),
            Err(TokenError::Invalid)
        ));
        // alg "none": header {"alg":"none"}, no signature.
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(valid.to_string())
        );
        assert!(matches!(keys.verify(&unsigned), Err(TokenError::Invalid)));
        assert!(matches!(
            keys.verify("not.a.token"),
            Err(TokenError::Invalid)
        ));
    }

    #[test]
    fn random_tokens_differ_and_digests_are_sha256() {
        assert_ne!(random_token(), random_token());
        assert_eq!(random_token().len(), 43);
        assert_eq!(digest("x").len(), 32);
    }
}
