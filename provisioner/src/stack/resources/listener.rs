//! The load balancer's listeners: HTTP forwarding to the API, or, with a
//! certificate, HTTPS forwarding and HTTP redirecting. A listener of the
//! stack's load balancer is the stack's, named by its port. What a listener
//! does is a [`ListenerAction`], which plans show as text.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, bail};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, ProtocolEnum, RedirectActionConfig,
    RedirectActionStatusCodeEnum,
};

use super::find::create_once;
use super::load_balancer::stack_balancers;
use super::target_group::tags;
use super::{Changed, Ctx, Known, ResourceKind, Wanted, created, existing, id, resource};
use crate::stack::aws::{GONE, OrAlready, aws_error};
use crate::stack::spec::{Existing, Kind, Resource};

pub struct Listener;

impl ResourceKind for Listener {
    fn kind(&self) -> Kind {
        Kind::Listener
    }

    fn label(&self) -> &'static str {
        "listener"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        let forward = ListenerAction::Forward {
            target_group: "target-group-api".to_owned(),
        }
        .to_string();
        match wanted.inputs.certificate_arn {
            Some(certificate) => vec![
                resource(
                    "listener-https",
                    Kind::Listener,
                    wanted.name("https"),
                    &[
                        ("port", "443".into()),
                        ("protocol", "HTTPS".into()),
                        ("certificate", certificate.to_owned()),
                        ("action", forward),
                    ],
                    &["load-balancer", "target-group-api"],
                ),
                resource(
                    "listener-http",
                    Kind::Listener,
                    wanted.name("http"),
                    &[
                        ("port", "80".into()),
                        ("protocol", "HTTP".into()),
                        (
                            "action",
                            ListenerAction::Redirect {
                                protocol: "https".to_owned(),
                                port: 443,
                            }
                            .to_string(),
                        ),
                    ],
                    &["load-balancer"],
                ),
            ],
            None => vec![resource(
                "listener-http",
                Kind::Listener,
                wanted.name("http"),
                &[
                    ("port", "80".into()),
                    ("protocol", "HTTP".into()),
                    ("action", forward),
                ],
                &["load-balancer", "target-group-api"],
            )],
        }
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

/// What a listener does with a request. Plans show and compare it as text,
/// "forward target-group-api" or "redirect https 443"; this type is the one
/// place that text is made and read. The target group is the stack's
/// component in what is wanted; discovery reads its ARN, which becomes the
/// component once references are mapped.
#[derive(Debug, PartialEq, Eq)]
enum ListenerAction {
    Forward { target_group: String },
    Redirect { protocol: String, port: u16 },
}

impl ListenerAction {
    /// The action of a listener AWS describes; `None` for one of another type
    /// (or a redirect to a port that is not a number), which no wanted action is.
    fn from_aws(action: &Action) -> Option<ListenerAction> {
        match (
            action.r#type(),
            action.target_group_arn(),
            action.redirect_config(),
        ) {
            (Some(ActionTypeEnum::Forward), Some(target), _) => Some(ListenerAction::Forward {
                target_group: target.to_owned(),
            }),
            (Some(ActionTypeEnum::Redirect), _, Some(redirect)) => Some(ListenerAction::Redirect {
                protocol: redirect.protocol().unwrap_or_default().to_lowercase(),
                port: redirect.port().unwrap_or_default().parse().ok()?,
            }),
            _ => None,
        }
    }

    /// The action to send AWS, the target group's component resolved to its ARN.
    fn to_aws(&self, known: &Known) -> anyhow::Result<Action> {
        Ok(match self {
            ListenerAction::Forward { target_group } => Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(id(known, target_group)?)
                .build(),
            ListenerAction::Redirect { protocol, port } => Action::builder()
                .r#type(ActionTypeEnum::Redirect)
                .redirect_config(
                    RedirectActionConfig::builder()
                        .protocol(protocol.to_uppercase())
                        .port(port.to_string())
                        .status_code(RedirectActionStatusCodeEnum::Http301)
                        .build(),
                )
                .build(),
        })
    }
}

impl fmt::Display for ListenerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenerAction::Forward { target_group } => write!(f, "forward {target_group}"),
            ListenerAction::Redirect { protocol, port } => {
                write!(f, "redirect {protocol} {port}")
            }
        }
    }
}

impl FromStr for ListenerAction {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<ListenerAction> {
        let words: Vec<&str> = text.split(' ').collect();
        Ok(match words[..] {
            ["forward", target_group] => ListenerAction::Forward {
                target_group: target_group.to_owned(),
            },
            ["redirect", protocol, port] => ListenerAction::Redirect {
                protocol: protocol.to_owned(),
                port: port
                    .parse()
                    .with_context(|| format!("unknown listener action {text:?}: port {port:?}"))?,
            },
            _ => bail!(
                "unknown listener action {text:?}: expected \"forward TARGET-GROUP\" or \"redirect PROTOCOL PORT\""
            ),
        })
    }
}

