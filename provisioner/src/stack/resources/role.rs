//! IAM roles of the API and worker instances: the original design's policies,
//! scoped to this stack's parameters and bucket and narrowed to the prefixes
//! each tier reads or writes, held as one inline policy. Roles and instance
//! profiles live under the path `/accunode/<stack>/`, which is how discovery
//! lists them; the IAM helpers both kinds share are here.

use accunode_core::published_metrics;
use anyhow::Context;
use aws_sdk_iam::types::Tag;

use super::find::adopt;
use super::tags::tagged;
use super::{Changed, Ctx, Known, ResourceKind, Wanted, created, existing, resource};
use crate::stack::aws::{EXISTS, GONE, OrAlready, aws_error};
use crate::stack::spec::{Existing, Kind, Resource, names};

pub struct Role;

impl ResourceKind for Role {
    fn kind(&self) -> Kind {
        Kind::Role
    }

    fn label(&self) -> &'static str {
        "iam role"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        let inputs = wanted.inputs;
        // IAM: the original design's policies, scoped to this stack's parameters and
        // bucket, and narrowed to the prefixes each tier reads or writes.
        let bucket = names::bucket(inputs.stack, inputs.account, inputs.region);
        let objects = |prefixes: &[&str]| -> Vec<String> {
            prefixes
                .iter()
                .map(|prefix| format!("arn:aws:s3:::{bucket}/{prefix}/*"))
                .collect()
        };
        let mut roles = Vec::new();
        for (tier, reads, writes, metric_namespace) in [
            // The API reads what the instances run and serve, streams bulk uploads
            // in (multipart) and their results back out, and publishes AccuNode/API.
            (
                "api",
                [names::INSTANCE_READS, &[names::UPLOADS_PREFIX]].concat(),
                vec![names::UPLOADS_PREFIX],
                published_metrics::API_NAMESPACE,
            ),
            // Workers read the same and the uploaded files, write nothing to the
            // bucket, and publish AccuNode/Workers.
            (
                "worker",
                [names::INSTANCE_READS, &[names::UPLOADS_PREFIX]].concat(),
                vec![],
                published_metrics::WORKER_NAMESPACE,
            ),
        ] {
            let mut statements = vec![
                serde_json::json!({
                    "Effect": "Allow",
                    "Action": ["ssm:GetParameter", "ssm:GetParameters"],
                    "Resource": format!("arn:aws:ssm:*:*:parameter/accunode/{}/*", inputs.stack),
                }),
                serde_json::json!({
                    "Effect": "Allow",
                    "Action": ["s3:GetObject"],
                    "Resource": objects(&reads),
                }),
            ];
            if !writes.is_empty() {
                statements.push(serde_json::json!({
                    "Effect": "Allow",
                    "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
                    "Resource": objects(&writes),
                }));
            }
            statements.extend([
                serde_json::json!({
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket"],
                    "Resource": format!("arn:aws:s3:::{bucket}"),
                }),
                // PutMetricData takes no resource; the namespace condition scopes it
                // to the tier's own metrics and the CloudWatch agent's memory use.
                serde_json::json!({
                    "Effect": "Allow",
                    "Action": ["cloudwatch:PutMetricData"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {"cloudwatch:namespace": [metric_namespace, CLOUDWATCH_AGENT_NAMESPACE]}},
                }),
                // The agent names its metrics by the instance's group, read from its tags.
                serde_json::json!({
                    "Effect": "Allow",
                    "Action": ["ec2:DescribeTags"],
                    "Resource": "*",
                }),
            ]);
            let policy = serde_json::json!({
                "Version": "2012-10-17",
                "Statement": statements,
            });
            roles.push(resource(
                &format!("role-{tier}"),
                Kind::Role,
                wanted.name(&format!("{tier}-role")),
                &[("policy", policy.to_string())],
                &[],
            ));
        }
        roles
    }

    async fn discover(&self, ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
        discover(ctx).await
    }

    async fn create(
        &self,
        ctx: &Ctx,
        _known: &Known,
        resource: &Resource,
    ) -> anyhow::Result<Existing> {
        create(ctx, resource).await
    }

    async fn update(
        &self,
        ctx: &Ctx,
        _known: &Known,
        resource: &Resource,
        current: &Existing,
        _changed: &Changed,
    ) -> anyhow::Result<Existing> {
        update(ctx, resource, current).await
    }

    async fn delete(&self, ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
        delete(ctx, current).await
    }
}

