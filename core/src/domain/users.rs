//! Accounts: registration with e-mail verification (answering alike whether
//! or not the address has an account), password reset by mailed token, the
//! credentials sign-in checks, passwords, and the profile a user sees and
//! changes.
//!
//! Password hashes are made and checked by the caller (the API hashes off its
//! async runtime); this module only stores and returns them.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::email::{self, OutgoingMail, ResetToken, VerificationToken};
use super::sessions::{self, RevokeReason};
use super::{Caller, DomainError, OrganizationId, Role, SessionId, UserId, parse_column};

/// The columns of a [`UserProfile`].
pub(crate) const PROFILE_COLUMNS: &str = "id, email, first_name, last_name, role, \
                                          organization_id, \
                                          email_verified_at IS NOT NULL AS email_verified, \
                                          is_active, created_at";

/// A user as they, and the managers of their organisation, see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProfile {
    pub id: UserId,
    /// Lower-case.
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub role: Role,
    pub organization_id: Option<OrganizationId>,
    pub email_verified: bool,
    /// A deactivated user cannot sign in.
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

impl UserProfile {
    /// A row with [`PROFILE_COLUMNS`].
    pub(crate) fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            first_name: row.try_get("first_name")?,
            last_name: row.try_get("last_name")?,
            role: parse_column(row, "role")?,
            organization_id: row.try_get("organization_id")?,
            email_verified: row.try_get("email_verified")?,
            is_active: row.try_get("is_active")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// An account to create: the address lower-cased, the password hashed, empty
/// names as `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub email: String,
    pub password_hash: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// The mails a registration may queue; which one goes out depends on what the
/// address already has, and only its owner reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationMails {
    /// To a new (or replaced) account: carries the verification token.
    pub verify: OutgoingMail,
    /// To a verified account's owner: someone tried to register; sign in or
    /// reset the password. `None` sends no such notice (the caller's budget
    /// of notices to this address is used up).
    pub already_registered: Option<OutgoingMail>,
    /// To the address of an unverified account whose verification is still
    /// pending: someone tried to register again; a password reset takes it
    /// over. `None` as above.
    pub registration_pending: Option<OutgoingMail>,
}

/// What a registration did. The API answers every outcome alike, so that
/// registering does not tell which addresses have accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// A new account awaits verification.
    Created(UserProfile),
    /// An unverified account that never signed in and whose verification
    /// tokens had all expired was given the new password, names and token.
    Replaced(UserProfile),
    /// The address has an account this registration may not take; its owner
    /// was mailed.
    Taken,
}

/// Registers `user` in one transaction with its verification token and the
/// mail that tells the address's owner what happened. A new address becomes an
/// account; an abandoned registration (unverified, never signed in, every
/// verification token expired) is replaced, so an address cannot be squatted
/// by registering it first; any other existing account is left as it is.
pub async fn register(
    pool: &PgPool,
    user: &NewUser,
    verification: &VerificationToken,
    mails: &RegistrationMails,
) -> Result<Registration, DomainError> {
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(&format!(
        "INSERT INTO users (email, password_hash, first_name, last_name) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (email) DO NOTHING RETURNING {PROFILE_COLUMNS}"
    ))
    .bind(&user.email)
    .bind(&user.password_hash)
    .bind(&user.first_name)
    .bind(&user.last_name)
    .fetch_optional(&mut *tx)
    .await?;
    let (profile, replaced) = match inserted {
        Some(row) => (UserProfile::from_row(&row)?, false),
        None => {
            let existing = sqlx::query(
                "SELECT id, email_verified_at IS NOT NULL AS verified, \
                        (email_verified_at IS NULL AND last_login_at IS NULL AND is_active \
                         AND NOT EXISTS (SELECT 1 FROM email_tokens t WHERE t.user_id = users.id \
                             AND t.purpose = 'verify_email' AND t.used_at IS NULL \
                             AND t.expires_at > now())) AS abandoned \
                 FROM users WHERE email = $1 FOR UPDATE",
            )
            .bind(&user.email)
            .fetch_one(&mut *tx)
            .await?;
            let id: UserId = existing.try_get("id")?;
            if existing.try_get("abandoned")? {
                sqlx::query("DELETE FROM email_tokens WHERE user_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let row = sqlx::query(&format!(
                    "UPDATE users SET password_hash = $2, first_name = $3, last_name = $4, \
                            created_at = now(), updated_at = now() \
                     WHERE id = $1 RETURNING {PROFILE_COLUMNS}"
                ))
                .bind(id)
                .bind(&user.password_hash)
                .bind(&user.first_name)
                .bind(&user.last_name)
                .fetch_one(&mut *tx)
                .await?;
                (UserProfile::from_row(&row)?, true)
            } else {
                let mail = if existing.try_get("verified")? {
                    &mails.already_registered
                } else {
                    &mails.registration_pending
                };
                if let Some(mail) = mail {
                    email::queue(&mut tx, mail).await?;
                }
                tx.commit().await?;
                return Ok(Registration::Taken);
            }
        }
    };
    email::create_verification_token(&mut tx, profile.id, verification).await?;
    email::queue(&mut tx, &mails.verify).await?;
    tx.commit().await?;
    Ok(if replaced {
        Registration::Replaced(profile)
    } else {
        Registration::Created(profile)
    })
}

