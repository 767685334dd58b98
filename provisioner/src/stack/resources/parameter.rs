//! SSM SecureString parameters under `/accunode/<stack>/`: the generated JWT
//! secret, database password and Redis AUTH token (made once, never
//! overwritten, never printed) and the database and Redis URLs derived from the
//! live endpoints, which hold them (shown masked). Instances read them at boot;
//! nothing secret goes into user data. The database and Redis creates read
//! their secret here.

use anyhow::{Context, bail};
use aws_sdk_ssm::types::{ParameterType, ResourceTypeForTagging, Tag};

use super::find::adopt;
use super::tags::tagged;
use super::{Changed, Ctx, Known, ResourceKind, Wanted, created, existing, resource};
use crate::stack::aws::{EXISTS, GONE, OrAlready, aws_error};
use crate::stack::spec::{
    AFTER_APPLY, Existing, GENERATED, Kind, MASKED, Resource, database_url, names, redis_url,
};

pub struct Parameter;

impl ResourceKind for Parameter {
    fn kind(&self) -> Kind {
        Kind::Parameter
    }

    fn label(&self) -> &'static str {
        "ssm parameter"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        let parameter = |key: &str, value: String, depends_on: &[&str]| {
            resource(
                &format!("param-{key}"),
                Kind::Parameter,
                names::parameter(wanted.inputs.stack, key),
                &[("type", "SecureString".into()), ("value", value)],
                depends_on,
            )
        };
        // Secrets: generated once, before what needs them, so an interrupted run never loses one.
        let mut parameters: Vec<Resource> = ["jwt-secret", "database-password", "redis-auth-token"]
            .into_iter()
            .map(|key| parameter(key, GENERATED.into(), &[]))
            .collect();
        let db = &wanted.definition.database;
        let database_url = wanted
            .attr("database", "endpoint")
            .map_or(AFTER_APPLY.to_owned(), |host| {
                database_url(&db.master_username, MASKED, &host, &db.database_name)
            });
        let redis_url = wanted
            .attr("redis", "endpoint")
            .map_or(AFTER_APPLY.to_owned(), |host| redis_url(MASKED, &host));
        for (key, value, dependencies) in [
            (
                "database-url",
                database_url,
                ["database", "param-database-password"],
            ),
            ("redis-url", redis_url, ["redis", "param-redis-auth-token"]),
        ] {
            parameters.push(parameter(key, value, &dependencies));
        }
        parameters
    }

    fn forces_replacement(&self, key: &str) -> bool {
        key == "type"
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
    let ssm = &ctx.aws.ssm;
    let prefix = names::parameter(&ctx.stack, "");
    let mut found = Vec::new();
    let mut next = None;
    loop {
        let page = ssm
            .get_parameters_by_path()
            .path(&prefix)
            .with_decryption(true)
            .set_next_token(next)
            .send()
            .await
            .map_err(aws_error)
            .context("cannot list the stack's SSM parameters")?;
        for parameter in page.parameters() {
            let Some(name) = parameter.name() else {
                continue;
            };
            let tags = ssm
                .list_tags_for_resource()
                .resource_type(ResourceTypeForTagging::Parameter)
                .resource_id(name)
                .send()
                .await
                .map_err(aws_error)?;
            let tags = tags.tag_list();
            let Some((component, _)) =
                tagged(&ctx.stack, tags.iter().map(|t| (t.key(), t.value())))
            else {
                continue;
            };
            let value = parameter.value().unwrap_or_default();
            let shown = match name.strip_prefix(&prefix) {
                Some("jwt-secret" | "database-password" | "redis-auth-token") => {
                    GENERATED.to_owned()
                }
                Some("database-url" | "redis-url") => mask_password(value),
                _ => value.to_owned(),
            };
            found.push(existing(
                component,
                Kind::Parameter,
                name.to_owned(),
                name.to_owned(),
                &[
                    (
                        "type",
                        parameter
                            .r#type()
                            .map(|t| t.as_str().to_owned())
                            .unwrap_or_default(),
                    ),
                    ("value", shown),
                ],
            ));
        }
        next = page.next_token().map(str::to_owned);
        if next.is_none() {
            return Ok(found);
        }
    }
}

