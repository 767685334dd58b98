//! `/api/v1/auth`: registration, email verification, sign-in, token refresh,
//! sign-out, password change and password reset.
//!
//! Nothing here tells a caller which addresses have accounts: registration
//! and forgot-password answer alike either way (the mail tells the address's
//! owner what happened), and sign-in fails with one 401 and is throttled per
//! address whether or not it has an account.

use accunode_core::domain::email::{ResetToken, VerificationToken};
use accunode_core::domain::sessions::{self, RevokeReason};
use accunode_core::domain::users::{self, NewUser, Registration, RegistrationMails};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;

use super::ApiTags;
use super::shared::{NoContent, UserProfile, check_email, clean_name, normalise_email};
use crate::auth::BearerAuth;
use crate::auth::sessions::TokenPair;
use crate::auth::tokens;
use crate::body::{JsonBody, Problems, Validate};
use crate::email;
use crate::error::ApiError;
use crate::rate_limit::{Budget, client_address};
use crate::state::AppState;

#[derive(Default)]
pub struct AuthApi;

const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 128;
/// How long an email verification token stays valid.
const VERIFY_TOKEN_HOURS: i32 = 48;
/// Reset mails, and notices of registrations of an address that has an
/// account, one address is sent per throttle window (each counted apart);
/// more requests are answered alike and mail nothing, so nobody can flood a
/// mailbox.
const MAILS_PER_ADDRESS: u32 = 3;
/// Registration's one answer, whatever the address had.
const REGISTER_ANSWER: &str = "Check your mail. A new account's address gets a verification token \
     (POST /api/v1/auth/verify-email); an address that already has an account is told so, and \
     that account is unchanged.";
/// Forgot-password's one answer, whatever the address had.
const FORGOT_ANSWER: &str = "If the address has an active account, a password reset token was \
     mailed to it (POST /api/v1/auth/reset-password).";

#[derive(Debug, Clone, Object, Deserialize)]
#[oai(example)]
pub struct RegisterRequest {
    /// Used to sign in; compared case-insensitively.
    #[oai(validator(
        max_length = 254,
        pattern = r"^[^@\s\u0000-\u001F\u007F-\u009F]{1,64}@[^@\s.\u0000-\u001F\u007F-\u009F][^@\s\u0000-\u001F\u007F-\u009F]*\.[^@\s\u0000-\u001F\u007F-\u009F]*[^@\s.\u0000-\u001F\u007F-\u009F]$"
    ))]
    pub email: String,
    /// 8 to 128 characters with at least one letter and one digit.
    #[oai(validator(
        min_length = 8,
        max_length = 128,
        pattern = r"^([^\u0000-\u001F\u007F-\u009F]*[A-Za-z][^\u0000-\u001F\u007F-\u009F]*[0-9][^\u0000-\u001F\u007F-\u009F]*|[^\u0000-\u001F\u007F-\u009F]*[0-9][^\u0000-\u001F\u007F-\u009F]*[A-Za-z][^\u0000-\u001F\u007F-\u009F]*)$"
    ))]
    pub password: String,
    #[oai(validator(max_length = 100))]
    pub first_name: Option<String>,
    #[oai(validator(max_length = 100))]
    pub last_name: Option<String>,
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
    #[oai(validator(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    ))]
    pub email: String,
    #[oai(validator(min_length = 1))]
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
pub struct ForgotPasswordRequest {
    /// The account's address; compared case-insensitively.
    #[oai(validator(
        max_length = 254,
        pattern = r"^[^@\s\u0000-\u001F\u007F-\u009F]{1,64}@[^@\s.\u0000-\u001F\u007F-\u009F][^@\s\u0000-\u001F\u007F-\u009F]*\.[^@\s\u0000-\u001F\u007F-\u009F]*[^@\s.\u0000-\u001F\u007F-\u009F]$"
    ))]
    pub email: String,
}

impl Validate for ForgotPasswordRequest {
    fn validate(&self, problems: &mut Problems) {
        check_email(problems, "email", &self.email);
    }
}

