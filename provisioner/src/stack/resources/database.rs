//! RDS PostgreSQL and its subnet group. Class, storage, Multi-AZ and backup
//! retention change in place (applied immediately); the master password comes
//! from the stack's SSM parameter, generated before the instance exists.

use anyhow::Context;
use aws_sdk_rds::types::Tag;

use super::{Ctx, Known, Poll, adopt, created, existing, id, ids, tagged, wait_for, with_endpoint};
use crate::stack::aws::{EXISTS, GONE, OrAlready, aws_error, error_code};
use crate::stack::spec::{Existing, Kind, Resource};

fn tags(ctx: &Ctx, resource: &Resource) -> Vec<Tag> {
    ctx.tags(&resource.component, &resource.name)
        .into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

fn ours(ctx: &Ctx, tags: &[Tag]) -> Option<String> {
    tagged(
        &ctx.stack,
        tags.iter()
            .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or(""))),
    )
    .map(|(c, _)| c)
}

fn name(ctx: &Ctx) -> String {
    format!("{}-db", ctx.stack)
}

fn subnet_group_name(ctx: &Ctx) -> String {
    format!("{}-db-subnets", ctx.stack)
}

pub async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let rds = &ctx.aws.rds;
    let name = name(ctx);
    let mut found = Vec::new();
    let group_name = subnet_group_name(ctx);
    match rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(&group_name)
        .send()
        .await
    {
        Ok(groups) => {
            for group in groups.db_subnet_groups() {
                let arn = group.db_subnet_group_arn().unwrap_or_default();
                let tags = rds
                    .list_tags_for_resource()
                    .resource_name(arn)
                    .send()
                    .await
                    .map_err(aws_error)?;
                let Some(component) = ours(ctx, tags.tag_list()) else {
                    anyhow::bail!(
                        "the DB subnet group {group_name} exists without the tag accunode:stack={}: not this stack's, not touched",
                        ctx.stack
                    );
                };
                let subnets: Vec<&str> = group
                    .subnets()
                    .iter()
                    .filter_map(|s| s.subnet_identifier())
                    .collect();
                let mut e = existing(
                    component,
                    Kind::DbSubnetGroup,
                    group_name.clone(),
                    group_name.clone(),
                    &[("subnets", subnets.join(","))],
                );
                e.aliases.push(arn.to_owned());
                found.push(e);
            }
        }
        Err(error) if error_code(&error) == Some("DBSubnetGroupNotFoundFault") => {}
        Err(error) => return Err(aws_error(error)).context("cannot look up the DB subnet group"),
    }
    match rds
        .describe_db_instances()
        .db_instance_identifier(&name)
        .send()
        .await
    {
        Ok(instances) => {
            for db in instances.db_instances() {
                let status = db.db_instance_status().unwrap_or_default();
                if status == "deleting" {
                    continue;
                }
                let Some(component) = ours(ctx, db.tag_list()) else {
                    anyhow::bail!(
                        "the RDS instance {name} exists without the tag accunode:stack={}: not this stack's, not touched",
                        ctx.stack
                    );
                };
                let major = db
                    .engine_version()
                    .unwrap_or_default()
                    .split('.')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let groups: Vec<&str> = db
                    .vpc_security_groups()
                    .iter()
                    .filter_map(|g| g.vpc_security_group_id())
                    .collect();
                let mut e = existing(
                    component,
                    Kind::Database,
                    name.clone(),
                    name.clone(),
                    &[
                        ("engine", db.engine().unwrap_or_default().to_owned()),
                        ("engine_version", major),
                        (
                            "class",
                            db.db_instance_class().unwrap_or_default().to_owned(),
                        ),
                        (
                            "storage_gb",
                            db.allocated_storage().unwrap_or_default().to_string(),
                        ),
                        (
                            "storage_type",
                            db.storage_type().unwrap_or_default().to_owned(),
                        ),
                        ("multi_az", db.multi_az().unwrap_or(false).to_string()),
                        (
                            "backup_days",
                            db.backup_retention_period().unwrap_or_default().to_string(),
                        ),
                        (
                            "encrypted",
                            db.storage_encrypted().unwrap_or(false).to_string(),
                        ),
                        (
                            "public",
                            db.publicly_accessible().unwrap_or(false).to_string(),
                        ),
                        (
                            "subnet_group",
                            db.db_subnet_group()
                                .and_then(|g| g.db_subnet_group_name())
                                .unwrap_or_default()
                                .to_owned(),
                        ),
                        ("security_groups", groups.join(",")),
                    ],
                );
                e.attrs.insert("status".into(), status.to_owned());
                if let Some(endpoint) = db.endpoint().and_then(|e| e.address()) {
                    e.attrs.insert("endpoint".into(), endpoint.to_owned());
                }
                found.push(e);
            }
        }
        Err(error) if error_code(&error) == Some("DBInstanceNotFound") => {}
        Err(error) => return Err(aws_error(error)).context("cannot look up the RDS instance"),
    }
    Ok(found)
}

