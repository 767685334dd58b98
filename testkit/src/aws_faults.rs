//! A proxy in front of the local AWS endpoint (moto) that behaves the way AWS
//! does and moto does not:
//!
//! - **Slow resources.** After an RDS instance, an ElastiCache replication
//!   group, a NAT gateway or a load balancer is created, describe calls show
//!   it `creating` / `pending` / `provisioning` for as long as AWS would take,
//!   scaled from minutes to [`Faults::seconds_per_minute`], without the
//!   endpoint AWS gives only once it is usable; deleting one holds the answer
//!   that long. The create itself answers at once, as AWS's does.
//! - **Throttling.** A share of all requests is answered with the throttling
//!   error of the request's protocol (EC2's `RequestLimitExceeded`, awsQuery's
//!   `Throttling`, JSON's `ThrottlingException`, S3's `SlowDown`).
//! - **Lost answers.** A share of mutating requests is forwarded, carried out,
//!   and then answered with a 5xx: the change happened, the caller cannot know.
//!
//! - **Refusals.** Named operations are refused as a missing permission would.
//!
//! Decisions are seeded: the nth request of one operation gets the same fate
//! under the same seed. Which request is the nth depends on timing (polls,
//! resends, concurrent requests of one operation), so a seed fixes the share
//! and spread of the faults, not which call of a run meets them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::http::StatusCode;
use poem::listener::TcpAcceptor;

/// What the proxy does to the traffic.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub seed: u64,
    /// The share of requests (0–1) answered with a throttling error.
    pub throttle: f64,
    /// The share of mutating requests (0–1) carried out and then answered 5xx.
    pub lost: f64,
    /// How long one minute of AWS's lasts here for slow resources; zero makes
    /// every resource instant, as moto is.
    pub seconds_per_minute: f64,
    /// Operations (`CreateReplicationGroup`) always refused as a missing IAM
    /// permission would refuse them: 403, not retryable.
    pub refuse: Vec<String>,
    /// How long an Auto Scaling instance launched while the proxy runs shows
    /// `Pending` before `InService` (booting); zero: at once, as moto does.
    /// Instances in the first answer the proxy sees were there before it.
    pub instance_launch_secs: f64,
    /// Target groups (by a part of their name) whose targets all fail their
    /// health checks: `DescribeTargetHealth` answers `unhealthy` for them.
    pub unhealthy_target_groups: Vec<String>,
}

/// What the proxy did, for tests to check that the faults really happened.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub requests: u64,
    pub throttled: u64,
    pub lost: u64,
    /// Lost answers by `service:Operation`.
    pub lost_operations: BTreeMap<String, u64>,
    pub held: u64,
}

/// A slow kind: how its create names it, how long it takes, and how its
/// describe shows it.
struct SlowKind {
    service: &'static str,
    create: &'static str,
    delete: &'static str,
    describe: &'static str,
    /// Where the id is: a request parameter, or else this tag of the answer.
    id_parameter: Option<&'static str>,
    id_tag: &'static str,
    /// The status element as describe shows it when usable, and while on its way.
    ready: &'static str,
    pending: &'static str,
    /// An element AWS gives only once the resource is usable (its endpoint).
    hidden_while_pending: Option<&'static str>,
    create_minutes: f64,
    delete_minutes: f64,
}

