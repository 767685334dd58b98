//! Organisations (tenants): creation, joining with a join token and the
//! whitelist, the join token itself, global-data access, members and their roles.
//!
//! An organisation is visible to its members, to the tenant admin who created
//! it and to super admins; to anyone else it does not exist (`NotFound`). It is
//! managed by its org admins, its creating tenant admin and super admins; only
//! they see its join token.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use super::sessions::{self, RevokeReason};
use super::users::{PROFILE_COLUMNS, UserProfile};
use super::{Caller, DomainError, OrganizationId, Role, SessionId, UserId};

const COLUMNS: &str = "id, name, description, join_token, join_enabled, \
                       allow_global_data_access, created_by, created_at";

/// An organisation as one caller may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: OrganizationId,
    pub name: String,
    pub description: Option<String>,
    /// Whether members see system (global) companies and predictions.
    pub allow_global_data_access: bool,
    pub join_enabled: bool,
    /// Present only for callers who manage the organisation.
    pub join_token: Option<String>,
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
}

/// An organisation row, join token included.
struct Stored {
    organization: Organization,
    join_token: String,
}

impl Stored {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            organization: Organization {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                description: row.try_get("description")?,
                allow_global_data_access: row.try_get("allow_global_data_access")?,
                join_enabled: row.try_get("join_enabled")?,
                join_token: None,
                created_by: row.try_get("created_by")?,
                created_at: row.try_get("created_at")?,
            },
            join_token: row.try_get("join_token")?,
        })
    }

    /// Whether `caller` may see the organisation at all.
    fn visible_to(&self, caller: &Caller) -> bool {
        caller.role == Role::SuperAdmin
            || caller.organization_id == Some(self.organization.id)
            || self.organization.created_by == Some(caller.user_id)
    }

    /// Whether `caller` manages the organisation.
    fn managed_by(&self, caller: &Caller) -> bool {
        caller.manages(self.organization.id, self.organization.created_by)
    }

    /// The organisation as `caller` may see it: the join token for managers only.
    fn seen_by(self, caller: &Caller) -> Organization {
        let join_token = self.managed_by(caller).then_some(self.join_token);
        Organization {
            join_token,
            ..self.organization
        }
    }
}

/// A new organisation: name and description trimmed, an empty description as `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrganization {
    pub name: String,
    pub description: Option<String>,
}

/// An address allowed to join an organisation with its join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhitelistEntry {
    /// Lower-case.
    pub email: String,
    pub added_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
}

impl WhitelistEntry {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            email: row.try_get("email")?,
            added_by: row.try_get("added_by")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// The roles a manager may give a member of their organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberRole {
    OrgMember,
    OrgAdmin,
}

impl MemberRole {
    pub fn role(self) -> Role {
        match self {
            Self::OrgMember => Role::OrgMember,
            Self::OrgAdmin => Role::OrgAdmin,
        }
    }
}

impl FromStr for MemberRole {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.parse::<Role>() {
            Ok(Role::OrgMember) => Ok(Self::OrgMember),
            Ok(Role::OrgAdmin) => Ok(Self::OrgAdmin),
            _ => Err(format!("expected org_member or org_admin, got {text:?}")),
        }
    }
}

/// The organisation when `caller` may see it.
async fn visible(
    pool: &PgPool,
    caller: &Caller,
    id: OrganizationId,
) -> Result<Stored, DomainError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM organizations WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    match row.as_ref().map(Stored::from_row).transpose()? {
        Some(stored) if stored.visible_to(caller) => Ok(stored),
        _ => Err(DomainError::NotFound {
            what: "organization",
        }),
    }
}

/// Checks that `caller` manages the organisation: `NotFound` when they cannot
/// see it, `InsufficientRole` when they can but do not manage it.
async fn ensure_manages(
    pool: &PgPool,
    caller: &Caller,
    id: OrganizationId,
) -> Result<(), DomainError> {
    if visible(pool, caller, id).await?.managed_by(caller) {
        Ok(())
    } else {
        Err(DomainError::InsufficientRole(
            "Only the organization's admins may do this.".into(),
        ))
    }
}