/// A listener's action as plans show it: a forward or a redirect as
/// [`ListenerAction`] writes it, any other by its type's name.
fn describe_action(action: &Action) -> String {
    match ListenerAction::from_aws(action) {
        Some(known_action) => known_action.to_string(),
        None => action
            .r#type()
            .map(|kind| kind.as_str().to_owned())
            .unwrap_or_default(),
    }
}

/// The listeners of the stack's load balancer.
async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let mut found = Vec::new();
    for (_, balancer) in stack_balancers(ctx).await? {
        found.extend(
            discover_listeners(ctx, balancer.load_balancer_arn().unwrap_or_default()).await?,
        );
    }
    Ok(found)
}

/// The listeners of the stack's load balancer are the stack's: named by port.
async fn discover_listeners(ctx: &Ctx, balancer_arn: &str) -> anyhow::Result<Vec<Existing>> {
    let listeners = ctx
        .aws
        .elb
        .describe_listeners()
        .load_balancer_arn(balancer_arn)
        .send()
        .await
        .map_err(aws_error)?;
    let mut found = Vec::new();
    for listener in listeners.listeners() {
        let port = listener.port().unwrap_or_default();
        let component = match port {
            80 => "listener-http",
            443 => "listener-https",
            _ => continue,
        };
        let action = listener
            .default_actions()
            .first()
            .map(describe_action)
            .unwrap_or_default();
        let mut props = vec![
            ("port", port.to_string()),
            (
                "protocol",
                listener
                    .protocol()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default(),
            ),
            ("action", action),
        ];
        if let Some(certificate) = listener
            .certificates()
            .first()
            .and_then(|c| c.certificate_arn())
        {
            props.push(("certificate", certificate.to_owned()));
        }
        found.push(existing(
            component.to_owned(),
            Kind::Listener,
            format!(
                "{}-{}",
                ctx.stack,
                component.trim_start_matches("listener-")
            ),
            listener.listener_arn().unwrap_or_default().to_owned(),
            &props,
        ));
    }
    Ok(found)
}

async fn create(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
    let p = &resource.props;
    let balancer = id(known, "load-balancer")?;
    let (port, default_action) = (
        p["port"].parse()?,
        p["action"].parse::<ListenerAction>()?.to_aws(known)?,
    );
    let arn = create_once(
        ctx,
        "the listener",
        || async {
            let listener = ctx
                .aws
                .elb_once
                .create_listener()
                .load_balancer_arn(balancer)
                .port(port)
                .protocol(ProtocolEnum::from(p["protocol"].as_str()))
                .default_actions(default_action.clone())
                .set_certificates(
                    p.get("certificate")
                        .map(|arn| vec![Certificate::builder().certificate_arn(arn).build()]),
                )
                .set_tags(Some(tags(ctx, resource)))
                .send()
                .await?;
            Ok(listener
                .listeners()
                .first()
                .and_then(|l| l.listener_arn())
                .map(str::to_owned))
        },
        || async {
            Ok(discover_listeners(ctx, balancer)
                .await?
                .into_iter()
                .find(|found| found.component == resource.component)
                .map(|found| Some(found.id)))
        },
    )
    .await?
    .context("no listener ARN")?;
    Ok(created(resource, arn))
}

async fn update(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    current: &Existing,
) -> anyhow::Result<Existing> {
    let p = &resource.props;
    ctx.aws
        .elb
        .modify_listener()
        .listener_arn(&current.id)
        .port(p["port"].parse()?)
        .protocol(ProtocolEnum::from(p["protocol"].as_str()))
        .default_actions(p["action"].parse::<ListenerAction>()?.to_aws(known)?)
        .set_certificates(
            p.get("certificate")
                .map(|arn| vec![Certificate::builder().certificate_arn(arn).build()]),
        )
        .send()
        .await
        .map_err(aws_error)?;
    Ok(created(resource, current.id.clone()))
}

async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .elb
        .delete_listener()
        .listener_arn(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_read_back_what_they_write() {
        for (action, text) in [
            (
                ListenerAction::Forward {
                    target_group: "target-group-api".to_owned(),
                },
                "forward target-group-api",
            ),
            (
                ListenerAction::Redirect {
                    protocol: "https".to_owned(),
                    port: 443,
                },
                "redirect https 443",
            ),
        ] {
            assert_eq!(action.to_string(), text);
            assert_eq!(text.parse::<ListenerAction>().unwrap(), action);
        }
    }

    #[test]
    fn a_malformed_action_is_named() {
        for bad in [
            "forward",
            "forward target-group-api extra",
            "redirect https",
            "redirect https port-443",
            "fixed-response 404",
            "",
        ] {
            let error = bad.parse::<ListenerAction>().unwrap_err().to_string();
            assert!(error.contains(&format!("{bad:?}")), "{bad:?}: {error}");
        }
    }
}