/// AWS's typical durations (RDS 5–10 min, ElastiCache 5–8, NAT 1–2, ALB 2–3),
/// the middle of each range.
const SLOW: [SlowKind; 4] = [
    SlowKind {
        service: "rds",
        create: "CreateDBInstance",
        delete: "DeleteDBInstance",
        describe: "DescribeDBInstances",
        id_parameter: Some("DBInstanceIdentifier"),
        id_tag: "DBInstanceIdentifier",
        ready: "<DBInstanceStatus>available</DBInstanceStatus>",
        pending: "<DBInstanceStatus>creating</DBInstanceStatus>",
        hidden_while_pending: Some("Endpoint"),
        create_minutes: 7.5,
        delete_minutes: 5.0,
    },
    SlowKind {
        service: "elasticache",
        create: "CreateReplicationGroup",
        delete: "DeleteReplicationGroup",
        describe: "DescribeReplicationGroups",
        id_parameter: Some("ReplicationGroupId"),
        id_tag: "ReplicationGroupId",
        ready: "<Status>available</Status>",
        pending: "<Status>creating</Status>",
        hidden_while_pending: Some("PrimaryEndpoint"),
        create_minutes: 6.5,
        delete_minutes: 4.0,
    },
    SlowKind {
        service: "ec2",
        create: "CreateNatGateway",
        delete: "DeleteNatGateway",
        describe: "DescribeNatGateways",
        id_parameter: None,
        id_tag: "natGatewayId",
        ready: "<state>available</state>",
        pending: "<state>pending</state>",
        hidden_while_pending: None,
        create_minutes: 1.5,
        delete_minutes: 1.0,
    },
    SlowKind {
        service: "elasticloadbalancing",
        create: "CreateLoadBalancer",
        delete: "DeleteLoadBalancer",
        describe: "DescribeLoadBalancers",
        id_parameter: None,
        id_tag: "LoadBalancerArn",
        ready: "<Code>active</Code>",
        pending: "<Code>provisioning</Code>",
        hidden_while_pending: None,
        create_minutes: 2.5,
        delete_minutes: 0.5,
    },
];

struct State {
    upstream: String,
    faults: Faults,
    http: reqwest::Client,
    counts: Mutex<Counts>,
    occurrences: Mutex<BTreeMap<String, u64>>,
    /// Slow resources still on their way: id → when they are ready.
    pending: Mutex<BTreeMap<String, Instant>>,
    /// Auto Scaling instances by when they are in service; `None` until the
    /// first describe answer, whose instances were there already.
    launches: Mutex<Option<BTreeMap<String, Instant>>>,
}

/// The running proxy; stops when dropped.
pub struct FaultProxy {
    pub url: String,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://127.0.0.1:PORT`) on a free local
    /// port, on its own thread (the caller may block on child processes).
    pub fn start(upstream: &str, faults: Faults) -> FaultProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free local port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let url = format!("http://{}", listener.local_addr().expect("a bound address"));
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_owned(),
            faults,
            // Straight to the upstream: no proxy from the environment, no redirects.
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
            counts: Mutex::default(),
            occurrences: Mutex::default(),
            pending: Mutex::default(),
            launches: Mutex::default(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the proxy");
            runtime.block_on(async move {
                let acceptor = TcpAcceptor::from_std(listener).expect("a listener for the proxy");
                let endpoint = poem::endpoint::make(move |request: poem::Request| {
                    let state = serving.clone();
                    async move { state.handle(request).await }
                });
                let _ = poem::Server::new_with_acceptor(acceptor)
                    .run_with_graceful_shutdown(
                        endpoint,
                        async {
                            let _ = stopped.await;
                        },
                        Some(Duration::from_secs(1)),
                    )
                    .await;
            });
        });
        // Connections made before the thread accepts wait in the listen backlog.
        FaultProxy {
            url,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn counts(&self) -> Counts {
        self.state.counts.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Which AWS protocol a request speaks, for answering in its format.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Ec2,
    Query,
    Json,
    RestXml,
}

struct Call {
    service: String,
    operation: String,
    protocol: Protocol,
    mutating: bool,
    form: BTreeMap<String, String>,
}

fn identify(method: &poem::http::Method, headers: &poem::http::HeaderMap, body: &[u8]) -> Call {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    // SigV4's credential scope: Credential=KEY/DATE/REGION/SERVICE/aws4_request.
    let service = header("authorization")
        .split("Credential=")
        .nth(1)
        .and_then(|scope| scope.split('/').nth(3))
        .unwrap_or_default()
        .to_owned();
    let target = header("x-amz-target");
    let form: BTreeMap<String, String> =
        if header("content-type").starts_with("application/x-www-form-urlencoded") {
            url::form_urlencoded::parse(body).into_owned().collect()
        } else {
            BTreeMap::new()
        };
    let (operation, protocol) = if let Some(action) = form.get("Action") {
        let protocol = if service == "ec2" {
            Protocol::Ec2
        } else {
            Protocol::Query
        };
        (action.clone(), protocol)
    } else if !target.is_empty() {
        (
            target.rsplit('.').next().unwrap_or_default().to_owned(),
            Protocol::Json,
        )
    } else {
        (method.to_string(), Protocol::RestXml)
    };
    let mutating = match protocol {
        Protocol::RestXml => !matches!(operation.as_str(), "GET" | "HEAD"),
        _ => !["Describe", "List", "Get", "Head"]
            .iter()
            .any(|read| operation.starts_with(read)),
    };
    Call {
        service,
        operation,
        protocol,
        mutating,
        form,
    }
}

/// FNV-1a over the parts, then a SplitMix64 finish: a number in [0, 1).
fn draw(parts: &[&[u8]]) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(&[0xff]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash = hash.wrapping_add(0x9e37_79b9_7f4a_7c15);
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^= hash >> 31;
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

fn error(protocol: Protocol, status: StatusCode, code: &str, message: &str) -> poem::Response {
    let (content_type, body) = match protocol {
        Protocol::Ec2 => (
            "text/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>"
            ),
        ),
        Protocol::Query => (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>{}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>",
                if status.is_server_error() {
                    "Receiver"
                } else {
                    "Sender"
                }
            ),
        ),
        Protocol::Json => (
            "application/x-amz-json-1.1",
            format!("{{\"__type\":\"{code}\",\"message\":\"{message}\"}}"),
        ),
        Protocol::RestXml => (
            "application/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>"
            ),
        ),
    };
    let mut response = poem::Response::builder()
        .status(status)
        .content_type(content_type)
        .header("x-amzn-requestid", "fault-proxy");
    if protocol == Protocol::Json {
        response = response.header("x-amzn-errortype", code);
    }
    response.body(body)
}

