//! `accunode deploy | rollback | deploys | unlock` against moto, on a stack
//! made by `accunode provision` with two published releases: the workers'
//! rolling deploy (sampled by describe calls while it runs: in-service
//! capacity never below desired), the deploy lock (refused naming the holder,
//! `--lock-wait`, a killed deploy taken over with `--force`), a failed deploy
//! putting the group back, rollback and the history. Outcomes are read from
//! AWS directly, never through the CLI's own reports alone.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use accunode_testkit::aws_endpoint_url;
use accunode_testkit::aws_faults::{FaultProxy, Faults};

use crate::releases::{path, release_folder};
use crate::stack::{accunode, command, json, unique_stack};
use crate::support::{stderr, succeeded};

/// The clients the deploy tests read AWS with (the blue-green ones too).
pub(crate) struct Aws {
    pub(crate) autoscaling: aws_sdk_autoscaling::Client,
    pub(crate) ec2: aws_sdk_ec2::Client,
    pub(crate) elb: aws_sdk_elasticloadbalancingv2::Client,
    pub(crate) cloudwatch: aws_sdk_cloudwatch::Client,
    s3: aws_sdk_s3::Client,
}

pub(crate) async fn aws() -> Aws {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(aws_endpoint_url())
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    Aws {
        autoscaling: aws_sdk_autoscaling::Client::new(&config),
        ec2: aws_sdk_ec2::Client::new(&config),
        elb: aws_sdk_elasticloadbalancingv2::Client::new(&config),
        cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
        s3: accunode_testkit::s3_client().await,
    }
}

/// The stack's last deploy or rollback record, once the lock is free.
pub(crate) fn last_deploy(stack: &str) -> serde_json::Value {
    let history = json(&accunode(stack, &["deploys", "--output", "json"]));
    assert!(history["lock"].is_null(), "{history}");
    history["deploys"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone()
}

/// The worker group as AWS describes it.
struct Group {
    desired: i32,
    max: i32,
    suspended: BTreeSet<String>,
    in_service: Vec<String>,
}

async fn group(aws: &Aws, stack: &str) -> Group {
    let found = aws
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(format!("{stack}-worker-asg"))
        .send()
        .await
        .unwrap();
    let group = &found.auto_scaling_groups()[0];
    Group {
        desired: group.desired_capacity().unwrap(),
        max: group.max_size().unwrap(),
        suspended: group
            .suspended_processes()
            .iter()
            .filter_map(|p| p.process_name())
            .map(str::to_owned)
            .collect(),
        in_service: group
            .instances()
            .iter()
            .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
            .filter_map(|i| i.instance_id())
            .map(str::to_owned)
            .collect(),
    }
}

/// Each instance's `accunode:release` tag, as EC2 reports it.
async fn releases(aws: &Aws, ids: &[String]) -> Vec<Option<String>> {
    let described = aws
        .ec2
        .describe_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .unwrap();
    described
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            i.tags()
                .iter()
                .find(|t| t.key() == Some("accunode:release"))
                .and_then(|t| t.value())
                .map(str::to_owned)
        })
        .collect()
}

/// The release the worker group launches instances with: its propagated tag.
async fn group_release(aws: &Aws, stack: &str) -> Option<String> {
    let found = aws
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(format!("{stack}-worker-asg"))
        .send()
        .await
        .unwrap();
    let tag = found.auto_scaling_groups()[0]
        .tags()
        .iter()
        .find(|t| t.key() == Some("accunode:release"))?
        .clone();
    assert_eq!(tag.propagate_at_launch(), Some(true), "instances carry it");
    tag.value().map(str::to_owned)
}

/// A provisioned phase-1 stack (two workers) with releases 1.0.0 and 2.0.0.
async fn stack_with_two_releases(prefix: &str) -> String {
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
    stack
}

/// The group is as provisioned: every instance in service on `version`,
/// nothing suspended, the phase's size.
async fn settled_on(aws: &Aws, stack: &str, version: &str) {
    let now = group(aws, stack).await;
    assert_eq!((now.desired, now.max), (2, 6), "phase 1's worker group");
    assert!(
        now.suspended.is_empty(),
        "scaling resumed: {:?}",
        now.suspended
    );
    assert_eq!(now.in_service.len(), 2);
    assert_eq!(
        releases(aws, &now.in_service).await,
        vec![Some(version.to_owned()); 2],
        "every instance tagged {version}"
    );
    assert_eq!(group_release(aws, stack).await.as_deref(), Some(version));
}

