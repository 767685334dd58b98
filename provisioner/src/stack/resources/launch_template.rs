//! Launch templates of the API and worker groups, rendered from
//! `launch-templates/` (user data + systemd unit). A change makes a new
//! template version and makes it the default, which the groups launch.
//! Plans compare the user data by its digest: AWS gives it back only encoded.

use anyhow::Context;
use aws_sdk_ec2::types::{
    LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataOptionsRequest, LaunchTemplateInstanceMetadataTagsState,
    RequestLaunchTemplateData, ResourceType, VolumeType,
};
use base64::Engine;

use super::find::adopt;
use super::tags::{client_token, ec2_tagged, stack_filter, tag_spec};
use super::{Changed, Ctx, Known, ResourceKind, Wanted, created, existing, id, ids, resource};
use crate::stack::aws::{EXISTS, GONE, OrAlready, aws_error};
use crate::stack::render::{sha256_hex, user_data};
use crate::stack::spec::{Existing, Kind, Resource, names};

pub struct LaunchTemplate;

impl ResourceKind for LaunchTemplate {
    fn kind(&self) -> Kind {
        Kind::LaunchTemplate
    }

    fn label(&self) -> &'static str {
        "launch template"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        let inputs = wanted.inputs;
        // Instances: one launch template per tier, user data from launch-templates/.
        let instances = &wanted.definition.instances;
        ["api", "worker"]
            .into_iter()
            .map(|tier| {
                let bucket = names::bucket(inputs.stack, inputs.account, inputs.region);
                let uploads = format!("s3://{bucket}/{}", names::UPLOADS_PREFIX);
                let script = user_data(tier, inputs.stack, inputs.region, &bucket, &uploads);
                resource(
                    &format!("launch-template-{tier}"),
                    Kind::LaunchTemplate,
                    wanted.name(&format!("{tier}-template")),
                    &[
                        ("image", inputs.image_id.to_owned()),
                        ("instance_type", instances.instance_type.clone()),
                        ("security_groups", format!("sg-{tier}")),
                        ("instance_profile", format!("profile-{tier}")),
                        (
                            "volume",
                            format!(
                                "{} GB {}",
                                instances.root_volume_gb, instances.root_volume_type
                            ),
                        ),
                        ("user_data_sha256", sha256_hex(script.as_bytes())),
                    ],
                    &[&format!("sg-{tier}"), &format!("profile-{tier}")],
                )
            })
            .collect()
    }

    async fn discover(&self, ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
        discover(ctx).await
    }

    async fn create(
        &self,
        ctx: &Ctx,
        known: &Known,
        resource: &Resource,
    ) -> anyhow::Result<Existing> {
        create(ctx, known, resource).await
    }

    async fn update(
        &self,
        ctx: &Ctx,
        known: &Known,
        resource: &Resource,
        current: &Existing,
        _changed: &Changed,
    ) -> anyhow::Result<Existing> {
        update(ctx, known, resource, current).await
    }

    async fn delete(&self, ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
        delete(ctx, current).await
    }
}

const ROOT_DEVICE: &str = "/dev/xvda";

async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let ec2 = &ctx.aws.ec2;
    let templates = ec2
        .describe_launch_templates()
        .filters(stack_filter(ctx))
        .send()
        .await
        .map_err(aws_error)
        .context("cannot list the stack's launch templates")?;
    let mut found = Vec::new();
    for template in templates.launch_templates() {
        let Some((component, name)) = ec2_tagged(ctx, template.tags()) else {
            continue;
        };
        let template_id = template.launch_template_id().unwrap_or_default();
        let versions = ec2
            .describe_launch_template_versions()
            .launch_template_id(template_id)
            .versions("$Default")
            .send()
            .await
            .map_err(aws_error)?;
        let Some(data) = versions
            .launch_template_versions()
            .first()
            .and_then(|v| v.launch_template_data())
        else {
            continue;
        };
        let user_data = data
            .user_data()
            .and_then(|encoded| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .ok()
            })
            .map(|bytes| sha256_hex(&bytes))
            .unwrap_or_default();
        let volume = data
            .block_device_mappings()
            .iter()
            .find(|m| m.device_name() == Some(ROOT_DEVICE))
            .and_then(|m| m.ebs())
            .map(|ebs| {
                format!(
                    "{} GB {}",
                    ebs.volume_size().unwrap_or_default(),
                    ebs.volume_type().map(|t| t.as_str()).unwrap_or_default()
                )
            })
            .unwrap_or_default();
        let mut e = existing(
            component,
            Kind::LaunchTemplate,
            name,
            template_id.to_owned(),
            &[
                ("image", data.image_id().unwrap_or_default().to_owned()),
                (
                    "instance_type",
                    data.instance_type()
                        .map(|t| t.as_str().to_owned())
                        .unwrap_or_default(),
                ),
                ("security_groups", data.security_group_ids().join(",")),
                (
                    "instance_profile",
                    data.iam_instance_profile()
                        .and_then(|p| p.name())
                        .unwrap_or_default()
                        .to_owned(),
                ),
                ("volume", volume),
                ("user_data_sha256", user_data),
            ],
        );
        e.attrs.insert(
            "default_version".into(),
            template
                .default_version_number()
                .unwrap_or_default()
                .to_string(),
        );
        found.push(e);
    }
    Ok(found)
}

