//! Encryption in transit in the provisioned stack, against moto: the Redis
//! replication group has in-transit encryption and an AUTH token (the stack's
//! generated SecureString, which the Redis URL parameter carries over
//! `rediss://`), the database URL parameter asks for a verified certificate
//! against the file user data writes the region's RDS certificate authorities
//! to, and a second plan finds nothing to change.

use crate::stack::{
    accunode, clients, launch_template_versions, parameter_values, unique_stack, user_data,
};
use crate::support::succeeded;

/// Where user data installs the RDS CAs (`render::RDS_CA_PATH`).
const RDS_CA_PATH: &str = "/opt/accunode/rds-ca.pem";

#[tokio::test]
async fn redis_and_the_database_are_reached_over_verified_tls() {
    let stack = unique_stack("tr");
    let aws = clients().await;
    succeeded(&accunode(&stack, &["provision", "--phase", "1"]));

    let groups = aws
        .elasticache
        .describe_replication_groups()
        .replication_group_id(format!("{stack}-redis"))
        .send()
        .await
        .unwrap();
    let group = &groups.replication_groups()[0];
    assert_eq!(group.transit_encryption_enabled(), Some(true));
    assert_eq!(group.auth_token_enabled(), Some(true));
    assert_eq!(group.at_rest_encryption_enabled(), Some(true));
    let endpoint = group.node_groups()[0]
        .primary_endpoint()
        .and_then(|e| e.address())
        .unwrap();

    let parameters = parameter_values(&aws, &stack).await;
    let value = |key: &str| parameters[&format!("/accunode/{stack}/{key}")].clone();
    let token = value("redis-auth-token");
    assert!(
        token.len() == 64 && token.chars().all(|c| c.is_ascii_hexdigit()),
        "a 256-bit token in ElastiCache's alphabet"
    );
    let token_type = aws
        .ssm
        .get_parameter()
        .name(format!("/accunode/{stack}/redis-auth-token"))
        .send()
        .await
        .unwrap()
        .parameter()
        .and_then(|p| p.r#type().cloned());
    assert_eq!(
        token_type,
        Some(aws_sdk_ssm::types::ParameterType::SecureString)
    );
    assert_eq!(
        value("redis-url"),
        format!("rediss://:{token}@{endpoint}:6379")
    );
    let database_url = value("database-url");
    let password = value("database-password");
    assert!(
        database_url.starts_with(&format!("postgres://accunode:{password}@"))
            && database_url.ends_with(&format!(
                ":5432/accunode?sslmode=verify-full&sslrootcert={RDS_CA_PATH}"
            )),
        "verified TLS against the RDS CAs: {}",
        database_url.replace(&password, "****")
    );

    // Both tiers write the region's three RDS root CAs where the URL says.
    for version in launch_template_versions(&aws, &stack).await {
        let (place, script) = user_data(&version);
        let written = script
            .split(&format!("cat > \"{RDS_CA_PATH}\" <<'PEM'\n"))
            .nth(1)
            .and_then(|rest| rest.split("\nPEM\n").next())
            .unwrap_or_else(|| panic!("{place} writes no {RDS_CA_PATH}: {script}"));
        for kind in ["RSA2048", "RSA4096", "ECC384"] {
            assert!(
                written.contains(&format!("# Amazon RDS us-east-1 Root CA {kind} G1, ")),
                "{place}: {kind}"
            );
        }
        assert_eq!(written.matches("-----BEGIN CERTIFICATE-----").count(), 3);
        assert!(!script.contains(&token), "{place} holds the AUTH token");
    }

    // What discovery reads back is what the definition asks for.
    let plan = succeeded(&accunode(
        &stack,
        &["plan", "--phase", "1", "--detailed-exitcode"],
    ));
    assert!(plan.contains("0 to create, 0 to update"), "{plan}");
    succeeded(&accunode(&stack, &["destroy", "--yes", "--delete-data"]));
}
