//! What the stack renders from its definition, purely: the instances' user
//! data, the dashboard's body, and the digests that stand for them in plans
//! (AWS does not give user data or a dashboard back in a comparable form).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

const USER_DATA: &str = include_str!("../../../launch-templates/user-data.sh");
const API_UNIT: &str = include_str!("../../../launch-templates/systemd/accunode-api.service");
const WORKER_UNIT: &str = include_str!("../../../launch-templates/systemd/accunode-worker.service");

/// The boot script of a tier's instances.
pub fn user_data(tier: &str, stack: &str, region: &str, bucket: &str) -> String {
    let (binary, unit) = if tier == "api" {
        ("accunode-api", API_UNIT)
    } else {
        ("accunode-worker", WORKER_UNIT)
    };
    USER_DATA
        .replace("{{tier}}", tier)
        .replace("{{stack}}", stack)
        .replace("{{region}}", region)
        .replace("{{bucket}}", bucket)
        .replace("{{binary}}", binary)
        .replace("{{unit}}", unit.trim_end())
}

/// The dashboard's JSON body. `refs` holds live identifiers by component
/// (the load balancer's metric dimension); the rest follows from the names.
pub fn dashboard_body(stack: &str, region: &str, refs: &BTreeMap<String, String>) -> String {
    let balancer = refs.get("load-balancer").cloned().unwrap_or_default();
    let api = format!("{stack}-api-asg");
    let worker = format!("{stack}-worker-asg");
    let database = format!("{stack}-db");
    let redis = format!("{stack}-redis-001");
    let widget = |title: &str, metrics: serde_json::Value, x: u32, y: u32| {
        serde_json::json!({
            "type": "metric", "x": x, "y": y, "width": 12, "height": 6,
            "properties": {"title": title, "region": region, "stat": "Average", "period": 300, "metrics": metrics}
        })
    };
    let body = serde_json::json!({
        "widgets": [
            widget("API response time and requests", serde_json::json!([
                ["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", balancer],
                ["AWS/ApplicationELB", "RequestCount", "LoadBalancer", balancer, {"stat": "Sum"}],
                ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "LoadBalancer", balancer, {"stat": "Sum"}],
            ]), 0, 0),
            widget("API servers", serde_json::json!([
                ["AWS/EC2", "CPUUtilization", "AutoScalingGroupName", api],
                ["CWAgent", "mem_used_percent", "AutoScalingGroupName", api],
                ["AccuNode/API", "ActiveConnections"],
                ["AccuNode/API", "ResponseTime"],
            ]), 12, 0),
            widget("Workers and queue", serde_json::json!([
                ["AWS/EC2", "CPUUtilization", "AutoScalingGroupName", worker],
                ["AccuNode/Workers", "QueueLength"],
                ["AccuNode/Workers", "TasksProcessed", {"stat": "Sum"}],
                ["AccuNode/Workers", "ErrorRate"],
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
            ]), 0, 12),
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
