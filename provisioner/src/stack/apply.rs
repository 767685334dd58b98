//! Apply a plan, and destroy a stack. Resources go in waves: a resource starts
//! once everything it depends on is done, at most eight at a time; a failure
//! stops the next waves (what depends on it cannot start) but lets the running
//! wave finish. Destroy walks the same graph backwards.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::bail;
use futures::StreamExt;

use super::plan::{Action, Plan, Step};
use super::resources::{self, Ctx, Known};
use super::spec::{Existing, Resource};

const CONCURRENCY: usize = 8;

/// Components grouped in waves: each wave depends only on earlier ones.
fn waves(resources: &[Resource]) -> Vec<Vec<&Resource>> {
    let mut level: BTreeMap<&str, usize> = BTreeMap::new();
    // Resources are listed dependencies first, so one pass settles every level.
    for resource in resources {
        let depth = resource
            .depends_on
            .iter()
            .filter_map(|d| level.get(d.as_str()))
            .map(|l| l + 1)
            .max()
            .unwrap_or(0);
        level.insert(&resource.component, depth);
    }
    let mut waves: Vec<Vec<&Resource>> = vec![];
    for resource in resources {
        let depth = level[resource.component.as_str()];
        if waves.len() <= depth {
            waves.resize_with(depth + 1, Vec::new);
        }
        waves[depth].push(resource);
    }
    waves
}

async fn run_step(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    step: &Step,
) -> anyhow::Result<Option<Existing>> {
    let started = Instant::now();
    let current = known.get(&resource.component);
    let result = match (step.action, current) {
        (Action::Keep, _) => return Ok(None),
        (Action::Create, _) => resources::create(ctx, known, resource).await?,
        (Action::Update, Some(current)) => {
            resources::update(ctx, known, resource, current, &step.changes).await?
        }
        (Action::Replace, Some(current)) => {
            resources::delete(ctx, current).await?;
            resources::create(ctx, known, resource).await?
        }
        (action, _) => bail!(
            "{}: cannot {action:?} what does not exist",
            resource.component
        ),
    };
    let detail = match step.action {
        Action::Create => format!("created {}", short(&result.id)),
        Action::Replace => format!("replaced by {}", short(&result.id)),
        _ => {
            let keys: Vec<&str> = step.changes.iter().map(|c| c.key.as_str()).collect();
            format!("updated {}", keys.join(", "))
        }
    };
    ctx.progress.done(
        step.action.symbol(),
        &resource.component,
        resource.kind.label(),
        &detail,
        started.elapsed(),
    );
    Ok(Some(result))
}

fn short(id: &str) -> &str {
    id.rsplit(['/', ':']).next().unwrap_or(id)
}

/// Carries out `plan`; returns what exists afterwards, by component.
pub async fn apply(
    ctx: &Ctx,
    plan: &Plan,
    desired: &[Resource],
    existing: Known,
) -> anyhow::Result<Known> {
    let steps: BTreeMap<&str, &Step> = plan
        .steps
        .iter()
        .map(|s| (s.component.as_str(), s))
        .collect();
    let mut known = existing;
    for wave in waves(desired) {
        let snapshot = known.clone();
        let results: Vec<(String, anyhow::Result<Option<Existing>>)> = futures::stream::iter(wave)
            .map(|resource| {
                let snapshot = &snapshot;
                let step = steps[resource.component.as_str()];
                async move {
                    (
                        resource.component.clone(),
                        run_step(ctx, snapshot, resource, step).await,
                    )
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut failures = Vec::new();
        for (component, result) in results {
            match result {
                Ok(Some(done)) => {
                    known.insert(component, done);
                }
                Ok(None) => {}
                Err(error) => {
                    ctx.progress
                        .done("!", &component, "", "failed", std::time::Duration::ZERO);
                    failures.push(format!("{component}: {error:#}"));
                }
            }
        }
        if !failures.is_empty() {
            bail!(
                "{} failed; what depends on it was not started, and a re-run goes on from here:\n  {}",
                failures.len(),
                failures.join("\n  ")
            );
        }
    }
    let leftovers: Vec<Existing> = plan
        .steps
        .iter()
        .filter(|s| s.action == Action::Delete)
        .filter_map(|s| known.get(&s.component).cloned())
        .collect();
    for current in leftovers {
        let started = Instant::now();
        resources::delete(ctx, &current).await?;
        ctx.progress.done(
            "-",
            &current.component,
            current.kind.label(),
            "deleted",
            started.elapsed(),
        );
        known.remove(&current.component);
    }
    Ok(known)
}

/// Removes `existing` in reverse dependency order (`graph` gives the
/// dependencies); the model bucket only when `delete_data`. Returns what was kept.
pub async fn destroy(
    ctx: &Ctx,
    graph: &[Resource],
    existing: Vec<Existing>,
    delete_data: bool,
) -> anyhow::Result<Vec<Existing>> {
    let (kept, mut remaining): (Vec<Existing>, Vec<Existing>) = existing
        .into_iter()
        .partition(|e| e.kind == super::spec::Kind::Bucket && !delete_data);
    let depends: BTreeMap<&str, &[String]> = graph
        .iter()
        .map(|r| (r.component.as_str(), r.depends_on.as_slice()))
        .collect();
    while !remaining.is_empty() {
        let present: BTreeSet<String> = remaining.iter().map(|e| e.component.clone()).collect();
        // Ready: nothing still present depends on it.
        let (ready, later): (Vec<Existing>, Vec<Existing>) = remaining.into_iter().partition(|e| {
            !present.iter().any(|other| {
                depends
                    .get(other.as_str())
                    .is_some_and(|deps| deps.contains(&e.component))
            })
        });
        if ready.is_empty() {
            bail!(
                "cannot order the removal of: {}",
                later
                    .iter()
                    .map(|e| e.component.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let results: Vec<(Existing, anyhow::Result<()>, std::time::Duration)> =
            futures::stream::iter(ready)
                .map(|current| async move {
                    let started = Instant::now();
                    let result = resources::delete(ctx, &current).await;
                    (current, result, started.elapsed())
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
        let mut failures = Vec::new();
        for (current, result, took) in results {
            match result {
                Ok(()) => ctx.progress.done(
                    "-",
                    &current.component,
                    current.kind.label(),
                    "deleted",
                    took,
                ),
                Err(error) => failures.push(format!("{}: {error:#}", current.component)),
            }
        }
        if !failures.is_empty() {
            bail!(
                "{} could not be deleted; run destroy again to go on:\n  {}",
                failures.len(),
                failures.join("\n  ")
            );
        }
        remaining = later;
    }
    Ok(kept)
}
