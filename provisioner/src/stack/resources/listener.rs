//! The load balancer's listeners: HTTP forwarding to the API, or, with a
//! certificate, HTTPS forwarding and HTTP redirecting. A listener of the
//! stack's load balancer is the stack's, named by its port. What a listener
//! does is a [`ListenerAction`], which plans show as text.
//!
//! The forwarding listener is also where the API's live colour is kept: the
//! colour it forwards to ([`live_colour`]) is live, and what is wanted of
//! every API resource follows from it, so `provision` never switches colours
//! behind a deploy's back. Deploys change it with [`set_action`].

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, bail};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, ForwardActionConfig, ProtocolEnum, RedirectActionConfig,
    RedirectActionStatusCodeEnum, TargetGroupTuple,
};

use super::find::create_once;
use super::load_balancer::stack_balancers;
use super::target_group::tags;
use super::{Changed, Ctx, Known, ResourceKind, Wanted, created, existing, id, resource};
use crate::stack::aws::{GONE, OrAlready, aws_error};
use crate::stack::spec::{Colour, Existing, Kind, Resource};

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
            target_group: live_colour(wanted.existing).target_group(),
        }
        .to_string();
        // Both colours: a canary forwards to the two, and destroy must remove
        // the listener before whichever target group it forwards to.
        let blue = Colour::Blue.target_group();
        let green = Colour::Green.target_group();
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
                    &["load-balancer", &blue, &green],
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
                &["load-balancer", &blue, &green],
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
/// "forward target-group-api-blue", "forward target-group-api-blue=90,target-group-api-green=10"
/// (a canary's shares) or "redirect https 443"; this type is the one place
/// that text is made and read. Target groups are the stack's components in
/// what is wanted; discovery reads their ARNs, which become components once
/// references are mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerAction {
    Forward {
        target_group: String,
    },
    /// Shares of the requests by weight, in AWS's order.
    Weighted {
        targets: Vec<(String, u32)>,
    },
    Redirect {
        protocol: String,
        port: u16,
    },
}

impl ListenerAction {
    /// The action of a listener AWS describes; `None` for one of another type
    /// (or a redirect to a port that is not a number), which no wanted action is.
    pub fn from_aws(action: &Action) -> Option<ListenerAction> {
        match action.r#type() {
            Some(ActionTypeEnum::Forward) => {
                // AWS gives a plain forward both ways, the target group and a
                // one-group forward config; moto only the first.
                let tuples = action
                    .forward_config()
                    .map(|config| config.target_groups())
                    .unwrap_or_default();
                if tuples.len() > 1 {
                    return Some(ListenerAction::Weighted {
                        targets: tuples
                            .iter()
                            .map(|t| {
                                (
                                    t.target_group_arn().unwrap_or_default().to_owned(),
                                    t.weight().and_then(|w| u32::try_from(w).ok()).unwrap_or(1),
                                )
                            })
                            .collect(),
                    });
                }
                let target = action
                    .target_group_arn()
                    .or_else(|| tuples.first().and_then(|t| t.target_group_arn()))?;
                Some(ListenerAction::Forward {
                    target_group: target.to_owned(),
                })
            }
            Some(ActionTypeEnum::Redirect) => {
                let redirect = action.redirect_config()?;
                Some(ListenerAction::Redirect {
                    protocol: redirect.protocol().unwrap_or_default().to_lowercase(),
                    port: redirect.port().unwrap_or_default().parse().ok()?,
                })
            }
            _ => None,
        }
    }

    /// The target group that takes the requests, or most of them: the live
    /// one. None for a redirect.
    pub fn serving(&self) -> Option<&str> {
        match self {
            ListenerAction::Forward { target_group } => Some(target_group),
            ListenerAction::Weighted { targets } => targets
                .iter()
                .rev()
                .max_by_key(|(_, weight)| *weight)
                .map(|(target_group, _)| target_group.as_str()),
            ListenerAction::Redirect { .. } => None,
        }
    }

    /// The action to send AWS, each target group resolved to its ARN by `arn`.
    pub fn to_aws(&self, arn: impl Fn(&str) -> anyhow::Result<String>) -> anyhow::Result<Action> {
        Ok(match self {
            ListenerAction::Forward { target_group } => Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(arn(target_group)?)
                .build(),
            ListenerAction::Weighted { targets } => {
                let mut tuples = Vec::new();
                for (target_group, weight) in targets {
                    tuples.push(
                        TargetGroupTuple::builder()
                            .target_group_arn(arn(target_group)?)
                            .weight(i32::try_from(*weight).context("a weight above 999")?)
                            .build(),
                    );
                }
                Action::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .forward_config(
                        ForwardActionConfig::builder()
                            .set_target_groups(Some(tuples))
                            .build(),
                    )
                    .build()
            }
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
            ListenerAction::Weighted { targets } => {
                let shares: Vec<String> = targets
                    .iter()
                    .map(|(target_group, weight)| format!("{target_group}={weight}"))
                    .collect();
                write!(f, "forward {}", shares.join(","))
            }
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
            ["forward", shares] if shares.contains('=') => {
                let mut targets = Vec::new();
                for share in shares.split(',') {
                    let (target_group, weight) = share
                        .split_once('=')
                        .filter(|(target_group, _)| !target_group.is_empty())
                        .with_context(|| {
                            format!("unknown listener action {text:?}: {share:?} is not TARGET-GROUP=WEIGHT")
                        })?;
                    let weight = weight.parse::<u32>().ok().filter(|w| *w <= 999).with_context(|| {
                        format!("unknown listener action {text:?}: weight {weight:?} is not 0 to 999")
                    })?;
                    targets.push((target_group.to_owned(), weight));
                }
                ListenerAction::Weighted { targets }
            }
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
                "unknown listener action {text:?}: expected \"forward TARGET-GROUP\", \"forward TARGET-GROUP=WEIGHT,…\" or \"redirect PROTOCOL PORT\""
            ),
        })
    }
}

