//! The dependency-graph walk that apply and destroy share: a node starts as
//! soon as every node blocking it is done (at most [`CONCURRENCY`] at once), a
//! failure stops only what it blocks, and everything else runs to the end.
//! It measures each node and reports the run's critical path: the longest
//! chain of measured durations through the graph, the lower bound of any
//! schedule. `Schedule::Waves` is the former engine (a node also waits for
//! every node of lower depth), kept as the benchmark's baseline.

use std::cell::RefCell;
use std::future::Future;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Serialize;

/// At most this many resources are in progress at once.
pub const CONCURRENCY: usize = 8;

/// When a resource may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Schedule {
    /// As soon as the resources it depends on are done.
    #[default]
    Graph,
    /// With its depth's wave: after every resource of every shallower wave.
    Waves,
}

/// One node of the walk: its name and the nodes (by index) that must be done first.
pub struct Node {
    pub name: String,
    pub blocked_by: Vec<usize>,
}

/// What a walk did.
pub struct Walked {
    /// How long each node took; `None` when it did not run.
    pub took: Vec<Option<Duration>>,
    /// The nodes that failed, with why.
    pub failures: Vec<(usize, anyhow::Error)>,
    /// The nodes not started because something they wait for failed.
    pub skipped: Vec<usize>,
    pub wall: Duration,
}

/// The run's measured critical path: the chain of nodes whose durations add
/// up to the most, each blocked by the one before it.
#[derive(Debug, Clone, Serialize)]
pub struct CriticalPath {
    pub seconds: f64,
    pub chain: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Done,
    Failed,
    Skipped,
}

fn depths(nodes: &[Node]) -> Vec<usize> {
    let mut depth: Vec<Option<usize>> = vec![None; nodes.len()];
    fn visit(
        i: usize,
        nodes: &[Node],
        depth: &mut [Option<usize>],
        path: &mut Vec<usize>,
    ) -> usize {
        if let Some(d) = depth[i] {
            return d;
        }
        // A cycle would recurse forever; the definition is checked acyclic,
        // and a node met again on its own path counts as depth 0 here.
        if path.contains(&i) {
            return 0;
        }
        path.push(i);
        let d = nodes[i]
            .blocked_by
            .iter()
            .map(|&b| visit(b, nodes, depth, path) + 1)
            .max()
            .unwrap_or(0);
        path.pop();
        depth[i] = Some(d);
        d
    }
    (0..nodes.len())
        .map(|i| visit(i, nodes, &mut depth, &mut Vec::new()))
        .collect()
}

/// Runs `start(i)` for every node in an order `schedule` allows; `finished(i,
/// value)` is called as each one succeeds, before anything it blocks starts.
pub async fn walk<T, Start, Fut, Finished>(
    nodes: &[Node],
    schedule: Schedule,
    start: Start,
    finished: Finished,
) -> Walked
where
    Start: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
    Finished: Fn(usize, T),
{
    let began = Instant::now();
    let depth = depths(nodes);
    let state = RefCell::new(vec![State::Waiting; nodes.len()]);
    let mut took = vec![None; nodes.len()];
    let mut failures = Vec::new();
    let mut running = FuturesUnordered::new();
    loop {
        // Skip what waits on a failure; start what is ready, shallowest first.
        {
            let mut state = state.borrow_mut();
            let mut changed = true;
            while changed {
                changed = false;
                for i in 0..nodes.len() {
                    if state[i] == State::Waiting
                        && nodes[i]
                            .blocked_by
                            .iter()
                            .any(|&b| matches!(state[b], State::Failed | State::Skipped))
                    {
                        state[i] = State::Skipped;
                        changed = true;
                    }
                }
            }
        }
        let mut ready: Vec<usize> = {
            let state = state.borrow();
            let unfinished_depth = (0..nodes.len())
                .filter(|&i| matches!(state[i], State::Waiting | State::Running))
                .map(|i| depth[i])
                .min();
            (0..nodes.len())
                .filter(|&i| state[i] == State::Waiting)
                .filter(|&i| nodes[i].blocked_by.iter().all(|&b| state[b] == State::Done))
                .filter(|&i| schedule == Schedule::Graph || Some(depth[i]) == unfinished_depth)
                .collect()
        };
        ready.sort_by_key(|&i| depth[i]);
        for i in ready {
            if running.len() >= CONCURRENCY {
                break;
            }
            state.borrow_mut()[i] = State::Running;
            let future = start(i);
            running.push(async move {
                let started = Instant::now();
                let result = future.await;
                (i, result, started.elapsed())
            });
        }
        let Some((i, result, elapsed)) = running.next().await else {
            break;
        };
        took[i] = Some(elapsed);
        match result {
            Ok(value) => {
                finished(i, value);
                state.borrow_mut()[i] = State::Done;
            }
            Err(error) => {
                state.borrow_mut()[i] = State::Failed;
                failures.push((i, error));
            }
        }
    }
    let state = state.into_inner();
    // Nothing runs and nothing is ready: what still waits is in a cycle.
    for i in (0..nodes.len()).filter(|&i| state[i] == State::Waiting) {
        failures.push((
            i,
            anyhow::anyhow!("never ready: it depends, through others, on itself"),
        ));
    }
    Walked {
        took,
        failures,
        skipped: (0..nodes.len())
            .filter(|&i| state[i] == State::Skipped)
            .collect(),
        wall: began.elapsed(),
    }
}