/// Where the CloudWatch agent that user data installs publishes memory use.
const CLOUDWATCH_AGENT_NAMESPACE: &str = "CWAgent";
const POLICY_NAME: &str = "accunode";
const EC2_TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// The IAM path of the stack's roles and instance profiles.
pub(super) fn path(ctx: &Ctx) -> String {
    format!("/accunode/{}/", ctx.stack)
}

/// The stack's tags on an IAM role or instance profile.
pub(super) fn tags(ctx: &Ctx, resource: &Resource) -> anyhow::Result<Vec<Tag>> {
    ctx.tags(&resource.component, &resource.name)
        .into_iter()
        .map(|(key, value)| {
            Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(anyhow::Error::from)
        })
        .collect()
}

/// The component of an IAM role or instance profile when it is the stack's.
pub(super) fn is_ours(ctx: &Ctx, tags: &[Tag]) -> Option<String> {
    tagged(&ctx.stack, tags.iter().map(|t| (t.key(), t.value()))).map(|(component, _)| component)
}

/// A policy document as one canonical JSON line (IAM returns it URL-encoded).
fn canonical_policy(document: &str) -> String {
    let decoded = percent_decode(document);
    serde_json::from_str::<serde_json::Value>(&decoded).map_or(decoded, |value| value.to_string())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let iam = &ctx.aws.iam;
    let roles = iam
        .list_roles()
        .path_prefix(path(ctx))
        .send()
        .await
        .map_err(aws_error)
        .context("cannot list the stack's IAM roles")?;
    let mut found = Vec::new();
    // Some endpoints (moto) ignore the path prefix: check it here too, and take
    // a role deleted meanwhile (another run) as not there.
    let our_path = path(ctx);
    for role in roles.roles().iter().filter(|r| r.path() == our_path) {
        let name = role.role_name();
        let role = match iam.get_role().role_name(name).send().await {
            Ok(role) => role,
            Err(error) if crate::stack::aws::error_code(&error) == Some("NoSuchEntity") => continue,
            Err(error) => return Err(aws_error(error)),
        };
        let Some(role) = role.role() else { continue };
        let Some(component) = is_ours(ctx, role.tags()) else {
            continue;
        };
        let policy = match iam
            .get_role_policy()
            .role_name(name)
            .policy_name(POLICY_NAME)
            .send()
            .await
        {
            Ok(policy) => canonical_policy(policy.policy_document()),
            Err(error) if crate::stack::aws::error_code(&error) == Some("NoSuchEntity") => {
                String::new()
            }
            Err(error) => return Err(aws_error(error)),
        };
        let mut e = existing(
            component,
            Kind::Role,
            name.to_owned(),
            name.to_owned(),
            &[("policy", policy)],
        );
        e.aliases.push(role.arn().to_owned());
        found.push(e);
    }
    Ok(found)
}

async fn create(ctx: &Ctx, resource: &Resource) -> anyhow::Result<Existing> {
    if ctx
        .aws
        .iam
        .create_role()
        .role_name(&resource.name)
        .path(path(ctx))
        .assume_role_policy_document(EC2_TRUST)
        .description(format!(
            "AccuNode {} instances of stack {}",
            resource.component, ctx.stack
        ))
        .set_tags(Some(tags(ctx, resource)?))
        .send()
        .await
        .or_already(EXISTS)?
        .is_none()
    {
        adopt(ctx, resource, discover(ctx).await?)?;
    }
    let current = created(resource, resource.name.clone());
    update(ctx, resource, &current).await
}

