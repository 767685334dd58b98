//! CloudWatch: the alarms of the definition file (some of which trigger the
//! worker scaling policies) and one dashboard with the original design's metrics.
//! Alarms on the API's and the worker's own metrics (`AccuNode/…`) read them
//! with the dimension they are published with, `Stack=<stack>`.

use accunode_core::published_metrics::STACK_DIMENSION;
use anyhow::Context;
use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic, Tag};

use super::{Ctx, Known, created, existing, id, tagged};
use crate::stack::aws::{GONE, OrAlready, aws_error, error_code};
use crate::stack::render::{dashboard_body, sha256_hex};
use crate::stack::spec::{Existing, Kind, Resource};

fn dashboard_name(stack: &str) -> String {
    format!("{stack}-overview")
}

pub async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let cloudwatch = &ctx.aws.cloudwatch;
    let prefix = format!("{}-", ctx.stack);
    let alarms = cloudwatch
        .describe_alarms()
        .alarm_name_prefix(&prefix)
        .send()
        .await
        .map_err(aws_error)
        .context("cannot list the stack's alarms")?;
    let mut found = Vec::new();
    for alarm in alarms.metric_alarms() {
        let name = alarm.alarm_name().unwrap_or_default();
        let arn = alarm.alarm_arn().unwrap_or_default();
        let tags = cloudwatch
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(aws_error)?;
        let Some((component, _)) = tagged(
            &ctx.stack,
            tags.tags()
                .iter()
                .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or(""))),
        ) else {
            continue;
        };
        let dimensions: Vec<String> = alarm
            .dimensions()
            .iter()
            .map(|d| {
                format!(
                    "{}={}",
                    d.name().unwrap_or_default(),
                    d.value().unwrap_or_default()
                )
            })
            .collect();
        found.push(existing(
            component,
            Kind::Alarm,
            name.to_owned(),
            name.to_owned(),
            &[
                (
                    "description",
                    alarm.alarm_description().unwrap_or_default().to_owned(),
                ),
                (
                    "metric",
                    format!(
                        "{} {} {} {}s x{}",
                        alarm.namespace().unwrap_or_default(),
                        alarm.metric_name().unwrap_or_default(),
                        alarm.statistic().map(|s| s.as_str()).unwrap_or_default(),
                        alarm.period().unwrap_or_default(),
                        alarm.evaluation_periods().unwrap_or_default()
                    ),
                ),
                (
                    "condition",
                    format!(
                        "{} {}",
                        alarm
                            .comparison_operator()
                            .map(|c| c.as_str())
                            .unwrap_or_default(),
                        alarm.threshold().unwrap_or_default()
                    ),
                ),
                ("dimensions", dimensions.join(",")),
                ("actions", alarm.alarm_actions().join(",")),
            ],
        ));
    }
    let name = dashboard_name(&ctx.stack);
    match cloudwatch
        .get_dashboard()
        .dashboard_name(&name)
        .send()
        .await
    {
        Ok(dashboard) => {
            let body = dashboard.dashboard_body().unwrap_or_default();
            found.push(existing(
                "dashboard".into(),
                Kind::Dashboard,
                name.clone(),
                name,
                &[("body_sha256", sha256_hex(body.as_bytes()))],
            ));
        }
        Err(error)
            if matches!(
                error_code(&error),
                Some("ResourceNotFound" | "ResourceNotFoundException")
            ) => {}
        Err(error) => return Err(aws_error(error)).context("cannot look up the dashboard"),
    }
    Ok(found)
}

pub async fn put_alarm(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
    let definition = ctx
        .definition
        .alarms
        .iter()
        .find(|a| format!("alarm-{}", a.name) == resource.component)
        .with_context(|| format!("{} is not in the definition", resource.component))?;
    let dimensions = resource.props["dimensions"]
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| {
            let (name, component) = d.split_once('=').context("malformed dimension")?;
            if name == STACK_DIMENSION {
                // The value is the stack's name itself, not a component.
                return Ok(Dimension::builder().name(name).value(&ctx.stack).build());
            }
            let value = match known.get(component) {
                Some(e) => e
                    .attrs
                    .get("metric_dimension")
                    .cloned()
                    .unwrap_or_else(|| e.id.clone()),
                None => anyhow::bail!("{component} does not exist yet"),
            };
            Ok(Dimension::builder().name(name).value(value).build())
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let actions: Vec<String> = resource.props["actions"]
        .split(',')
        .filter(|a| !a.is_empty())
        .map(|a| id(known, a).map(str::to_owned))
        .collect::<anyhow::Result<_>>()?;
    let tags: Vec<Tag> = ctx
        .tags(&resource.component, &resource.name)
        .into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect();
    ctx.aws
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(&resource.name)
        .alarm_description(&definition.description)
        .namespace(&definition.namespace)
        .metric_name(&definition.metric)
        .statistic(Statistic::from(definition.statistic.as_str()))
        .period(definition.period_secs)
        .evaluation_periods(definition.evaluation_periods)
        .threshold(definition.threshold)
        .comparison_operator(ComparisonOperator::from(definition.comparison.as_str()))
        .set_dimensions(Some(dimensions))
        .set_alarm_actions((!actions.is_empty()).then_some(actions))
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(aws_error)?;
    Ok(created(resource, resource.name.clone()))
}

pub async fn put_dashboard(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
) -> anyhow::Result<Existing> {
    let body = dashboard_body(
        &ctx.stack,
        ctx.region(),
        &crate::stack::spec::dashboard_refs(known),
    );
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

pub async fn delete_alarm(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .cloudwatch
        .delete_alarms()
        .alarm_names(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}

pub async fn delete_dashboard(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .cloudwatch
        .delete_dashboards()
        .dashboard_names(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}
