//! The S3 model bucket: versioned, encrypted, public access blocked, with a
//! lifecycle rule that expires the bulk-upload files under `uploads/` (and
//! aborts multipart uploads left unfinished). Its name carries the stack,
//! account and region, so discovery asks for it by name.
//! S3 cannot tag a bucket in the call that creates it: an untagged bucket of
//! that name is taken as an interrupted create only while it is empty;
//! otherwise it is refused, never touched.

use anyhow::{Context, bail};
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    BucketVersioningStatus, CreateBucketConfiguration, Delete, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, NoncurrentVersionExpiration,
    ObjectIdentifier, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Tag, Tagging, VersioningConfiguration,
};

use super::tags::tagged;
use super::{Changed, Ctx, Known, ResourceKind, Wanted, created, existing, resource};
use crate::stack::aws::{OrAlready, aws_error, error_code};
use crate::stack::definition::Definition;
use crate::stack::spec::{Existing, Kind, Props, Resource, names};

/// The bucket's component name (the one resource `desired` makes).
const MODEL_BUCKET: &str = "model-bucket";
/// The id of the lifecycle rule that expires uploads.
const UPLOADS_RULE: &str = "accunode-uploads-expire";

pub struct Bucket;

impl ResourceKind for Bucket {
    fn kind(&self) -> Kind {
        Kind::Bucket
    }