async fn update(ctx: &Ctx, resource: &Resource, current: &Existing) -> anyhow::Result<Existing> {
    ctx.aws
        .iam
        .put_role_policy()
        .role_name(&current.id)
        .policy_name(POLICY_NAME)
        .policy_document(&resource.props["policy"])
        .send()
        .await
        .map_err(aws_error)?;
    Ok(created(resource, current.id.clone()))
}

async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    match ctx
        .aws
        .iam
        .delete_role_policy()
        .role_name(&current.id)
        .policy_name(POLICY_NAME)
        .send()
        .await
    {
        Ok(_) => {}
        Err(error) if crate::stack::aws::error_code(&error) == Some("NoSuchEntity") => {}
        Err(error) => return Err(aws_error(error)),
    }
    ctx.aws
        .iam
        .delete_role()
        .role_name(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::stack::definition::{BUILT_IN, Definition};
    use crate::stack::spec::Inputs;

    const STACK: &str = "teststack";

    fn inputs() -> Inputs<'static> {
        Inputs {
            stack: STACK,
            region: "us-east-1",
            account: "123456789012",
            image_id: "ami-0123456789abcdef0",
            admin_cidr: None,
            certificate_arn: None,
        }
    }

    #[test]
    fn url_encoded_policies_compare_equal_to_their_json() {
        let json = r#"{"Version":"2012-10-17","Statement":[]}"#;
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(canonical_policy(encoded), canonical_policy(json));
    }

    /// The S3 statements of a tier's policy: action → resources.
    fn s3_grants(resources: &[Resource], tier: &str) -> BTreeMap<String, Vec<String>> {
        let role = resources
            .iter()
            .find(|r| r.component == format!("role-{tier}"))
            .unwrap();
        let policy: serde_json::Value = serde_json::from_str(&role.props["policy"]).unwrap();
        let mut grants: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for statement in policy["Statement"].as_array().unwrap() {
            let targets: Vec<String> = match &statement["Resource"] {
                serde_json::Value::String(one) => vec![one.clone()],
                many => many
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect(),
            };
            for action in statement["Action"].as_array().unwrap() {
                let action = action.as_str().unwrap();
                if action.starts_with("s3:") {
                    grants
                        .entry(action.to_owned())
                        .or_default()
                        .extend(targets.iter().cloned());
                }
            }
        }
        grants
    }

    #[test]
    fn the_api_writes_uploads_and_both_tiers_read_only_their_prefixes() {
        let definition = Definition::parse(BUILT_IN).unwrap();
        let resources = super::super::desired(
            &definition,
            definition.phase(1).unwrap(),
            &inputs(),
            &BTreeMap::new(),
        );
        let bucket = names::bucket(STACK, "123456789012", "us-east-1");
        let objects = |prefixes: &[&str]| -> Vec<String> {
            prefixes
                .iter()
                .map(|p| format!("arn:aws:s3:::{bucket}/{p}/*"))
                .collect()
        };
        let reads = objects(&["releases", "bundles", "models", "uploads"]);
        let api = s3_grants(&resources, "api");
        assert_eq!(api["s3:GetObject"], reads);
        assert_eq!(api["s3:PutObject"], objects(&["uploads"]));
        assert_eq!(api["s3:AbortMultipartUpload"], objects(&["uploads"]));
        let worker = s3_grants(&resources, "worker");
        assert_eq!(worker["s3:GetObject"], reads);
        assert!(!worker.contains_key("s3:PutObject"), "{worker:?}");
        assert!(
            !worker.contains_key("s3:AbortMultipartUpload"),
            "{worker:?}"
        );
        for grants in [&api, &worker] {
            assert!(
                grants
                    .values()
                    .flatten()
                    .all(|arn| arn != &format!("arn:aws:s3:::{bucket}/*")),
                "no tier gets every object of the bucket: {grants:?}"
            );
        }
    }
}
