//! The CloudWatch alarms of the definition file, some of which trigger the
//! worker scaling policies. Alarms on the API's and the worker's own metrics
//! (`AccuNode/…`) read them with the dimension they are published with,
//! `Stack=<stack>`. What an alarm reads is an [`AlarmMetric`] and
//! [`MetricDimensions`], which plans show as text.

use std::fmt;
use std::str::FromStr;

use accunode_core::published_metrics::{API_NAMESPACE, STACK_DIMENSION};
use anyhow::{Context, bail};
use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic, Tag};

use super::listener::live_colour;
use super::tags::tagged;
use super::{Changed, Ctx, Known, ResourceKind, Wanted, created, existing, id, number, resource};
use crate::stack::aws::{GONE, OrAlready, aws_error};
use crate::stack::definition::{self, AlarmDimension, Definition};
use crate::stack::spec::{Colour, Existing, Kind, Props, Resource};

pub struct Alarm;

impl ResourceKind for Alarm {
    fn kind(&self) -> Kind {
        Kind::Alarm
    }

    fn label(&self) -> &'static str {
        "alarm"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        let live = live_colour(wanted.existing);
        wanted
            .definition
            .alarms
            .iter()
            .map(|alarm| wanted_alarm(alarm, wanted.inputs.stack, live))
            .collect()
    }

    fn monthly_cost(&self, definition: &Definition, _props: &Props) -> f64 {
        definition.prices.cloudwatch_alarm_month
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

/// The definition's `alarm` as the stack wants it, its `api_group` dimension
/// on the `live` colour's group.
fn wanted_alarm(alarm: &definition::Alarm, stack: &str, live: Colour) -> Resource {
    let (dimension, mut deps) = match alarm.dimension {
        Some(AlarmDimension::LoadBalancer) => (
            Some(("LoadBalancer", "load-balancer".to_owned())),
            vec!["load-balancer".to_owned()],
        ),
        Some(AlarmDimension::ApiGroup) => (
            Some(("AutoScalingGroupName", live.group())),
            vec![live.group()],
        ),
        Some(AlarmDimension::WorkerGroup) => (
            Some(("AutoScalingGroupName", "asg-worker".to_owned())),
            vec!["asg-worker".to_owned()],
        ),
        // The value itself, not a component: the stack's name.
        Some(AlarmDimension::Stack) => (Some((STACK_DIMENSION, stack.to_owned())), vec![]),
        None => (None, vec![]),
    };
    let dimensions = MetricDimensions(
        dimension
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
    );
    let metric = AlarmMetric {
        namespace: alarm.namespace.clone(),
        name: alarm.metric.clone(),
        statistic: alarm.statistic.clone(),
        period_secs: alarm.period_secs,
        evaluation_periods: alarm.evaluation_periods,
    };
    let action = alarm
        .action
        .as_ref()
        .map(|a| format!("policy-{a}"))
        .unwrap_or_default();
    if !action.is_empty() {
        deps.push(action.clone());
    }
    let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
    resource(
        &format!("alarm-{}", alarm.name),
        Kind::Alarm,
        format!("{stack}-{}", alarm.name),
        &[
            ("description", alarm.description.clone()),
            ("metric", metric.to_string()),
            (
                "condition",
                format!("{} {}", alarm.comparison, number(alarm.threshold)),
            ),
            ("dimensions", dimensions.to_string()),
            ("actions", action),
        ],
        &deps,
    )
}

/// Points the alarms on the API's group at the `live` colour's group, once a
/// deploy has switched to it (what `provision` would then do); `known` is
/// the stack as discovered. The names of the alarms it changed.
pub async fn follow_live(ctx: &Ctx, known: &Known, live: Colour) -> anyhow::Result<Vec<String>> {
    let mut moved = Vec::new();
    for alarm in &ctx.definition.alarms {
        if alarm.dimension != Some(AlarmDimension::ApiGroup) {
            continue;
        }
        let wanted = wanted_alarm(alarm, &ctx.stack, live);
        let current = known
            .get(&wanted.component)
            .and_then(|e| e.props.get("dimensions"));
        if current != wanted.props.get("dimensions") {
            put(ctx, known, &wanted).await.with_context(|| {
                format!("cannot point the alarm {} at {}", wanted.name, live.group())
            })?;
            moved.push(wanted.name);
        }
    }
    Ok(moved)
}

/// The alarms a canary watches: those on the API, by the load balancer, an
/// API group or the API's own metrics (`AccuNode/API`), by AWS name.
pub fn api_alarms(ctx: &Ctx) -> Vec<String> {
    ctx.definition
        .alarms
        .iter()
        .filter(|alarm| {
            matches!(
                alarm.dimension,
                Some(AlarmDimension::LoadBalancer | AlarmDimension::ApiGroup)
            ) || alarm.namespace == API_NAMESPACE
        })
        .map(|alarm| format!("{}-{}", ctx.stack, alarm.name))
        .collect()
}

/// The metric an alarm watches and how: plans show and compare it as text,
/// "AccuNode/Workers QueueLength Average 60s x2" (namespace, metric,
/// statistic, period, evaluation periods); this type is the one place that
/// text is made and read.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct AlarmMetric {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) statistic: String,
    pub(super) period_secs: i32,
    pub(super) evaluation_periods: i32,
}