    fn label(&self) -> &'static str {
        "s3 bucket"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        let inputs = wanted.inputs;
        let days = &wanted.definition.bucket;
        vec![resource(
            MODEL_BUCKET,
            Kind::Bucket,
            names::bucket(inputs.stack, inputs.account, inputs.region),
            &[
                ("tagged", "true".into()),
                ("versioning", "Enabled".into()),
                ("encryption", "AES256".into()),
                ("public_access", "blocked".into()),
                (
                    "lifecycle",
                    lifecycle_rule(
                        &format!("{}/", names::UPLOADS_PREFIX),
                        Some(days.uploads_expire_days),
                        Some(days.uploads_noncurrent_days),
                        Some(days.incomplete_upload_days),
                    ),
                ),
            ],
            &[],
        )]
    }

    fn monthly_cost(&self, definition: &Definition, _props: &Props) -> f64 {
        let prices = &definition.prices;
        prices.s3_gb_month * prices.s3_expected_gb
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

/// A bucket lifecycle rule as plans show it: what it applies to and after how
/// many days it expires current objects, removes old versions and aborts
/// unfinished multipart uploads (a part AWS does not have is left out).
fn lifecycle_rule(
    prefix: &str,
    expire_days: Option<i32>,
    noncurrent_days: Option<i32>,
    incomplete_upload_days: Option<i32>,
) -> String {
    let parts: Vec<String> = [
        ("expire", expire_days),
        ("old versions", noncurrent_days),
        ("unfinished uploads", incomplete_upload_days),
    ]
    .into_iter()
    .filter_map(|(what, days)| days.map(|days| format!("{what} after {days} d")))
    .collect();
    let prefix = if prefix.is_empty() {
        "(whole bucket)"
    } else {
        prefix
    };
    format!("{prefix}: {}", parts.join(", "))
}

fn bucket_name(ctx: &Ctx) -> String {
    names::bucket(&ctx.stack, &ctx.account, ctx.region())
}

async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let s3 = &ctx.aws.s3;
    let name = bucket_name(ctx);
    match s3.head_bucket().bucket(&name).send().await {
        Ok(_) => {}
        Err(error) if error.raw_response().map(|r| r.status().as_u16()) == Some(404) => {
            return Ok(vec![]);
        }
        Err(error) => {
            return Err(aws_error(error))
                .context(format!("cannot look up the model bucket {name}"));
        }
    }
    let tags = match s3.get_bucket_tagging().bucket(&name).send().await {
        Ok(tagging) => tagging
            .tag_set()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect(),
        Err(error) if error_code(&error) == Some("NoSuchTagSet") => Vec::new(),
        Err(error) => return Err(aws_error(error)),
    };
    let component = match tagged(
        &ctx.stack,
        tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ) {
        Some((component, _)) => component,
        None if tags.is_empty() && is_empty(ctx, &name).await? => MODEL_BUCKET.to_owned(),
        None => bail!(
            "the bucket {name} exists but does not carry the tag accunode:stack={}: it is not this stack's, \
             so accunode will not touch it (tag it, or use another --stack)",
            ctx.stack
        ),
    };
    let tagged = (!tags.is_empty()).to_string();
    let (versioning, encryption, public_access, lifecycle) = tokio::join!(
        s3.get_bucket_versioning().bucket(&name).send(),
        s3.get_bucket_encryption().bucket(&name).send(),
        s3.get_public_access_block().bucket(&name).send(),
        s3.get_bucket_lifecycle_configuration().bucket(&name).send(),
    );
    let versioning = match versioning {
        Ok(versioning) => versioning
            .status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        // moto 5.2.5 answers under another XML root (GetBucketVersioningResponse),
        // which the SDK refuses: read the status from the successful answer itself.
        Err(error)
            if error
                .raw_response()
                .is_some_and(|r| r.status().is_success()) =>
        {
            let body = error
                .raw_response()
                .and_then(|r| r.body().bytes())
                .unwrap_or_default();
            let body = String::from_utf8_lossy(body);
            body.split_once("<Status>")
                .and_then(|(_, rest)| rest.split_once("</Status>"))
                .map_or(String::new(), |(status, _)| status.to_owned())
        }
        Err(error) => return Err(aws_error(error)),
    };
    let encryption = match encryption {
        Ok(config) => config
            .server_side_encryption_configuration()
            .and_then(|c| c.rules().first())
            .and_then(|r| r.apply_server_side_encryption_by_default())
            .map(|d| d.sse_algorithm().as_str().to_owned())
            .unwrap_or_default(),
        Err(error)
            if error_code(&error) == Some("ServerSideEncryptionConfigurationNotFoundError") =>
        {
            String::new()
        }
        Err(error) => return Err(aws_error(error)),
    };
    let public_access = match public_access {
        Ok(block) => {
            let all = block.public_access_block_configuration().is_some_and(|c| {
                c.block_public_acls() == Some(true)
                    && c.ignore_public_acls() == Some(true)
                    && c.block_public_policy() == Some(true)
                    && c.restrict_public_buckets() == Some(true)
            });
            if all { "blocked" } else { "partly open" }.to_owned()
        }
        Err(error) if error_code(&error) == Some("NoSuchPublicAccessBlockConfiguration") => {
            "open".to_owned()
        }
        Err(error) => return Err(aws_error(error)),
    };
    let lifecycle = match lifecycle {
        Ok(configuration) => configuration
            .rules()
            .iter()
            .map(|rule| {
                let text = lifecycle_rule(
                    rule.filter().and_then(|f| f.prefix()).unwrap_or_default(),
                    rule.expiration().and_then(|e| e.days()),
                    rule.noncurrent_version_expiration()
                        .and_then(|e| e.noncurrent_days()),
                    rule.abort_incomplete_multipart_upload()
                        .and_then(|a| a.days_after_initiation()),
                );
                if rule.status() == &ExpirationStatus::Enabled {
                    text
                } else {
                    format!("{text} (disabled)")
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        Err(error) if error_code(&error) == Some("NoSuchLifecycleConfiguration") => String::new(),
        Err(error) => return Err(aws_error(error)),
    };
    Ok(vec![existing(
        component,
        Kind::Bucket,
        name.clone(),
        name,
        &[
            ("tagged", tagged),
            ("versioning", versioning),
            ("encryption", encryption),
            ("public_access", public_access),
            ("lifecycle", lifecycle),
        ],
    )])
}

async fn is_empty(ctx: &Ctx, bucket: &str) -> anyhow::Result<bool> {
    let listing = ctx
        .aws
        .s3
        .list_object_versions()
        .bucket(bucket)
        .max_keys(1)
        .send()
        .await
        .map_err(aws_error)?;
    Ok(listing.versions().is_empty() && listing.delete_markers().is_empty())
}

async fn create(ctx: &Ctx, resource: &Resource) -> anyhow::Result<Existing> {
    let mut request = ctx.aws.s3.create_bucket().bucket(&resource.name);
    if ctx.region() != "us-east-1" {
        request = request.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(ctx.region()))
                .build(),
        );
    }
    // Outside us-east-1 a resend after a lost answer is told the bucket is ours already.
    request
        .send()
        .await
        .or_already(&["BucketAlreadyOwnedByYou"])?;
    let mut current = created(resource, resource.name.clone());
    current.props.insert("tagged".into(), "false".into());
    update(ctx, resource, &current).await
}

async fn update(ctx: &Ctx, resource: &Resource, current: &Existing) -> anyhow::Result<Existing> {
    let s3 = &ctx.aws.s3;
    if current.props.get("tagged").map(String::as_str) != Some("true") {
        let mut tagging = Tagging::builder();
        for (key, value) in ctx.tags(&resource.component, &resource.name) {
            tagging = tagging.tag_set(Tag::builder().key(key).value(value).build()?);
        }
        s3.put_bucket_tagging()
            .bucket(&current.id)
            .tagging(tagging.build()?)
            .send()
            .await
            .map_err(aws_error)?;
    }
    s3.put_bucket_versioning()
        .bucket(&current.id)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .map_err(aws_error)?;
    let default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::Aes256)
        .build()?;
    s3.put_bucket_encryption()
        .bucket(&current.id)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(default)
                        .build(),
                )
                .build()?,
        )
        .send()
        .await
        .map_err(aws_error)?;
    s3.put_public_access_block()
        .bucket(&current.id)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(aws_error)?;
    put_lifecycle(ctx, &current.id).await?;
    Ok(created(resource, current.id.clone()))
}