#[derive(Debug, Clone, Object, Deserialize)]
pub struct ResetPasswordRequest {
    /// The token from the password reset mail; it works once.
    #[oai(validator(
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    ))]
    pub token: String,
    /// 8 to 128 characters with at least one letter and one digit.
    #[oai(validator(
        min_length = 8,
        max_length = 128,
        pattern = r"^([^\u0000-\u001F\u007F-\u009F]*[A-Za-z][^\u0000-\u001F\u007F-\u009F]*[0-9][^\u0000-\u001F\u007F-\u009F]*|[^\u0000-\u001F\u007F-\u009F]*[0-9][^\u0000-\u001F\u007F-\u009F]*[A-Za-z][^\u0000-\u001F\u007F-\u009F]*)$"
    ))]
    pub new_password: String,
}

impl Validate for ResetPasswordRequest {
    fn validate(&self, problems: &mut Problems) {
        problems.text("token", &self.token, 1, 200);
        check_new_password(problems, "new_password", &self.new_password);
    }
}

#[derive(Debug, Clone, Object, Deserialize)]
pub struct VerifyEmailRequest {
    /// The token from the verification mail.
    #[oai(validator(
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    ))]
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
    #[oai(validator(
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    ))]
    pub refresh_token: String,
}

impl Validate for RefreshRequest {
    fn validate(&self, problems: &mut Problems) {
        problems.text("refresh_token", &self.refresh_token, 1, 200);
    }
}

#[derive(Debug, Clone, Object, Deserialize)]
pub struct ChangePasswordRequest {
    #[oai(validator(min_length = 1))]
    pub current_password: String,
    /// 8 to 128 characters with at least one letter and one digit.
    #[oai(validator(
        min_length = 8,
        max_length = 128,
        pattern = r"^([^\u0000-\u001F\u007F-\u009F]*[A-Za-z][^\u0000-\u001F\u007F-\u009F]*[0-9][^\u0000-\u001F\u007F-\u009F]*|[^\u0000-\u001F\u007F-\u009F]*[0-9][^\u0000-\u001F\u007F-\u009F]*[A-Za-z][^\u0000-\u001F\u007F-\u009F]*)$"
    ))]
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
    /// The address was mailed: a new account's verification token, or, when
    /// the address has an account, a note saying so. Always this answer.
    #[oai(status = 202)]
    Accepted(Json<Message>),
}

#[derive(ApiResponse)]
pub enum ForgotPasswordResponse {
    /// A reset token was mailed if the address has an active account. Always
    /// this answer.
    #[oai(status = 202)]
    Accepted(Json<Message>),
}

/// The key a sign-in's address is counted under: a digest, so Redis holds no
/// addresses.
fn address_key(address: &str) -> String {
    URL_SAFE_NO_PAD.encode(tokens::digest(address))
}

/// Stores a reset token and queues its mail if `address` has an active
/// account; run after the answer is sent, so the answer's timing does not
/// tell whether it has.
async fn mail_reset_token(state: AppState, address: String) {
    let counted = state
        .throttle
        .hit(
            Budget::ResetMailPerEmail,
            &address_key(&address),
            MAILS_PER_ADDRESS,
        )
        .await;
    if counted.is_err() {
        tracing::info!("password reset mail not sent: this address's budget is spent");
        return;
    }
    let token = tokens::random_token();
    let valid_for = state.settings.api.auth.password_reset_ttl;
    let requested = users::request_password_reset(
        &state.dependencies.pool,
        &address,
        &ResetToken {
            token_sha256: tokens::digest(&token),
            valid_for,
        },
        &email::password_reset_mail(&address, &token, valid_for.as_secs() / 60),
    )
    .await;
    match requested {
        Ok(true) => tracing::info!("password reset token mailed"),
        Ok(false) => {
            tracing::info!("password reset asked for an address without an active account")
        }
        Err(error) => tracing::error!(%error, "password reset not stored"),
    }
}

