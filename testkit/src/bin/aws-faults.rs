//! `aws-faults --upstream URL [--seed N] [--throttle SHARE] [--lost SHARE]
//! [--seconds-per-minute S] [--instance-launch-secs S] [--unhealthy-target-group NAME]…`: runs the AWS-like proxy of
//! `accunode_testkit::aws_faults` in front of moto for benchmarks and manual
//! runs, printing its URL, until stdin closes; then prints what it did.

use std::io::Read;
use std::process::ExitCode;

use accunode_testkit::aws_faults::{FaultProxy, Faults};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("aws-faults: {message}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut upstream = None;
    let mut faults = Faults::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag}: expected a value after it"))?;
        let share = |value: &str| {
            value
                .parse::<f64>()
                .ok()
                .filter(|v| (0.0..=1.0).contains(v))
                .ok_or_else(|| format!("{flag} {value:?}: expected a share from 0 to 1"))
        };
        match flag.as_str() {
            "--upstream" => upstream = Some(value),
            "--seed" => {
                faults.seed = value
                    .parse()
                    .map_err(|_| format!("--seed {value:?}: expected a whole number"))?
            }
            "--throttle" => faults.throttle = share(&value)?,
            "--lost" => faults.lost = share(&value)?,
            "--seconds-per-minute" => {
                faults.seconds_per_minute = value
                    .parse()
                    .ok()
                    .filter(|v: &f64| *v >= 0.0 && v.is_finite())
                    .ok_or_else(|| {
                        format!("--seconds-per-minute {value:?}: expected a number of seconds")
                    })?
            }
            "--instance-launch-secs" => {
                faults.instance_launch_secs = value
                    .parse()
                    .ok()
                    .filter(|v: &f64| *v >= 0.0 && v.is_finite())
                    .ok_or_else(|| {
                        format!("--instance-launch-secs {value:?}: expected a number of seconds")
                    })?
            }
            "--unhealthy-target-group" => faults.unhealthy_target_groups.push(value),
            other => return Err(format!("{other}: unknown flag")),
        }
    }
    let upstream = upstream.ok_or("--upstream: the local AWS endpoint to stand in front of")?;
    let proxy = FaultProxy::start(&upstream, faults);
    println!("{}", proxy.url);
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    let counts = proxy.counts();
    eprintln!(
        "aws-faults: {} requests, {} throttled, {} answers lost, {} deletes held",
        counts.requests, counts.throttled, counts.lost, counts.held
    );
    Ok(())
}