#[tokio::test]
async fn a_rolling_worker_deploy_replaces_every_instance_in_two_batches_never_below_desired() {
    let aws = aws().await;
    let stack = stack_with_two_releases("roll").await;
    succeeded(&accunode(
        &stack,
        &["deploy", "worker", "--version", "1.0.0"],
    ));
    settled_on(&aws, &stack, "1.0.0").await;
    let first = group(&aws, &stack).await.in_service;

    // Sample the group by describe calls for as long as the deploy runs.
    let running = Arc::new(AtomicBool::new(true));
    let sampler = {
        let running = running.clone();
        let stack = stack.clone();
        tokio::spawn(async move {
            let aws = self::aws().await;
            let mut samples = Vec::new();
            while running.load(Ordering::Relaxed) {
                let now = group(&aws, &stack).await;
                samples.push((now.in_service.len(), now.desired));
            }
            samples
        })
    };
    let deploy = tokio::task::spawn_blocking({
        let stack = stack.clone();
        move || {
            accunode(
                &stack,
                &["deploy", "worker", "--version", "2.0.0", "--output", "json"],
            )
        }
    })
    .await
    .unwrap();
    running.store(false, Ordering::Relaxed);
    let samples = sampler.await.unwrap();
    let report = json(&deploy);

    assert!(
        samples.len() >= 5,
        "too few samples to watch the deploy: {samples:?}"
    );
    assert!(
        samples.iter().all(|(in_service, _)| *in_service >= 2),
        "in-service capacity dropped below the desired 2: {samples:?}"
    );
    assert!(
        samples.iter().any(|(in_service, _)| *in_service > 2),
        "the sampler never saw a batch in flight: {samples:?}"
    );
    let batches = report["deploy"]["rolled"]["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 2, "{report}");
    let terminated: BTreeSet<&str> = batches
        .iter()
        .flat_map(|b| b["terminated"].as_array().unwrap())
        .map(|id| id.as_str().unwrap())
        .collect();
    assert_eq!(
        terminated,
        first.iter().map(String::as_str).collect(),
        "every old instance replaced"
    );
    settled_on(&aws, &stack, "2.0.0").await;

    // The operator's view: the tier's release on each instance, the last deploy.
    let status = json(&accunode(&stack, &["status", "--output", "json"]));
    let deploys = &status["deploys"];
    let worker = deploys["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tier"] == "worker")
        .unwrap();
    assert_eq!(worker["release"], "2.0.0", "{status}");
    assert_eq!(worker["in_service"], 2, "{status}");
    assert!(
        worker["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["release"] == "2.0.0"),
        "{status}"
    );
    assert_eq!(deploys["last_deploy"]["to"], "2.0.0", "{status}");
    assert!(deploys["lock"].is_null(), "{status}");
    let text = succeeded(&accunode(&stack, &["status"]));
    assert!(
        text.lines()
            .any(|line| line.starts_with("Tier worker ") && line.contains("release 2.0.0"))
            && text.contains("2.0.0 ×2"),
        "{text}"
    );

    // Rollback goes to the release before, the same way; the history has all three.
    succeeded(&accunode(&stack, &["rollback", "worker"]));
    settled_on(&aws, &stack, "1.0.0").await;
    let history = json(&accunode(&stack, &["deploys", "--output", "json"]));
    let rows: Vec<(String, String, String, String)> = history["deploys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["from"].as_str().unwrap_or("none").to_owned(),
                r["to"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let row = |a: &str, f: &str, t: &str| {
        (
            a.to_owned(),
            f.to_owned(),
            t.to_owned(),
            "succeeded".to_owned(),
        )
    };
    assert_eq!(
        rows,
        [
            row("deploy", "none", "1.0.0"),
            row("deploy", "1.0.0", "2.0.0"),
            row("rollback", "2.0.0", "1.0.0")
        ]
    );
    assert!(history["lock"].is_null(), "{history}");

    // A release that was never published is refused before anything changes.
    let missing = accunode(&stack, &["deploy", "worker", "--version", "9.9.9"]);
    assert!(
        stderr(&missing).contains("release 9.9.9 is not published"),
        "{}",
        stderr(&missing)
    );
    let history = json(&accunode(&stack, &["deploys", "--output", "json"]));
    assert!(
        history["lock"].is_null(),
        "a refused deploy gives the lock up: {history}"
    );
    settled_on(&aws, &stack, "1.0.0").await;

    succeeded(&accunode(&stack, &["destroy", "--yes", "--delete-data"]));
}

/// Writes the lock as a deploy running elsewhere would.
async fn hold_lock(aws: &Aws, stack: &str) {
    let holder = serde_json::json!({
        "who": "ops@elsewhere (pid 7)", "tier": "worker", "action": "deploy",
        "version": "2.0.0", "since": "2026-11-28T04:00:00Z", "token": "elsewhere",
        "restore": null
    });
    aws.s3
        .put_object()
        .bucket(format!("{stack}-ml-models-123456789012-us-east-1"))
        .key("deploys/lock.json")
        .body(serde_json::to_vec(&holder).unwrap().into())
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_lock_refuses_a_second_deploy_and_lock_wait_waits_for_it() {
    let aws = aws().await;
    let stack = stack_with_two_releases("lock").await;
    hold_lock(&aws, &stack).await;

    let refused = accunode(&stack, &["deploy", "worker", "--version", "1.0.0"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains(
            "another deploy holds the stack's lock: ops@elsewhere (pid 7) (deploy worker 2.0.0"
        ),
        "{}",
        stderr(&refused)
    );
    assert_eq!(group_release(&aws, &stack).await, None, "nothing deployed");

    // With --lock-wait it waits until the holder is done, then deploys.
    let started = Instant::now();
    let waiting = command(
        &stack,
        &[
            "deploy",
            "worker",
            "--version",
            "1.0.0",
            "--lock-wait",
            "30s",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let unlocked = succeeded(&accunode(&stack, &["unlock", "--force"]));
    assert!(unlocked.contains("ops@elsewhere"), "{unlocked}");
    let waited = tokio::task::spawn_blocking(move || waiting.wait_with_output().unwrap())
        .await
        .unwrap();
    succeeded(&waited);
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "it waited for the lock"
    );
    settled_on(&aws, &stack, "1.0.0").await;

    // A provision that changes something holds the lock while it applies:
    // one killed right after taking it leaves it, and a deploy is refused
    // naming it.
    let killed = command(&stack, &["provision", "--phase", "2"])
        .env("ACCUNODE_TEST_ABORT_AFTER_MUTATIONS", "1")
        .output()
        .unwrap();
    assert_eq!(killed.status.code(), Some(137), "{}", stderr(&killed));
    let refused = accunode(&stack, &["deploy", "worker", "--version", "2.0.0"]);
    assert!(
        !refused.status.success() && stderr(&refused).contains("(provision since"),
        "{}",
        stderr(&refused)
    );
    // A re-run of provision takes over the dead one's lock and gives it up.
    succeeded(&accunode(&stack, &["provision", "--phase", "2"]));
    let history = json(&accunode(&stack, &["deploys", "--output", "json"]));
    assert!(history["lock"].is_null(), "{history}");

    // unlock names what it removes and asks for --force.
    let unconfirmed = accunode(&stack, &["unlock"]);
    assert!(
        stderr(&unconfirmed).contains("pass --force"),
        "{}",
        stderr(&unconfirmed)
    );

    succeeded(&accunode(&stack, &["destroy", "--yes", "--delete-data"]));
}

/// A stack whose workers run 1.0.0, with a deploy of 2.0.0 killed after the
/// lock, its record, the suspension, the release and the first batch's launch.
async fn on_one_killed_going_to_two(prefix: &str) -> String {
    let stack = stack_with_two_releases(prefix).await;
    succeeded(&accunode(
        &stack,
        &["deploy", "worker", "--version", "1.0.0"],
    ));
    let killed = command(&stack, &["deploy", "worker", "--version", "2.0.0"])
        .env("ACCUNODE_TEST_ABORT_AFTER_MUTATIONS", "7")
        .output()
        .unwrap();
    assert_eq!(killed.status.code(), Some(137), "{}", stderr(&killed));
    stack
}

#[tokio::test]
async fn a_killed_deploy_keeps_the_lock_and_force_puts_the_group_back_and_finishes() {
    let aws = aws().await;
    let stack = on_one_killed_going_to_two("kill").await;
    // The group is bigger and its scaling suspended.
    let left = group(&aws, &stack).await;
    assert!(
        !left.suspended.is_empty(),
        "the killed deploy had suspended scaling"
    );
    let history = json(&accunode(&stack, &["deploys", "--output", "json"]));
    assert_eq!(
        history["lock"]["version"], "2.0.0",
        "the lock is kept: {history}"
    );
    let status = succeeded(&accunode(&stack, &["status"]));
    assert!(status.contains("Deploy lock held by"), "{status}");
    // Removing the lock would lose what the dead deploy changed: refused.
    let unlock = accunode(&stack, &["unlock", "--force"]);
    assert!(
        !unlock.status.success() && stderr(&unlock).contains("records changes to"),
        "{}",
        stderr(&unlock)
    );

    let refused = accunode(&stack, &["deploy", "worker", "--version", "2.0.0"]);
    assert!(
        stderr(&refused).contains("another deploy holds"),
        "{}",
        stderr(&refused)
    );
    // Nor may a provision that changes something, or destroy, meanwhile.
    for args in [
        &["provision", "--phase", "2"][..],
        &["destroy", "--yes", "--delete-data"][..],
    ] {
        let refused = accunode(&stack, args);
        assert!(
            !refused.status.success() && stderr(&refused).contains("holds the stack's deploy lock"),
            "{args:?}: {}",
            stderr(&refused)
        );
    }
    succeeded(&accunode(
        &stack,
        &["deploy", "worker", "--version", "2.0.0", "--force"],
    ));
    settled_on(&aws, &stack, "2.0.0").await;
    let history = json(&accunode(&stack, &["deploys", "--output", "json"]));
    assert!(history["lock"].is_null(), "{history}");

    succeeded(&accunode(&stack, &["destroy", "--yes", "--delete-data"]));
}

#[tokio::test]
async fn a_failed_deploy_puts_the_group_and_its_release_back() {
    let aws = aws().await;
    let stack = stack_with_two_releases("fail").await;
    // Old instances cannot be terminated: the first batch is launched, then
    // the deploy fails.
    let proxy = FaultProxy::start(
        &aws_endpoint_url(),
        Faults {
            refuse: vec!["TerminateInstanceInAutoScalingGroup".to_owned()],
            ..Faults::default()
        },
    );
    // A failed first deploy leaves no release for new instances to take.
    let failed = command(&stack, &["deploy", "worker", "--version", "1.0.0"])
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .output()
        .unwrap();
    assert!(
        stderr(&failed).contains("new instances wait for a release again"),
        "{}",
        stderr(&failed)
    );
    assert_eq!(group_release(&aws, &stack).await, None);
    succeeded(&accunode(
        &stack,
        &["deploy", "worker", "--version", "1.0.0"],
    ));

    let failed = command(&stack, &["deploy", "worker", "--version", "2.0.0"])
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .output()
        .unwrap();
    assert!(!failed.status.success());
    assert!(
        stderr(&failed).contains("new instances launch with 1.0.0 again")
            && stderr(&failed).contains("accunode deploy worker --version 1.0.0"),
        "{}",
        stderr(&failed)
    );
    let now = group(&aws, &stack).await;
    assert_eq!((now.desired, now.max), (2, 6), "size put back");
    assert!(
        now.suspended.is_empty(),
        "scaling resumed: {:?}",
        now.suspended
    );
    assert_eq!(group_release(&aws, &stack).await.as_deref(), Some("1.0.0"));
    let last = last_deploy(&stack);
    assert_eq!(last["outcome"], "failed", "{last}");
    let reason = last["reason"].as_str().unwrap();
    assert!(
        reason.contains("cannot terminate the old instance") && reason.contains("AccessDenied"),
        "{last}"
    );

    succeeded(&accunode(&stack, &["destroy", "--yes", "--delete-data"]));
}

/// A workspace of its own for `accunode release` to read migrations from.
fn workspace(migrations: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Cargo.toml"), "[workspace]\n").unwrap();
    std::fs::create_dir(dir.path().join("models")).unwrap();
    std::fs::create_dir(dir.path().join("migrations")).unwrap();
    for name in migrations {
        std::fs::write(
            dir.path().join("migrations").join(name),
            "CREATE TABLE t (id int);\n",
        )
        .unwrap();
    }
    dir
}

#[tokio::test]
async fn a_release_with_new_migrations_is_deployed_after_a_database_snapshot() {
    let aws = aws().await;
    let rds = aws_sdk_rds::Client::new(
        &aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(aws_endpoint_url())
            .region(aws_config::Region::new("us-east-1"))
            .load()
            .await,
    );
    let stack = unique_stack("snap");
    succeeded(&accunode(&stack, &["provision", "--phase", "1"]));
    let binaries = release_folder(b"");
    for (version, migrations) in [
        ("1.0.0", vec!["1_first.sql"]),
        ("1.1.0", vec!["1_first.sql"]),
        ("2.0.0", vec!["1_first.sql", "2_second.sql"]),
    ] {
        let root = workspace(&migrations);
        succeeded(
            &command(
                &stack,
                &[
                    "release",
                    "--version",
                    version,
                    "--from",
                    path(binaries.path()),
                ],
            )
            .current_dir(root.path())
            .output()
            .unwrap(),
        );
    }
    let snapshots = || async {
        let found = rds
            .describe_db_snapshots()
            .snapshot_type("manual")
            .send()
            .await
            .unwrap();
        found
            .db_snapshots()
            .iter()
            .filter(|s| s.db_instance_identifier() == Some(&*format!("{stack}-db")))
            .map(|s| {
                let release = s
                    .tag_list()
                    .iter()
                    .find(|t| t.key() == Some("accunode:release"))
                    .and_then(|t| t.value())
                    .unwrap_or_default()
                    .to_owned();
                (s.db_snapshot_identifier().unwrap().to_owned(), release)
            })
            .collect::<Vec<_>>()
    };

    // The first release and one with the same migrations: no snapshot.
    succeeded(&accunode(
        &stack,
        &["deploy", "worker", "--version", "1.0.0"],
    ));
    succeeded(&accunode(
        &stack,
        &["deploy", "worker", "--version", "1.1.0"],
    ));
    assert!(snapshots().await.is_empty(), "{:?}", snapshots().await);

    // A release with a new migration: snapshot first, tagged with it.
    let deployed = json(&accunode(
        &stack,
        &["deploy", "worker", "--version", "2.0.0", "--output", "json"],
    ));
    let taken = snapshots().await;
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(taken[0].1, "2.0.0");
    assert_eq!(
        deployed["deploy"]["snapshot"],
        taken[0].0.as_str(),
        "{deployed}"
    );
    settled_on(&aws, &stack, "2.0.0").await;

    succeeded(&accunode(&stack, &["destroy", "--yes", "--delete-data"]));
}

/// The worker group as a client of `endpoint` sees it: in service, and all.
async fn counts_through(endpoint: &str, stack: &str) -> (usize, usize) {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    let found = aws_sdk_autoscaling::Client::new(&config)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(format!("{stack}-worker-asg"))
        .send()
        .await
        .unwrap();
    let instances = found.auto_scaling_groups()[0].instances();
    let in_service = instances
        .iter()
        .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
        .count();
    (in_service, instances.len())
}

#[tokio::test]
async fn with_slow_launches_each_batch_waits_for_its_instances_to_boot() {
    let aws = aws().await;
    let stack = stack_with_two_releases("boot").await;
    succeeded(&accunode(
        &stack,
        &["deploy", "worker", "--version", "1.0.0"],
    ));
    let proxy = FaultProxy::start(
        &aws_endpoint_url(),
        Faults {
            instance_launch_secs: 1.5,
            ..Faults::default()
        },
    );
    // Seen through the proxy first: the instances there now booted long ago.
    assert_eq!(counts_through(&proxy.url, &stack).await, (2, 2));

    let running = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (running, stack, url) = (running.clone(), stack.clone(), proxy.url.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while running.load(Ordering::Relaxed) {
                samples.push(counts_through(&url, &stack).await);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            samples
        })
    };
    let started = Instant::now();
    let deployed = tokio::task::spawn_blocking({
        let (stack, url) = (stack.clone(), proxy.url.clone());
        move || {
            command(&stack, &["deploy", "worker", "--version", "2.0.0"])
                .env("AWS_ENDPOINT_URL", url)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let took = started.elapsed();
    running.store(false, Ordering::Relaxed);
    let samples = sampler.await.unwrap();
    succeeded(&deployed);

    assert!(
        took >= Duration::from_secs(3),
        "two batches each wait 1.5 s for their instances to boot: took {took:?}"
    );
    assert!(
        samples.iter().any(|(in_service, all)| in_service < all),
        "the proxy showed booting instances: {samples:?}"
    );
    assert!(
        samples.iter().all(|(in_service, _)| *in_service >= 2),
        "in-service capacity dropped below the desired 2: {samples:?}"
    );
    settled_on(&aws, &stack, "2.0.0").await;
    succeeded(&accunode(&stack, &["destroy", "--yes", "--delete-data"]));
}

#[tokio::test]
async fn a_rollback_of_a_killed_deploy_puts_every_instance_back_on_the_release_before() {
    let aws = aws().await;
    let stack = on_one_killed_going_to_two("back").await;

    let rolled_back = succeeded(&accunode(&stack, &["rollback", "worker", "--force"]));
    assert!(
        rolled_back.contains("rollback of worker 2.0.0 → 1.0.0"),
        "{rolled_back}"
    );
    settled_on(&aws, &stack, "1.0.0").await;
    let last = last_deploy(&stack);
    assert_eq!(
        (
            &last["action"],
            &last["from"],
            &last["to"],
            &last["outcome"]
        ),
        (
            &"rollback".into(),
            &"2.0.0".into(),
            &"1.0.0".into(),
            &"succeeded".into()
        ),
        "{last}"
    );

    succeeded(&accunode(&stack, &["destroy", "--yes", "--delete-data"]));
}
