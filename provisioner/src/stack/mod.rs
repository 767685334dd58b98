//! `accunode plan | provision | destroy | status | outputs | cost`: the AWS
//! stack of a cost phase, as desired state (the phase definition) compared with
//! what exists (found by tags: no local state file), planned, then converged.

mod apply;
mod aws;
mod definition;
mod deploy;
mod plan;
mod progress;
mod release;
mod render;
mod resources;
mod spec;
mod walk;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use self::aws::{Aws, Target, aws_error};
use self::definition::Definition;
use self::plan::Plan;
use self::progress::Progress;
use self::resources::{Ctx, Known};
use self::spec::{Existing, Inputs, Kind};

/// Flags every stack command takes.
#[derive(Args, Clone)]
pub struct StackArgs {
    /// The AWS region (default: the SDK's chain: AWS_REGION, then the profile).
    #[arg(long, global = true, env = "AWS_REGION")]
    region: Option<String>,
    /// The named profile of ~/.aws/config to use.
    #[arg(long, global = true, env = "AWS_PROFILE")]
    profile: Option<String>,
    /// The stack's name: every resource is tagged accunode:stack=<this> and named after it.
    #[arg(
        long,
        global = true,
        default_value = "accunode",
        env = "ACCUNODE_STACK"
    )]
    stack: String,
    /// Another AWS endpoint (a local stand-in such as moto), as the SDK's AWS_ENDPOINT_URL.
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// A phase definition file instead of the built-in provisioner/phases.toml.
    #[arg(long, global = true)]
    definition: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// What the desired state takes beyond the phase.
#[derive(Args, Clone)]
pub struct Options {
    /// Allow SSH (port 22) to the API and worker instances from this CIDR range only.
    #[arg(long)]
    admin_cidr: Option<String>,
    /// An ACM certificate ARN: the load balancer then serves HTTPS on 443 and redirects HTTP to it.
    #[arg(long)]
    certificate_arn: Option<String>,
}

