//! RDS PostgreSQL. Class, storage, Multi-AZ and backup retention change in
//! place (applied immediately); storage never shrinks (RDS cannot). The master
//! password comes from the stack's SSM parameter, generated before the
//! instance exists. A delete leaves a final snapshot.

use anyhow::Context;

use super::db_subnet_group::{ours, tags};
use super::find::adopt;
use super::wait::{Poll, wait_for};
use super::{
    Changed, Ctx, Known, ResourceKind, Wanted, existing, id, ids, resource, with_endpoint,
};
use crate::stack::aws::{EXISTS, GONE, OrAlready, aws_error, error_code};
use crate::stack::definition::Definition;
use crate::stack::spec::{Existing, Kind, Props, Resource};

pub struct Database;

impl ResourceKind for Database {
    fn kind(&self) -> Kind {
        Kind::Database
    }

    fn label(&self) -> &'static str {
        "rds instance"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        let db = &wanted.definition.database;
        let phase = wanted.phase;
        vec![resource(
            "database",
            Kind::Database,
            wanted.name("db"),
            &[
                ("engine", db.engine.clone()),
                ("engine_version", db.engine_version.clone()),
                ("class", phase.database_class.clone()),
                ("storage_gb", phase.database_storage_gb.to_string()),
                ("storage_type", db.storage_type.clone()),
                ("multi_az", phase.database_multi_az.to_string()),
                ("backup_days", phase.database_backup_days.to_string()),
                ("encrypted", "true".into()),
                ("public", "false".into()),
                ("subnet_group", "db-subnet-group".into()),
                ("security_groups", "sg-database".into()),
            ],
            &["db-subnet-group", "sg-database", "param-database-password"],
        )]
    }

    fn forces_replacement(&self, key: &str) -> bool {
        matches!(
            key,
            "engine" | "engine_version" | "encrypted" | "subnet_group"
        )
    }

    fn accepted(&self, key: &str, wanted: &str, have: &str) -> Option<String> {
        if key == "storage_gb" {
            let (wanted, have) = (wanted.parse::<i64>().ok()?, have.parse::<i64>().ok()?);
            if have > wanted {
                return Some(format!(
                    "storage stays at {have} GB (the phase asks {wanted} GB): RDS storage cannot shrink"
                ));
            }
        }
        None
    }

    fn monthly_cost(&self, definition: &Definition, props: &Props) -> f64 {
        let prices = &definition.prices;
        let class = props
            .get("class")
            .and_then(|c| prices.rds_hourly.get(c))
            .copied()
            .unwrap_or(0.0);
        let storage_gb = props
            .get("storage_gb")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        // Multi-AZ runs and stores a standby: twice the instance and the storage.
        let copies = if props.get("multi_az").is_some_and(|v| v == "true") {
            2.0
        } else {
            1.0
        };
        copies * (class * prices.hours_per_month + storage_gb * prices.rds_gp2_gb_month)
    }

    fn in_transition<'e>(&self, current: &'e Existing) -> Option<&'e str> {
        // On its way to available; a stopped or failed instance is not waited for.
        current.attrs.get("status").map(String::as_str).filter(|s| {
            matches!(
                *s,
                "creating"
                    | "modifying"
                    | "backing-up"
                    | "rebooting"
                    | "starting"
                    | "upgrading"
                    | "renaming"
                    | "maintenance"
                    | "resetting-master-credentials"
                    | "storage-optimization"
                    | "configuring-enhanced-monitoring"
                    | "configuring-log-exports"
            )
        })
    }

    async fn settle(&self, ctx: &Ctx, current: &mut Existing) -> anyhow::Result<()> {
        settle(ctx, current).await
    }

    fn hidden_while_deleting(&self) -> bool {
        true
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
        changed: &Changed,
    ) -> anyhow::Result<Existing> {
        update(ctx, known, resource, current, changed).await
    }

    async fn delete(&self, ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
        delete(ctx, current).await
    }
}

fn name(ctx: &Ctx) -> String {
    format!("{}-db", ctx.stack)
}

async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let rds = &ctx.aws.rds;
    let name = name(ctx);
    let mut found = Vec::new();
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

async fn create(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
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

async fn update(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    current: &Existing,
    changed: &Changed,
) -> anyhow::Result<Existing> {
    let p = &resource.props;
    let mut request = ctx
        .aws
        .rds
        .modify_db_instance()
        .db_instance_identifier(&current.id)
        .apply_immediately(true);
    if changed.has("class") {
        request = request.db_instance_class(&p["class"]);
    }
    if changed.has("storage_gb") {
        request = request.allocated_storage(p["storage_gb"].parse()?);
    }
    if changed.has("multi_az") {
        request = request.multi_az(p["multi_az"] == "true");
    }
    if changed.has("backup_days") {
        request = request.backup_retention_period(p["backup_days"].parse()?);
    }
    if changed.has("security_groups") {
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

/// Waits for an instance discovery found on its way to available, and records
/// the endpoint AWS gives only then.
async fn settle(ctx: &Ctx, current: &mut Existing) -> anyhow::Result<()> {
    let endpoint = wait_available(ctx, &current.component, &current.id).await?;
    current.attrs.insert("endpoint".into(), endpoint);
    current.attrs.insert("status".into(), "available".into());
    Ok(())
}

/// Waits until the instance is available and returns its endpoint.
async fn wait_available(ctx: &Ctx, component: &str, name: &str) -> anyhow::Result<String> {
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

/// Deletes the instance after a final snapshot named after it and the time.
async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::definition::BUILT_IN;

    fn props(pairs: &[(&str, &str)]) -> Props {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn multi_az_costs_twice_a_single_instance() {
        let definition = Definition::parse(BUILT_IN).unwrap();
        let single = Database.monthly_cost(
            &definition,
            &props(&[("class", "db.t3.micro"), ("storage_gb", "20")]),
        );
        let multi = Database.monthly_cost(
            &definition,
            &props(&[
                ("class", "db.t3.micro"),
                ("storage_gb", "20"),
                ("multi_az", "true"),
            ]),
        );
        // A db.t3.micro at $0.018/h plus 20 GB gp2.
        assert!((single - (0.018 * 730.0 + 20.0 * 0.115)).abs() < 1e-9);
        assert!((multi - 2.0 * single).abs() < 1e-9);
    }
}
