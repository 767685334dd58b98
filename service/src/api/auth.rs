//! `/api/v1/auth`: registration, email verification, sign-in, token refresh,
//! sign-out and password change.

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;
use sqlx::Row;
use uuid::Uuid;

use super::ApiTags;
use super::users::{PROFILE_COLUMNS, UserProfile, clean_name};
use crate::auth::BearerAuth;
use crate::auth::sessions::{RevokeReason, TokenPair};
use crate::auth::tokens;
use crate::body::{JsonBody, Problems, Validate};
use crate::email;
use crate::error::ApiError;
use crate::startup::AppState;

#[derive(Default)]
pub struct AuthApi;

const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 128;
/// How long an email verification token stays valid.
const VERIFY_TOKEN_HOURS: i32 = 48;

#[derive(Debug, Clone, Object, Deserialize)]
#[oai(example)]
pub struct RegisterRequest {
    /// Used to sign in; compared case-insensitively.
    #[oai(validator(max_length = 254))]
    pub email: String,
    /// 8 to 128 characters with at least one letter and one digit.
    #[oai(validator(min_length = 8, max_length = 128))]
    pub password: String,
    #[oai(validator(max_length = 100))]
    pub first_name: Option<String>,
    #[oai(validator(max_length = 100))]
    pub last_name: Option<String>,
}

/// A syntactically plausible address: `local@domain.tld`, no spaces, at most 254 characters.
fn email_problem(email: &str) -> Option<&'static str> {
    let email = email.trim();
    let Some((local, domain)) = email.split_once('@') else {
        return Some("must be an email address like name@example.com");
    };
    if email.len() > 254
        || local.is_empty()
        || local.len() > 64
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Some("must be an email address like name@example.com");
    }
    None
}

pub fn check_email(problems: &mut Problems, field: &str, email: &str) {
    if let Some(problem) = email_problem(email) {
        problems.add(field, problem);
    }
}

fn check_new_password(problems: &mut Problems, field: &str, password: &str) {
    let length = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&length) {
        problems.add(
            field,
            format!("must be {MIN_PASSWORD} to {MAX_PASSWORD} characters, got {length}"),
        );
    } else if !password.chars().any(char::is_alphabetic)
        || !password.chars().any(|c| c.is_ascii_digit())
    {
        problems.add(field, "must contain at least one letter and one digit");
    }
}

impl Validate for RegisterRequest {
    fn validate(&self, problems: &mut Problems) {
        check_email(problems, "email", &self.email);
        check_new_password(problems, "password", &self.password);
        for (field, value) in [
            ("first_name", &self.first_name),
            ("last_name", &self.last_name),
        ] {
            if let Some(value) = value {
                problems.text(field, value, 0, 100);
            }
        }
    }
}

#[derive(Debug, Clone, Object, Deserialize)]
#[oai(example)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

impl Validate for LoginRequest {
    fn validate(&self, problems: &mut Problems) {
        if self.email.trim().is_empty() {
            problems.add("email", "is required");
        }
        if self.password.is_empty() {
            problems.add("password", "is required");
        }
    }
}

#[derive(Debug, Clone, Object, Deserialize)]
pub struct VerifyEmailRequest {
    /// The token from the verification mail.
    pub token: String,
}

impl Validate for VerifyEmailRequest {
    fn validate(&self, problems: &mut Problems) {
        problems.text("token", &self.token, 1, 200);
    }
}

#[derive(Debug, Clone, Object, Deserialize)]
pub struct RefreshRequest {
    /// The refresh token of the last sign-in or refresh; it can be used once.
    pub refresh_token: String,
}

impl Validate for RefreshRequest {
    fn validate(&self, problems: &mut Problems) {
        problems.text("refresh_token", &self.refresh_token, 1, 200);
    }
}

#[derive(Debug, Clone, Object, Deserialize)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    /// 8 to 128 characters with at least one letter and one digit.
    #[oai(validator(min_length = 8, max_length = 128))]
    pub new_password: String,
}

impl Validate for ChangePasswordRequest {
    fn validate(&self, problems: &mut Problems) {
        if self.current_password.is_empty() {
            problems.add("current_password", "is required");
        }
        check_new_password(problems, "new_password", &self.new_password);
    }
}

