//! The stack commands against AWS as it really behaves, through the
//! fault-injecting proxy of `accunode_testkit::aws_faults` in front of moto:
//! slow resources (apply within 10 % of its critical path; a run killed during
//! a slow create is waited for by the next), throttling (one run succeeds) and
//! lost answers (exactly one resource per component, over twenty seeds), and
//! a refused resource stopping only what depends on it. Every
//! outcome is checked with describe calls against moto directly, not through
//! the proxy and not by our own discovery.

use std::collections::BTreeMap;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use accunode_testkit::aws_endpoint_url;
use accunode_testkit::aws_faults::{FaultProxy, Faults};

use crate::stack::{
    Clients, Inventory, clients, command, counts, inventory, json, unique_stack,
    without_moto_leftovers,
};
use crate::support::{stderr, succeeded};

/// `accunode ARGS --stack STACK` through `proxy`.
fn through(proxy: &FaultProxy, stack: &str, args: &[&str]) -> Output {
    command(stack, args)
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .output()
        .unwrap()
}

/// How many resources of each kind a plan's steps make.
fn planned(plan: &serde_json::Value) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for step in plan["steps"].as_array().unwrap() {
        *kinds
            .entry(step["kind"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    kinds
}

fn owned(counts: BTreeMap<&'static str, usize>) -> BTreeMap<String, usize> {
    counts.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Asserts that the plan of `stack` through `proxy` has nothing to change.
fn replan_is_clean(proxy: &FaultProxy, stack: &str, what: &str) {
    let plan = through(
        proxy,
        stack,
        &["plan", "--phase", "2", "--detailed-exitcode"],
    );
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{what}: the re-plan is not clean:\n{}{}",
        String::from_utf8_lossy(&plan.stdout),
        stderr(&plan)
    );
}

/// Destroys `stack` through `proxy` and asserts that describe calls find
/// nothing of it left.
async fn destroy_leaves_nothing(aws: &Clients, proxy: &FaultProxy, stack: &str, what: &str) {
    let destroyed = through(proxy, stack, &["destroy", "--yes", "--delete-data"]);
    assert!(
        destroyed.status.success(),
        "{what}: destroy failed:\n{}{}",
        String::from_utf8_lossy(&destroyed.stdout),
        stderr(&destroyed)
    );
    assert_eq!(
        without_moto_leftovers(inventory(aws, stack).await),
        Inventory::new(),
        "{what}: destroy left something"
    );
}

#[tokio::test]
async fn with_slow_resources_apply_takes_its_critical_path_not_its_waves() {
    let aws = clients().await;
    // RDS 7.5 min → 6 s, ElastiCache 5.2 s, ALB 2 s, NAT 1.2 s.
    let proxy = FaultProxy::start(
        &aws_endpoint_url(),
        Faults {
            seconds_per_minute: 0.8,
            ..Faults::default()
        },
    );
    let stack = unique_stack("slow");
    let run = json(&through(
        &proxy,
        &stack,
        &["provision", "--phase", "2", "--output", "json"],
    ));
    let wall = run["apply"]["wall_secs"].as_f64().unwrap();
    let critical = run["apply"]["critical_path"]["seconds"].as_f64().unwrap();
    let chain = &run["apply"]["critical_path"]["chain"];
    assert!(
        critical >= 6.0,
        "the database alone takes 6 s here: {critical} s ({chain})"
    );
    assert!(
        chain
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "database" || c == "redis"),
        "the database or Redis is on the critical path: {chain}"
    );
    assert!(
        wall <= critical * 1.1,
        "wall time {wall:.2} s is more than 10 % over the critical path {critical:.2} s ({chain})"
    );
    // Every step says what it waits for.
    for step in run["plan"]["steps"].as_array().unwrap() {
        assert!(step["depends_on"].is_array(), "{step}");
    }
    let database = run["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["component"] == "database")
        .unwrap();
    assert!(
        database["depends_on"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "db-subnet-group"),
        "{database}"
    );
    replan_is_clean(&proxy, &stack, "slow resources");
    destroy_leaves_nothing(&aws, &proxy, &stack, "slow resources").await;
}

#[tokio::test]
async fn with_a_tenth_of_calls_throttled_one_run_converges_and_destroys() {
    let aws = clients().await;
    let proxy = FaultProxy::start(
        &aws_endpoint_url(),
        Faults {
            seed: 10,
            throttle: 0.1,
            seconds_per_minute: 0.05,
            ..Faults::default()
        },
    );
    let stack = unique_stack("thr");
    let run = json(&through(
        &proxy,
        &stack,
        &["provision", "--phase", "2", "--output", "json"],
    ));
    let calls = &run["calls"];
    assert!(
        calls["throttled"].as_u64().unwrap() > 0 && calls["retried"].as_u64().unwrap() > 0,
        "the run counts its throttled and retried calls: {calls}"
    );
    assert_eq!(
        owned(counts(&inventory(&aws, &stack).await)),
        planned(&run["plan"]),
        "one resource per component"
    );
    replan_is_clean(&proxy, &stack, "10 % throttling");
    destroy_leaves_nothing(&aws, &proxy, &stack, "10 % throttling").await;
    assert!(proxy.counts().throttled > 10, "{:?}", proxy.counts());
}

#[tokio::test]
async fn with_answers_lost_every_component_is_made_once_over_twenty_seeds() {
    let aws = clients().await;
    let mut lost = BTreeMap::<String, u64>::new();
    for seed in 0..20 {
        let proxy = FaultProxy::start(
            &aws_endpoint_url(),
            Faults {
                seed,
                lost: 0.05,
                ..Faults::default()
            },
        );
        let what = format!("seed {seed}");
        let stack = unique_stack("lost");
        let provisioned = through(
            &proxy,
            &stack,
            &["provision", "--phase", "2", "--output", "json"],
        );
        let run: serde_json::Value = serde_json::from_str(&succeeded(&provisioned))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            owned(counts(&inventory(&aws, &stack).await)),
            planned(&run["plan"]),
            "{what}: not exactly one resource per component (lost answers: {:?})",
            proxy.counts().lost_operations
        );
        replan_is_clean(&proxy, &stack, &what);
        destroy_leaves_nothing(&aws, &proxy, &stack, &what).await;
        for (operation, count) in proxy.counts().lost_operations {
            *lost.entry(operation).or_default() += count;
        }
    }
    // The faults really hit creates, adds and deletes across the seeds.
    for operation in [
        "ec2:CreateVpc",
        "ec2:CreateSubnet",
        "ec2:AuthorizeSecurityGroupIngress",
    ] {
        assert!(
            lost.contains_key(operation),
            "no lost answer of {operation}: {lost:?}"
        );
    }
    assert!(
        lost.keys().any(|o| o.contains(":Delete")),
        "no lost answer of a delete: {lost:?}"
    );
}

#[tokio::test]
async fn a_run_killed_during_a_slow_create_is_waited_for_and_converges() {
    let aws = clients().await;
    // The database takes 9 s to become available.
    let proxy = FaultProxy::start(
        &aws_endpoint_url(),
        Faults {
            seconds_per_minute: 1.2,
            ..Faults::default()
        },
    );
    let stack = unique_stack("kill");
    let mut first = command(&stack, &["provision", "--phase", "2"])
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once moto has the database, while the proxy still shows it creating.
    let started = Instant::now();
    loop {
        let made = aws
            .rds
            .describe_db_instances()
            .db_instance_identifier(format!("{stack}-db"))
            .send()
            .await
            .is_ok_and(|found| !found.db_instances().is_empty());
        if made {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first run never created the database"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();

    let rerun = succeeded(&through(&proxy, &stack, &["provision", "--phase", "2"]));
    let waited = rerun
        .lines()
        .find(|l| l.contains(" database ") && l.contains("was creating, now ready"));
    assert!(
        waited.is_some(),
        "the re-run did not wait for the database:\n{rerun}"
    );
    replan_is_clean(&proxy, &stack, "killed during a slow create");
    let whole = json(&through(
        &proxy,
        &unique_stack("ref"),
        &["plan", "--phase", "2", "--output", "json"],
    ));
    assert_eq!(
        owned(counts(&inventory(&aws, &stack).await)),
        planned(&whole["plan"]),
        "one resource per component"
    );
    destroy_leaves_nothing(&aws, &proxy, &stack, "killed during a slow create").await;
}

#[tokio::test]
async fn a_failed_resource_stops_only_what_depends_on_it() {
    let aws = clients().await;
    let refusing = FaultProxy::start(
        &aws_endpoint_url(),
        Faults {
            refuse: vec!["CreateReplicationGroup".to_owned()],
            // The database (2.3 s here) is still creating when Redis fails.
            seconds_per_minute: 0.3,
            ..Faults::default()
        },
    );
    let stack = unique_stack("part");
    let failed = through(&refusing, &stack, &["provision", "--phase", "2"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&failed.stdout),
        stderr(&failed)
    );
    assert_eq!(failed.status.code(), Some(1), "{said}");
    assert!(said.contains("redis: cannot create redis group"), "{said}");
    assert!(said.contains("AccessDenied"), "{said}");
    // What needs Redis's endpoint was not started; everything else was made.
    let not_started = said
        .lines()
        .find_map(|l| l.strip_prefix("not started, as they depend on it: "))
        .unwrap_or_else(|| panic!("no list of what was not started: {said}"));
    assert!(not_started.contains("param-redis-url"), "{not_started}");
    // Started after the failure, as they do not depend on Redis.
    for component in ["param-database-url", "listener-http"] {
        assert!(
            said.lines()
                .any(|l| l.contains(&format!("+ {component} ")) && l.contains("created")),
            "{component} was not made after Redis failed: {said}"
        );
    }
    let made = counts(&inventory(&aws, &stack).await);
    for (kind, count) in [
        ("database", 1),
        ("load-balancer", 1),
        ("nat-gateway", 1),
        ("redis", 0),
    ] {
        assert_eq!(
            made.get(kind).copied().unwrap_or(0),
            count,
            "{kind}: {made:?}"
        );
    }
    // Without the refusal, the next run makes only what is missing.
    let clean = FaultProxy::start(&aws_endpoint_url(), Faults::default());
    let resumed = json(&through(
        &clean,
        &stack,
        &["provision", "--phase", "2", "--output", "json"],
    ));
    let created: Vec<&str> = resumed["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"] == "create")
        .map(|s| s["component"].as_str().unwrap())
        .collect();
    assert!(
        created.contains(&"redis") && !created.contains(&"database"),
        "{created:?}"
    );
    replan_is_clean(&clean, &stack, "after a failed resource");
    destroy_leaves_nothing(&aws, &clean, &stack, "after a failed resource").await;
}
