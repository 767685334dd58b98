//! `accunode deploy api` and `rollback api` against moto, on a stack made by
//! `accunode provision` with two published releases: the blue-green switch
//! (a canary's weighted forward seen by describe calls while it runs, the
//! live colour never short of instances), a health gate the harness keeps
//! shut, a canary alarm set mid-wait, Ctrl-C mid-canary, a deploy killed
//! mid-canary taken over with `--force`, and a live deploy overtaken by a
//! forced one. Each failure must leave the listeners, both groups and their
//! scaling exactly as they were: read from AWS, not from the CLI.

use std::collections::BTreeSet;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use accunode_testkit::aws_endpoint_url;
use accunode_testkit::aws_faults::{FaultProxy, Faults};
use aws_sdk_cloudwatch::types::StateValue;

use crate::deploys::{Aws, aws, last_deploy};
use crate::releases::{path, release_folder};
use crate::stack::{accunode, command, json, unique_stack};
use crate::support::{stderr, succeeded};

/// One colour's group as AWS describes it.
#[derive(Debug, PartialEq, Eq)]
struct Colour {
    min: i32,
    max: i32,
    desired: i32,
    suspended: BTreeSet<String>,
    /// What new instances launch with: the group's propagated release tag.
    release: Option<String>,
    /// Each instance's own release tag, sorted.
    instances: Vec<Option<String>>,
}

/// Everything a blue-green deploy touches.
#[derive(Debug, PartialEq, Eq)]
struct Api {
    /// The HTTP listener's action: "forward NAME" or "forward NAME=W,NAME=W".
    listener: String,
    blue: Colour,
    green: Colour,
    /// The group each alarm on the API's group reads.
    alarm_groups: Vec<String>,
}

async fn listener(aws: &Aws, stack: &str) -> String {
    let balancers = aws
        .elb
        .describe_load_balancers()
        .names(format!("{stack}-alb"))
        .send()
        .await
        .unwrap();
    let listeners = aws
        .elb
        .describe_listeners()
        .load_balancer_arn(balancers.load_balancers()[0].load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    let action = &listeners.listeners()[0].default_actions()[0];
    // targetgroup/<name>/<id>: the name.
    let name = |arn: &str| arn.split('/').nth(1).unwrap().to_owned();
    let tuples = action
        .forward_config()
        .map(|c| c.target_groups())
        .unwrap_or_default();
    if tuples.len() > 1 {
        let shares: Vec<String> = tuples
            .iter()
            .map(|t| {
                format!(
                    "{}={}",
                    name(t.target_group_arn().unwrap()),
                    t.weight().unwrap()
                )
            })
            .collect();
        format!("forward {}", shares.join(","))
    } else {
        format!("forward {}", name(action.target_group_arn().unwrap()))
    }
}

async fn colour(aws: &Aws, stack: &str, colour: &str) -> Colour {
    let found = aws
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(format!("{stack}-api-{colour}-asg"))
        .send()
        .await
        .unwrap();
    let group = &found.auto_scaling_groups()[0];
    let ids: Vec<String> = group
        .instances()
        .iter()
        .filter_map(|i| i.instance_id())
        .map(str::to_owned)
        .collect();
    let mut instances = Vec::new();
    if !ids.is_empty() {
        let described = aws
            .ec2
            .describe_instances()
            .set_instance_ids(Some(ids))
            .send()
            .await
            .unwrap();
        for instance in described.reservations().iter().flat_map(|r| r.instances()) {
            instances.push(
                instance
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some("accunode:release"))
                    .and_then(|t| t.value())
                    .map(str::to_owned),
            );
        }
    }
    instances.sort();
    Colour {
        min: group.min_size().unwrap(),
        max: group.max_size().unwrap(),
        desired: group.desired_capacity().unwrap(),
        suspended: group
            .suspended_processes()
            .iter()
            .filter_map(|p| p.process_name())
            .map(str::to_owned)
            .collect(),
        release: group
            .tags()
            .iter()
            .find(|t| t.key() == Some("accunode:release"))
            .and_then(|t| t.value())
            .map(str::to_owned),
        instances,
    }
}

async fn api(aws: &Aws, stack: &str) -> Api {
    let mut alarm_groups = Vec::new();
    for name in ["ApiHighCpu", "ApiHighMemory"] {
        let alarms = aws
            .cloudwatch
            .describe_alarms()
            .alarm_names(format!("{stack}-{name}"))
            .send()
            .await
            .unwrap();
        alarm_groups.push(
            alarms.metric_alarms()[0].dimensions()[0]
                .value()
                .unwrap()
                .to_owned(),
        );
    }
    Api {
        listener: listener(aws, stack).await,
        blue: colour(aws, stack, "blue").await,
        green: colour(aws, stack, "green").await,
        alarm_groups,
    }
}

