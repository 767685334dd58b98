//! Who is asking and what they may see: roles, scopes and the [`Caller`] every
//! tenancy-enforcing query takes.
//!
//! A row's scope is where it is visible: `personal` (its creator), `organization`
//! (the members of one organisation) or `system` (created by a super admin,
//! visible to organisations that enabled global data). The database folds the
//! scope into `scope_key` (`user:<id>`, `org:<id>`, `system`); a caller sees a
//! row exactly when the row's `scope_key` is one of [`Caller::visible_scope_keys`],
//! so visibility is one indexed `= ANY($n)` in every query.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ids::{OrganizationId, SessionId, UserId};

/// A user's role, from least to most powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Signed up, in no organisation: sees only their own data.
    User,
    /// A member of one organisation.
    OrgMember,
    /// Manages one organisation: its whitelist, join token and global access.
    OrgAdmin,
    /// Creates organisations and manages the ones they created.
    TenantAdmin,
    /// Operates the platform; creates system (global) data.
    SuperAdmin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::User,
        Role::OrgMember,
        Role::OrgAdmin,
        Role::TenantAdmin,
        Role::SuperAdmin,
    ];

    /// Whether a user of this role, a member of `member_of`, may change every
    /// row of a scope whoever created it: super admins system rows, an
    /// organisation's org and tenant admins that organisation's rows.
    pub fn administers(
        self,
        member_of: Option<OrganizationId>,
        access_level: AccessLevel,
        organization_id: Option<OrganizationId>,
    ) -> bool {
        match access_level {
            AccessLevel::System => self == Role::SuperAdmin,
            AccessLevel::Organization => {
                organization_id.is_some()
                    && organization_id == member_of
                    && matches!(self, Role::OrgAdmin | Role::TenantAdmin)
            }
            AccessLevel::Personal => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::OrgMember => "org_member",
            Self::OrgAdmin => "org_admin",
            Self::TenantAdmin => "tenant_admin",
            Self::SuperAdmin => "super_admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| {
                format!("expected one of user, org_member, org_admin, tenant_admin, super_admin, got {text:?}")
            })
    }
}

/// Where a row is visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLevel {
    Personal,
    Organization,
    System,
}

impl AccessLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Personal => "personal",
            Self::Organization => "organization",
            Self::System => "system",
        }
    }
}

impl FromStr for AccessLevel {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "personal" => Ok(Self::Personal),
            "organization" => Ok(Self::Organization),
            "system" => Ok(Self::System),
            other => Err(format!("unknown access level {other:?}")),
        }
    }
}

/// The scope a new row is written in, as stored: level and organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteScope {
    pub access_level: AccessLevel,
    pub organization_id: Option<OrganizationId>,
}

/// The `scope_key` the database derives for a row of this scope (see the
/// `scope_key` SQL function): `system`, `org:<id>` or `user:<id>`.
pub fn scope_key(
    access_level: AccessLevel,
    organization_id: Option<OrganizationId>,
    created_by: Option<UserId>,
) -> String {
    match access_level {
        AccessLevel::System => "system".to_owned(),
        AccessLevel::Organization => {
            format!("org:{}", organization_id.map_or(Uuid::nil(), Uuid::from))
        }
        AccessLevel::Personal => format!("user:{}", created_by.map_or(Uuid::nil(), Uuid::from)),
    }
}

/// The authenticated user behind a request, as every query needs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub email: String,
    pub role: Role,
    pub organization_id: Option<OrganizationId>,
    /// Whether the caller's organisation enabled global (system) data.
    pub organization_global_access: bool,
}

impl Caller {
    /// The `scope_key`s of every row this caller may see.
    pub fn visible_scope_keys(&self) -> Vec<String> {
        let mut keys = vec![scope_key(AccessLevel::Personal, None, Some(self.user_id))];
        if let Some(organization) = self.organization_id {
            keys.push(scope_key(
                AccessLevel::Organization,
                Some(organization),
                None,
            ));
        }
        if self.role == Role::SuperAdmin || self.organization_global_access {
            keys.push(scope_key(AccessLevel::System, None, None));
        }
        keys
    }

    /// Where this caller's new companies and predictions go: super admins write
    /// system data, organisation members their organisation's, everyone else
    /// their own.
    pub fn write_scope(&self) -> WriteScope {
        match (self.role, self.organization_id) {
            (Role::SuperAdmin, _) => WriteScope {
                access_level: AccessLevel::System,
                organization_id: None,
            },
            (_, Some(organization)) => WriteScope {
                access_level: AccessLevel::Organization,
                organization_id: Some(organization),
            },
            (_, None) => WriteScope {
                access_level: AccessLevel::Personal,
                organization_id: None,
            },
        }
    }