#[OpenApi(prefix_path = "/api/v1/auth", tag = "ApiTags::Auth")]
impl AuthApi {
    /// Registers an address: a new account, mailed a verification token. The
    /// answer is the same whether or not the address has an account: an
    /// existing one is left unchanged and its owner is mailed instead. A
    /// registration never verified, never signed in to, and whose
    /// verification token expired is replaced by the new one.
    #[oai(path = "/register", method = "post", operation_id = "register")]
    async fn register(
        &self,
        state: Data<&AppState>,
        body: JsonBody<RegisterRequest>,
    ) -> Result<RegisterResponse, ApiError> {
        let request = body.0;
        let address = normalise_email(&request.email);
        // Hashed whatever the address has, so the answer takes as long either way.
        let password_hash = state.passwords.hash(request.password).await?;
        let token = tokens::random_token();
        // Notices to an address that has an account are bounded as reset mail
        // is: registering it again and again never floods its owner.
        let notify_owner = state
            .throttle
            .hit(
                Budget::RegistrationPerEmail,
                &address_key(&address),
                MAILS_PER_ADDRESS,
            )
            .await
            .is_ok();
        let registration = users::register(
            &state.dependencies.pool,
            &NewUser {
                email: address.clone(),
                password_hash,
                first_name: request.first_name.as_deref().and_then(clean_name),
                last_name: request.last_name.as_deref().and_then(clean_name),
            },
            &VerificationToken {
                token_sha256: tokens::digest(&token),
                valid_for_hours: VERIFY_TOKEN_HOURS,
            },
            &RegistrationMails {
                verify: email::verification_mail(&address, &token, VERIFY_TOKEN_HOURS),
                already_registered: notify_owner.then(|| email::already_registered_mail(&address)),
                registration_pending: notify_owner
                    .then(|| email::registration_pending_mail(&address)),
            },
        )
        .await?;
        match registration {
            Registration::Created(profile) => tracing::info!(user = %profile.id, "user registered"),
            Registration::Replaced(profile) => {
                tracing::info!(user = %profile.id, "abandoned registration replaced");
            }
            Registration::Taken => {
                tracing::info!("registration of an address with an account; its owner was mailed");
            }
        }
        Ok(RegisterResponse::Accepted(Json(Message {
            message: REGISTER_ANSWER.into(),
        })))
    }

    /// Confirms an email address with the token from the verification mail.
    #[oai(path = "/verify-email", method = "post", operation_id = "verify_email")]
    async fn verify_email(
        &self,
        state: Data<&AppState>,
        body: JsonBody<VerifyEmailRequest>,
    ) -> Result<Json<Message>, ApiError> {
        let verified = users::verify_email(
            &state.dependencies.pool,
            &tokens::digest(body.0.token.trim()),
        )
        .await?;
        if !verified {
            return Err(ApiError::invalid_field(
                "body.token",
                "is not a valid verification token, or it was used or has expired",
            ));
        }
        Ok(Json(Message {
            message: "Email address verified.".into(),
        }))
    }