/// Stores a password reset token for the active account of `email` (lower
/// case) and queues `mail`, which carries it, in one transaction; `false`,
/// with nothing stored or queued, when there is no such account.
pub async fn request_password_reset(
    pool: &PgPool,
    email: &str,
    token: &ResetToken,
    mail: &OutgoingMail,
) -> Result<bool, DomainError> {
    let mut tx = pool.begin().await?;
    let user: Option<UserId> =
        sqlx::query_scalar("SELECT id FROM users WHERE email = $1 AND is_active")
            .bind(email)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(user) = user else {
        return Ok(false);
    };
    email::create_reset_token(&mut tx, user, token).await?;
    email::queue(&mut tx, mail).await?;
    tx.commit().await?;
    Ok(true)
}

/// What a password reset did: whose password changed and which sessions it
/// ended (every one of theirs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordReset {
    pub user: UserId,
    pub ended_sessions: Vec<SessionId>,
}

/// Uses up a reset token (and every other reset token of its user), sets the
/// new password hash and ends every session of the user, in one transaction.
/// Receiving the token proves the mailbox, so the address counts as verified.
/// `None`, changing nothing, when the token is unknown, used or expired, or
/// its account was deactivated.
pub async fn reset_password(
    pool: &PgPool,
    token_sha256: &[u8],
    password_hash: &str,
) -> Result<Option<PasswordReset>, DomainError> {
    let mut tx = pool.begin().await?;
    let Some(user) = email::use_reset_token(&mut tx, token_sha256).await? else {
        return Ok(None);
    };
    let changed = sqlx::query(
        "UPDATE users SET password_hash = $2, updated_at = now(), \
                email_verified_at = coalesce(email_verified_at, now()) \
         WHERE id = $1 AND is_active",
    )
    .bind(user)
    .bind(password_hash)
    .execute(&mut *tx)
    .await?;
    if changed.rows_affected() == 0 {
        return Ok(None);
    }
    let ended_sessions = sessions::revoke_all(&mut tx, user, RevokeReason::PasswordChanged).await?;
    tx.commit().await?;
    Ok(Some(PasswordReset {
        user,
        ended_sessions,
    }))
}

/// Marks the address of the token's user verified, using the token up;
/// `false` when the token is unknown, used or expired.
pub async fn verify_email(pool: &PgPool, token_sha256: &[u8]) -> Result<bool, DomainError> {
    let mut tx = pool.begin().await?;
    let Some(user) = email::use_verification_token(&mut tx, token_sha256).await? else {
        return Ok(false);
    };
    sqlx::query(
        "UPDATE users SET email_verified_at = coalesce(email_verified_at, now()) WHERE id = $1",
    )
    .bind(user)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// What sign-in checks a password against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub profile: UserProfile,
    pub password_hash: String,
    /// A deactivated user cannot sign in.
    pub is_active: bool,
}

/// The credentials of the account with this (lower-case) address, if any.
pub async fn credentials(pool: &PgPool, email: &str) -> Result<Option<Credentials>, DomainError> {
    let row = sqlx::query(&format!(
        "SELECT {PROFILE_COLUMNS}, password_hash FROM users WHERE email = $1"
    ))
    .bind(email)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let profile = UserProfile::from_row(&row)?;
    Ok(Some(Credentials {
        is_active: profile.is_active,
        profile,
        password_hash: row.try_get("password_hash")?,
    }))
}

/// Records that `user` signed in now.
pub async fn record_login(pool: &PgPool, user: UserId) -> Result<(), DomainError> {
    sqlx::query("UPDATE users SET last_login_at = now() WHERE id = $1")
        .bind(user)
        .execute(pool)
        .await?;
    Ok(())
}

