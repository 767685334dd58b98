#!/bin/bash
# User data of an AccuNode {{tier}} instance (stack {{stack}}, region {{region}}),
# rendered by `accunode provision` into the {{tier}} launch template. It holds no
# secret: the instance reads them from SSM with its instance role.
set -euo pipefail
exec > >(tee -a /var/log/accunode-boot.log) 2>&1

STACK="{{stack}}"
REGION="{{region}}"
BUCKET="{{bucket}}"
UPLOADS="{{uploads}}"
BINARY="{{binary}}"

id accunode >/dev/null 2>&1 || useradd --system --home-dir /var/lib/accunode --shell /sbin/nologin accunode
install -d -o accunode -g accunode -m 0750 /var/lib/accunode /var/lib/accunode/models
install -d -m 0755 /opt/accunode/bin
install -d -m 0700 /etc/accunode

# The region's RDS certificate authorities: DATABASE_URL (sslmode=verify-full)
# checks the database's certificate against them. Public, not secret.
cat > "{{rds_ca_path}}" <<'PEM'
{{rds_ca}}
PEM
chmod 0644 "{{rds_ca_path}}"

# Secrets and endpoints, from SecureString parameters, into a root-only file.
# DATABASE_URL and REDIS_URL carry the database password and the Redis AUTH
# token; both connections are TLS with the server's certificate verified.
param() {
  aws ssm get-parameter --region "$REGION" --with-decryption \
    --name "/accunode/$STACK/$1" --query Parameter.Value --output text
}
umask 077
cat > /etc/accunode/env <<ENV
DATABASE_URL=$(param database-url)
REDIS_URL=$(param redis-url)
JWT_SECRET_KEY=$(param jwt-secret)
AWS_REGION=$REGION
LOG_FORMAT=json
# The API is reachable only from the load balancer, whose X-Forwarded-For names
# the client; rate limits per address need it.
TRUST_FORWARDED_FOR=true
# Both binaries publish their CloudWatch metrics (AccuNode/API, AccuNode/Workers)
# every minute with the dimension Stack=$STACK, which the stack's alarms read.
CLOUDWATCH_METRICS_SECS=60
STACK_NAME=$STACK
# Bulk-upload files: the API writes them there, the workers read them.
BULK_UPLOAD_PATH=$UPLOADS
ENV
umask 022

# Checks a release's binary against the release's SHA256SUMS (written by
# `accunode release`): a file that is missing from the list or differs from
# it stops the boot before anything runs.
verify_release() {
  local dir=$1 binary=$2
  if ! (cd "$dir" && grep -E "^[0-9a-f]{64}  ${binary}\$" SHA256SUMS | sha256sum --check --strict --status); then
    echo "accunode: $dir/$binary does not match the release's SHA256SUMS: not starting it" >&2
    return 1
  fi
}

# One path of the instance metadata service (IMDSv2: a session token first).
imds() {
  local token
  token=$(curl -sf -X PUT http://169.254.169.254/latest/api/token \
    -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
  curl -sf -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}

# The release this instance runs: its own tag accunode:release, which its
# group puts on every instance it launches (`accunode deploy` sets it); one
# exact version, never a moving pointer.
if ! RELEASE=$(imds "tags/instance/accunode:release"); then
  echo "accunode: this instance has no accunode:release tag: no release is deployed to the {{tier}} tier yet (accunode deploy {{tier}} --version V)" >&2
  exit 1
fi
RELEASE_DIR="/opt/accunode/releases/$RELEASE"
install -d -m 0755 "$RELEASE_DIR"
aws s3 cp --region "$REGION" "s3://$BUCKET/releases/$RELEASE/SHA256SUMS" "$RELEASE_DIR/SHA256SUMS"
aws s3 cp --region "$REGION" "s3://$BUCKET/releases/$RELEASE/$BINARY" "$RELEASE_DIR/$BINARY"
verify_release "$RELEASE_DIR" "$BINARY"
install -m 0755 "$RELEASE_DIR/$BINARY" "/opt/accunode/bin/$BINARY"

# The model bundles.
aws s3 sync --region "$REGION" "s3://$BUCKET/bundles/" /var/lib/accunode/models/
chown -R accunode:accunode /var/lib/accunode

cat > "/etc/systemd/system/$BINARY.service" <<'UNIT'
{{unit}}
UNIT
systemctl daemon-reload
systemctl enable --now "$BINARY.service"

# The CloudWatch agent: memory use (mem_used_percent, namespace CWAgent) by
# Auto Scaling group, which the stack's memory alarms read. After the service
# started, and never fatal: a package mirror's hiccup costs metrics, not a worker.
if dnf install -y -q amazon-cloudwatch-agent; then
  cat > /opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json <<'AGENT'
{
  "metrics": {
    "namespace": "CWAgent",
    "append_dimensions": {"AutoScalingGroupName": "${aws:AutoScalingGroupName}"},
    "aggregation_dimensions": [["AutoScalingGroupName"]],
    "metrics_collected": {"mem": {"measurement": ["mem_used_percent"], "metrics_collection_interval": 60}}
  }
}
AGENT
  /opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s \
    -c file:/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json ||
    echo "accunode: the CloudWatch agent did not start: no memory metrics from this instance" >&2
else
  echo "accunode: the CloudWatch agent did not install: no memory metrics from this instance" >&2
fi
