//! What the stack renders from its definition, purely: the instances' user
//! data, the dashboard's body, and the digests that stand for them in plans
//! (AWS does not give user data or a dashboard back in a comparable form).

use std::collections::BTreeMap;

use accunode_core::published_metrics::{
    ACTIVE_CONNECTIONS, ERROR_RATE, PublishedMetric, QUEUE_LENGTH, RESPONSE_TIME, STACK_DIMENSION,
    TASK_DURATION, TASK_WAIT_TIME, TASKS_PROCESSED,
};
use sha2::{Digest, Sha256};

const USER_DATA: &str = include_str!("../../../launch-templates/user-data.sh");
const API_UNIT: &str = include_str!("../../../launch-templates/systemd/accunode-api.service");
const WORKER_UNIT: &str = include_str!("../../../launch-templates/systemd/accunode-worker.service");
const RDS_CA_BUNDLE: &str = include_str!("../../../launch-templates/rds-global-bundle.pem");

/// Where user data writes the region's RDS certificate authorities, which
/// DATABASE_URL's `sslrootcert` names (readable by the services' user).
pub const RDS_CA_PATH: &str = "/opt/accunode/rds-ca.pem";

/// The root CAs of RDS in `region`, each after its comment line, from
/// `launch-templates/rds-global-bundle.pem`; empty for a region it lacks. Only
/// the region's: the whole bundle would not fit in user data (16 KB).
pub fn rds_ca(region: &str) -> String {
    let heading = format!("# Amazon RDS {region} Root CA ");
    RDS_CA_BUNDLE
        .split_inclusive("-----END CERTIFICATE-----\n")
        .filter_map(|block| block.find(&heading).map(|start| &block[start..]))
        .collect()
}

/// The boot script of a tier's instances; `uploads` is the bucket's uploads
/// prefix as an `s3://` URL (`BULK_UPLOAD_PATH`).
pub fn user_data(tier: &str, stack: &str, region: &str, bucket: &str, uploads: &str) -> String {
    let (binary, unit) = if tier == "api" {
        ("accunode-api", API_UNIT)
    } else {
        ("accunode-worker", WORKER_UNIT)
    };
    USER_DATA
        .replace("{{tier}}", tier)
        .replace("{{stack}}", stack)
        .replace("{{region}}", region)
        .replace("{{rds_ca_path}}", RDS_CA_PATH)
        .replace("{{rds_ca}}", rds_ca(region).trim_end())
        .replace("{{bucket}}", bucket)
        .replace("{{uploads}}", uploads)
        .replace("{{binary}}", binary)
        .replace("{{unit}}", unit.trim_end())
}