/// A token pair: send `access_token` as `Authorization: Bearer …`; exchange
/// `refresh_token` at `/refresh-token` before `expires_in` seconds pass.
#[derive(Debug, Clone, Object)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl From<TokenPair> for TokenResponse {
    fn from(pair: TokenPair) -> Self {
        Self {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            token_type: "bearer".into(),
            expires_in: pair.expires_in,
        }
    }
}

/// Sign-in's answer: the tokens and who signed in.
#[derive(Debug, Clone, Object)]
pub struct LoginResponse {
    #[oai(flatten)]
    pub tokens: TokenResponse,
    pub user: UserProfile,
}

#[derive(Debug, Clone, Object)]
pub struct Message {
    pub message: String,
}

#[derive(ApiResponse)]
pub enum RegisterResponse {
    /// Registered; a verification token was mailed to the address.
    #[oai(status = 201)]
    Created(Json<UserProfile>),
}

#[derive(ApiResponse)]
pub enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

/// Stores the lower-cased, trimmed form of an email address.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

#[OpenApi(prefix_path = "/api/v1/auth", tag = "ApiTags::Auth")]
impl AuthApi {
    /// Creates an account and mails an email verification token.
    #[oai(path = "/register", method = "post", operation_id = "register")]
    async fn register(
        &self,
        state: Data<&AppState>,
        body: JsonBody<RegisterRequest>,
    ) -> Result<RegisterResponse, ApiError> {
        let request = body.0;
        let email = normalise_email(&request.email);
        let hash = state
            .passwords
            .hash(request.password)
            .await
            .map_err(ApiError::internal)?;
        let mut tx = state.dependencies.pool.begin().await?;
        let row = sqlx::query(&format!(
            "INSERT INTO users (email, password_hash, first_name, last_name) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (email) DO NOTHING RETURNING {PROFILE_COLUMNS}"
        ))
        .bind(&email)
        .bind(hash)
        .bind(clean_name(request.first_name.as_ref()))
        .bind(clean_name(request.last_name.as_ref()))
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::conflict("An account with this email already exists."))?;
        let profile = UserProfile::from_row(&row)?;
        let token = tokens::random_token();
        sqlx::query(
            "INSERT INTO email_tokens (token_sha256, user_id, purpose, expires_at) \
             VALUES ($1, $2, 'verify_email', now() + make_interval(hours => $3))",
        )
        .bind(tokens::digest(&token))
        .bind(profile.id)
        .bind(VERIFY_TOKEN_HOURS)
        .execute(&mut *tx)
        .await?;
        email::queue(
            &mut tx,
            &email,
            "Verify your AccuNode email address",
            &format!(
                "Welcome to AccuNode.\n\nVerify your address with this token (valid {VERIFY_TOKEN_HOURS} hours):\n\n\
                 verification token: {token}\n\nPOST /api/v1/auth/verify-email {{\"token\": \"{token}\"}}\n"
            ),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(user = %profile.id, "user registered");
        Ok(RegisterResponse::Created(Json(profile)))
    }

