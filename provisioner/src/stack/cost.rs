//! Monthly cost of a resource from its properties and the definition's dated
//! price table (us-east-1 on-demand). The same function prices what exists and
//! what is desired, so a plan's before → after compares like with like.

use super::definition::Definition;
use super::spec::{Kind, Props};

pub fn monthly(definition: &Definition, kind: Kind, props: &Props) -> f64 {
    let prices = &definition.prices;
    let hours = prices.hours_per_month;
    let number = |key: &str| {
        props
            .get(key)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let flag = |key: &str| props.get(key).is_some_and(|v| v == "true");
    match kind {
        Kind::ElasticIp => prices.public_ipv4_hourly * hours,
        Kind::NatGateway => prices.nat_gateway_hourly * hours,
        Kind::LoadBalancer => (prices.alb_hourly + prices.alb_lcu_hourly) * hours,
        Kind::Bucket => prices.s3_gb_month * prices.s3_expected_gb,
        Kind::Alarm => prices.cloudwatch_alarm_month,
        Kind::Dashboard => prices.cloudwatch_dashboard_month,
        Kind::Database => {
            let class = props
                .get("class")
                .and_then(|c| prices.rds_hourly.get(c))
                .copied()
                .unwrap_or(0.0);
            // Multi-AZ runs and stores a standby: twice the instance and the storage.
            let copies = if flag("multi_az") { 2.0 } else { 1.0 };
            copies * (class * hours + number("storage_gb") * prices.rds_gp2_gb_month)
        }
        Kind::Redis => {
            let node = props
                .get("node_type")
                .and_then(|t| prices.elasticache_hourly.get(t))
                .copied()
                .unwrap_or(0.0);
            node * hours * number("nodes").max(1.0)
        }
        Kind::AutoScalingGroup => {
            let instances = &definition.instances;
            let instance = prices
                .ec2_hourly
                .get(&instances.instance_type)
                .copied()
                .unwrap_or(0.0);
            let volume = f64::from(instances.root_volume_gb) * prices.ebs_gp3_gb_month;
            number("desired") * (instance * hours + volume)
        }
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::definition::BUILT_IN;

    #[test]
    fn prices_follow_the_table() {
        let definition = Definition::parse(BUILT_IN).unwrap();
        let props = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        // Two t3.small at $0.0208/h plus 8 GB gp3 each: the original design's "$30/month".
        let servers = monthly(
            &definition,
            Kind::AutoScalingGroup,
            &props(&[("desired", "2")]),
        );
        assert!((servers - 2.0 * (0.0208 * 730.0 + 8.0 * 0.08)).abs() < 1e-9);
        let single = monthly(
            &definition,
            Kind::Database,
            &props(&[("class", "db.t3.micro"), ("storage_gb", "20")]),
        );
        let multi = monthly(
            &definition,
            Kind::Database,
            &props(&[
                ("class", "db.t3.micro"),
                ("storage_gb", "20"),
                ("multi_az", "true"),
            ]),
        );
        assert!((multi - 2.0 * single).abs() < 1e-9);
        assert_eq!(monthly(&definition, Kind::Vpc, &props(&[])), 0.0);
    }
}