/// The bucket's one lifecycle rule (replacing any other): uploads expire.
async fn put_lifecycle(ctx: &Ctx, bucket: &str) -> anyhow::Result<()> {
    let days = &ctx.definition.bucket;
    let rule = LifecycleRule::builder()
        .id(UPLOADS_RULE)
        .status(ExpirationStatus::Enabled)
        .filter(
            LifecycleRuleFilter::builder()
                .prefix(format!("{}/", names::UPLOADS_PREFIX))
                .build(),
        )
        .expiration(
            LifecycleExpiration::builder()
                .days(days.uploads_expire_days)
                .build(),
        )
        .noncurrent_version_expiration(
            NoncurrentVersionExpiration::builder()
                .noncurrent_days(days.uploads_noncurrent_days)
                .build(),
        )
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(days.incomplete_upload_days)
                .build(),
        )
        .build()?;
    ctx.aws
        .s3
        .put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(rule)
                .build()?,
        )
        .send()
        .await
        .map_err(aws_error)?;
    Ok(())
}

/// Empties the bucket (every version and delete marker) and removes it.
async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    let s3 = &ctx.aws.s3;
    loop {
        let listing = s3
            .list_object_versions()
            .bucket(&current.id)
            .send()
            .await
            .map_err(aws_error)?;
        let objects: Vec<ObjectIdentifier> = listing
            .versions()
            .iter()
            .map(|v| (v.key(), v.version_id()))
            .chain(
                listing
                    .delete_markers()
                    .iter()
                    .map(|m| (m.key(), m.version_id())),
            )
            .filter_map(|(key, version)| {
                ObjectIdentifier::builder()
                    .key(key?)
                    .set_version_id(version.map(str::to_owned))
                    .build()
                    .ok()
            })
            .collect();
        if objects.is_empty() {
            break;
        }
        s3.delete_objects()
            .bucket(&current.id)
            .delete(
                Delete::builder()
                    .set_objects(Some(objects))
                    .quiet(true)
                    .build()?,
            )
            .send()
            .await
            .map_err(aws_error)?;
    }
    s3.delete_bucket()
        .bucket(&current.id)
        .send()
        .await
        .map_err(aws_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::stack::definition::BUILT_IN;
    use crate::stack::spec::Inputs;

    #[test]
    fn the_model_bucket_expires_uploads_as_the_definition_says() {
        let definition = Definition::parse(BUILT_IN).unwrap();
        let inputs = Inputs {
            stack: "teststack",
            region: "us-east-1",
            account: "123456789012",
            image_id: "ami-0123456789abcdef0",
            admin_cidr: None,
            certificate_arn: None,
        };
        let resources = super::super::desired(
            &definition,
            definition.phase(1).unwrap(),
            &inputs,
            &BTreeMap::new(),
        );
        let model_bucket = resources
            .iter()
            .find(|r| r.component == MODEL_BUCKET)
            .unwrap();
        assert_eq!(
            model_bucket.props["lifecycle"],
            "uploads/: expire after 30 d, old versions after 1 d, unfinished uploads after 1 d"
        );
    }
}