impl Walked {
    /// The longest chain of measured durations through `nodes`.
    pub fn critical_path(&self, nodes: &[Node]) -> CriticalPath {
        let order = {
            let depth = depths(nodes);
            let mut order: Vec<usize> = (0..nodes.len()).collect();
            order.sort_by_key(|&i| depth[i]);
            order
        };
        // The longest chain ending at each node, and the node before it.
        let mut longest: Vec<(Duration, Option<usize>)> = vec![(Duration::ZERO, None); nodes.len()];
        for &i in &order {
            let before = nodes[i]
                .blocked_by
                .iter()
                .map(|&b| (longest[b].0, Some(b)))
                .max_by_key(|(d, _)| *d)
                .unwrap_or((Duration::ZERO, None));
            longest[i] = (before.0 + self.took[i].unwrap_or_default(), before.1);
        }
        let Some(mut at) = (0..nodes.len()).max_by_key(|&i| longest[i].0) else {
            return CriticalPath {
                seconds: 0.0,
                chain: vec![],
            };
        };
        let seconds = longest[at].0.as_secs_f64();
        let mut chain = vec![nodes[at].name.clone()];
        while let Some(before) = longest[at].1 {
            chain.push(nodes[before].name.clone());
            at = before;
        }
        chain.reverse();
        // Nodes that took nothing (kept as they were) say nothing about the path.
        chain.retain(|name| {
            let i = nodes.iter().position(|n| &n.name == name);
            i.is_some_and(|i| self.took[i].is_some_and(|t| t >= Duration::from_millis(1)))
        });
        CriticalPath { seconds, chain }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[usize])]) -> Vec<Node> {
        edges
            .iter()
            .map(|(name, blocked_by)| Node {
                name: (*name).to_owned(),
                blocked_by: blocked_by.to_vec(),
            })
            .collect()
    }

    /// slow(0) ← a(1) ; fast(2) ← b(3): b waits for fast only in a graph
    /// walk, for slow too in waves.
    async fn run(schedule: Schedule) -> (Walked, Vec<Node>, Vec<&'static str>) {
        let nodes = graph(&[("slow", &[]), ("a", &[0]), ("fast", &[]), ("b", &[2])]);
        let order = RefCell::new(Vec::new());
        let walked = walk(
            &nodes,
            schedule,
            |i| async move {
                let ms = [120, 10, 10, 10][i];
                tokio::time::sleep(Duration::from_millis(ms)).await;
                anyhow::Ok(["slow", "a", "fast", "b"][i])
            },
            |_, name| order.borrow_mut().push(name),
        )
        .await;
        let order = order.into_inner();
        (walked, nodes, order)
    }

    #[tokio::test]
    async fn a_node_starts_when_what_it_depends_on_is_done_not_its_wave() {
        let (walked, nodes, order) = run(Schedule::Graph).await;
        assert_eq!(order, ["fast", "b", "slow", "a"]);
        let path = walked.critical_path(&nodes);
        assert_eq!(path.chain, ["slow", "a"]);
        assert!(
            walked.wall.as_secs_f64() < path.seconds * 1.5,
            "{:?}",
            walked.wall
        );

        // In waves, b waits for slow, which it does not depend on.
        let (_, _, order) = run(Schedule::Waves).await;
        let at = |name| order.iter().position(|n| *n == name).unwrap();
        assert!(at("slow") < at("b"), "{order:?}");
    }

    #[tokio::test]
    async fn a_failure_stops_what_depends_on_it_and_nothing_else() {
        // 0 fails; 1 depends on 0, 2 on 1; 3 is independent, 4 on 3.
        let nodes = graph(&[
            ("bad", &[]),
            ("x", &[0]),
            ("y", &[1]),
            ("ok", &[]),
            ("z", &[3]),
        ]);
        let done = RefCell::new(Vec::new());
        let walked = walk(
            &nodes,
            Schedule::Graph,
            |i| async move {
                tokio::time::sleep(Duration::from_millis(if i == 3 { 30 } else { 1 })).await;
                if i == 0 {
                    anyhow::bail!("refused")
                }
                Ok(i)
            },
            |i, _| done.borrow_mut().push(i),
        )
        .await;
        assert_eq!(done.into_inner(), [3, 4]);
        assert_eq!(walked.failures.len(), 1);
        assert_eq!(walked.skipped, [1, 2]);
    }

    #[tokio::test]
    async fn a_cycle_is_reported_not_left_undone() {
        let nodes = graph(&[("a", &[1]), ("b", &[0]), ("c", &[])]);
        let walked = walk(
            &nodes,
            Schedule::Graph,
            |i| async move { anyhow::Ok(i) },
            |_, _| {},
        )
        .await;
        let stuck: Vec<usize> = walked.failures.iter().map(|(i, _)| *i).collect();
        assert_eq!(stuck, [0, 1]);
    }
}