fn data(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
) -> anyhow::Result<RequestLaunchTemplateData> {
    let p = &resource.props;
    let tier = if resource.component.ends_with("api") {
        "api"
    } else {
        "worker"
    };
    let bucket = names::bucket(&ctx.stack, &ctx.account, ctx.region());
    let instances = &ctx.definition.instances;
    let uploads = format!("s3://{bucket}/{}", names::UPLOADS_PREFIX);
    let script = user_data(tier, &ctx.stack, ctx.region(), &bucket, &uploads);
    Ok(RequestLaunchTemplateData::builder()
        .image_id(&p["image"])
        .instance_type(p["instance_type"].as_str().into())
        .set_security_group_ids(Some(ids(known, &p["security_groups"])?))
        .iam_instance_profile(
            LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .name(id(known, &p["instance_profile"])?)
                .build(),
        )
        .block_device_mappings(
            LaunchTemplateBlockDeviceMappingRequest::builder()
                .device_name(ROOT_DEVICE)
                .ebs(
                    LaunchTemplateEbsBlockDeviceRequest::builder()
                        .volume_size(instances.root_volume_gb)
                        .volume_type(VolumeType::from(instances.root_volume_type.as_str()))
                        .encrypted(true)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
        // IMDSv2 only: instance credentials are not readable through a
        // request forgery. Tags readable there: user data reads the
        // instance's release from its accunode:release tag.
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(LaunchTemplateHttpTokensState::Required)
                .instance_metadata_tags(LaunchTemplateInstanceMetadataTagsState::Enabled)
                .build(),
        )
        .user_data(base64::engine::general_purpose::STANDARD.encode(script))
        .build())
}

async fn create(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
    // Its name is unique: a resend is answered "already exists" and adopted.
    let template = ctx
        .aws
        .ec2
        .create_launch_template()
        .launch_template_name(&resource.name)
        .version_description("accunode provision")
        .launch_template_data(data(ctx, known, resource)?)
        .tag_specifications(tag_spec(ctx, ResourceType::LaunchTemplate, resource))
        .send()
        .await
        .or_already(EXISTS)?;
    let template_id = match template {
        Some(template) => template
            .launch_template()
            .and_then(|t| t.launch_template_id())
            .context("CreateLaunchTemplate returned no id")?
            .to_owned(),
        None => adopt(ctx, resource, discover(ctx).await?)?.id,
    };
    Ok(created(resource, template_id))
}

async fn update(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    current: &Existing,
) -> anyhow::Result<Existing> {
    let data = data(ctx, known, resource)?;
    let token = client_token(
        ctx,
        &resource.component,
        &[&current.id, &format!("{data:?}")],
    );
    let version = ctx
        .aws
        .ec2
        .create_launch_template_version()
        .client_token(token)
        .launch_template_id(&current.id)
        .version_description("accunode provision")
        .launch_template_data(data)
        .send()
        .await
        .map_err(aws_error)?;
    let number = version
        .launch_template_version()
        .and_then(|v| v.version_number())
        .context("CreateLaunchTemplateVersion returned no version")?;
    ctx.aws
        .ec2
        .modify_launch_template()
        .launch_template_id(&current.id)
        .default_version(number.to_string())
        .send()
        .await
        .map_err(aws_error)?;
    Ok(created(resource, current.id.clone()))
}

async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .ec2
        .delete_launch_template()
        .launch_template_id(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}