/// The colour the stack's forwarding listener sends requests (or most of
/// them) to. Without one (a new stack, or one whose listener a failed
/// destroy removed), the colour with more instances wanted, so that a
/// converge never scales the one with instances to zero; blue on a tie.
pub fn live_colour(existing: &Known) -> Colour {
    let listened = existing
        .values()
        .filter(|e| e.kind == Kind::Listener)
        .filter_map(|e| e.props.get("action")?.parse::<ListenerAction>().ok())
        .find_map(|action| action.serving().and_then(Colour::of_target_group));
    listened.unwrap_or_else(|| {
        let desired = |colour: Colour| {
            existing
                .get(&colour.group())
                .and_then(|group| group.props.get("desired")?.parse::<i32>().ok())
                .unwrap_or(0)
        };
        if desired(Colour::Green) > desired(Colour::Blue) {
            Colour::Green
        } else {
            Colour::Blue
        }
    })
}

/// Points the listener `listener_arn` at `action` (a deploy's canary, switch
/// or put-back), its target groups resolved by `arn`, changing nothing else
/// about it.
pub async fn set_action(
    ctx: &Ctx,
    listener_arn: &str,
    action: &ListenerAction,
    arn: impl Fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    ctx.aws
        .elb
        .modify_listener()
        .listener_arn(listener_arn)
        .default_actions(action.to_aws(arn)?)
        .send()
        .await
        .map_err(aws_error)
        .with_context(|| format!("cannot point the listener {listener_arn} at \"{action}\""))?;
    Ok(())
}

/// Resolves a target group component to its ARN, as creates and updates do.
fn component_arn(known: &Known) -> impl Fn(&str) -> anyhow::Result<String> + '_ {
    |component| id(known, component).map(str::to_owned)
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
        p["action"]
            .parse::<ListenerAction>()?
            .to_aws(component_arn(known))?,
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
        .default_actions(
            p["action"]
                .parse::<ListenerAction>()?
                .to_aws(component_arn(known))?,
        )
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
                    target_group: "target-group-api-blue".to_owned(),
                },
                "forward target-group-api-blue",
            ),
            (
                ListenerAction::Weighted {
                    targets: vec![
                        ("target-group-api-blue".to_owned(), 90),
                        ("target-group-api-green".to_owned(), 10),
                    ],
                },
                "forward target-group-api-blue=90,target-group-api-green=10",
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
            "forward target-group-api-blue=90,=10",
            "forward target-group-api-blue=ninety",
            "forward target-group-api-blue=1000",
            "redirect https",
            "redirect https port-443",
            "fixed-response 404",
            "",
        ] {
            let error = bad.parse::<ListenerAction>().unwrap_err().to_string();
            assert!(error.contains(&format!("{bad:?}")), "{bad:?}: {error}");
        }
    }

    #[test]
    fn the_live_colour_is_the_one_taking_most_requests() {
        let listener = |action: &str| {
            let mut found = existing(
                "listener-http".to_owned(),
                Kind::Listener,
                "s-http".to_owned(),
                "arn:listener".to_owned(),
                &[("action", action.to_owned())],
            );
            found.props.insert("port".into(), "80".into());
            Known::from([(found.component.clone(), found)])
        };
        for (action, live) in [
            ("forward target-group-api-green", Colour::Green),
            ("forward target-group-api-blue", Colour::Blue),
            (
                "forward target-group-api-blue=90,target-group-api-green=10",
                Colour::Blue,
            ),
            (
                "forward target-group-api-blue=10,target-group-api-green=90",
                Colour::Green,
            ),
            // Not ours to read (an old stack's single target group): blue.
            ("forward target-group-api", Colour::Blue),
            ("redirect https 443", Colour::Blue),
        ] {
            assert_eq!(live_colour(&listener(action)), live, "{action}");
        }
        assert_eq!(live_colour(&Known::new()), Colour::Blue, "a new stack");
        // No listener: the colour with instances.
        let group = |colour: Colour, desired: &str| {
            let found = existing(
                colour.group(),
                Kind::AutoScalingGroup,
                colour.group(),
                colour.group(),
                &[("desired", desired.to_owned())],
            );
            (found.component.clone(), found)
        };
        let green_serving = Known::from([group(Colour::Blue, "0"), group(Colour::Green, "2")]);
        assert_eq!(live_colour(&green_serving), Colour::Green);
    }
}