pub async fn create_subnet_group(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
) -> anyhow::Result<Existing> {
    if ctx
        .aws
        .rds
        .create_db_subnet_group()
        .db_subnet_group_name(&resource.name)
        .db_subnet_group_description(format!("AccuNode {} database: private subnets", ctx.stack))
        .set_subnet_ids(Some(ids(known, &resource.props["subnets"])?))
        .set_tags(Some(tags(ctx, resource)))
        .send()
        .await
        .or_already(EXISTS)?
        .is_none()
    {
        adopt(ctx, resource, discover(ctx).await?)?;
    }
    Ok(created(resource, resource.name.clone()))
}

pub async fn update_subnet_group(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    current: &Existing,
) -> anyhow::Result<Existing> {
    ctx.aws
        .rds
        .modify_db_subnet_group()
        .db_subnet_group_name(&current.id)
        .set_subnet_ids(Some(ids(known, &resource.props["subnets"])?))
        .send()
        .await
        .map_err(aws_error)?;
    Ok(created(resource, current.id.clone()))
}

pub async fn create(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
    let p = &resource.props;
    let number = |key: &str| {
        p[key]
            .parse::<i32>()
            .with_context(|| format!("{key} is not a number"))
    };
    let db = &ctx.definition.database;
    if ctx
        .aws
        .rds
        .create_db_instance()
        .db_instance_identifier(&resource.name)
        .engine(&p["engine"])
        .engine_version(&p["engine_version"])
        .db_instance_class(&p["class"])
        .allocated_storage(number("storage_gb")?)
        .storage_type(&p["storage_type"])
        .multi_az(p["multi_az"] == "true")
        .backup_retention_period(number("backup_days")?)
        .storage_encrypted(true)
        .publicly_accessible(false)
        .master_username(&db.master_username)
        .master_user_password(super::parameter::database_password(ctx).await?)
        .db_name(&db.database_name)
        .db_subnet_group_name(id(known, &p["subnet_group"])?)
        .set_vpc_security_group_ids(Some(ids(known, &p["security_groups"])?))
        .copy_tags_to_snapshot(true)
        .set_tags(Some(tags(ctx, resource)))
        .send()
        .await
        .or_already(EXISTS)?
        .is_none()
    {
        adopt(ctx, resource, discover(ctx).await?)?;
    }
    wait_available(ctx, &resource.component, &resource.name)
        .await
        .map(|endpoint| with_endpoint(resource, endpoint))
}

pub async fn update(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    current: &Existing,
    changed: &dyn Fn(&str) -> bool,
) -> anyhow::Result<Existing> {
    let p = &resource.props;
    let mut request = ctx
        .aws
        .rds
        .modify_db_instance()
        .db_instance_identifier(&current.id)
        .apply_immediately(true);
    if changed("class") {
        request = request.db_instance_class(&p["class"]);
    }
    if changed("storage_gb") {
        request = request.allocated_storage(p["storage_gb"].parse()?);
    }
    if changed("multi_az") {
        request = request.multi_az(p["multi_az"] == "true");
    }
    if changed("backup_days") {
        request = request.backup_retention_period(p["backup_days"].parse()?);
    }
    if changed("security_groups") {
        request = request.set_vpc_security_group_ids(Some(ids(known, &p["security_groups"])?));
    }
    // A resend after a lost answer finds it modifying already: wait for that below.
    request
        .send()
        .await
        .or_already(&["InvalidDBInstanceState"])?;
    wait_available(ctx, &resource.component, &resource.name)
        .await
        .map(|endpoint| with_endpoint(resource, endpoint))
}

/// Waits until the instance is available and returns its endpoint.
pub async fn wait_available(ctx: &Ctx, component: &str, name: &str) -> anyhow::Result<String> {
    wait_for(ctx, component, || async {
        let instances = ctx
            .aws
            .rds
            .describe_db_instances()
            .db_instance_identifier(name)
            .send()
            .await
            .map_err(aws_error)?;
        let db = instances
            .db_instances()
            .first()
            .context("the RDS instance vanished while waiting")?;
        Ok(
            match (
                db.db_instance_status(),
                db.endpoint().and_then(|e| e.address()),
            ) {
                (Some("available"), Some(endpoint)) => Poll::Ready(endpoint.to_owned()),
                (status, _) => Poll::Pending(status.unwrap_or("unknown").to_owned()),
            },
        )
    })
    .await
}

pub async fn delete_subnet_group(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .rds
        .delete_db_subnet_group()
        .db_subnet_group_name(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}

/// Deletes the instance after a final snapshot named after it and the time.
pub async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    ctx.aws
        .rds
        .delete_db_instance()
        .db_instance_identifier(&current.id)
        .skip_final_snapshot(false)
        .final_db_snapshot_identifier(format!("{}-final-{stamp}", current.id))
        .send()
        .await
        // A resend after a lost answer finds it deleting: wait for that below.
        .or_already(&[GONE, &["InvalidDBInstanceState"]].concat())?;
    wait_for(ctx, &current.component, || async {
        match ctx
            .aws
            .rds
            .describe_db_instances()
            .db_instance_identifier(&current.id)
            .send()
            .await
        {
            Err(error) if error_code(&error) == Some("DBInstanceNotFound") => Ok(Poll::Ready(())),
            Err(error) => Err(aws_error(error)),
            Ok(instances) => Ok(
                match instances
                    .db_instances()
                    .first()
                    .and_then(|d| d.db_instance_status())
                {
                    None => Poll::Ready(()),
                    Some(status) => Poll::Pending(status.to_owned()),
                },
            ),
        }
    })
    .await
}