fn throttled(protocol: Protocol) -> poem::Response {
    match protocol {
        Protocol::Ec2 => error(
            protocol,
            StatusCode::SERVICE_UNAVAILABLE,
            "RequestLimitExceeded",
            "Request limit exceeded.",
        ),
        Protocol::Query => error(
            protocol,
            StatusCode::BAD_REQUEST,
            "Throttling",
            "Rate exceeded",
        ),
        Protocol::Json => error(
            protocol,
            StatusCode::BAD_REQUEST,
            "ThrottlingException",
            "Rate exceeded",
        ),
        Protocol::RestXml => error(
            protocol,
            StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            "Please reduce your request rate.",
        ),
    }
}

fn lost(protocol: Protocol) -> poem::Response {
    let code = match protocol {
        Protocol::Query => "InternalFailure",
        Protocol::Json => "InternalServerError",
        Protocol::Ec2 | Protocol::RestXml => "InternalError",
    };
    error(
        protocol,
        StatusCode::INTERNAL_SERVER_ERROR,
        code,
        "We encountered an internal error. Please try again.",
    )
}

/// The text between `<tag>` and `</tag>` after `from`, and where it ends.
fn element<'a>(text: &'a str, tag: &str, from: usize) -> Option<(&'a str, usize)> {
    let open = format!("<{tag}>");
    let start = text[from..].find(&open)? + from + open.len();
    let end = text[start..].find(&format!("</{tag}>"))? + start;
    Some((&text[start..end], end))
}

impl State {
    async fn handle(&self, request: poem::Request) -> poem::Response {
        let method = request.method().clone();
        let path_and_query = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned());
        let headers = request.headers().clone();
        let body = match request.into_body().into_bytes().await {
            Ok(body) => body,
            Err(_) => {
                return poem::Response::builder()
                    .status(StatusCode::BAD_REQUEST)
                    .finish();
            }
        };
        let call = identify(&method, &headers, &body);
        let key = format!("{}:{}", call.service, call.operation);
        let nth = {
            let mut occurrences = self.occurrences.lock().unwrap();
            let n = occurrences.entry(key.clone()).or_default();
            *n += 1;
            *n
        };
        let seed = self.faults.seed.to_le_bytes();
        let nth_bytes = nth.to_le_bytes();
        let fate = |what: &[u8]| draw(&[&seed, key.as_bytes(), &nth_bytes, what]);
        self.counts.lock().unwrap().requests += 1;
        if self.faults.refuse.contains(&call.operation) {
            return error(
                call.protocol,
                StatusCode::FORBIDDEN,
                if call.protocol == Protocol::Ec2 {
                    "UnauthorizedOperation"
                } else {
                    "AccessDenied"
                },
                "You are not authorized to perform this operation.",
            );
        }
        if fate(b"throttle") < self.faults.throttle {
            self.counts.lock().unwrap().throttled += 1;
            return throttled(call.protocol);
        }
        let slow = SLOW
            .iter()
            .find(|s| s.service == call.service && s.delete == call.operation);
        if let Some(slow) = slow
            && self.faults.seconds_per_minute > 0.0
        {
            self.counts.lock().unwrap().held += 1;
            tokio::time::sleep(Duration::from_secs_f64(
                slow.delete_minutes * self.faults.seconds_per_minute,
            ))
            .await;
        }

