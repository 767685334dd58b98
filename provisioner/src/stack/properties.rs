//! Typed properties: values that plans show and compare as text (discovery
//! produces the same text from describe calls) but that the code builds and
//! reads as types, so each text is made and parsed in one place.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, bail};

/// One inbound rule: a protocol, a port (`None`: every port) and where the
/// traffic may come from, a CIDR range or a security group (the stack's
/// component name; discovery reads an AWS id and maps it to one). Plans show
/// and compare it as text, "tcp 8000 from sg-alb"; this type is the one place
/// that text is made and read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub protocol: String,
    pub port: Option<i32>,
    pub from: String,
}

impl Rule {
    pub fn tcp(port: i32, from: impl Into<String>) -> Rule {
        Rule {
            protocol: "tcp".to_owned(),
            port: Some(port),
            from: from.into(),
        }
    }

    /// The security group the traffic comes from, when it is not a CIDR range.
    pub fn source_group(&self) -> Option<&str> {
        (!self.from.contains('/')).then_some(self.from.as_str())
    }

    /// The rules of an `ingress` property (comma-separated).
    pub fn list(value: &str) -> anyhow::Result<Vec<Rule>> {
        value
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::parse)
            .collect()
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{} {port} from {}", self.protocol, self.from),
            None => write!(f, "{} all from {}", self.protocol, self.from),
        }
    }
}

impl FromStr for Rule {
    type Err = anyhow::Error;

    fn from_str(rule: &str) -> anyhow::Result<Rule> {
        let parts: Vec<&str> = rule.split(' ').collect();
        let [protocol, port, "from", from] = parts[..] else {
            bail!("malformed rule {rule:?}: expected \"PROTOCOL PORT from SOURCE\"")
        };
        let port = match port {
            "all" => None,
            port => Some(
                port.parse()
                    .with_context(|| format!("malformed rule {rule:?}: port {port:?}"))?,
            ),
        };
        Ok(Rule {
            protocol: protocol.to_owned(),
            port,
            from: from.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_back_what_they_write() {
        for text in [
            "tcp 8000 from sg-alb",
            "tcp 22 from 203.0.113.0/24",
            "-1 all from sg-1",
        ] {
            let rule: Rule = text.parse().unwrap();
            assert_eq!(rule.to_string(), text);
        }
        let rule = Rule::tcp(5432, "sg-api");
        assert_eq!(
            (rule.to_string().as_str(), rule.source_group()),
            ("tcp 5432 from sg-api", Some("sg-api"))
        );
        assert_eq!(Rule::tcp(22, "10.0.0.0/8").source_group(), None);
        for bad in ["tcp 8000 sg-alb", "tcp eighty from sg-alb", ""] {
            assert!(bad.parse::<Rule>().is_err(), "{bad:?}");
        }
        assert_eq!(
            Rule::list("tcp 80 from 0.0.0.0/0,tcp 443 from 0.0.0.0/0")
                .unwrap()
                .len(),
            2
        );
    }
}