impl fmt::Display for AlarmMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}s x{}",
            self.namespace, self.name, self.statistic, self.period_secs, self.evaluation_periods
        )
    }
}

impl FromStr for AlarmMetric {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<AlarmMetric> {
        let parts: Vec<&str> = text.split(' ').collect();
        let [namespace, name, statistic, period, evaluation_periods] = parts[..] else {
            bail!(
                "malformed alarm metric {text:?}: expected \"NAMESPACE METRIC STATISTIC PERIODs xEVALUATIONS\""
            )
        };
        let period_secs = period
            .strip_suffix('s')
            .and_then(|seconds| seconds.parse().ok())
            .with_context(|| format!("malformed alarm metric {text:?}: period {period:?}"))?;
        let evaluation_periods = evaluation_periods
            .strip_prefix('x')
            .and_then(|count| count.parse().ok())
            .with_context(|| {
                format!(
                    "malformed alarm metric {text:?}: evaluation periods {evaluation_periods:?}"
                )
            })?;
        Ok(AlarmMetric {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            statistic: statistic.to_owned(),
            period_secs,
            evaluation_periods,
        })
    }
}

/// The dimensions an alarm reads its metric with: plans show and compare them
/// as text, "Name=value,…". A value is one of the stack's components (whose
/// metric dimension or id AWS gets; discovery reads the AWS value, which
/// becomes the component), except for `Stack`, whose value is the stack's name.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct MetricDimensions(pub(super) Vec<(String, String)>);

impl fmt::Display for MetricDimensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pairs: Vec<String> = self
            .0
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        f.write_str(&pairs.join(","))
    }
}

impl FromStr for MetricDimensions {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<MetricDimensions> {
        text.split(',')
            .filter(|d| !d.is_empty())
            .map(|d| {
                let (name, value) = d.split_once('=').with_context(|| {
                    format!("malformed dimension {d:?} in {text:?}: expected \"NAME=VALUE\"")
                })?;
                Ok((name.to_owned(), value.to_owned()))
            })
            .collect::<anyhow::Result<_>>()
            .map(MetricDimensions)
    }
}