/// What every deploy and rollback takes.
#[derive(Args, Clone)]
pub struct DeployFlags {
    /// Workers: the share of the desired capacity replaced at a time, in percent (1 to 100; default 50).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    batch: Option<u8>,
    /// API: first send the new colour this share of the requests, in percent (1 to 50), and watch the API's alarms for --canary-wait before switching.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=50))]
    canary: Option<u8>,
    /// API: how long the canary runs, e.g. 5m.
    #[arg(long, default_value = "5m", value_parser = deploy::parse_duration)]
    canary_wait: Duration,
    /// API: how long the old colour keeps its instances after the switch, so requests in flight finish (default: its target group's deregistration delay).
    #[arg(long, value_parser = deploy::parse_duration)]
    drain: Option<Duration>,
    /// How long to wait for another deploy's lock before giving up, e.g. 10m (default: do not wait).
    #[arg(long, default_value = "0s", value_parser = deploy::parse_duration)]
    lock_wait: Duration,
    /// Take over the lock of a deploy that died, putting back what it changed.
    #[arg(long)]
    force: bool,
    /// The longest one batch may take to be in service, in seconds.
    #[arg(long, default_value_t = 900)]
    wait_timeout: u64,
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Subcommand)]
pub enum StackCommand {
    /// Show what `provision` would change (+ create, ~ update, -/+ replace, - delete) and the monthly cost before → after.
    Plan {
        /// The cost phase (1 Startup, 2 Growth, 3 Scale).
        #[arg(long)]
        phase: u8,
        #[command(flatten)]
        options: Options,
        /// Exit 0 when there is nothing to change, 2 when there is (1 on error).
        #[arg(long)]
        detailed_exitcode: bool,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Create or converge the stack of a phase: plan, then apply that plan.
    Provision {
        /// The cost phase (1 Startup, 2 Growth, 3 Scale).
        #[arg(long)]
        phase: u8,
        #[command(flatten)]
        options: Options,
        /// The longest one wait (database, Redis, NAT gateway, load balancer) may take, in seconds.
        #[arg(long, default_value_t = 2400)]
        wait_timeout: u64,
        /// When a resource starts: graph (as soon as what it depends on is done) or waves (after every resource of every shallower level: the former engine, kept as a baseline for benchmarks).
        #[arg(long, value_enum, default_value = "graph")]
        schedule: walk::Schedule,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Remove every resource of the stack, in reverse dependency order (the model bucket only with --delete-data).
    Destroy {
        /// Confirm: destroy asks nothing and does nothing without it.
        #[arg(long)]
        yes: bool,
        /// Also empty and delete the model bucket (every version of every object).
        #[arg(long)]
        delete_data: bool,
        /// The longest one wait may take, in seconds.
        #[arg(long, default_value_t = 2400)]
        wait_timeout: u64,
    },
    /// What exists of the stack and its health.
    Status {
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// The stack's endpoints: load balancer DNS name, database and Redis endpoints, bucket, parameters.
    Outputs {
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Publish release VERSION: the API and worker binaries and a manifest (SHA-256 of every file, git commit, build time, model bundles, migrations) under releases/VERSION/ of the stack's bucket. A published version never changes: the same files again are a no-op, other files are refused.
    Release {
        /// The version to publish: 1 to 64 letters, digits, '.', '-' and '_' (e.g. 1.4.0).
        #[arg(long)]
        version: String,
        /// A folder holding accunode-api and accunode-worker built for x86_64 Linux, instead of building them here with cargo. Migrations and model bundles are read from the workspace the command runs in.
        #[arg(long)]
        from: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// List the published releases, oldest first.
    Releases {
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Deploy published release VERSION to a tier. The API is deployed blue-green: the idle colour comes up on VERSION at the live colour's size, every instance must be healthy in its target group, an optional canary gets a share of the requests while the API's alarms are watched, the listeners switch, the old colour drains and scales to zero; any failure or Ctrl-C before that switches back. Workers are replaced in rolling batches: each adds new instances and waits until they are in service before it terminates as many old ones, so capacity never drops below desired. Scaling is suspended meanwhile and resumed however the deploy ends.
    Deploy {
        #[arg(value_enum)]
        tier: deploy::Tier,
        /// The release to run (see `accunode releases`).
        #[arg(long)]
        version: String,
        #[command(flatten)]
        flags: DeployFlags,
    },
    /// Go back to the release a tier ran before its last successful deploy or rollback, as a deploy does (the API switches straight back to its previous colour while that still has its instances).
    Rollback {
        #[arg(value_enum)]
        tier: deploy::Tier,
        #[command(flatten)]
        flags: DeployFlags,
    },
    /// The stack's deploys and rollbacks, oldest first, and who holds the deploy lock.
    Deploys {
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Remove the deploy lock left by a deploy that died (it names its holder first).
    Unlock {
        /// Confirm: the lock may belong to a deploy still running elsewhere.
        #[arg(long)]
        force: bool,
    },
    /// The monthly estimate of a phase per resource, and how it compares with the original design's stated totals.
    Cost {
        /// The cost phase (1 Startup, 2 Growth, 3 Scale).
        #[arg(long)]
        phase: u8,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
}

pub fn run(args: StackArgs, command: StackCommand) -> anyhow::Result<ExitCode> {
    check_stack_name(&args.stack)?;
    let definition = Definition::load(args.definition.as_deref())?;
    match &command {
        StackCommand::Cost { phase, output } => return cost_report(&definition, *phase, *output),
        StackCommand::Plan { phase, options, .. }
        | StackCommand::Provision { phase, options, .. } => {
            definition.phase(*phase)?;
            check_options(options)?;
        }
        StackCommand::Release { version, from, .. } => {
            release::check_version(version)?;
            if let Some(from) = from {
                if !from.is_dir() {
                    bail!("--from {}: not a folder", from.display());
                }
                release::check_folder(from)?;
            }
        }
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(args, definition, command))
}

/// `provision`: plan, then apply that plan holding the stack's lock.
async fn provision(
    ctx: &Ctx,
    phase: u8,
    options: &Options,
    schedule: walk::Schedule,
    output: Output,
    started: Instant,
) -> anyhow::Result<ExitCode> {
    let (plan, desired, existing) = make_plan(ctx, phase, options).await?;
    if output == Output::Text {
        print!("{}", plan::render(&plan, &ctx.progress));
    }
    // Only a run that changes something holds the stack's lock: a run with
    // nothing to change makes no mutating call at all.
    let applied = if plan.has_changes() {
        let lock = deploy::hold_for(ctx, "provision").await?;
        let applied = apply::apply(ctx, &plan, &desired, existing, schedule).await;
        Some(deploy::give_back(ctx, lock, applied).await?.1)
    } else {
        None
    };
    let report = calls(ctx, started);
    match output {
        Output::Json => {
            print_json(&serde_json::json!({"plan": plan, "apply": applied, "calls": report}))?
        }
        Output::Text => {
            println!(
                "Stack {} is at phase {phase} in {:.1} s: {}.",
                ctx.stack,
                report.elapsed_secs,
                report.summary()
            );
            if let Some(applied) = &applied {
                println!("{}", applied.summary());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `destroy`, once it holds the stack's lock.
async fn destroy(ctx: &Ctx, delete_data: bool, started: Instant) -> anyhow::Result<ExitCode> {
    let existing: Vec<Existing> = discover(ctx).await?.into_values().collect();
    if existing.is_empty() {
        println!(
            "Stack {} has no resource in {}: nothing to destroy.",
            ctx.stack,
            ctx.region()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let graph = every_dependency(&ctx.definition, &ctx.stack, ctx.region(), &ctx.account);
    let (kept, destroyed) = apply::destroy(ctx, &graph, existing, delete_data).await?;
    for bucket in &kept {
        println!(
            "Kept the model bucket {} (pass --delete-data to delete it and every model in it).",
            bucket.name
        );
    }
    let report = calls(ctx, started);
    println!(
        "Stack {} destroyed in {:.1} s: {}.",
        ctx.stack,
        report.elapsed_secs,
        report.summary()
    );
    println!("{}", destroyed.summary());
    Ok(ExitCode::SUCCESS)
}

/// The deploy's settings; a flag of the other tier's strategy is refused by name.
fn settings(tier: deploy::Tier, flags: &DeployFlags) -> anyhow::Result<deploy::Settings> {
    match tier {
        deploy::Tier::Api if flags.batch.is_some() => {
            bail!("--batch: the API is deployed blue-green, not in batches (see --canary)")
        }
        deploy::Tier::Worker if flags.canary.is_some() || flags.drain.is_some() => bail!(
            "--{}: only the API is deployed blue-green; workers are replaced in rolling batches (see --batch)",
            if flags.canary.is_some() {
                "canary"
            } else {
                "drain"
            }
        ),
        _ => {}
    }
    Ok(deploy::Settings {
        batch_percent: flags.batch.unwrap_or(50),
        lock_wait: flags.lock_wait,
        force: flags.force,
        blue_green: deploy::bluegreen::Options {
            canary_percent: flags.canary.unwrap_or(0),
            canary_wait: flags.canary_wait,
            drain: flags.drain,
        },
    })
}

/// `deploy` and `rollback`: connect, deploy under the lock, report.
async fn run_deploy(
    args: &StackArgs,
    definition: Definition,
    tier: deploy::Tier,
    target: deploy::Target,
    flags: &DeployFlags,
    started: Instant,
) -> anyhow::Result<ExitCode> {
    let settings = settings(tier, flags)?;
    let ctx = connect(
        args,
        definition,
        flags.output == Output::Json,
        flags.wait_timeout,
    )
    .await?;
    let deployed = deploy::deploy(&ctx, tier, &target, &settings).await?;
    let report = calls(&ctx, started);
    match flags.output {
        Output::Json => print_json(&serde_json::json!({"deploy": deployed, "calls": report}))?,
        Output::Text => {
            let how = match (&deployed.rolled, &deployed.switched) {
                (Some(rolled), _) => {
                    format!("{} batches of {}", rolled.batches.len(), rolled.batch_size)
                }
                (None, Some(switched)) if switched.from_colour == switched.to_colour => {
                    format!("already live on {}", switched.to_colour)
                }
                (None, Some(switched)) => format!(
                    "{} → {}, {} instances healthy in {:.1} s{}, drained {:.0} s",
                    switched.from_colour,
                    switched.to_colour,
                    switched.instances.len(),
                    switched.gate_seconds,
                    switched
                        .canary
                        .as_ref()
                        .map(|c| format!(", canary {} % for {:.0} s", c.percent, c.seconds))
                        .unwrap_or_default(),
                    switched.drained_seconds
                ),
                (None, None) => "put back what the interrupted deploy changed".to_owned(),
            };
            println!(
                "{} of {} {} → {} done in {:.1} s: {how}; {}.",
                deployed.action,
                deployed.tier,
                deployed.from.as_deref().unwrap_or("none"),
                deployed.to,
                report.elapsed_secs,
                report.summary()
            )
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check_stack_name(stack: &str) -> anyhow::Result<()> {
    let valid = stack.len() <= 20
        && stack.starts_with(|c: char| c.is_ascii_lowercase())
        && stack
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !stack.ends_with('-');
    if !valid {
        bail!(
            "--stack {stack:?}: use 1 to 20 lowercase letters, digits and dashes, starting with a letter (it names AWS resources)"
        );
    }
    Ok(())
}

fn check_options(options: &Options) -> anyhow::Result<()> {
    if let Some(cidr) = &options.admin_cidr {
        let valid = cidr.split_once('/').is_some_and(|(ip, bits)| {
            ip.parse::<std::net::Ipv4Addr>().is_ok() && bits.parse::<u8>().is_ok_and(|b| b <= 32)
        });
        if !valid {
            bail!("--admin-cidr {cidr:?}: expected an IPv4 range such as 203.0.113.7/32");
        }
        if cidr.ends_with("/0") {
            bail!(
                "--admin-cidr {cidr:?}: SSH from the whole internet is refused; give your own address range"
            );
        }
    }
    if let Some(arn) = &options.certificate_arn
        && !(arn.starts_with("arn:aws") && arn.contains(":acm:"))
    {
        bail!(
            "--certificate-arn {arn:?}: expected an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>)"
        );
    }
    Ok(())
}

async fn connect(
    args: &StackArgs,
    definition: Definition,
    quiet: bool,
    wait_timeout: u64,
) -> anyhow::Result<Ctx> {
    let target = Target {
        region: args.region.clone(),
        profile: args.profile.clone(),
        endpoint_url: args.endpoint_url.clone(),
    };
    let aws = Aws::connect(&target).await?;
    let account = aws.account().await?;
    Ok(Ctx {
        aws,
        stack: args.stack.clone(),
        account,
        definition,
        progress: Progress::new(quiet),
        wait_timeout: Duration::from_secs(wait_timeout),
    })
}

/// What exists, by component; two resources claiming one component is an error
/// a person must resolve (accunode never guesses which one is in use).
async fn discover(ctx: &Ctx) -> anyhow::Result<Known> {
    known(ctx, resources::discover(ctx).await?)
}

/// What exists of `kinds` only, by component.
async fn discover_kinds(ctx: &Ctx, kinds: &[spec::Kind]) -> anyhow::Result<Known> {
    known(ctx, resources::discover_kinds(ctx, kinds).await?)
}

fn known(ctx: &Ctx, found: Vec<Existing>) -> anyhow::Result<Known> {
    let mut known = Known::new();
    for found in found {
        if let Some(other) = known.get(&found.component) {
            bail!(
                "two resources carry accunode:stack={} accunode:component={}: {} and {}; delete the one that is not in use",
                ctx.stack,
                found.component,
                other.id,
                found.id
            );
        }
        known.insert(found.component.clone(), found);
    }
    Ok(known)
}

async fn image_id(ctx: &Ctx) -> anyhow::Result<String> {
    let name = &ctx.definition.instances.image_parameter;
    let parameter = ctx.aws.ssm.get_parameter().name(name).send().await.map_err(aws_error).with_context(|| {
        format!("cannot resolve the instance image from the public parameter {name} (instances.image_parameter)")
    })?;
    parameter
        .parameter()
        .and_then(|p| p.value())
        .map(str::to_owned)
        .with_context(|| format!("{name} has no value"))
}

async fn make_plan(
    ctx: &Ctx,
    phase: u8,
    options: &Options,
) -> anyhow::Result<(Plan, Vec<spec::Resource>, Known)> {
    let phase_definition = ctx.definition.phase(phase)?.clone();
    anyhow::ensure!(
        !render::rds_ca(ctx.region()).is_empty(),
        "launch-templates/rds-global-bundle.pem has no RDS certificate authority of {}: \
         the instances could not verify the database (add the region's from AWS's RDS global bundle)",
        ctx.region()
    );
    let (existing, image) = tokio::try_join!(discover(ctx), image_id(ctx))?;
    let inputs = Inputs {
        stack: &ctx.stack,
        region: ctx.region(),
        account: &ctx.account,
        image_id: &image,
        admin_cidr: options.admin_cidr.as_deref(),
        certificate_arn: options.certificate_arn.as_deref(),
    };
    let desired = resources::desired(&ctx.definition, &phase_definition, &inputs, &existing);
    let plan = plan::plan(
        &ctx.definition,
        &ctx.stack,
        phase,
        ctx.region(),
        &desired,
        &existing,
    );
    Ok((plan, desired, existing))
}

#[derive(Serialize)]
struct CallReport {
    total: u64,
    mutating: u64,
    /// Calls sent again after a throttle, a server error or a lost answer.
    retried: u64,
    /// Answers that were AWS throttling the run.
    throttled: u64,
    mutating_operations: BTreeMap<String, u64>,
    elapsed_secs: f64,
}

impl CallReport {
    fn summary(&self) -> String {
        format!(
            "{} AWS calls, {} of them changing something; {} retried, {} throttled",
            self.total, self.mutating, self.retried, self.throttled
        )
    }
}

fn calls(ctx: &Ctx, started: Instant) -> CallReport {
    CallReport {
        total: ctx.aws.calls.total(),
        mutating: ctx.aws.calls.mutating(),
        retried: ctx.aws.calls.retried(),
        throttled: ctx.aws.calls.throttled(),
        mutating_operations: ctx.aws.calls.mutating_operations(),
        elapsed_secs: started.elapsed().as_secs_f64(),
    }
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn run_async(
    args: StackArgs,
    definition: Definition,
    command: StackCommand,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    match command {
        StackCommand::Plan {
            phase,
            options,
            detailed_exitcode,
            output,
        } => {
            let ctx = connect(&args, definition, output == Output::Json, 0).await?;
            let (plan, _, _) = make_plan(&ctx, phase, &options).await?;
            match output {
                Output::Json => {
                    print_json(&serde_json::json!({"plan": plan, "calls": calls(&ctx, started)}))?
                }
                Output::Text => print!("{}", plan::render(&plan, &ctx.progress)),
            }
            Ok(if detailed_exitcode && plan.has_changes() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        StackCommand::Provision {
            phase,
            options,
            wait_timeout,
            schedule,
            output,
        } => {
            let ctx = connect(&args, definition, output == Output::Json, wait_timeout).await?;
            provision(&ctx, phase, &options, schedule, output, started).await
        }
        StackCommand::Destroy {
            yes,
            delete_data,
            wait_timeout,
        } => {
            if !yes {
                bail!("destroy removes every resource of the stack: pass --yes to confirm");
            }
            let ctx = connect(&args, definition, false, wait_timeout).await?;
            let lock = deploy::hold_for(&ctx, "destroy").await?;
            let result = destroy(&ctx, delete_data, started).await;
            deploy::give_back(&ctx, lock, result).await
        }
        StackCommand::Status { output } => {
            let ctx = connect(&args, definition, true, 0).await?;
            let existing = discover(&ctx).await?;
            let deploys = deploy::status(&ctx, &existing).await?;
            match output {
                Output::Json => print_json(&serde_json::json!({
                    "resources": existing.values().collect::<Vec<_>>(),
                    "deploys": deploys,
                }))?,
                Output::Text => {
                    print!("{}", status_text(&ctx, &existing));
                    print!("{}", deploy_status_text(&deploys));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        StackCommand::Outputs { output } => {
            let ctx = connect(&args, definition, true, 0).await?;
            let existing = discover(&ctx).await?;
            let outputs = outputs(&ctx, &existing);
            match output {
                Output::Json => print_json(&outputs)?,
                Output::Text => {
                    for (key, value) in &outputs {
                        println!("{key:<20} {value}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        StackCommand::Release {
            version,
            from,
            output,
        } => {
            let ctx = connect(&args, definition, output == Output::Json, 0).await?;
            let published = release::publish(&ctx, &version, from.as_deref()).await?;
            let report = calls(&ctx, started);
            match output {
                Output::Json => {
                    print_json(&serde_json::json!({"release": published, "calls": report}))?
                }
                Output::Text => {
                    let manifest = &published.manifest;
                    let bytes: u64 = manifest.files.iter().map(|f| f.bytes).sum();
                    if published.uploaded {
                        println!(
                            "Release {version} published to s3://{}/{}/{version}/ in {:.1} s: {} files, {bytes} bytes, {} migrations, commit {}; {}.",
                            published.bucket,
                            release::PREFIX,
                            report.elapsed_secs,
                            manifest.files.len(),
                            manifest.migrations.len(),
                            manifest.git_commit.as_deref().unwrap_or("unknown"),
                            report.summary()
                        );
                    } else {
                        println!(
                            "Release {version} is already published with these files (built {}): nothing to do.",
                            manifest.built_at
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        StackCommand::Releases { output } => {
            let ctx = connect(&args, definition, true, 0).await?;
            let releases = release::list(&ctx).await?;
            match output {
                Output::Json => print_json(&serde_json::json!({"releases": releases}))?,
                Output::Text if releases.is_empty() => println!(
                    "Stack {} has no release: publish one with `accunode release --version V`.",
                    ctx.stack
                ),
                Output::Text => {
                    println!(
                        "{:<24} {:<20} {:<14} {:>12} {:>10}",
                        "VERSION", "BUILT", "COMMIT", "BYTES", "MIGRATIONS"
                    );
                    for listed in &releases {
                        match &listed.manifest {
                            Some(m) => println!(
                                "{:<24} {:<20} {:<14} {:>12} {:>10}",
                                listed.version,
                                m.built_at,
                                m.git_commit
                                    .as_deref()
                                    .map_or("unknown", |c| &c[..c.len().min(12)]),
                                m.files.iter().map(|f| f.bytes).sum::<u64>(),
                                m.migrations.len()
                            ),
                            None => println!(
                                "{:<24} incomplete: no manifest (an interrupted publish; run `accunode release --version {}` again with the same files)",
                                listed.version, listed.version
                            ),
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        StackCommand::Deploy {
            tier,
            version,
            flags,
        } => {
            release::check_version(&version)?;
            run_deploy(
                &args,
                definition,
                tier,
                deploy::Target::Release(version),
                &flags,
                started,
            )
            .await
        }
        StackCommand::Rollback { tier, flags } => {
            run_deploy(
                &args,
                definition,
                tier,
                deploy::Target::Previous,
                &flags,
                started,
            )
            .await
        }
        StackCommand::Deploys { output } => {
            let ctx = connect(&args, definition, true, 0).await?;
            let (records, holder) = deploy::deploys(&ctx).await?;
            match output {
                Output::Json => {
                    print_json(&serde_json::json!({"deploys": records, "lock": holder}))?
                }
                Output::Text => {
                    match &holder {
                        Some(holder) => println!("Deploy lock held by {holder}."),
                        None => println!("Deploy lock: free."),
                    }
                    if records.is_empty() {
                        println!("No deploy yet.");
                    }
                    for r in &records {
                        println!(
                            "{}  {:<8} {:<8} {} → {}  {:<11} {}{}",
                            r.started,
                            r.action,
                            r.tier,
                            r.from.as_deref().unwrap_or("none"),
                            r.to,
                            r.outcome,
                            r.who,
                            r.reason
                                .as_deref()
                                .map(|why| format!(": {why}"))
                                .unwrap_or_default()
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        StackCommand::Unlock { force } => {
            if !force {
                bail!(
                    "unlock removes the lock of a deploy that may still be running: pass --force to confirm"
                );
            }
            let ctx = connect(&args, definition, false, 0).await?;
            match deploy::unlock(&ctx).await? {
                Some(holder) => println!("Removed the deploy lock held by {holder}."),
                None => println!("The deploy lock was not held."),
            }
            Ok(ExitCode::SUCCESS)
        }
        StackCommand::Cost { .. } => unreachable!("cost needs no AWS and is answered before"),
    }
}

/// Every dependency any shape of the stack can have, by component: what
/// exists may come from any phase, with or without HTTPS (the HTTP listener
/// forwards to the targets without it, and only redirects with it).
fn every_dependency(
    definition: &Definition,
    stack: &str,
    region: &str,
    account: &str,
) -> Vec<spec::Resource> {
    let mut merged: BTreeMap<String, spec::Resource> = BTreeMap::new();
    for phase in &definition.phases {
        for certificate_arn in [None, Some("arn:aws:acm:graph")] {
            let inputs = Inputs {
                stack,
                region,
                account,
                image_id: "",
                admin_cidr: None,
                certificate_arn,
            };
            for resource in resources::desired(definition, phase, &inputs, &Known::new()) {
                match merged.get_mut(&resource.component) {
                    Some(known) => {
                        for dependency in resource.depends_on {
                            if !known.depends_on.contains(&dependency) {
                                known.depends_on.push(dependency);
                            }
                        }
                    }
                    None => {
                        merged.insert(resource.component.clone(), resource);
                    }
                }
            }
        }
    }
    merged.into_values().collect()
}

fn deploy_status_text(status: &deploy::DeployStatus) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for tier in &status.tiers {
        let mut by_release: BTreeMap<&str, usize> = BTreeMap::new();
        for member in &tier.instances {
            *by_release
                .entry(member.release.as_deref().unwrap_or("no release"))
                .or_default() += 1;
        }
        let running: Vec<String> = by_release
            .iter()
            .map(|(release, count)| format!("{release} ×{count}"))
            .collect();
        let mut health: BTreeMap<&str, usize> = BTreeMap::new();
        for member in &tier.instances {
            if let Some(state) = &member.target_health {
                *health.entry(state).or_default() += 1;
            }
        }
        let targets = if health.is_empty() {
            String::new()
        } else {
            let states: Vec<String> = health
                .iter()
                .map(|(state, count)| format!("{state} ×{count}"))
                .collect();
            format!("; targets: {}", states.join(", "))
        };
        let colour = match (tier.colour, tier.live) {
            (Some(colour), Some(true)) => format!(" {} (live)", colour.name()),
            (Some(colour), _) => format!(" {} (idle)", colour.name()),
            (None, _) => String::new(),
        };
        let _ = writeln!(
            out,
            "Tier {:<20} release {:<12} {} of {} desired in service; instances: {}{targets}",
            format!("{}{colour}", tier.tier),
            tier.release.as_deref().unwrap_or("none"),
            tier.in_service,
            tier.desired,
            if running.is_empty() {
                "none".to_owned()
            } else {
                running.join(", ")
            }
        );
    }
    let _ = match &status.lock {
        Some(holder) => writeln!(out, "Deploy lock held by {holder}."),
        None => writeln!(out, "Deploy lock: free."),
    };
    if let Some(last) = &status.last_deploy {
        let _ = writeln!(
            out,
            "Last deploy: {} {} {} → {} {} at {} by {}.",
            last.action,
            last.tier,
            last.from.as_deref().unwrap_or("none"),
            last.to,
            last.outcome,
            last.ended,
            last.who
        );
    }
    let _ = if status.alarms_firing.is_empty() {
        writeln!(out, "Alarms in ALARM: none.")
    } else {
        writeln!(out, "Alarms in ALARM: {}.", status.alarms_firing.join(", "))
    };
    out
}

fn status_text(ctx: &Ctx, existing: &Known) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if existing.is_empty() {
        let _ = writeln!(
            out,
            "Stack {} has no resource in {}.",
            ctx.stack,
            ctx.region()
        );
        return out;
    }
    let _ = writeln!(
        out,
        "Stack {} in {}: {} resources",
        ctx.stack,
        ctx.region(),
        existing.len()
    );
    let mut rows: Vec<&Existing> = existing.values().collect();
    rows.sort_by_key(|e| e.kind.creation_rank());
    for e in rows {
        let health = e.kind.home().status(e);
        let _ = writeln!(
            out,
            "  {:<28} {:<20} {:<40} {health}",
            e.component,
            e.kind.label(),
            e.name
        );
    }
    out
}

fn outputs(ctx: &Ctx, existing: &Known) -> BTreeMap<&'static str, String> {
    let attr = |component: &str, key: &str| {
        existing
            .get(component)
            .and_then(|e| e.attrs.get(key))
            .cloned()
    };
    let mut outputs = BTreeMap::new();
    outputs.insert("stack", ctx.stack.clone());
    outputs.insert("region", ctx.region().to_owned());
    if let Some(dns) = attr("load-balancer", "dns_name") {
        let scheme = if existing.contains_key("listener-https") {
            "https"
        } else {
            "http"
        };
        outputs.insert("api_url", format!("{scheme}://{dns}"));
        outputs.insert("load_balancer_dns", dns);
    }
    if let Some(endpoint) = attr("database", "endpoint") {
        outputs.insert("database_endpoint", endpoint);
    }
    if let Some(endpoint) = attr("redis", "endpoint") {
        outputs.insert("redis_endpoint", endpoint);
    }
    for (key, component) in [("vpc_id", "vpc"), ("model_bucket", "model-bucket")] {
        if let Some(e) = existing.get(component) {
            outputs.insert(key, e.id.clone());
        }
    }
    outputs.insert("parameters", spec::names::parameter(&ctx.stack, "*"));
    outputs
}

#[derive(Serialize)]
struct CostLine {
    component: String,
    kind: Kind,
    monthly: f64,
}

#[derive(Serialize)]
struct CostReport {
    phase: u8,
    name: String,
    prices_date: String,
    region: String,
    lines: Vec<CostLine>,
    total: f64,
    seed_total_stated: f64,
    seed_total_summed: f64,
    resolved: Vec<String>,
}

fn cost_report(
    definition: &Definition,
    phase_number: u8,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let phase = definition.phase(phase_number)?;
    let inputs = Inputs {
        stack: "accunode",
        region: &definition.prices.region,
        account: "000000000000",
        image_id: "",
        admin_cidr: None,
        certificate_arn: None,
    };
    let desired = resources::desired(definition, phase, &inputs, &Known::new());
    let lines: Vec<CostLine> = desired
        .iter()
        .map(|r| CostLine {
            component: r.component.clone(),
            kind: r.kind,
            monthly: r.kind.home().monthly_cost(definition, &r.props),
        })
        .filter(|l| l.monthly > 0.0)
        .collect();
    let report = CostReport {
        phase: phase.number,
        name: phase.name.clone(),
        prices_date: definition.prices.date.clone(),
        region: definition.prices.region.clone(),
        total: lines.iter().map(|l| l.monthly).sum(),
        lines,
        seed_total_stated: phase.seed_total_stated,
        seed_total_summed: phase.seed_total_summed,
        resolved: definition
            .resolutions(phase)
            .into_iter()
            .map(str::to_owned)
            .collect(),
    };
    if output == Output::Json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Phase {} ({}): monthly estimate, {} on-demand prices of {}",
        report.phase, report.name, report.region, report.prices_date
    );
    for line in &report.lines {
        println!(
            "  {:<28} {:<20} ${:>8.2}",
            line.component,
            line.kind.label(),
            line.monthly
        );
    }
    println!("  {:<49} ${:>8.2}", "total", report.total);
    println!(
        "The seed states ${:.0} for this phase; its own lines add up to ${:.0}. This estimate is ${:+.2} against the stated total.",
        report.seed_total_stated,
        report.seed_total_summed,
        report.total - report.seed_total_stated
    );
    println!(
        "Where the seed contradicts itself or leaves something out, the definition resolves it:"
    );
    for note in &report.resolved {
        println!("  - {note}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::stack::definition::BUILT_IN;

    #[test]
    fn destroy_orders_by_the_dependencies_of_every_shape() {
        let definition = Definition::parse(BUILT_IN).unwrap();
        let graph = every_dependency(&definition, "s", "us-east-1", "000000000000");
        let depends_on = |component: &str| {
            &graph
                .iter()
                .find(|r| r.component == component)
                .unwrap_or_else(|| panic!("{component} is in no shape"))
                .depends_on
        };
        // Without HTTPS the HTTP listener forwards to the targets; with it,
        // it only redirects and the HTTPS listener forwards.
        for listener in ["listener-http", "listener-https"] {
            for colour in spec::Colour::BOTH {
                assert!(
                    depends_on(listener).contains(&colour.target_group()),
                    "{listener}: {:?}",
                    depends_on(listener)
                );
            }
        }
        let components: BTreeSet<&str> = graph.iter().map(|r| r.component.as_str()).collect();
        assert_eq!(components.len(), graph.len(), "one node per component");
    }
}