/// The dashboard's JSON body. `refs` holds live identifiers by component
/// (the load balancer's metric dimension); the rest follows from the names.
/// Our own metrics (`AccuNode/…`) are read as the API and the worker publish
/// them (`accunode_core::published_metrics`): with the one dimension `Stack`.
pub fn dashboard_body(stack: &str, region: &str, refs: &BTreeMap<String, String>) -> String {
    let balancer = refs.get("load-balancer").cloned().unwrap_or_default();
    let worker = format!("{stack}-worker-asg");
    let database = format!("{stack}-db");
    let redis = format!("{stack}-redis-001");
    let widget = |title: &str, metrics: serde_json::Value, x: u32, y: u32| {
        serde_json::json!({
            "type": "metric", "x": x, "y": y, "width": 12, "height": 6,
            "properties": {"title": title, "region": region, "stat": "Average", "period": 300, "metrics": metrics}
        })
    };
    // One of ours, as published, with rendering options (`{}`: none).
    let own = |metric: &PublishedMetric, options: serde_json::Value| {
        let mut line = vec![
            serde_json::json!(metric.namespace),
            serde_json::json!(metric.name),
            serde_json::json!(STACK_DIMENSION),
            serde_json::json!(stack),
        ];
        if options.as_object().is_some_and(|o| !o.is_empty()) {
            line.push(options);
        }
        serde_json::Value::Array(line)
    };
    let none = || serde_json::json!({});
    // Each line of a group's metric: the API's for both colours (a deploy
    // moves the traffic from one to the other), the workers'.
    let by_group = |namespace: &str, metric: &str, tiers: &[&str], options: serde_json::Value| {
        tiers
            .iter()
            .map(|tier| {
                let mut line = vec![
                    serde_json::json!(namespace),
                    serde_json::json!(metric),
                    serde_json::json!("AutoScalingGroupName"),
                    serde_json::json!(format!("{stack}-{tier}-asg")),
                ];
                if options.as_object().is_some_and(|o| !o.is_empty()) {
                    line.push(options.clone());
                }
                serde_json::Value::Array(line)
            })
            .collect::<Vec<_>>()
    };
    let api = ["api-blue", "api-green"];
    let mut api_servers = by_group("AWS/EC2", "CPUUtilization", &api, none());
    api_servers.extend(by_group("CWAgent", "mem_used_percent", &api, none()));
    api_servers.extend([
        own(&ACTIVE_CONNECTIONS, none()),
        own(&RESPONSE_TIME, none()),
    ]);
    let mut network = by_group(
        "AWS/EC2",
        "NetworkIn",
        &api,
        serde_json::json!({"stat": "Sum"}),
    );
    network.extend(by_group(
        "AWS/EC2",
        "NetworkOut",
        &api,
        serde_json::json!({"stat": "Sum"}),
    ));
    let body = serde_json::json!({
        "widgets": [
            widget("API response time and requests", serde_json::json!([
                ["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", balancer],
                ["AWS/ApplicationELB", "RequestCount", "LoadBalancer", balancer, {"stat": "Sum"}],
                ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "LoadBalancer", balancer, {"stat": "Sum"}],
            ]), 0, 0),
            widget("API servers, blue and green", serde_json::Value::Array(api_servers), 12, 0),
            widget("API network in and out (bytes), blue and green", serde_json::Value::Array(network), 0, 18),
            widget("Workers and queue", serde_json::json!([
                ["AWS/EC2", "CPUUtilization", "AutoScalingGroupName", worker],
                ["CWAgent", "mem_used_percent", "AutoScalingGroupName", worker],
                own(&QUEUE_LENGTH, none()),
                own(&TASKS_PROCESSED, serde_json::json!({"stat": "Sum"})),
                own(&ERROR_RATE, none()),
            ]), 0, 6),
            widget("Database", serde_json::json!([
                ["AWS/RDS", "CPUUtilization", "DBInstanceIdentifier", database],
                ["AWS/RDS", "DatabaseConnections", "DBInstanceIdentifier", database],
                ["AWS/RDS", "FreeableMemory", "DBInstanceIdentifier", database],
                ["AWS/RDS", "ReadLatency", "DBInstanceIdentifier", database],
                ["AWS/RDS", "WriteLatency", "DBInstanceIdentifier", database],
            ]), 12, 6),
            widget("Redis", serde_json::json!([
                ["AWS/ElastiCache", "CPUUtilization", "CacheClusterId", redis],
                ["AWS/ElastiCache", "CurrConnections", "CacheClusterId", redis],
                ["AWS/ElastiCache", "EvictedKeys", "CacheClusterId", redis],
                ["AWS/ElastiCache", "GetTypeCmdsLatency", "CacheClusterId", redis, {"yAxis": "right"}],
                ["AWS/ElastiCache", "SetTypeCmdsLatency", "CacheClusterId", redis, {"yAxis": "right"}],
            ]), 0, 12),
            widget("Worker tasks: duration (ms, left) and wait in queue (s, right)", serde_json::json!([
                own(&TASK_DURATION, none()),
                own(&TASK_WAIT_TIME, serde_json::json!({"yAxis": "right"})),
            ]), 12, 12),
        ]
    });
    body.to_string()
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_region_has_its_three_rds_roots_and_no_other() {
        for region in ["us-east-1", "us-east-2", "eu-west-1", "ap-southeast-2"] {
            let certificates = rds_ca(region);
            assert_eq!(
                certificates.matches("-----BEGIN CERTIFICATE-----").count(),
                3,
                "{region}"
            );
            assert_eq!(
                certificates
                    .matches(&format!("# Amazon RDS {region} Root CA "))
                    .count(),
                3,
                "{region}: {certificates}"
            );
        }
        assert_eq!(rds_ca("xx-nowhere-1"), "");
    }

    /// Runs the rendered user data's `verify_release` on `dir`: the exit status.
    fn verify(script: &str, dir: &std::path::Path, binary: &str) -> bool {
        let start = script
            .find("verify_release() {")
            .expect("the verification step");
        let end = start + script[start..].find("\n}\n").expect("its end") + 3;
        let program = format!(
            "set -euo pipefail\n{}verify_release \"$1\" \"$2\"\n",
            &script[start..end]
        );
        std::process::Command::new("bash")
            .args(["-c", &program, "verify"])
            .arg(dir)
            .arg(binary)
            .status()
            .expect("bash runs")
            .success()
    }

    #[test]
    fn an_instance_refuses_a_binary_that_does_not_match_the_release() {
        let script = user_data("worker", "teststack", "eu-west-1", "b", "s3://b/uploads");
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("accunode-worker");
        std::fs::write(&binary, b"the released bytes").unwrap();
        let sha = sha256_hex(b"the released bytes");
        let sums = dir.path().join("SHA256SUMS");
        std::fs::write(
            &sums,
            format!("{sha}  accunode-api\n{sha}  accunode-worker\n"),
        )
        .unwrap();
        assert!(
            verify(&script, dir.path(), "accunode-worker"),
            "the released file passes"
        );

        std::fs::write(&binary, b"the released bytes, tampered").unwrap();
        assert!(
            !verify(&script, dir.path(), "accunode-worker"),
            "a tampered file is refused"
        );

        std::fs::write(&binary, b"the released bytes").unwrap();
        std::fs::write(&sums, format!("{sha}  accunode-api\n")).unwrap();
        assert!(
            !verify(&script, dir.path(), "accunode-worker"),
            "an unlisted file is refused"
        );
    }

    #[test]
    fn both_tiers_get_the_stack_the_uploads_and_the_metrics_interval() {
        for tier in ["api", "worker"] {
            let script = user_data(
                tier,
                "teststack",
                "eu-west-1",
                "the-bucket",
                "s3://the-bucket/uploads",
            );
            assert!(!script.contains("{{"), "{script}");
            assert!(
                script.len() <= 16 * 1024,
                "{tier}: user data is {} bytes; EC2 takes 16 KB",
                script.len()
            );
            let env = script
                .split("<<ENV\n")
                .nth(1)
                .and_then(|rest| rest.split("\nENV\n").next())
                .unwrap();
            for line in [
                "STACK_NAME=$STACK",
                "BULK_UPLOAD_PATH=$UPLOADS",
                "CLOUDWATCH_METRICS_SECS=60",
            ] {
                assert!(env.lines().any(|l| l == line), "{tier}: {line} in {env}");
            }
            assert!(script.contains("STACK=\"teststack\"\n"));
            let certificates = script
                .split("<<'PEM'\n")
                .nth(1)
                .and_then(|rest| rest.split("\nPEM\n").next())
                .unwrap();
            assert_eq!(
                certificates.matches("-----BEGIN CERTIFICATE-----").count(),
                3
            );
            for kind in ["RSA2048", "RSA4096", "ECC384"] {
                let heading = format!("# Amazon RDS eu-west-1 Root CA {kind} G1, ");
                assert!(certificates.contains(&heading), "{heading}");
            }
            assert!(script.contains("UPLOADS=\"s3://the-bucket/uploads\"\n"));
        }
    }
}