/// Creates an organisation (tenant admins and super admins) with `join_token`.
/// A creator in no organisation yet becomes a member of this one.
pub async fn create(
    pool: &PgPool,
    caller: &Caller,
    organization: &NewOrganization,
    join_token: &str,
) -> Result<Organization, DomainError> {
    let creators = [Role::TenantAdmin, Role::SuperAdmin];
    if !creators.contains(&caller.role) {
        return Err(DomainError::InsufficientRole(format!(
            "This operation needs the role {}; you are {}.",
            creators.map(Role::as_str).join(" or "),
            caller.role
        )));
    }
    let mut tx = pool.begin().await?;
    let row = sqlx::query(&format!(
        "INSERT INTO organizations (name, description, join_token, created_by) \
         VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
    ))
    .bind(&organization.name)
    .bind(&organization.description)
    .bind(join_token)
    .bind(caller.user_id)
    .fetch_one(&mut *tx)
    .await?;
    let created = Stored::from_row(&row)?;
    sqlx::query("UPDATE users SET organization_id = $2 WHERE id = $1 AND organization_id IS NULL")
        .bind(caller.user_id)
        .bind(created.organization.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(created.seen_by(caller))
}

/// An organisation the caller may see.
pub async fn get(
    pool: &PgPool,
    caller: &Caller,
    id: OrganizationId,
) -> Result<Organization, DomainError> {
    Ok(visible(pool, caller, id).await?.seen_by(caller))
}

/// The organisations the caller belongs to or created, oldest first.
pub async fn of_caller(pool: &PgPool, caller: &Caller) -> Result<Vec<Organization>, DomainError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM organizations WHERE id = $1 OR created_by = $2 \
         ORDER BY created_at, id"
    ))
    .bind(caller.organization_id)
    .bind(caller.user_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| Ok(Stored::from_row(row)?.seen_by(caller)))
        .collect()
}

/// Makes the caller a member of the organisation of `join_token`. Only users
/// in no organisation may join, and only when their address is on the
/// organisation's whitelist; an unknown or disabled token is `NotFound`.
pub async fn join(
    pool: &PgPool,
    caller: &Caller,
    join_token: &str,
) -> Result<Organization, DomainError> {
    if caller.organization_id.is_some() {
        return Err(DomainError::AlreadyMember);
    }
    if caller.role != Role::User {
        return Err(DomainError::InsufficientRole(
            "Only users outside any organization can join one.".into(),
        ));
    }
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM organizations WHERE join_token = $1 AND join_enabled"
    ))
    .bind(join_token)
    .fetch_optional(pool)
    .await?
    .ok_or(DomainError::NotFound { what: "join token" })?;
    let organization = Stored::from_row(&row)?;
    let whitelisted: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM organization_whitelist \
                        WHERE organization_id = $1 AND email = $2)",
    )
    .bind(organization.organization.id)
    .bind(&caller.email)
    .fetch_one(pool)
    .await?;
    if !whitelisted {
        return Err(DomainError::NotWhitelisted);
    }
    let joined = sqlx::query(
        "UPDATE users SET organization_id = $2, role = 'org_member' \
         WHERE id = $1 AND organization_id IS NULL",
    )
    .bind(caller.user_id)
    .bind(organization.organization.id)
    .execute(pool)
    .await?;
    if joined.rows_affected() == 0 {
        return Err(DomainError::AlreadyMember);
    }
    Ok(organization.seen_by(caller))
}

/// The addresses allowed to join, by address (managers only).
pub async fn whitelist(
    pool: &PgPool,
    caller: &Caller,
    id: OrganizationId,
) -> Result<Vec<WhitelistEntry>, DomainError> {
    ensure_manages(pool, caller, id).await?;
    let rows = sqlx::query(
        "SELECT email, added_by, created_at FROM organization_whitelist \
         WHERE organization_id = $1 ORDER BY email",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(WhitelistEntry::from_row)
        .collect::<Result<_, _>>()?)
}

/// Allows a (lower-case) address to join (managers only); adding one that is
/// there already returns its entry.
pub async fn add_to_whitelist(
    pool: &PgPool,
    caller: &Caller,
    id: OrganizationId,
    email: &str,
) -> Result<WhitelistEntry, DomainError> {
    ensure_manages(pool, caller, id).await?;
    let row = sqlx::query(
        "INSERT INTO organization_whitelist (organization_id, email, added_by) \
         VALUES ($1, $2, $3) \
         ON CONFLICT (organization_id, email) DO UPDATE SET email = excluded.email \
         RETURNING email, added_by, created_at",
    )
    .bind(id)
    .bind(email)
    .bind(caller.user_id)
    .fetch_one(pool)
    .await?;
    Ok(WhitelistEntry::from_row(&row)?)
}