    /// Confirms an email address with the token from the verification mail.
    #[oai(path = "/verify-email", method = "post", operation_id = "verify_email")]
    async fn verify_email(
        &self,
        state: Data<&AppState>,
        body: JsonBody<VerifyEmailRequest>,
    ) -> Result<Json<Message>, ApiError> {
        let mut tx = state.dependencies.pool.begin().await?;
        let user: Option<Uuid> = sqlx::query_scalar(
            "UPDATE email_tokens SET used_at = now() \
             WHERE token_sha256 = $1 AND purpose = 'verify_email' AND used_at IS NULL \
               AND expires_at > now() RETURNING user_id",
        )
        .bind(tokens::digest(body.0.token.trim()))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(user) = user else {
            return Err(ApiError::invalid_field(
                "body.token",
                "is not a valid verification token, or it was used or has expired",
            ));
        };
        sqlx::query(
            "UPDATE users SET email_verified_at = coalesce(email_verified_at, now()) WHERE id = $1",
        )
        .bind(user)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Json(Message {
            message: "Email address verified.".into(),
        }))
    }

    /// Signs in with email and password; returns an access and a refresh token.
    #[oai(path = "/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        state: Data<&AppState>,
        body: JsonBody<LoginRequest>,
    ) -> Result<Json<LoginResponse>, ApiError> {
        let request = body.0;
        let row = sqlx::query(&format!(
            "SELECT {PROFILE_COLUMNS}, password_hash, is_active FROM users WHERE email = $1"
        ))
        .bind(normalise_email(&request.email))
        .fetch_optional(&state.dependencies.pool)
        .await?;
        let hash = row
            .as_ref()
            .map(|row| row.try_get::<String, _>("password_hash"))
            .transpose()?;
        let matches = state
            .passwords
            .verify(request.password, hash)
            .await
            .map_err(ApiError::internal)?;
        let invalid = || ApiError::unauthorized("The email or password is not correct.");
        let Some(row) = row.filter(|_| matches) else {
            return Err(invalid());
        };
        if !row.try_get::<bool, _>("is_active")? {
            return Err(invalid());
        }
        let profile = UserProfile::from_row(&row)?;
        if state.settings.api.auth.require_email_verification && !profile.email_verified {
            return Err(ApiError::forbidden(
                "email_not_verified",
                "Verify your email address first (POST /api/v1/auth/verify-email).",
            ));
        }
        let pair = state.sessions.start(profile.id).await?;
        sqlx::query("UPDATE users SET last_login_at = now() WHERE id = $1")
            .bind(profile.id)
            .execute(&state.dependencies.pool)
            .await?;
        Ok(Json(LoginResponse {
            tokens: pair.into(),
            user: profile,
        }))
    }

    /// Exchanges a refresh token for a new pair. Each refresh token works
    /// once; presenting a used one again ends the whole session.
    #[oai(
        path = "/refresh-token",
        method = "post",
        operation_id = "refresh_token"
    )]
    async fn refresh(
        &self,
        state: Data<&AppState>,
        body: JsonBody<RefreshRequest>,
    ) -> Result<Json<TokenResponse>, ApiError> {
        let pair = state.sessions.refresh(body.0.refresh_token.trim()).await?;
        Ok(Json(pair.into()))
    }

    /// Ends the caller's session: its access and refresh tokens stop working.
    #[oai(path = "/logout", method = "post", operation_id = "logout")]
    async fn logout(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
    ) -> Result<NoContent, ApiError> {
        state
            .sessions
            .revoke(auth.0.session_id, RevokeReason::Logout)
            .await?;
        Ok(NoContent::Done)
    }

    /// Changes the caller's password and ends every other session.
    #[oai(
        path = "/change-password",
        method = "post",
        operation_id = "change_password"
    )]
    async fn change_password(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        body: JsonBody<ChangePasswordRequest>,
    ) -> Result<NoContent, ApiError> {
        let caller = &auth.0;
        let request = body.0;
        let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
            .bind(caller.user_id)
            .fetch_one(&state.dependencies.pool)
            .await?;
        let matches = state
            .passwords
            .verify(request.current_password, Some(hash))
            .await
            .map_err(ApiError::internal)?;
        if !matches {
            return Err(ApiError::invalid_field(
                "body.current_password",
                "is not the current password",
            ));
        }
        let new_hash = state
            .passwords
            .hash(request.new_password)
            .await
            .map_err(ApiError::internal)?;
        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(caller.user_id)
            .bind(new_hash)
            .execute(&state.dependencies.pool)
            .await?;
        state
            .sessions
            .revoke_others(
                caller.user_id,
                caller.session_id,
                RevokeReason::PasswordChanged,
            )
            .await?;
        Ok(NoContent::Done)
    }
}

impl poem_openapi::types::Example for RegisterRequest {
    fn example() -> Self {
        Self {
            email: "ada@example.com".into(),
            password: "correct-horse-42".into(),
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
        }
    }
}

impl poem_openapi::types::Example for LoginRequest {
    fn example() -> Self {
        Self {
            email: "ada@example.com".into(),
            password: "correct-horse-42".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_passwords_are_checked() {
        for good in ["a@b.co", "first.last+tag@example.com"] {
            assert_eq!(email_problem(good), None, "{good}");
        }
        for bad in [
            "", "a", "@b.co", "a@b", "a@.b", "a b@c.de", "a@b@c.de", "a@b.co.",
        ] {
            assert!(email_problem(bad).is_some(), "{bad}");
        }
        let problems_of = |password: &str| {
            let mut problems = Problems::default();
            check_new_password(&mut problems, "password", password);
            problems.into_result().is_err()
        };
        assert!(!problems_of("abcdefg1"));
        assert!(problems_of("abcdef1"));
        assert!(problems_of("abcdefgh"));
        assert!(problems_of("12345678"));
        assert!(problems_of(&"a1".repeat(65)));
    }
}
