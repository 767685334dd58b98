//! Making a create happen once when its answer can be lost: [`create_once`]
//! looks for what a create may have made before it sends it again, and
//! [`adopt`] takes the stack's own resource when a resend is answered
//! "already exists".

use std::future::Future;
use std::time::Duration;

use anyhow::Context;

use super::Ctx;
use crate::stack::aws::aws_error;
use crate::stack::spec::{Existing, Resource};

/// Sends a create that AWS cannot deduplicate (on `aws.ec2_once`, which never
/// resends by itself) so that it makes at most one resource: a throttled
/// create is sent again after a pause; one whose answer was lost (time-out,
/// reset, 5xx) is first looked for with `find` (by the tags it was sent with),
/// adopted when it is there, and only sent again when it is not.
pub async fn create_once<T, E, Send, SendFut, Find, FindFut>(
    ctx: &Ctx,
    what: &str,
    send: Send,
    find: Find,
) -> anyhow::Result<T>
where
    E: std::error::Error
        + aws_smithy_types::error::metadata::ProvideErrorMetadata
        + std::marker::Send
        + Sync
        + 'static,
    Send: Fn() -> SendFut,
    SendFut: Future<
        Output = Result<
            T,
            aws_smithy_runtime_api::client::result::SdkError<
                E,
                aws_smithy_runtime_api::http::Response,
            >,
        >,
    >,
    Find: Fn() -> FindFut,
    FindFut: Future<Output = anyhow::Result<Option<T>>>,
{
    use crate::stack::aws::{Failure, MAX_ATTEMPTS, failure};
    let mut pause = Duration::from_millis(200);
    for attempt in 1..=MAX_ATTEMPTS {
        if attempt > 1 {
            ctx.aws.calls.record_resend();
        }
        let error = match send().await {
            Ok(made) => return Ok(made),
            Err(error) => error,
        };
        let how = failure(&error);
        if how == Failure::Refused || attempt == MAX_ATTEMPTS {
            return Err(aws_error(error)).with_context(|| format!("cannot create {what}"));
        }
        // Back off with jitter, as the SDK's retry does.
        tokio::time::sleep(pause.mul_f64(0.5 + jitter())).await;
        pause = (pause * 2).min(Duration::from_secs(10));
        if how == Failure::Unknown {
            // Tags show up within about a second of the create: look twice.
            for look in 0..2 {
                if look > 0 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                if let Some(found) = find()
                    .await
                    .with_context(|| format!("cannot look for {what} after a lost answer"))?
                {
                    return Ok(found);
                }
            }
        }
    }
    unreachable!("the last attempt returns")
}

/// The resource of `resource.component` among what discovery `found`: what a create
/// adopts when AWS answers that it exists already (its own resend, after the
/// first answer was lost). A look-alike without the stack's tags is refused.
pub fn adopt(ctx: &Ctx, resource: &Resource, found: Vec<Existing>) -> anyhow::Result<Existing> {
    found
        .into_iter()
        .find(|found| found.component == resource.component)
        .with_context(|| {
            format!(
                "{} {} exists without the tags accunode:stack={} accunode:component={}: not this stack's, not touched",
                resource.kind.label(),
                resource.name,
                ctx.stack,
                resource.component
            )
        })
}

/// A number in [0, 1) that differs between calls, for spreading resends.
fn jitter() -> f64 {
    let mut bytes = [0u8; 2];
    getrandom::fill(&mut bytes).map_or(0.5, |()| f64::from(u16::from_le_bytes(bytes)) / 65536.0)
}
