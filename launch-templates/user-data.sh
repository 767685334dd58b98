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

# The release the deploy command published as current, and the model bundles.
aws s3 cp --region "$REGION" "s3://$BUCKET/releases/current/$BINARY" "/opt/accunode/bin/$BINARY"
chmod 0755 "/opt/accunode/bin/$BINARY"
aws s3 sync --region "$REGION" "s3://$BUCKET/bundles/" /var/lib/accunode/models/
chown -R accunode:accunode /var/lib/accunode

cat > "/etc/systemd/system/$BINARY.service" <<'UNIT'
{{unit}}
UNIT
systemctl daemon-reload
systemctl enable --now "$BINARY.service"
