//! IAM instance profiles of the API and worker instances, one per tier, each
//! holding its tier's role. They live under the stack's IAM path
//! (`/accunode/<stack>/`, see `role`), which is how discovery lists them.

use anyhow::Context;

use super::find::adopt;
use super::role::{is_ours, path, tags};
use super::{Changed, Ctx, Known, ResourceKind, Wanted, created, existing, id, resource};
use crate::stack::aws::{EXISTS, GONE, OrAlready, aws_error};
use crate::stack::spec::{Existing, Kind, Resource};

pub struct InstanceProfile;

impl ResourceKind for InstanceProfile {
    fn kind(&self) -> Kind {
        Kind::InstanceProfile
    }

    fn label(&self) -> &'static str {
        "instance profile"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        ["api", "worker"]
            .into_iter()
            .map(|tier| {
                let role = format!("role-{tier}");
                resource(
                    &format!("profile-{tier}"),
                    Kind::InstanceProfile,
                    wanted.name(&format!("{tier}-profile")),
                    &[("role", role.clone())],
                    &[&role],
                )
            })
            .collect()
    }

    async fn discover(&self, ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
        discover(ctx).await
    }

    async fn create(
        &self,
        ctx: &Ctx,
        known: &Known,
        resource: &Resource,
    ) -> anyhow::Result<Existing> {
        create(ctx, known, resource).await
    }

    async fn update(
        &self,
        ctx: &Ctx,
        known: &Known,
        resource: &Resource,
        current: &Existing,
        _changed: &Changed,
    ) -> anyhow::Result<Existing> {
        update(ctx, known, resource, current).await
    }

    async fn delete(&self, ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
        delete(ctx, current).await
    }
}

async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let iam = &ctx.aws.iam;
    let profiles = iam
        .list_instance_profiles()
        .path_prefix(path(ctx))
        .send()
        .await
        .map_err(aws_error)
        .context("cannot list the stack's instance profiles")?;
    let mut found = Vec::new();
    // Some endpoints (moto) ignore the path prefix: check it here too, and take
    // a profile deleted meanwhile (another run) as not there.
    let our_path = path(ctx);
    for profile in profiles
        .instance_profiles()
        .iter()
        .filter(|p| p.path() == our_path)
    {
        let mut component = is_ours(ctx, profile.tags());
        if component.is_none() {
            // ListInstanceProfiles may leave tags out; the path is the stack's, so ask.
            let name = profile.instance_profile_name();
            let detail = match iam
                .get_instance_profile()
                .instance_profile_name(name)
                .send()
                .await
            {
                Ok(detail) => detail,
                Err(error) if crate::stack::aws::error_code(&error) == Some("NoSuchEntity") => {
                    continue;
                }
                Err(error) => return Err(aws_error(error)),
            };
            component = detail
                .instance_profile()
                .and_then(|p| is_ours(ctx, p.tags()));
        }
        if let Some(component) = component {
            found.push(profile_existing(component, profile));
        }
    }
    Ok(found)
}

fn profile_existing(component: String, profile: &aws_sdk_iam::types::InstanceProfile) -> Existing {
    let name = profile.instance_profile_name();
    let roles: Vec<&str> = profile.roles().iter().map(|r| r.role_name()).collect();
    let mut e = existing(
        component,
        Kind::InstanceProfile,
        name.to_owned(),
        name.to_owned(),
        &[("role", roles.join(","))],
    );
    e.aliases.push(profile.arn().to_owned());
    e
}

async fn create(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
    if ctx
        .aws
        .iam
        .create_instance_profile()
        .instance_profile_name(&resource.name)
        .path(path(ctx))
        .set_tags(Some(tags(ctx, resource)?))
        .send()
        .await
        .or_already(EXISTS)?
        .is_none()
    {
        adopt(ctx, resource, discover(ctx).await?)?;
    }
    let mut current = created(resource, resource.name.clone());
    current.props.insert("role".into(), String::new());
    update(ctx, known, resource, &current).await
}

async fn update(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    current: &Existing,
) -> anyhow::Result<Existing> {
    for role in current.props["role"].split(',').filter(|r| !r.is_empty()) {
        let role_name = known.get(role).map_or(role, |e| e.id.as_str());
        ctx.aws
            .iam
            .remove_role_from_instance_profile()
            .instance_profile_name(&current.id)
            .role_name(role_name)
            .send()
            .await
            .or_already(GONE)?;
    }
    let role = id(known, &resource.props["role"])?;
    let added = ctx
        .aws
        .iam
        .add_role_to_instance_profile()
        .instance_profile_name(&current.id)
        .role_name(role)
        .send()
        .await
        // A profile holds one role: it has one already.
        .or_already(&["LimitExceeded"])?;
    if added.is_none() {
        let roles = profile_roles(ctx, &current.id).await?;
        anyhow::ensure!(
            roles == [role],
            "instance profile {} holds {roles:?}, not {role}",
            current.id
        );
    }
    Ok(created(resource, current.id.clone()))
}

async fn profile_roles(ctx: &Ctx, profile: &str) -> anyhow::Result<Vec<String>> {
    let profile = ctx
        .aws
        .iam
        .get_instance_profile()
        .instance_profile_name(profile)
        .send()
        .await
        .map_err(aws_error)?;
    Ok(profile
        .instance_profile()
        .map(|p| p.roles())
        .unwrap_or_default()
        .iter()
        .map(|r| r.role_name().to_owned())
        .collect())
}

async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    let profile = ctx
        .aws
        .iam
        .get_instance_profile()
        .instance_profile_name(&current.id)
        .send()
        .await
        .map_err(aws_error)?;
    for role in profile
        .instance_profile()
        .map(|p| p.roles())
        .unwrap_or_default()
    {
        let removed = ctx
            .aws
            .iam
            .remove_role_from_instance_profile()
            .instance_profile_name(&current.id)
            .role_name(role.role_name())
            .send()
            .await
            .or_already(GONE);
        // A resend after a lost answer finds the role gone; not every endpoint
        // says so with NoSuchEntity (moto 5.2.5 fails inside): look.
        if let Err(error) = removed
            && profile_roles(ctx, &current.id)
                .await?
                .iter()
                .any(|r| r == role.role_name())
        {
            return Err(error);
        }
    }
    ctx.aws
        .iam
        .delete_instance_profile()
        .instance_profile_name(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}