    /// Signs in with email and password; returns an access and a refresh token.
    /// Failed attempts are counted per address, whether or not it has an
    /// account: `LOGIN_RATE_LIMIT_PER_EMAIL` per 15 minutes from one client
    /// address, ten times that from all of them; 429 with `Retry-After`
    /// beyond. 503 with `Retry-After` when no password check can start within
    /// a second.
    #[oai(path = "/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        state: Data<&AppState>,
        http: &poem::Request,
        body: JsonBody<LoginRequest>,
    ) -> Result<Json<LoginResponse>, ApiError> {
        let request = body.0;
        let address = normalise_email(&request.email);
        // Failed sign-ins only: a right password is never refused for what
        // others tried (per client, `LOGIN_RATE_LIMIT_PER_EMAIL`; from
        // anywhere, ten times that).
        let client = client_address(http, state.settings.api.trust_forwarded_for);
        let limit = state.settings.api.rate_limits.login_per_email;
        let budgets = [
            (
                Budget::LoginFailuresPerEmailAndClient,
                address_key(&format!("{address}\u{1f}{client}")),
                limit,
            ),
            (
                Budget::LoginFailuresPerEmail,
                address_key(&address),
                limit.saturating_mul(10),
            ),
        ];
        for (budget, subject, limit) in &budgets {
            state.throttle.check(*budget, subject, *limit).await?;
        }
        let credentials = users::credentials(&state.dependencies.pool, &address).await?;
        let matches = state
            .passwords
            .verify(
                request.password,
                credentials
                    .as_ref()
                    .map(|found| found.password_hash.clone()),
            )
            .await?;
        let Some(credentials) = credentials.filter(|found| matches && found.is_active) else {
            for (budget, subject, limit) in &budgets {
                // This attempt failed either way; a budget it fills refuses
                // the next one.
                let _ = state.throttle.hit(*budget, subject, *limit).await;
            }
            return Err(ApiError::unauthorized(
                "The email or password is not correct.",
            ));
        };
        let profile = credentials.profile;
        if state.settings.api.auth.require_email_verification && !profile.email_verified {
            return Err(ApiError::forbidden(
                "email_not_verified",
                "Verify your email address first (POST /api/v1/auth/verify-email).",
            ));
        }
        let pair = state.sessions.start(profile.id).await?;
        users::record_login(&state.dependencies.pool, profile.id).await?;
        Ok(Json(LoginResponse {
            tokens: pair.into(),
            user: profile.into(),
        }))
    }

    /// Exchanges a refresh token for a new pair. Each refresh token works
    /// once; presenting a used one again ends the whole session. Refreshes
    /// are counted per session (`REFRESH_RATE_LIMIT_PER_SESSION` per 15
    /// minutes): 429 with `Retry-After` beyond.
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
        let refresh_token = body.0.refresh_token.trim();
        let session = sessions::session_of_refresh_token(
            &state.dependencies.pool,
            &tokens::digest(refresh_token),
        )
        .await?;
        if let Some(session) = session {
            state
                .throttle
                .hit(
                    Budget::RefreshPerSession,
                    &session.to_string(),
                    state.settings.api.rate_limits.refresh_per_session,
                )
                .await?;
        }
        let pair = state.sessions.refresh(refresh_token).await?;
        Ok(Json(pair.into()))
    }

    /// Mails a one-time password reset token to the address if it has an
    /// active account. Always 202 with the same body, so it does not tell
    /// which addresses have accounts; an address gets at most 3 reset mails
    /// per 15 minutes.
    #[oai(
        path = "/forgot-password",
        method = "post",
        operation_id = "forgot_password"
    )]
    async fn forgot_password(
        &self,
        state: Data<&AppState>,
        body: JsonBody<ForgotPasswordRequest>,
    ) -> Result<ForgotPasswordResponse, ApiError> {
        let address = normalise_email(&body.0.email);
        tokio::spawn(mail_reset_token(state.0.clone(), address));
        Ok(ForgotPasswordResponse::Accepted(Json(Message {
            message: FORGOT_ANSWER.into(),
        })))
    }

    /// Sets a new password with the token of a reset mail. The token works
    /// once, within `PASSWORD_RESET_TOKEN_TTL_SECS` (30 minutes); every
    /// session of the account ends, its access tokens at their very next
    /// request, and the address counts as verified.
    #[oai(
        path = "/reset-password",
        method = "post",
        operation_id = "reset_password"
    )]
    async fn reset_password(
        &self,
        state: Data<&AppState>,
        body: JsonBody<ResetPasswordRequest>,
    ) -> Result<NoContent, ApiError> {
        let request = body.0;
        let password_hash = state.passwords.hash(request.new_password).await?;
        let reset = users::reset_password(
            &state.dependencies.pool,
            &tokens::digest(request.token.trim()),
            &password_hash,
        )
        .await?;
        let Some(reset) = reset else {
            return Err(ApiError::invalid_field(
                "body.token",
                "is not a valid reset token, or it was used or has expired",
            ));
        };
        state.sessions.mark_revoked(&reset.ended_sessions).await;
        tracing::info!(
            user = %reset.user,
            sessions_ended = reset.ended_sessions.len(),
            "password reset"
        );
        Ok(NoContent::Done)
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
        let pool = &state.dependencies.pool;
        let hash = users::password_hash(pool, caller).await?;
        let matches = state
            .passwords
            .verify(request.current_password, Some(hash))
            .await?;
        if !matches {
            return Err(ApiError::invalid_field(
                "body.current_password",
                "is not the current password",
            ));
        }
        let new_hash = state.passwords.hash(request.new_password).await?;
        users::set_password_hash(pool, caller, &new_hash).await?;
        state
            .sessions
            .revoke_others(caller, RevokeReason::PasswordChanged)
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
    fn new_passwords_are_checked() {
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