/// The live colour on `version`, the other idle at zero, scaling resumed.
fn live_on(state: &Api, stack: &str, live: &str, version: &str) {
    assert_eq!(state.listener, format!("forward {stack}-api-{live}"));
    let (serving, idle) = if live == "blue" {
        (&state.blue, &state.green)
    } else {
        (&state.green, &state.blue)
    };
    assert_eq!(
        (serving.min, serving.max, serving.desired),
        (2, 4, 2),
        "the live colour has phase 1's sizes: {state:?}"
    );
    assert_eq!(serving.release.as_deref(), Some(version));
    assert_eq!(
        serving.instances,
        vec![Some(version.to_owned()); 2],
        "every {live} instance tagged {version}"
    );
    assert_eq!((idle.min, idle.desired), (0, 0), "{state:?}");
    assert!(
        idle.instances.is_empty(),
        "the old colour at zero: {state:?}"
    );
    assert!(
        serving.suspended.is_empty() && idle.suspended.is_empty(),
        "scaling resumed on both colours: {state:?}"
    );
    assert_eq!(
        state.alarm_groups,
        vec![format!("{stack}-api-{live}-asg"); 2],
        "the alarms on the API's group follow the live colour"
    );
}

/// A provisioned phase-1 stack (two API servers) with releases 1.0.0 and
/// 2.0.0, the API deployed once: green live on 1.0.0.
async fn stack_on_one(prefix: &str) -> String {
    let stack = unique_stack(prefix);
    succeeded(&accunode(&stack, &["provision", "--phase", "1"]));
    for (version, tail) in [("1.0.0", b"one"), ("2.0.0", b"two")] {
        let folder = release_folder(tail);
        succeeded(&accunode(
            &stack,
            &[
                "release",
                "--version",
                version,
                "--from",
                path(folder.path()),
            ],
        ));
    }
    succeeded(&accunode(
        &stack,
        &["deploy", "api", "--version", "1.0.0", "--drain", "0s"],
    ));
    stack
}

/// `deploy api` of 2.0.0 with a 10 % canary for a minute.
fn canary_deploy(stack: &str) -> std::process::Command {
    command(
        stack,
        &[
            "deploy",
            "api",
            "--version",
            "2.0.0",
            "--canary",
            "10",
            "--canary-wait",
            "60s",
        ],
    )
}

/// Everything is as `before`, the lock free and the last deploy recorded
/// with `outcome`.
async fn rolled_back(aws: &Aws, stack: &str, before: &Api, outcome: &str) {
    assert_eq!(&api(aws, stack).await, before, "everything as before");
    let last = last_deploy(stack);
    assert_eq!(last["outcome"], outcome, "{last}");
}