        let mut forward = self
            .http
            .request(method, format!("{}{path_and_query}", self.upstream))
            .body(body.to_vec());
        // The body is forwarded whole: what framed it on the way in does not go on.
        const HOP_BY_HOP: [&str; 6] = [
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
            "te",
            "expect",
        ];
        for (name, value) in &headers {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                forward = forward.header(name, value);
            }
        }
        let answer = match forward.send().await {
            Ok(answer) => answer,
            Err(_) => return lost(call.protocol),
        };
        let status = answer.status();
        let answer_headers = answer.headers().clone();
        let Ok(answer_body) = answer.bytes().await else {
            return lost(call.protocol);
        };
        let mut answer_body = answer_body.to_vec();
        if status.is_success() {
            self.track_slow(&call, &answer_body);
            answer_body = self.show_pending(&call, answer_body);
            answer_body = self.show_launching(&call, answer_body);
            answer_body = self.show_unhealthy(&call, answer_body);
        }
        if call.mutating && fate(b"lost") < self.faults.lost {
            let mut counts = self.counts.lock().unwrap();
            counts.lost += 1;
            *counts.lost_operations.entry(key).or_default() += 1;
            return lost(call.protocol);
        }
        let mut response = poem::Response::builder()
            .status(StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY));
        for (name, value) in &answer_headers {
            if name != "content-length" && name != "transfer-encoding" {
                response = response.header(name.as_str(), value.as_bytes());
            }
        }
        response.body(answer_body)
    }

    /// Remembers a slow resource just created, until when it is on its way.
    fn track_slow(&self, call: &Call, answer: &[u8]) {
        if self.faults.seconds_per_minute <= 0.0 {
            return;
        }
        let Some(slow) = SLOW
            .iter()
            .find(|s| s.service == call.service && s.create == call.operation)
        else {
            return;
        };
        let answer = String::from_utf8_lossy(answer);
        let id = match slow.id_parameter {
            Some(parameter) => call.form.get(parameter).cloned(),
            None => element(&answer, slow.id_tag, 0).map(|(id, _)| id.to_owned()),
        };
        if let Some(id) = id {
            let ready = Instant::now()
                + Duration::from_secs_f64(slow.create_minutes * self.faults.seconds_per_minute);
            self.pending.lock().unwrap().insert(id, ready);
        }
    }

    /// Rewrites an Auto Scaling describe answer so that instances launched
    /// less than `instance_launch_secs` ago are `Pending`, as AWS shows them
    /// while they boot.
    fn show_launching(&self, call: &Call, answer: Vec<u8>) -> Vec<u8> {
        if self.faults.instance_launch_secs <= 0.0
            || call.service != "autoscaling"
            || !matches!(
                call.operation.as_str(),
                "DescribeAutoScalingGroups" | "DescribeAutoScalingInstances"
            )
        {
            return answer;
        }
        let Ok(text) = String::from_utf8(answer.clone()) else {
            return answer;
        };
        let now = Instant::now();
        let boot = Duration::from_secs_f64(self.faults.instance_launch_secs);
        let mut launches = self.launches.lock().unwrap();
        let there_before = launches.is_none();
        let launches = launches.get_or_insert_with(BTreeMap::new);
        // Each instance's LifecycleState follows its InstanceId in its member.
        let mut parts = text.split("<InstanceId>");
        let mut out = parts.next().unwrap_or_default().to_owned();
        for part in parts {
            out.push_str("<InstanceId>");
            let id = part.split('<').next().unwrap_or_default().to_owned();
            let ready = *launches
                .entry(id)
                .or_insert(if there_before { now } else { now + boot });
            if ready > now {
                out.push_str(&part.replacen(
                    "<LifecycleState>InService</LifecycleState>",
                    "<LifecycleState>Pending</LifecycleState>",
                    1,
                ));
            } else {
                out.push_str(part);
            }
        }
        out.into_bytes()
    }

    /// Rewrites a `DescribeTargetHealth` answer for an unhealthy target
    /// group (its ARN is `…:targetgroup/<name>/<id>`) as AWS words a target
    /// whose health checks fail.
    fn show_unhealthy(&self, call: &Call, answer: Vec<u8>) -> Vec<u8> {
        if call.operation != "DescribeTargetHealth" {
            return answer;
        }
        let name = call
            .form
            .get("TargetGroupArn")
            .and_then(|arn| arn.split('/').nth(1))
            .unwrap_or_default();
        if !self
            .faults
            .unhealthy_target_groups
            .iter()
            .any(|part| name.contains(part.as_str()))
        {
            return answer;
        }
        let Ok(text) = String::from_utf8(answer.clone()) else {
            return answer;
        };
        text.replace(
            "<State>healthy</State>",
            "<State>unhealthy</State><Reason>Target.FailedHealthChecks</Reason><Description>Health checks failed</Description>",
        )
        .into_bytes()
    }

    /// Rewrites a describe answer so that resources still on their way show it.
    fn show_pending(&self, call: &Call, answer: Vec<u8>) -> Vec<u8> {
        let Some(slow) = SLOW
            .iter()
            .find(|s| s.service == call.service && s.describe == call.operation)
        else {
            return answer;
        };
        let now = Instant::now();
        let pending: Vec<String> = {
            let mut pending = self.pending.lock().unwrap();
            pending.retain(|_, ready| *ready > now);
            pending.keys().cloned().collect()
        };
        if pending.is_empty() {
            return answer;
        }
        let Ok(mut text) = String::from_utf8(answer.clone()) else {
            return answer;
        };
        // A resource's section runs from the end of the previous resource's id
        // element to the start of the next one's: its status is in there
        // whether it comes before or after its id (a neighbour's may be too,
        // which only makes a neighbour look busy a little longer).
        let open = format!("<{}>", slow.id_tag);
        let ids: Vec<(usize, usize, String)> = text
            .match_indices(&open)
            .filter_map(|(start, _)| {
                element(&text, slow.id_tag, start).map(|(id, end)| (start, end, id.to_owned()))
            })
            .collect();
        let mut sections: Vec<(usize, usize)> = Vec::new();
        for (i, (_, _, id)) in ids.iter().enumerate() {
            if pending.contains(id) {
                let from = if i == 0 { 0 } else { ids[i - 1].1 };
                let to = ids.get(i + 1).map_or(text.len(), |next| next.0);
                sections.push((from, to));
            }
        }
        for (from, to) in sections.into_iter().rev() {
            let mut section = text[from..to].replace(slow.ready, slow.pending);
            if let Some(tag) = slow.hidden_while_pending {
                while let Some((_, end)) = element(&section, tag, 0) {
                    let start = section.find(&format!("<{tag}>")).unwrap_or(end);
                    section.replace_range(start..end + tag.len() + 3, "");
                }
            }
            text.replace_range(from..to, &section);
        }
        text.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_spread_and_repeatable() {
        let draws: Vec<f64> = (0u64..1000)
            .map(|n| draw(&[b"seed", &n.to_le_bytes()]))
            .collect();
        let under_tenth = draws.iter().filter(|d| **d < 0.1).count();
        assert!((60..140).contains(&under_tenth), "{under_tenth}");
        assert_eq!(draw(&[b"a", b"b"]), draw(&[b"a", b"b"]));
        assert_ne!(draw(&[b"a", b"b"]), draw(&[b"ab"]));
    }
}
