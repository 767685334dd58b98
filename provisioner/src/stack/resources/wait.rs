//! Waiting for a slow resource (an RDS instance, a NAT gateway, a load
//! balancer) to reach a state, polling less often the longer it takes.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::Ctx;

/// What a wait's check reports.
pub enum Poll<T> {
    Ready(T),
    Pending(String),
}

/// Poll `check` until it is ready, backing off to 10 s, printing the status
/// every 15 s, and failing after the run's wait timeout.
pub async fn wait_for<T, F, Fut>(ctx: &Ctx, component: &str, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Poll<T>>>,
{
    wait_then(
        ctx,
        component,
        "run the command again to go on waiting",
        check,
    )
    .await
}

/// [`wait_for`], whose timeout says `then` (what happens next) instead.
pub async fn wait_then<T, F, Fut>(
    ctx: &Ctx,
    component: &str,
    then: &str,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Poll<T>>>,
{
    let started = Instant::now();
    let mut delay: Duration = Duration::from_millis(50);
    let mut last_report = Instant::now();
    loop {
        match check().await? {
            Poll::Ready(value) => return Ok(value),
            Poll::Pending(status) => {
                if started.elapsed() > ctx.wait_timeout {
                    bail!(
                        "{component}: still {status} after {} s (--wait-timeout); {then}",
                        started.elapsed().as_secs()
                    );
                }
                if last_report.elapsed() >= Duration::from_secs(15) {
                    ctx.progress.waiting(component, &status, started.elapsed());
                    last_report = Instant::now();
                }
            }
        }
        // Polls a quarter of the time waited so far apart: a resource is seen
        // ready at most about 25 % after it is, with a few calls a minute.
        tokio::time::sleep(delay).await;
        delay = (started.elapsed() / 4).clamp(Duration::from_millis(50), Duration::from_secs(10));
    }
}