/// Waits (at most 30 s) until the listener sends a canary share.
async fn canary_started(aws: &Aws, stack: &str) -> String {
    let started = Instant::now();
    loop {
        let now = listener(aws, stack).await;
        if now.contains('=') {
            return now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no canary: {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn output(child: Child) -> std::process::Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_blue_green_deploy_switches_after_its_canary_and_leaves_the_old_colour_at_zero() {
    let aws = Arc::new(aws().await);
    let stack = stack_on_one("bg").await;
    live_on(&api(&aws, &stack).await, &stack, "green", "1.0.0");
    // What provision wants is what the deploy left: nothing to change.
    let plan = accunode(&stack, &["plan", "--phase", "1", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", succeeded(&plan));

    // Sampled while the deploy runs: every action the listener takes, and
    // the colour it sends most requests to never has fewer than two
    // instances in service.
    let running = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (aws, stack, running) = (aws.clone(), stack.clone(), running.clone());
        tokio::spawn(async move {
            let mut actions: Vec<String> = Vec::new();
            let mut short = Vec::new();
            while running.load(Ordering::Relaxed) {
                let action = listener(&aws, &stack).await;
                let live = if action.contains('=') || action.ends_with("green") {
                    "green"
                } else {
                    "blue"
                };
                let serving = colour(&aws, &stack, live).await;
                if serving.instances.len() < 2 {
                    short.push(format!("{action}: {serving:?}"));
                }
                if actions.last() != Some(&action) {
                    actions.push(action);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (actions, short)
        })
    };
    let deploy = command(
        &stack,
        &[
            "deploy",
            "api",
            "--version",
            "2.0.0",
            "--canary",
            "20",
            "--canary-wait",
            "3s",
            "--drain",
            "1s",
            "--output",
            "json",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let deployed = json(&output(deploy).await);
    running.store(false, Ordering::Relaxed);
    let (actions, short) = sampler.await.unwrap();
    assert_eq!(
        actions,
        [
            format!("forward {stack}-api-green"),
            format!("forward {stack}-api-green=80,{stack}-api-blue=20"),
            format!("forward {stack}-api-blue"),
        ],
        "canary, then the switch"
    );
    assert!(short.is_empty(), "the live colour was short: {short:?}");
    let switched = &deployed["deploy"]["switched"];
    assert_eq!(
        (&switched["from_colour"], &switched["to_colour"]),
        (&"green".into(), &"blue".into()),
        "{deployed}"
    );
    assert!(switched["canary"]["seconds"].as_f64().unwrap() >= 3.0);
    assert_eq!(switched["instances"].as_array().unwrap().len(), 2);
    live_on(&api(&aws, &stack).await, &stack, "blue", "2.0.0");

    // Rollback: back to 1.0.0, on the colour that is idle now.
    succeeded(&accunode(&stack, &["rollback", "api", "--drain", "0s"]));
    live_on(&api(&aws, &stack).await, &stack, "green", "1.0.0");
    let history = json(&accunode(&stack, &["deploys", "--output", "json"]));
    let moves: Vec<(String, String, String)> = history["deploys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["to"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let succeeded_to =
        |action: &str, to: &str| (action.to_owned(), to.to_owned(), "succeeded".to_owned());
    assert_eq!(
        moves,
        [
            succeeded_to("deploy", "1.0.0"),
            succeeded_to("deploy", "2.0.0"),
            succeeded_to("rollback", "1.0.0"),
        ]
    );

    // A blue-green flag on workers, a rolling one on the API: named.
    let wrong = accunode(
        &stack,
        &["deploy", "worker", "--version", "2.0.0", "--canary", "10"],
    );
    assert!(
        stderr(&wrong).contains("--canary: only the API"),
        "{}",
        stderr(&wrong)
    );
    let wrong = accunode(
        &stack,
        &["deploy", "api", "--version", "2.0.0", "--batch", "10"],
    );
    assert!(
        stderr(&wrong).contains("--batch: the API is deployed blue-green"),
        "{}",
        stderr(&wrong)
    );

    succeeded(&accunode(&stack, &["destroy", "--yes", "--delete-data"]));
}

#[tokio::test]
async fn new_targets_that_never_become_healthy_roll_back_to_exactly_what_was() {
    let aws = aws().await;
    let stack = stack_on_one("sick").await;
    let before = api(&aws, &stack).await;
    let proxy = FaultProxy::start(
        &aws_endpoint_url(),
        Faults {
            unhealthy_target_groups: vec![format!("{stack}-api-blue")],
            ..Faults::default()
        },
    );
    let failed = command(
        &stack,
        &["deploy", "api", "--version", "2.0.0", "--wait-timeout", "3"],
    )
    .env("AWS_ENDPOINT_URL", &proxy.url)
    .output()
    .unwrap();
    assert!(!failed.status.success());
    let error = stderr(&failed);
    assert!(
        error.contains("rolled back: the listeners forward to green (1.0.0) again")
            && error.contains("health gate")
            && error.contains("0 of 2 targets healthy")
            && error.contains("unhealthy (Target.FailedHealthChecks)"),
        "{error}"
    );
    rolled_back(&aws, &stack, &before, "failed").await;

    succeeded(&accunode(&stack, &["destroy", "--yes", "--delete-data"]));
}

#[tokio::test]
async fn an_alarm_during_the_canary_rolls_back() {
    let aws = aws().await;
    let stack = stack_on_one("canary").await;
    let before = api(&aws, &stack).await;
    let deploy = canary_deploy(&stack)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let canary = canary_started(&aws, &stack).await;
    assert_eq!(
        canary,
        format!("forward {stack}-api-green=90,{stack}-api-blue=10")
    );
    let started = Instant::now();
    aws.cloudwatch
        .set_alarm_state()
        .alarm_name(format!("{stack}-HighResponseTime"))
        .state_value(StateValue::Alarm)
        .state_reason("p50 at 2 s on the canary")
        .send()
        .await
        .unwrap();
    let failed = output(deploy).await;
    assert!(!failed.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it stopped at the alarm, not after the wait"
    );
    let error = stderr(&failed);
    assert!(
        error.contains(&format!(
            "canary: the alarm {stack}-HighResponseTime went into ALARM"
        )) && error.contains("p50 at 2 s on the canary")
            && error.contains("rolled back"),
        "{error}"
    );
    rolled_back(&aws, &stack, &before, "failed").await;

    succeeded(&accunode(&stack, &["destroy", "--yes", "--delete-data"]));
}

/// Starts a canary deploy of 2.0.0 and kills it (SIGKILL) mid-canary.
async fn killed_mid_canary(aws: &Aws, stack: &str) {
    let mut deploy = canary_deploy(stack)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    canary_started(aws, stack).await;
    deploy.kill().unwrap();
    deploy.wait().unwrap();
}

#[tokio::test]
async fn a_deploy_killed_mid_canary_keeps_the_lock_for_rollback_or_force() {
    let aws = aws().await;
    let stack = stack_on_one("bgkill").await;
    let before = api(&aws, &stack).await;
    killed_mid_canary(&aws, &stack).await;

    // The lock stays, with what to put back: green live, blue as it was.
    let history = json(&accunode(&stack, &["deploys", "--output", "json"]));
    let restore = &history["lock"]["restore"];
    assert_eq!(restore["kind"], "blue_green", "{history}");
    assert_eq!(restore["live"], "green", "{history}");
    let refused = accunode(&stack, &["deploy", "api", "--version", "2.0.0"]);
    assert!(
        stderr(&refused).contains("another deploy holds the stack's lock"),
        "{}",
        stderr(&refused)
    );
    let unlock = accunode(&stack, &["unlock", "--force"]);
    assert!(
        stderr(&unlock).contains("and the listeners that removing it would lose"),
        "{}",
        stderr(&unlock)
    );

    // rollback --force puts back exactly what the dead deploy changed.
    let rolled_back = succeeded(&accunode(&stack, &["rollback", "api", "--force"]));
    assert!(
        rolled_back.contains("rollback of api 2.0.0 → 1.0.0"),
        "{rolled_back}"
    );
    assert_eq!(api(&aws, &stack).await, before, "as before the dead deploy");
    let last = last_deploy(&stack);
    assert_eq!(
        (&last["action"], &last["outcome"]),
        (&"rollback".into(), &"succeeded".into()),
        "{last}"
    );

    // Killed again, deploy --force takes it over and finishes the deploy.
    killed_mid_canary(&aws, &stack).await;
    succeeded(&accunode(
        &stack,
        &[
            "deploy",
            "api",
            "--version",
            "2.0.0",
            "--force",
            "--drain",
            "0s",
        ],
    ));
    live_on(&api(&aws, &stack).await, &stack, "blue", "2.0.0");
    let history = json(&accunode(&stack, &["deploys", "--output", "json"]));
    assert!(history["lock"].is_null(), "{history}");

    succeeded(&accunode(&stack, &["destroy", "--yes", "--delete-data"]));
}

#[tokio::test]
async fn a_deploy_whose_lock_is_broken_stops_and_touches_nothing_more() {
    let aws = aws().await;
    let stack = stack_on_one("broken").await;
    // Still alive, in its canary, when another run breaks its lock.
    let first = canary_deploy(&stack)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    canary_started(&aws, &stack).await;
    succeeded(&accunode(
        &stack,
        &[
            "deploy",
            "api",
            "--version",
            "2.0.0",
            "--force",
            "--drain",
            "0s",
        ],
    ));
    let started = Instant::now();
    let first = output(first).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it noticed, not after its canary wait"
    );
    assert!(
        !first.status.success() && stderr(&first).contains("the deploy lock was broken"),
        "{}",
        stderr(&first)
    );
    // What the forced run did stands: the first neither put its own
    // changes back over it nor removed the lock.
    live_on(&api(&aws, &stack).await, &stack, "blue", "2.0.0");
    let history = json(&accunode(&stack, &["deploys", "--output", "json"]));
    assert!(history["lock"].is_null(), "{history}");

    succeeded(&accunode(&stack, &["destroy", "--yes", "--delete-data"]));
}

#[tokio::test]
async fn ctrl_c_during_the_canary_rolls_back() {
    let aws = aws().await;
    let stack = stack_on_one("ctrlc").await;
    let before = api(&aws, &stack).await;
    let deploy = canary_deploy(&stack)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    canary_started(&aws, &stack).await;
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &deploy.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let stopped = output(deploy).await;
    assert!(!stopped.status.success());
    let error = stderr(&stopped);
    assert!(
        error.contains("interrupted (Ctrl-C)") && error.contains("rolled back"),
        "{error}"
    );
    rolled_back(&aws, &stack, &before, "interrupted").await;

    succeeded(&accunode(&stack, &["destroy", "--yes", "--delete-data"]));
}