    /// Whether the caller may change or delete a visible row of this scope:
    /// its creator; for organisation rows also that organisation's admins; for
    /// system rows only super admins.
    pub fn may_modify(
        &self,
        access_level: AccessLevel,
        organization_id: Option<OrganizationId>,
        created_by: Option<UserId>,
    ) -> bool {
        self.administers(access_level, organization_id)
            || (access_level != AccessLevel::System && created_by == Some(self.user_id))
    }

    /// Whether the caller manages the organisation `id` created by
    /// `created_by`: super admins any, tenant admins the ones they created or
    /// belong to, org admins their own.
    pub fn manages(&self, id: OrganizationId, created_by: Option<UserId>) -> bool {
        match self.role {
            Role::SuperAdmin => true,
            Role::TenantAdmin => {
                created_by == Some(self.user_id) || self.organization_id == Some(id)
            }
            Role::OrgAdmin => self.organization_id == Some(id),
            Role::User | Role::OrgMember => false,
        }
    }

    /// Whether the caller may change every row of this scope, whoever created
    /// it (see [`Role::administers`]).
    pub fn administers(
        &self,
        access_level: AccessLevel,
        organization_id: Option<OrganizationId>,
    ) -> bool {
        self.role
            .administers(self.organization_id, access_level, organization_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, organization_id: Option<OrganizationId>, global: bool) -> Caller {
        Caller {
            user_id: UserId(Uuid::from_u128(1)),
            session_id: SessionId(Uuid::from_u128(2)),
            email: "a@example.com".into(),
            role,
            organization_id,
            organization_global_access: global,
        }
    }

    #[test]
    fn visible_scopes_follow_membership_and_global_access() {
        let org = OrganizationId(Uuid::from_u128(9));
        assert_eq!(
            caller(Role::User, None, false).visible_scope_keys(),
            vec![format!("user:{}", Uuid::from_u128(1))]
        );
        assert_eq!(
            caller(Role::OrgMember, Some(org), false).visible_scope_keys(),
            vec![format!("user:{}", Uuid::from_u128(1)), format!("org:{org}")]
        );
        assert!(
            caller(Role::OrgMember, Some(org), true)
                .visible_scope_keys()
                .contains(&"system".to_owned())
        );
        assert!(
            caller(Role::SuperAdmin, None, false)
                .visible_scope_keys()
                .contains(&"system".to_owned())
        );
    }

    #[test]
    fn write_scope_by_role() {
        let org = OrganizationId(Uuid::from_u128(9));
        assert_eq!(
            caller(Role::SuperAdmin, Some(org), false)
                .write_scope()
                .access_level,
            AccessLevel::System
        );
        assert_eq!(
            caller(Role::OrgMember, Some(org), false).write_scope(),
            WriteScope {
                access_level: AccessLevel::Organization,
                organization_id: Some(org)
            }
        );
        assert_eq!(
            caller(Role::User, None, false).write_scope().access_level,
            AccessLevel::Personal
        );
    }

    #[test]
    fn only_creators_admins_and_super_admins_modify() {
        let org = OrganizationId(Uuid::from_u128(9));
        let other = Some(UserId(Uuid::from_u128(5)));
        let member = caller(Role::OrgMember, Some(org), false);
        let admin = caller(Role::OrgAdmin, Some(org), false);
        assert!(!member.may_modify(AccessLevel::Organization, Some(org), other));
        assert!(member.may_modify(AccessLevel::Organization, Some(org), Some(member.user_id)));
        assert!(admin.may_modify(AccessLevel::Organization, Some(org), other));
        assert!(!admin.may_modify(
            AccessLevel::Organization,
            Some(OrganizationId(Uuid::from_u128(8))),
            other
        ));
        assert!(!admin.may_modify(AccessLevel::System, None, Some(admin.user_id)));
        assert!(caller(Role::SuperAdmin, None, false).may_modify(AccessLevel::System, None, other));
        assert!(!member.may_modify(AccessLevel::Personal, None, other));
    }

    #[test]
    fn only_the_admins_of_a_scope_administer_it() {
        let org = OrganizationId(Uuid::from_u128(9));
        let other = Some(OrganizationId(Uuid::from_u128(8)));
        let organization = AccessLevel::Organization;
        assert!(caller(Role::OrgAdmin, Some(org), false).administers(organization, Some(org)));
        assert!(caller(Role::TenantAdmin, Some(org), false).administers(organization, Some(org)));
        assert!(!caller(Role::OrgMember, Some(org), false).administers(organization, Some(org)));
        assert!(!caller(Role::OrgAdmin, Some(org), false).administers(organization, other));
        assert!(!caller(Role::OrgAdmin, None, false).administers(organization, None));
        assert!(!caller(Role::SuperAdmin, None, false).administers(AccessLevel::Personal, None));
        assert!(caller(Role::SuperAdmin, None, false).administers(AccessLevel::System, None));
    }

    #[test]
    fn roles_round_trip_through_text() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("admin".parse::<Role>().is_err());
    }
}
