//! The CloudWatch dashboard with the original design's metrics, the API's
//! for both colours (the idle one's lines are empty). Its body is
//! rendered from the stack's name and the live identifiers its widgets name
//! (the load balancer's metric dimension); plans compare its digest.

use std::collections::BTreeMap;

use anyhow::Context;

use super::{Changed, Ctx, Known, ResourceKind, Wanted, created, existing, resource};
use crate::stack::aws::{GONE, OrAlready, aws_error, error_code};
use crate::stack::definition::Definition;
use crate::stack::render::{dashboard_body, sha256_hex};
use crate::stack::spec::{Existing, Kind, Props, Resource};

pub struct Dashboard;

impl ResourceKind for Dashboard {
    fn kind(&self) -> Kind {
        Kind::Dashboard
    }

    fn label(&self) -> &'static str {
        "dashboard"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        let inputs = wanted.inputs;
        vec![resource(
            "dashboard",
            Kind::Dashboard,
            dashboard_name(inputs.stack),
            &[(
                "body_sha256",
                sha256_hex(
                    dashboard_body(
                        inputs.stack,
                        inputs.region,
                        &dashboard_refs(wanted.existing),
                    )
                    .as_bytes(),
                ),
            )],
            &[
                "load-balancer",
                "asg-api-blue",
                "asg-api-green",
                "asg-worker",
                "database",
                "redis",
            ],
        )]
    }

    fn monthly_cost(&self, definition: &Definition, _props: &Props) -> f64 {
        definition.prices.cloudwatch_dashboard_month
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
        put(ctx, known, resource).await
    }

    async fn update(
        &self,
        ctx: &Ctx,
        known: &Known,
        resource: &Resource,
        _current: &Existing,
        _changed: &Changed,
    ) -> anyhow::Result<Existing> {
        put(ctx, known, resource).await
    }

    async fn delete(&self, ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
        delete(ctx, current).await
    }
}

fn dashboard_name(stack: &str) -> String {
    format!("{stack}-overview")
}

/// The live identifiers the dashboard's widgets name (the load balancer's ARN suffix).
pub(super) fn dashboard_refs(existing: &Known) -> BTreeMap<String, String> {
    existing
        .iter()
        .filter_map(|(component, e)| {
            e.attrs
                .get("metric_dimension")
                .map(|d| (component.clone(), d.clone()))
        })
        .collect()
}

async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let name = dashboard_name(&ctx.stack);
    match ctx
        .aws
        .cloudwatch
        .get_dashboard()
        .dashboard_name(&name)
        .send()
        .await
    {
        Ok(dashboard) => {
            let body = dashboard.dashboard_body().unwrap_or_default();
            Ok(vec![existing(
                "dashboard".into(),
                Kind::Dashboard,
                name.clone(),
                name,
                &[("body_sha256", sha256_hex(body.as_bytes()))],
            )])
        }
        Err(error)
            if matches!(
                error_code(&error),
                Some("ResourceNotFound" | "ResourceNotFoundException")
            ) =>
        {
            Ok(vec![])
        }
        Err(error) => Err(aws_error(error)).context("cannot look up the dashboard"),
    }
}

/// Creates or replaces the dashboard (PutDashboard is both), with the body
/// rendered from what exists now.
async fn put(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
    let body = dashboard_body(&ctx.stack, ctx.region(), &dashboard_refs(known));
    ctx.aws
        .cloudwatch
        .put_dashboard()
        .dashboard_name(&resource.name)
        .dashboard_body(&body)
        .send()
        .await
        .map_err(aws_error)?;
    let mut current = created(resource, resource.name.clone());
    current
        .props
        .insert("body_sha256".into(), sha256_hex(body.as_bytes()));
    Ok(current)
}

async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .cloudwatch
        .delete_dashboards()
        .dashboard_names(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}