/// `postgres://user:secret@host…` → `postgres://user:****@host…`.
fn mask_password(url: &str) -> String {
    let (Some(scheme_end), Some(at)) = (url.find("://"), url.rfind('@')) else {
        return url.to_owned();
    };
    match url[scheme_end + 3..at].find(':') {
        Some(colon) => format!("{}:{MASKED}{}", &url[..scheme_end + 3 + colon], &url[at..]),
        None => url.to_owned(),
    }
}

fn random_secret(bytes: usize) -> anyhow::Result<String> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer)
        .map_err(|e| anyhow::anyhow!("no randomness from the system: {e}"))?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

async fn read(ctx: &Ctx, key: &str) -> anyhow::Result<String> {
    let name = names::parameter(&ctx.stack, key);
    let parameter = ctx
        .aws
        .ssm
        .get_parameter()
        .name(&name)
        .with_decryption(true)
        .send()
        .await
        .map_err(aws_error)
        .with_context(|| format!("cannot read {name}"))?;
    parameter
        .parameter()
        .and_then(|p| p.value())
        .map(str::to_owned)
        .with_context(|| format!("{name} has no value"))
}

/// The database master password, for the database's create call.
pub(super) async fn database_password(ctx: &Ctx) -> anyhow::Result<String> {
    read(ctx, "database-password").await
}

/// The Redis AUTH token, for the replication group's create call.
pub(super) async fn redis_auth_token(ctx: &Ctx) -> anyhow::Result<String> {
    read(ctx, "redis-auth-token").await
}

/// The value a parameter should hold now.
async fn value(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<String> {
    let attr = |component: &str, attr: &str| {
        known
            .get(component)
            .and_then(|e| e.attrs.get(attr))
            .cloned()
            .with_context(|| format!("{component} has no {attr} yet"))
    };
    match resource.component.as_str() {
        "param-jwt-secret" => random_secret(32),
        "param-database-password" => random_secret(16),
        // 64 hex digits: within ElastiCache's 16-128 printable characters.
        "param-redis-auth-token" => random_secret(32),
        "param-database-url" => {
            let db = &ctx.definition.database;
            Ok(database_url(
                &db.master_username,
                &database_password(ctx).await?,
                &attr("database", "endpoint")?,
                &db.database_name,
            ))
        }
        "param-redis-url" => Ok(redis_url(
            &redis_auth_token(ctx).await?,
            &attr("redis", "endpoint")?,
        )),
        other => bail!("no value is defined for parameter component {other}"),
    }
}

async fn create(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
    let tags: Vec<Tag> = ctx
        .tags(&resource.component, &resource.name)
        .into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect::<Result<_, _>>()?;
    // Tags go in the same call: a parameter of this name without them is someone
    // else's, and AWS refuses the create (ParameterAlreadyExists).
    if ctx
        .aws
        .ssm
        .put_parameter()
        .name(&resource.name)
        .r#type(ParameterType::SecureString)
        .value(value(ctx, known, resource).await?)
        .set_tags(Some(tags))
        .send()
        .await
        .or_already(EXISTS)?
        .is_none()
    {
        adopt(ctx, resource, discover(ctx).await?)?;
    }
    Ok(created(resource, resource.name.clone()))
}

async fn update(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    current: &Existing,
) -> anyhow::Result<Existing> {
    if resource.props["value"] != GENERATED {
        ctx.aws
            .ssm
            .put_parameter()
            .name(&current.id)
            .r#type(ParameterType::SecureString)
            .value(value(ctx, known, resource).await?)
            .overwrite(true)
            .send()
            .await
            .map_err(aws_error)?;
    }
    Ok(created(resource, current.id.clone()))
}

async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .ssm
        .delete_parameter()
        .name(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            mask_password("postgres://accunode:s3cr3t@db.example:5432/accunode"),
            "postgres://accunode:****@db.example:5432/accunode"
        );
        assert_eq!(
            mask_password("rediss://:t0ken@cache.example:6379"),
            "rediss://:****@cache.example:6379"
        );
        assert_eq!(mask_password("redis://cache:6379"), "redis://cache:6379");
    }
}