async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
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
        let dimensions = MetricDimensions(
            alarm
                .dimensions()
                .iter()
                .map(|d| {
                    (
                        d.name().unwrap_or_default().to_owned(),
                        d.value().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
        );
        let metric = AlarmMetric {
            namespace: alarm.namespace().unwrap_or_default().to_owned(),
            name: alarm.metric_name().unwrap_or_default().to_owned(),
            statistic: alarm
                .statistic()
                .map(|s| s.as_str())
                .unwrap_or_default()
                .to_owned(),
            period_secs: alarm.period().unwrap_or_default(),
            evaluation_periods: alarm.evaluation_periods().unwrap_or_default(),
        };
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
                ("metric", metric.to_string()),
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
                ("dimensions", dimensions.to_string()),
                ("actions", alarm.alarm_actions().join(",")),
            ],
        ));
    }
    Ok(found)
}

/// Creates or replaces an alarm (PutMetricAlarm is both). What it reads comes
/// from its `metric` and `dimensions` properties; its description, threshold
/// and comparison from the definition's alarm of the same name.
async fn put(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
    let definition = ctx
        .definition
        .alarms
        .iter()
        .find(|a| format!("alarm-{}", a.name) == resource.component)
        .with_context(|| format!("{} is not in the definition", resource.component))?;
    let metric: AlarmMetric = resource.props["metric"].parse()?;
    let dimensions = resource.props["dimensions"]
        .parse::<MetricDimensions>()?
        .0
        .into_iter()
        .map(|(name, component)| {
            if name == STACK_DIMENSION {
                // The value is the stack's name itself, not a component.
                return Ok(Dimension::builder().name(name).value(&ctx.stack).build());
            }
            let value = match known.get(&component) {
                Some(e) => e
                    .attrs
                    .get("metric_dimension")
                    .cloned()
                    .unwrap_or_else(|| e.id.clone()),
                None => bail!("{component} does not exist yet"),
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
        .namespace(metric.namespace)
        .metric_name(metric.name)
        .statistic(Statistic::from(metric.statistic.as_str()))
        .period(metric.period_secs)
        .evaluation_periods(metric.evaluation_periods)
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

async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .cloudwatch
        .delete_alarms()
        .alarm_names(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_read_back_what_they_write() {
        let metric = AlarmMetric {
            namespace: "AccuNode/Workers".to_owned(),
            name: "QueueLength".to_owned(),
            statistic: "Average".to_owned(),
            period_secs: 60,
            evaluation_periods: 2,
        };
        let text = "AccuNode/Workers QueueLength Average 60s x2";
        assert_eq!(metric.to_string(), text);
        assert_eq!(text.parse::<AlarmMetric>().unwrap(), metric);
    }

    #[test]
    fn a_malformed_metric_names_the_bad_part() {
        for (bad, part) in [
            (
                "AccuNode/Workers QueueLength Average 60 x2",
                "period \"60\"",
            ),
            (
                "AccuNode/Workers QueueLength Average 60s 2",
                "evaluation periods \"2\"",
            ),
            (
                "AccuNode/Workers QueueLength Average sixtys x2",
                "period \"sixtys\"",
            ),
            ("AccuNode/Workers QueueLength 60s x2", "expected"),
            ("", "expected"),
        ] {
            let error = format!("{:#}", bad.parse::<AlarmMetric>().unwrap_err());
            assert!(
                error.contains(&format!("{bad:?}")) && error.contains(part),
                "{bad:?}: {error}"
            );
        }
    }

    #[test]
    fn dimensions_read_back_what_they_write() {
        for text in [
            "LoadBalancer=load-balancer",
            "Stack=teststack",
            "AutoScalingGroupName=asg-worker,Stack=teststack",
            "",
        ] {
            let dimensions: MetricDimensions = text.parse().unwrap();
            assert_eq!(dimensions.to_string(), text);
        }
        assert_eq!(
            "Stack=teststack".parse::<MetricDimensions>().unwrap(),
            MetricDimensions(vec![("Stack".to_owned(), "teststack".to_owned())])
        );
        let error = "Stack=teststack,LoadBalancer"
            .parse::<MetricDimensions>()
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"LoadBalancer\""), "{error}");
    }
}
