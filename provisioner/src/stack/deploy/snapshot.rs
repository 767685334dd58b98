//! The database snapshot a deploy takes before a release whose migrations
//! the running one does not have (the original design's "manual snapshots
//! before major releases"). Migrations are expand-then-contract, so the old
//! release keeps working on the migrated schema; the snapshot is there for
//! the day one was not. Snapshots are tagged with the stack and the release
//! and outlive the stack: `destroy` does not delete them.

use anyhow::Context;
use aws_sdk_rds::types::Tag;

use super::rolling::RELEASE_TAG;
use crate::stack::aws::aws_error;
use crate::stack::release::Manifest;
use crate::stack::resources::Ctx;
use crate::stack::resources::wait::{Poll, wait_for};
use crate::stack::spec::STACK_TAG;

/// The migrations `next` carries that `running` did not.
pub fn new_migrations(running: &Manifest, next: &Manifest) -> Vec<String> {
    next.migrations
        .iter()
        .filter(|m| !running.migrations.iter().any(|r| r.name == m.name))
        .map(|m| m.name.clone())
        .collect()
}

/// An RDS snapshot identifier for `version`: letters, digits and single
/// hyphens, starting with a letter.
fn identifier(stack: &str, version: &str, millis: u128) -> String {
    let version: String = version
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let raw = format!("{stack}-before-{version}-{millis}");
    let mut id = String::with_capacity(raw.len());
    for c in raw.chars() {
        if !(c == '-' && id.ends_with('-')) {
            id.push(c);
        }
    }
    id
}

/// Snapshots the stack's database and waits until the snapshot is available.
pub async fn take(ctx: &Ctx, version: &str, millis: u128) -> anyhow::Result<String> {
    let id = identifier(&ctx.stack, version, millis);
    let database = format!("{}-db", ctx.stack);
    ctx.aws
        .rds
        .create_db_snapshot()
        .db_instance_identifier(&database)
        .db_snapshot_identifier(&id)
        .tags(Tag::builder().key(STACK_TAG).value(&ctx.stack).build())
        .tags(Tag::builder().key(RELEASE_TAG).value(version).build())
        .send()
        .await
        .map_err(aws_error)
        .with_context(|| {
            format!("cannot snapshot the database {database} before release {version}")
        })?;
    wait_for(ctx, "database snapshot", || async {
        let found = ctx
            .aws
            .rds
            .describe_db_snapshots()
            .db_snapshot_identifier(&id)
            .send()
            .await
            .map_err(aws_error)?;
        let status = found
            .db_snapshots()
            .first()
            .and_then(|s| s.status())
            .unwrap_or("unknown");
        Ok(if status == "available" {
            Poll::Ready(())
        } else {
            Poll::Pending(status.to_owned())
        })
    })
    .await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_are_what_rds_accepts() {
        assert_eq!(
            identifier("acme", "1.4.0_rc--2", 17),
            "acme-before-1-4-0-rc-2-17"
        );
    }
}
