//! IAM: the API and worker instance roles (the original design's policies, scoped to this
//! stack's parameters and bucket) and their instance profiles. Both live under
//! the path `/accunode/<stack>/`, which is how discovery lists them.

use anyhow::Context;
use aws_sdk_iam::types::Tag;

use super::{Ctx, Known, adopt, created, existing, id, tagged};
use crate::stack::aws::{EXISTS, GONE, OrAlready, aws_error};
use crate::stack::spec::{Existing, Kind, Resource};

const POLICY_NAME: &str = "accunode";
const EC2_TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

fn path(ctx: &Ctx) -> String {
    format!("/accunode/{}/", ctx.stack)
}

fn tags(ctx: &Ctx, resource: &Resource) -> anyhow::Result<Vec<Tag>> {
    ctx.tags(&resource.component, &resource.name)
        .into_iter()
        .map(|(key, value)| {
            Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(anyhow::Error::from)
        })
        .collect()
}

fn is_ours(ctx: &Ctx, tags: &[Tag]) -> Option<String> {
    tagged(&ctx.stack, tags.iter().map(|t| (t.key(), t.value()))).map(|(component, _)| component)
}

/// A policy document as one canonical JSON line (IAM returns it URL-encoded).
fn canonical_policy(document: &str) -> String {
    let decoded = percent_decode(document);
    serde_json::from_str::<serde_json::Value>(&decoded).map_or(decoded, |value| value.to_string())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let iam = &ctx.aws.iam;
    let (roles, profiles) = tokio::try_join!(
        async {
            iam.list_roles()
                .path_prefix(path(ctx))
                .send()
                .await
                .map_err(aws_error)
        },
        async {
            iam.list_instance_profiles()
                .path_prefix(path(ctx))
                .send()
                .await
                .map_err(aws_error)
        },
    )
    .context("cannot list the stack's IAM roles and instance profiles")?;
    let mut found = Vec::new();
    // Some endpoints (moto) ignore the path prefix: check it here too, and take
    // a role or profile deleted meanwhile (another run) as not there.
    let our_path = path(ctx);
    for role in roles.roles().iter().filter(|r| r.path() == our_path) {
        let name = role.role_name();
        let role = match iam.get_role().role_name(name).send().await {
            Ok(role) => role,
            Err(error) if crate::stack::aws::error_code(&error) == Some("NoSuchEntity") => continue,
            Err(error) => return Err(aws_error(error)),
        };
        let Some(role) = role.role() else { continue };
        let Some(component) = is_ours(ctx, role.tags()) else {
            continue;
        };
        let policy = match iam
            .get_role_policy()
            .role_name(name)
            .policy_name(POLICY_NAME)
            .send()
            .await
        {
            Ok(policy) => canonical_policy(policy.policy_document()),
            Err(error) if crate::stack::aws::error_code(&error) == Some("NoSuchEntity") => {
                String::new()
            }
            Err(error) => return Err(aws_error(error)),
        };
        let mut e = existing(
            component,
            Kind::Role,
            name.to_owned(),
            name.to_owned(),
            &[("policy", policy)],
        );
        e.aliases.push(role.arn().to_owned());
        found.push(e);
    }
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

pub async fn create_role(ctx: &Ctx, resource: &Resource) -> anyhow::Result<Existing> {
    if ctx
        .aws
        .iam
        .create_role()
        .role_name(&resource.name)
        .path(path(ctx))
        .assume_role_policy_document(EC2_TRUST)
        .description(format!(
            "AccuNode {} instances of stack {}",
            resource.component, ctx.stack
        ))
        .set_tags(Some(tags(ctx, resource)?))
        .send()
        .await
        .or_already(EXISTS)?
        .is_none()
    {
        adopt(ctx, resource, discover(ctx).await?)?;
    }
    let current = created(resource, resource.name.clone());
    update_role(ctx, resource, &current).await
}

pub async fn update_role(
    ctx: &Ctx,
    resource: &Resource,
    current: &Existing,
) -> anyhow::Result<Existing> {
    ctx.aws
        .iam
        .put_role_policy()
        .role_name(&current.id)
        .policy_name(POLICY_NAME)
        .policy_document(&resource.props["policy"])
        .send()
        .await
        .map_err(aws_error)?;
    Ok(created(resource, current.id.clone()))
}

pub async fn create_instance_profile(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
) -> anyhow::Result<Existing> {
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
    update_instance_profile(ctx, known, resource, &current).await
}

pub async fn update_instance_profile(
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

pub async fn delete_role(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    match ctx
        .aws
        .iam
        .delete_role_policy()
        .role_name(&current.id)
        .policy_name(POLICY_NAME)
        .send()
        .await
    {
        Ok(_) => {}
        Err(error) if crate::stack::aws::error_code(&error) == Some("NoSuchEntity") => {}
        Err(error) => return Err(aws_error(error)),
    }
    ctx.aws
        .iam
        .delete_role()
        .role_name(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
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

pub async fn delete_instance_profile(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoded_policies_compare_equal_to_their_json() {
        let json = r#"{"Version":"2012-10-17","Statement":[]}"#;
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(canonical_policy(encoded), canonical_policy(json));
    }
}
