# Shared by scripts/up, scripts/down and scripts/test: installing and running the
# local stand-ins (PostgreSQL 15, Redis 7, moto) on 127.0.0.1. Sourced, not run.
# Every function is idempotent: a second call finds the work done and returns.

set -euo pipefail

# The repository, for the scripts that source this file.
# shellcheck disable=SC2034
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BIN=/usr/lib/postgresql/15/bin
MOTO_VERSION=5.2.5
# One target directory outside the clone, so that a fresh clone on the same
# machine (CI runs on the developer's machine) reuses compiled dependencies.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/accunode/target}"

if [ -t 2 ]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD='' PLAIN=''; fi
log() { printf '%s==>%s %s\n' "$BOLD" "$PLAIN" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as the postgres system user when we are root (PostgreSQL
# refuses to run as root), as ourselves otherwise.
as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

apt_updated=false
apt_install() {
  command -v apt-get >/dev/null || die "apt-get not found: install $* by hand"
  [ "$(id -u)" = 0 ] || die "installing $* needs root (or install them first)"
  if ! $apt_updated; then
    log "apt-get update"
    apt-get update -qq
    apt_updated=true
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Installs the Debian packages the stack needs when they are missing.
ensure_system_packages() {
  local missing=()
  [ -x "$PG_BIN/initdb" ] || missing+=(postgresql-15)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v curl >/dev/null || missing+=(curl)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v cc >/dev/null || missing+=(build-essential)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  # bindgen (lightgbm3-sys) needs libclang.
  dpkg -s libclang1-14 >/dev/null 2>&1 || missing+=(libclang1-14)
  dpkg -s libclang-common-14-dev >/dev/null 2>&1 || missing+=(libclang-common-14-dev)
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
  ensure_cmake
}

# LightGBM's C++ (built by lightgbm3-sys) needs CMake >= 3.28, newer than
# Debian bookworm's: take PyPI's into a virtualenv beside the shared target
# directory (kept across clones on one machine) and point CMAKE at it.
ensure_cmake() {
  local venv="$HOME/.cache/accunode/cmake-venv"
  if [ ! -x "$venv/bin/cmake" ]; then
    log "installing cmake>=3.28 from PyPI into $venv"
    python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$venv"; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check "cmake>=3.28,<5"
  fi
  export CMAKE="$venv/bin/cmake"
}

# Installs moto's server into a virtualenv under the project (.accunode/venv).
ensure_moto() {
  local venv=$1
  if [ -x "$venv/bin/moto_server" ] && "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
    return
  fi
  log "installing moto[server]==$MOTO_VERSION into $venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    apt_install python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
}

# Python's lightgbm (the version lightgbm3-sys bundles) for the model-file
# parity test between Rust and Python.
LIGHTGBM_PY_VERSION=4.7.0
ensure_python_lightgbm() {
  local venv=$1
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import lightgbm, sys; sys.exit(lightgbm.__version__ != '$LIGHTGBM_PY_VERSION')" 2>/dev/null; then
    return
  fi
  log "installing lightgbm==$LIGHTGBM_PY_VERSION (Python) into $venv"
  python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$venv"; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "lightgbm==$LIGHTGBM_PY_VERSION"
}

# The API tests' Python tools: openapi-python-client, which generates the
# Python client from service/openapi.json (httpx and attrs, which that client
# needs at run time, come with it), and aiosmtpd, a real SMTP server for the
# mail test.
OPENAPI_CLIENT_VERSION=0.29.1
AIOSMTPD_VERSION=1.4.6
ensure_api_test_tools() {
  local venv=$1
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" - <<PY 2>/dev/null
import importlib.metadata as m, sys
sys.exit(m.version("openapi-python-client") != "$OPENAPI_CLIENT_VERSION" or m.version("aiosmtpd") != "$AIOSMTPD_VERSION")
PY
  then
    return
  fi
  log "installing openapi-python-client==$OPENAPI_CLIENT_VERSION and aiosmtpd==$AIOSMTPD_VERSION into $venv"
  python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$venv"; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "openapi-python-client==$OPENAPI_CLIENT_VERSION" "aiosmtpd==$AIOSMTPD_VERSION"
}

SCHEMATHESIS_VERSION=4.32.5
ensure_fuzzer() { # ensure_fuzzer VENV: schemathesis, for scripts/fuzz-api
  local venv=$1
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" - <<PY 2>/dev/null
import importlib.metadata as m, sys
sys.exit(m.version("schemathesis") != "$SCHEMATHESIS_VERSION")
PY
  then
    return
  fi
  log "installing schemathesis==$SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$venv"; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "timed out after ${seconds}s waiting for $what"
    sleep 0.2
  done
}

# The folder PostgreSQL keeps its data in: under the project when the postgres
# user can reach it, otherwise under /var/lib/accunode (the project path may sit
# below a home directory only root can enter); .accunode/ links to it then.
postgres_data_dir() {
  local wanted=$1
  mkdir -p "$(dirname "$wanted")"
  if [ "$(id -u)" != 0 ] || runuser -u postgres -- test -x "$(dirname "$wanted")"; then
    echo "$wanted"
  else
    local outside
    outside=/var/lib/accunode/$(echo "$wanted" | sha256sum | cut -c1-12)
    mkdir -p "$outside"
    ln -sfn "$outside" "$wanted"
    echo "$outside"
  fi
}

# new_password FILE: a random URL-safe password in FILE, unless it has one.
new_password() {
  [ -s "$1" ] || (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$1")
}

# ensure_tls_certificates DIR: a local CA (DIR/ca.pem) and a server certificate
# it signed for 127.0.0.1 and localhost (DIR/server.pem, DIR/server.key), made
# once with openssl. Clients verify the servers against ca.pem.
ensure_tls_certificates() {
  local dir=$1
  [ -s "$dir/ca.pem" ] && [ -s "$dir/server.pem" ] && [ -s "$dir/server.key" ] && return
  log "making a local CA and a server certificate for 127.0.0.1 in $dir"
  mkdir -p "$dir"
  (
    umask 077
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj "/CN=AccuNode local CA" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
      -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
      -CAcreateserial -days 3650 -out "$dir/server.pem" -extfile <(printf '%s\n' \
        "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth") 2>/dev/null
    rm -f "$dir/server.csr"
  ) || die "openssl could not make the local certificates in $dir"
  chmod 644 "$dir/ca.pem" "$dir/server.pem"
}

# start_postgres DATA_DIR PORT PASSWORD_FILE [TLS_DIR]: initialises a cluster
# with an `accunode` role (password from PASSWORD_FILE, created when absent) and
# starts it; with TLS_DIR (see ensure_tls_certificates), with TLS on and that
# server certificate, copied into the data directory.
start_postgres() {
  local data port=$2 password_file=$3 tls=${4:-}
  data=$(postgres_data_dir "$1")
  new_password "$password_file"
  if [ ! -f "$data/PG_VERSION" ]; then
    log "initialising PostgreSQL in $data"
    mkdir -p "$data"
    [ "$(id -u)" != 0 ] || chown postgres:postgres "$data"
    chmod 700 "$data"
    as_postgres "$PG_BIN/initdb" -D "$data" -U postgres --auth-local=trust \
      --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  local ssl=off
  if [ -n "$tls" ]; then
    ssl=on
    install -m 644 "$tls/server.pem" "$data/server.crt"
    install -m 600 "$tls/server.key" "$data/server.key"
    [ "$(id -u)" != 0 ] || chown postgres:postgres "$data/server.crt" "$data/server.key"
  fi
  if as_postgres "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    # Running as asked (TLS or not) is done; otherwise it restarts as asked.
    [ "$(as_postgres "$PG_BIN/psql" -h "$data" -p "$port" -U postgres -d postgres -qtAc 'SHOW ssl' 2>/dev/null)" != "$ssl" ] \
      || return 0
    stop_postgres "$data"
  fi
  log "starting PostgreSQL on 127.0.0.1:$port (TLS $ssl)"
  as_postgres "$PG_BIN/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $data -c max_connections=300 -c fsync=off -c full_page_writes=off -c ssl=$ssl" >/dev/null \
    || { tail -20 "$data/server.log" >&2; die "PostgreSQL did not start (log above)"; }
  local password
  password=$(cat "$password_file")
  as_postgres "$PG_BIN/psql" -h "$data" -p "$port" -U postgres -d postgres -qtA -v ON_ERROR_STOP=1 >/dev/null <<SQL
SELECT 'CREATE ROLE accunode LOGIN CREATEDB' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'accunode')\gexec
ALTER ROLE accunode PASSWORD '$password';
SELECT 'CREATE DATABASE accunode OWNER accunode' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'accunode')\gexec
SQL
}

stop_postgres() {
  local data=$1
  [ -f "$data/PG_VERSION" ] || return 0
  if as_postgres "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "stopping PostgreSQL"
    as_postgres "$PG_BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null
  fi
}

# start_redis DATA_DIR PORT [TLS_DIR PASSWORD_FILE]: a redis-server of our own,
# daemonised, with an append-only file: the bulk queue lives in Redis and must
# survive a restart. With TLS_DIR (see ensure_tls_certificates), it speaks TLS
# only and asks for the password in PASSWORD_FILE (created when absent), as
# ElastiCache with in-transit encryption and an AUTH token does.
start_redis() {
  local data=$1 port=$2 tls=${3:-} password_file=${4:-}
  mkdir -p "$data"
  if pid_alive "$data/redis.pid"; then
    # Running as asked (TLS or not) is done; otherwise it restarts as asked.
    local running_tls=""
    [ ! -f "$data/password.conf" ] || running_tls=yes
    [ "${tls:+yes}" != "$running_tls" ] || return 0
    stop_redis "$data"
  fi
  local persistence=(--save "" --appendonly yes --appendfsync everysec)
  local config=() listen=(--port "$port") ping=(redis-cli -p "$port" ping)
  rm -f "$data/password.conf"
  if [ -n "$tls" ]; then
    new_password "$password_file"
    # The password in a file of its own, not on a command line anyone can list.
    (umask 077 && echo "requirepass $(cat "$password_file")" > "$data/password.conf")
    config=("$data/password.conf")
    listen=(--port 0 --tls-port "$port" --tls-cert-file "$tls/server.pem"
      --tls-key-file "$tls/server.key" --tls-ca-cert-file "$tls/ca.pem" --tls-auth-clients no)
    ping=(env REDISCLI_AUTH="$(cat "$password_file")" redis-cli --tls --cacert "$tls/ca.pem" -p "$port" ping)
  fi
  log "starting Redis on 127.0.0.1:$port${tls:+ (TLS, password)}"
  redis-server "${config[@]}" --bind 127.0.0.1 "${listen[@]}" --dir "$data" --daemonize yes \
    --pidfile "$data/redis.pid" --logfile "$data/redis.log" "${persistence[@]}"
  wait_for 20 "Redis" "${ping[@]}"
}

stop_redis() {
  local data=$1
  if pid_alive "$data/redis.pid"; then
    log "stopping Redis"
    stop_pid "$data/redis.pid" 10
  fi
}

# start_moto VENV DATA_DIR PORT: moto's server as the local AWS endpoint.
start_moto() {
  local venv=$1 data=$2 port=$3
  mkdir -p "$data"
  pid_alive "$data/moto.pid" && return
  log "starting moto (local AWS) on 127.0.0.1:$port"
  nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$data/moto.log" 2>&1 &
  echo $! > "$data/moto.pid"
  wait_for 30 "moto" curl -fsS "http://127.0.0.1:$port/moto-api/"
}

# stop_pid PIDFILE GRACE_SECONDS: SIGTERM, then SIGKILL after the grace period.
stop_pid() {
  local pidfile=$1 grace=$2 pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + grace))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid ignored SIGTERM for ${grace}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}