/// The caller's password hash, to check their current password against.
pub async fn password_hash(pool: &PgPool, caller: &Caller) -> Result<String, DomainError> {
    let hash = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(caller.user_id)
        .fetch_optional(pool)
        .await?;
    hash.ok_or(DomainError::NotFound { what: "user" })
}

/// Replaces the caller's password hash.
pub async fn set_password_hash(
    pool: &PgPool,
    caller: &Caller,
    password_hash: &str,
) -> Result<(), DomainError> {
    sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
        .bind(caller.user_id)
        .bind(password_hash)
        .execute(pool)
        .await?;
    Ok(())
}

/// The caller's profile.
pub async fn profile(pool: &PgPool, caller: &Caller) -> Result<UserProfile, DomainError> {
    let row = sqlx::query(&format!(
        "SELECT {PROFILE_COLUMNS} FROM users WHERE id = $1"
    ))
    .bind(caller.user_id)
    .fetch_optional(pool)
    .await?;
    match row {
        Some(row) => Ok(UserProfile::from_row(&row)?),
        None => Err(DomainError::NotFound { what: "user" }),
    }
}

/// Names to change: `None` leaves a name as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileChanges {
    pub first_name: Option<Option<String>>,
    pub last_name: Option<Option<String>>,
}

/// Changes the caller's names.
pub async fn update_profile(
    pool: &PgPool,
    caller: &Caller,
    changes: &ProfileChanges,
) -> Result<UserProfile, DomainError> {
    let row = sqlx::query(&format!(
        "UPDATE users SET \
           first_name = CASE WHEN $2 THEN $3 ELSE first_name END, \
           last_name = CASE WHEN $4 THEN $5 ELSE last_name END \
         WHERE id = $1 RETURNING {PROFILE_COLUMNS}"
    ))
    .bind(caller.user_id)
    .bind(changes.first_name.is_some())
    .bind(changes.first_name.as_ref().and_then(Option::as_deref))
    .bind(changes.last_name.is_some())
    .bind(changes.last_name.as_ref().and_then(Option::as_deref))
    .fetch_optional(pool)
    .await?;
    match row {
        Some(row) => Ok(UserProfile::from_row(&row)?),
        None => Err(DomainError::NotFound { what: "user" }),
    }
}

/// Deactivates a user (`active` false) or reactivates them. Super admins may
/// change anyone; the managers of an organisation its org members and org
/// admins. A user the caller may not manage does not exist for them
/// (`NotFound`), a tenant or super admin member is `InsufficientRole`, and
/// nobody changes themselves. Deactivation ends every session of the user, in
/// the same transaction; the sessions it ended are returned with the profile.
pub async fn set_active(
    pool: &PgPool,
    caller: &Caller,
    user: UserId,
    active: bool,
) -> Result<(UserProfile, Vec<SessionId>), DomainError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "SELECT u.role, u.organization_id, o.created_by AS organization_created_by \
         FROM users u LEFT JOIN organizations o ON o.id = u.organization_id \
         WHERE u.id = $1 FOR UPDATE OF u",
    )
    .bind(user)
    .fetch_optional(&mut *tx)
    .await?;
    let not_found = || DomainError::NotFound { what: "user" };
    let row = row.ok_or_else(not_found)?;
    let role: Role = parse_column(&row, "role")?;
    let organization: Option<OrganizationId> = row.try_get("organization_id")?;
    let organization_created_by: Option<UserId> = row.try_get("organization_created_by")?;
    let managed = caller.role == Role::SuperAdmin
        || organization.is_some_and(|id| caller.manages(id, organization_created_by));
    if !managed {
        return Err(not_found());
    }
    if user == caller.user_id {
        return Err(DomainError::Forbidden(
            "You cannot deactivate or reactivate your own account.".into(),
        ));
    }
    if role >= Role::TenantAdmin && caller.role != Role::SuperAdmin {
        return Err(DomainError::InsufficientRole(format!(
            "Only super admins may deactivate or reactivate a {role}."
        )));
    }
    let row = sqlx::query(&format!(
        "UPDATE users SET is_active = $2 WHERE id = $1 RETURNING {PROFILE_COLUMNS}"
    ))
    .bind(user)
    .bind(active)
    .fetch_one(&mut *tx)
    .await?;
    let profile = UserProfile::from_row(&row)?;
    let ended = if active {
        Vec::new()
    } else {
        sessions::revoke_all(&mut tx, user, RevokeReason::Deactivated).await?
    };
    tx.commit().await?;
    Ok((profile, ended))
}
