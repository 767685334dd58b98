//! Apply a plan, and destroy a stack, as walks of the dependency graph
//! ([`super::walk`]): a resource starts as soon as what it depends on is done,
//! a failure stops only what depends on it. A resource found on its way
//! somewhere (RDS still creating after a killed run) is waited for before it
//! is changed or anything that needs it starts. Destroy walks the graph
//! backwards: a resource goes once nothing that uses it is left.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;

use super::plan::{Action, Plan, Step};
use super::resources::{self, Changed, Ctx, Known};
use super::spec::{Existing, Kind, Resource};
use super::walk::{self, CriticalPath, Node, Schedule};

/// How an apply or destroy went, for the run's summary.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub wall_secs: f64,
    pub critical_path: CriticalPath,
}

impl Report {
    pub fn summary(&self) -> String {
        format!(
            "Wall time {:.1} s; critical path {:.1} s: {}.",
            self.wall_secs,
            self.critical_path.seconds,
            if self.critical_path.chain.is_empty() {
                "nothing waited on".to_owned()
            } else {
                self.critical_path.chain.join(" → ")
            }
        )
    }
}

async fn run_step(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    step: &Step,
) -> anyhow::Result<Option<Existing>> {
    let started = Instant::now();
    let mut current = known.get(&resource.component).cloned();
    let mut waited = false;
    if let Some(found) = current.as_mut()
        && let Some(status) = resources::in_transition(found)
    {
        let status = status.to_owned();
        resources::settle(ctx, found).await?;
        ctx.progress.done(
            "…",
            &resource.component,
            resource.kind.label(),
            &format!("was {status}, now ready"),
            started.elapsed(),
        );
        waited = true;
    }
    let result = match (step.action, current) {
        (Action::Keep, current) => return Ok(current.filter(|_| waited)),
        (Action::Create, _) => resources::create(ctx, known, resource).await?,
        (Action::Update, Some(current)) => {
            let changed = Changed(step.changes.iter().map(|c| c.key.clone()).collect());
            resources::update(ctx, known, resource, &current, &changed).await?
        }
        (Action::Replace, Some(current)) => {
            resources::delete(ctx, &current).await?;
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

/// The graph of `resources`: each blocked by the resources it depends on.
fn dependency_nodes(resources: &[Resource]) -> Vec<Node> {
    let index: BTreeMap<&str, usize> = resources
        .iter()
        .enumerate()
        .map(|(i, r)| (r.component.as_str(), i))
        .collect();
    resources
        .iter()
        .map(|r| Node {
            name: r.component.clone(),
            blocked_by: r
                .depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect(),
        })
        .collect()
}

fn failed(walked: &walk::Walked, nodes: &[Node]) -> Vec<String> {
    walked
        .failures
        .iter()
        .map(|(i, error)| format!("{}: {error:#}", nodes[*i].name))
        .collect()
}

/// Carries out `plan`; returns what exists afterwards, by component, and how
/// the run went.
pub async fn apply(
    ctx: &Ctx,
    plan: &Plan,
    desired: &[Resource],
    existing: Known,
    schedule: Schedule,
) -> anyhow::Result<(Known, Report)> {
    let steps: BTreeMap<&str, &Step> = plan
        .steps
        .iter()
        .map(|s| (s.component.as_str(), s))
        .collect();
    let nodes = dependency_nodes(desired);
    let known = RefCell::new(existing);
    let walked = walk::walk(
        &nodes,
        schedule,
        |i| {
            let resource = &desired[i];
            let step = steps[resource.component.as_str()];
            // What this step may refer to: everything done so far.
            let snapshot = known.borrow().clone();
            async move { run_step(ctx, &snapshot, resource, step).await }
        },
        |i, result| {
            if let Some(done) = result {
                known
                    .borrow_mut()
                    .insert(desired[i].component.clone(), done);
            }
        },
    )
    .await;
    for (i, _) in &walked.failures {
        ctx.progress.done(
            "!",
            &nodes[*i].name,
            "",
            "failed",
            walked.took[*i].unwrap_or_default(),
        );
    }
    if !walked.failures.is_empty() {
        let skipped: Vec<&str> = walked
            .skipped
            .iter()
            .map(|&i| nodes[i].name.as_str())
            .collect();
        bail!(
            "{} failed; everything that does not depend on it is done, and a re-run goes on from here:\n  {}{}",
            walked.failures.len(),
            failed(&walked, &nodes).join("\n  "),
            if skipped.is_empty() {
                String::new()
            } else {
                format!(
                    "\nnot started, as they depend on it: {}",
                    skipped.join(", ")
                )
            }
        );
    }
    let mut critical_path = walked.critical_path(&nodes);
    let mut known = known.into_inner();
    // What the phase no longer has goes last, one at a time in destroy order:
    // everything that used it has been changed not to.
    let leftovers: Vec<Existing> = plan
        .steps
        .iter()
        .filter(|s| s.action == Action::Delete)
        .filter_map(|s| known.get(&s.component).cloned())
        .collect();
    let mut after_walk = Duration::ZERO;
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
        after_walk += started.elapsed();
        critical_path.chain.push(current.component.clone());
        known.remove(&current.component);
    }
    critical_path.seconds += after_walk.as_secs_f64();
    Ok((
        known,
        Report {
            wall_secs: (walked.wall + after_walk).as_secs_f64(),
            critical_path,
        },
    ))
}

/// Removes `existing`, each once nothing that depends on it (per `graph`) is
/// left; the model bucket only when `delete_data`. Returns what was kept.
pub async fn destroy(
    ctx: &Ctx,
    graph: &[Resource],
    existing: Vec<Existing>,
    delete_data: bool,
) -> anyhow::Result<(Vec<Existing>, Report)> {
    let (kept, remaining): (Vec<Existing>, Vec<Existing>) = existing
        .into_iter()
        .partition(|e| e.kind == Kind::Bucket && !delete_data);
    let depends: BTreeMap<&str, &[String]> = graph
        .iter()
        .map(|r| (r.component.as_str(), r.depends_on.as_slice()))
        .collect();
    // Backwards: a resource is blocked by every present resource that depends on it.
    let nodes: Vec<Node> = remaining
        .iter()
        .map(|e| Node {
            name: e.component.clone(),
            blocked_by: remaining
                .iter()
                .enumerate()
                .filter(|(_, user)| {
                    depends
                        .get(user.component.as_str())
                        .is_some_and(|deps| deps.contains(&e.component))
                })
                .map(|(i, _)| i)
                .collect(),
        })
        .collect();
    let walked = walk::walk(
        &nodes,
        Schedule::Graph,
        |i| {
            let current = &remaining[i];
            async move {
                let started = Instant::now();
                resources::delete(ctx, current).await?;
                ctx.progress.done(
                    "-",
                    &current.component,
                    current.kind.label(),
                    "deleted",
                    started.elapsed(),
                );
                anyhow::Ok(())
            }
        },
        |_, ()| {},
    )
    .await;
    if !walked.failures.is_empty() {
        let kept_for_it: Vec<&str> = walked
            .skipped
            .iter()
            .map(|&i| nodes[i].name.as_str())
            .collect();
        bail!(
            "{} could not be deleted; everything else that could go is gone, and destroy again goes on:\n  {}{}",
            walked.failures.len(),
            failed(&walked, &nodes).join("\n  "),
            if kept_for_it.is_empty() {
                String::new()
            } else {
                format!(
                    "\nstill there, as it is in use by that: {}",
                    kept_for_it.join(", ")
                )
            }
        );
    }
    let report = Report {
        wall_secs: walked.wall.as_secs_f64(),
        critical_path: walked.critical_path(&nodes),
    };
    Ok((kept, report))
}