/// Removes a (lower-case) address from the whitelist (managers only); whether
/// it was there. Members who already joined stay members.
pub async fn remove_from_whitelist(
    pool: &PgPool,
    caller: &Caller,
    id: OrganizationId,
    email: &str,
) -> Result<bool, DomainError> {
    ensure_manages(pool, caller, id).await?;
    let removed =
        sqlx::query("DELETE FROM organization_whitelist WHERE organization_id = $1 AND email = $2")
            .bind(id)
            .bind(email)
            .execute(pool)
            .await?;
    Ok(removed.rows_affected() > 0)
}

/// Replaces the join token with `join_token`; the old one stops working
/// (managers only).
pub async fn replace_join_token(
    pool: &PgPool,
    caller: &Caller,
    id: OrganizationId,
    join_token: &str,
) -> Result<Organization, DomainError> {
    ensure_manages(pool, caller, id).await?;
    let row = sqlx::query(&format!(
        "UPDATE organizations SET join_token = $2 WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(join_token)
    .fetch_one(pool)
    .await?;
    Ok(Stored::from_row(&row)?.seen_by(caller))
}

/// Lets members see system (global) data, or stops it (managers only).
pub async fn set_global_access(
    pool: &PgPool,
    caller: &Caller,
    id: OrganizationId,
    enabled: bool,
) -> Result<Organization, DomainError> {
    ensure_manages(pool, caller, id).await?;
    let row = sqlx::query(&format!(
        "UPDATE organizations SET allow_global_data_access = $2 WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(enabled)
    .fetch_one(pool)
    .await?;
    Ok(Stored::from_row(&row)?.seen_by(caller))
}

/// The members, by address (managers only).
pub async fn members(
    pool: &PgPool,
    caller: &Caller,
    id: OrganizationId,
) -> Result<Vec<UserProfile>, DomainError> {
    ensure_manages(pool, caller, id).await?;
    let rows = sqlx::query(&format!(
        "SELECT {PROFILE_COLUMNS} FROM users WHERE organization_id = $1 ORDER BY email"
    ))
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(UserProfile::from_row)
        .collect::<Result<_, _>>()?)
}

/// Makes a member an org admin or back (managers only). Only org members and
/// org admins of this organisation can be changed; anyone else is `NotFound`.
/// The last admin of an organisation with other members stays one (see
/// [`ensure_an_admin_remains`]).
pub async fn set_member_role(
    pool: &PgPool,
    caller: &Caller,
    id: OrganizationId,
    member: UserId,
    role: MemberRole,
) -> Result<UserProfile, DomainError> {
    ensure_manages(pool, caller, id).await?;
    let mut tx = pool.begin().await?;
    let current = lock_membership(&mut tx, id, member).await?;
    if !matches!(current, Some(Role::OrgMember | Role::OrgAdmin)) {
        return Err(DomainError::NotFound {
            what: "member of this organization",
        });
    }
    if current == Some(Role::OrgAdmin) && role == MemberRole::OrgMember {
        ensure_an_admin_remains(&mut tx, id, member).await?;
    }
    let row = sqlx::query(&format!(
        "UPDATE users SET role = $2 WHERE id = $1 RETURNING {PROFILE_COLUMNS}"
    ))
    .bind(member)
    .bind(role.role().as_str())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(UserProfile::from_row(&row)?)
}

/// A member who left or was removed: their profile after, and the sessions
/// that ended with their membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departure {
    pub profile: UserProfile,
    pub ended_sessions: Vec<SessionId>,
}

/// Removes a member from the organisation (managers only). Org members and
/// org admins may be removed by any manager; a tenant or super admin member
/// only by a super admin. The member's address leaves the whitelist, so the
/// join token alone does not bring them back. See [`depart`] for the rest.
pub async fn remove_member(
    pool: &PgPool,
    caller: &Caller,
    id: OrganizationId,
    member: UserId,
) -> Result<Departure, DomainError> {
    ensure_manages(pool, caller, id).await?;
    let mut tx = pool.begin().await?;
    let role = lock_membership(&mut tx, id, member)
        .await?
        .ok_or(DomainError::NotFound {
            what: "member of this organization",
        })?;
    if role >= Role::TenantAdmin && caller.role != Role::SuperAdmin && member != caller.user_id {
        return Err(DomainError::InsufficientRole(format!(
            "Only super admins may remove a {role} from an organization."
        )));
    }
    let departure = depart(
        &mut tx,
        id,
        member,
        role,
        RevokeReason::RemovedFromOrganization,
    )
    .await?;
    sqlx::query("DELETE FROM organization_whitelist WHERE organization_id = $1 AND email = $2")
        .bind(id)
        .bind(&departure.profile.email)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(departure)
}

/// The caller leaves the organisation (see [`depart`]). An organisation they
/// see but do not belong to is a conflict.
pub async fn leave(
    pool: &PgPool,
    caller: &Caller,
    id: OrganizationId,
) -> Result<Departure, DomainError> {
    visible(pool, caller, id).await?;
    let mut tx = pool.begin().await?;
    let role = lock_membership(&mut tx, id, caller.user_id)
        .await?
        .ok_or_else(|| {
            DomainError::Conflict("You are not a member of this organization.".into())
        })?;
    let departure = depart(
        &mut tx,
        id,
        caller.user_id,
        role,
        RevokeReason::LeftOrganization,
    )
    .await?;
    tx.commit().await?;
    Ok(departure)
}

/// Locks the organisation (so that departures and role changes in it happen
/// one at a time and the last-admin check holds among them) and the member's
/// row; the member's role, or `None` when they are not a member. A
/// deactivation (`users::set_active`) takes neither this lock nor the check:
/// it is the managers' emergency stop and may leave an organisation without
/// an active admin.
async fn lock_membership(
    connection: &mut PgConnection,
    id: OrganizationId,
    member: UserId,
) -> Result<Option<Role>, DomainError> {
    sqlx::query("SELECT id FROM organizations WHERE id = $1 FOR NO KEY UPDATE")
        .bind(id)
        .execute(&mut *connection)
        .await?;
    let role: Option<String> = sqlx::query_scalar(
        "SELECT role FROM users WHERE id = $1 AND organization_id = $2 FOR UPDATE",
    )
    .bind(member)
    .bind(id)
    .fetch_optional(&mut *connection)
    .await?;
    role.map(|role| {
        role.parse()
            .map_err(|problem: String| sqlx::Error::Decode(problem.into()))
    })
    .transpose()
    .map_err(Into::into)
}

/// Refuses to take `member`'s admin rights from the organisation when no
/// other active member would manage it while others remain (`Conflict`).
/// Runs under [`lock_membership`]'s lock on the organisation.
async fn ensure_an_admin_remains(
    connection: &mut PgConnection,
    id: OrganizationId,
    member: UserId,
) -> Result<(), DomainError> {
    let (others, admins): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE is_active AND \
                role IN ('org_admin', 'tenant_admin', 'super_admin')) \
         FROM users WHERE organization_id = $1 AND id <> $2",
    )
    .bind(id)
    .bind(member)
    .fetch_one(&mut *connection)
    .await?;
    if others > 0 && admins == 0 {
        return Err(DomainError::Conflict(
            "This is the organization's last admin and it has other members; make another \
             member org_admin first."
                .into(),
        ));
    }
    Ok(())
}

/// Takes `member` (of `role`) out of the organisation: an org member or org
/// admin becomes a `user` again, a tenant or super admin keeps their role, and
/// every session of theirs ends (their cached callers must not outlive the
/// membership). What they created in the organisation's scope stays the
/// organisation's. The last active admin of an organisation that has other
/// members may not go: they make another member `org_admin` first.
async fn depart(
    connection: &mut PgConnection,
    id: OrganizationId,
    member: UserId,
    role: Role,
    reason: RevokeReason,
) -> Result<Departure, DomainError> {
    if role >= Role::OrgAdmin {
        ensure_an_admin_remains(connection, id, member).await?;
    }
    let row = sqlx::query(&format!(
        "UPDATE users SET organization_id = NULL, \
         role = CASE WHEN role IN ('org_member', 'org_admin') THEN 'user' ELSE role END \
         WHERE id = $1 RETURNING {PROFILE_COLUMNS}"
    ))
    .bind(member)
    .fetch_one(&mut *connection)
    .await?;
    let profile = UserProfile::from_row(&row)?;
    let ended_sessions = sessions::revoke_all(connection, member, reason).await?;
    Ok(Departure {
        profile,
        ended_sessions,
    })
}
