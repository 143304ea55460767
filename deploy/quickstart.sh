#!/usr/bin/env bash
# Set up cpusched in this checkout and run its three processes until Ctrl-C.
#
#   sudo ./deploy/quickstart.sh               set up, then run in the foreground
#   sudo ./deploy/quickstart.sh --setup-only  set up and stop there
#
# Setup: Debian packages if missing (python3, python3-venv), the virtualenv
# .venv with requirements.txt, migrations, static files, and an admin user
# whose generated password is printed once. Then runscheduler (root: it owns
# the cgroup), daphne on server.host:server.port and the qcluster worker start
# in the background with their PIDs in $CPUSCHED_DATA_DIR/run; Ctrl-C stops
# all three. For a permanent installation use the systemd units in deploy/.
#
# Environment: CPUSCHED_DATA_DIR (default ./data), PYTHON (default python3),
# and any CPUSCHED_<KEY> parameter, e.g. CPUSCHED_CGROUP_BACKEND=dry-run.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
export CPUSCHED_DATA_DIR=${CPUSCHED_DATA_DIR:-$ROOT/data}
RUN_DIR=$CPUSCHED_DATA_DIR/run
LOG_DIR=$CPUSCHED_DATA_DIR/logs
VENV=$ROOT/.venv
MANAGE=("$VENV/bin/python" "$ROOT/manage.py")
ADMIN_USER=admin

SETUP_ONLY=0
case "${1:-}" in
  --setup-only) SETUP_ONLY=1 ;;
  "") ;;
  *) echo "usage: $0 [--setup-only]" >&2; exit 2 ;;
esac

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

install_python() {
  if command -v "$PYTHON" >/dev/null && "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    return
  fi
  [ "$(id -u)" -eq 0 ] || die "$PYTHON with venv is missing; run as root (sudo $0) to install python3-venv"
  say "Installing python3 and python3-venv"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv
  PYTHON=python3
}

check_python_version() {
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$("$PYTHON" --version 2>&1) is too old: cpusched needs Python 3.11 or newer"
}

make_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    say "Creating the virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  say "Installing the packages pinned in requirements.txt"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
}

prepare_database() {
  mkdir -p "$CPUSCHED_DATA_DIR" "$RUN_DIR" "$LOG_DIR"
  say "Migrating the database in $CPUSCHED_DATA_DIR"
  "${MANAGE[@]}" migrate --noinput --verbosity 0
  "${MANAGE[@]}" collectstatic --noinput --verbosity 0
}

create_admin() {
  local exists
  exists=$("${MANAGE[@]}" shell --no-imports -c \
    "from django.contrib.auth.models import User; print(User.objects.filter(is_superuser=True).exists())")
  if [ "$exists" = "True" ]; then
    ADMIN_PASSWORD=""
    return
  fi
  ADMIN_PASSWORD=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(12))')
  DJANGO_SUPERUSER_PASSWORD=$ADMIN_PASSWORD "${MANAGE[@]}" createsuperuser \
    --noinput --username "$ADMIN_USER" --email "$ADMIN_USER@localhost" >/dev/null
}

# -- running ------------------------------------------------------------------

PIDS=()
NAMES=()

start() {
  local name=$1
  shift
  "$@" >>"$LOG_DIR/$name.log" 2>&1 &
  PIDS+=($!)
  NAMES+=("$name")
  echo $! >"$RUN_DIR/$name.pid"
}

stop_all() {
  trap - INT TERM EXIT
  local i
  for i in "${!PIDS[@]}"; do
    kill -TERM "${PIDS[$i]}" 2>/dev/null || true
  done
  for _ in $(seq 1 100); do
    local alive=0
    for i in "${!PIDS[@]}"; do
      kill -0 "${PIDS[$i]}" 2>/dev/null && alive=1
    done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for i in "${!PIDS[@]}"; do
    if kill -0 "${PIDS[$i]}" 2>/dev/null; then
      echo "${NAMES[$i]} did not stop in 10 s; killing it" >&2
      kill -KILL "${PIDS[$i]}" 2>/dev/null || true
    fi
    rm -f "$RUN_DIR/${NAMES[$i]}.pid"
  done
  wait 2>/dev/null || true
  say "Stopped"
}

web_answers() {
  "$VENV/bin/python" - "$1" <<'EOF'
import sys, urllib.error, urllib.request

try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass  # any HTTP answer means the server is up
except OSError:
    sys.exit(1)
EOF
}

all_alive() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || return 1
  done
}

wait_for_web() {
  local url=$1
  for _ in $(seq 1 60); do
    all_alive || return 1
    web_answers "$url" && all_alive && return 0
    sleep 1
  done
  return 1
}

report_death() {
  local i
  for i in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
      echo "${NAMES[$i]} stopped unexpectedly; the end of $LOG_DIR/${NAMES[$i]}.log:" >&2
      tail -n 20 "$LOG_DIR/${NAMES[$i]}.log" >&2
    fi
  done
}

run_service() {
  local host port url
  host=$("${MANAGE[@]}" config get server.host)
  port=$("${MANAGE[@]}" config get server.port)
  url="http://$host:$port/"
  [ "$(id -u)" -eq 0 ] || echo "Not root: runscheduler will only monitor (no cgroup access)" >&2

  trap 'stop_all; exit 130' INT TERM
  trap stop_all EXIT
  say "Starting runscheduler, daphne and qcluster (logs in $LOG_DIR)"
  start runscheduler "${MANAGE[@]}" runscheduler
  start daphne "$VENV/bin/daphne" -b "$host" -p "$port" cpusched.asgi:application
  start qcluster "${MANAGE[@]}" qcluster

  if ! wait_for_web "${url}admin/login/"; then
    report_death
    die "the service did not come up on $url (see the logs in $LOG_DIR)"
  fi
  echo
  echo "cpusched is running at $url (admin: ${url}admin/)"
  if [ -n "$ADMIN_PASSWORD" ]; then
    echo "Log in as '$ADMIN_USER' with the password: $ADMIN_PASSWORD"
    echo "(shown only this once; change it with: .venv/bin/python manage.py changepassword $ADMIN_USER)"
  else
    echo "An admin user already exists; reset its password with: .venv/bin/python manage.py changepassword $ADMIN_USER"
  fi
  echo "PIDs in $RUN_DIR. Press Ctrl-C to stop all three."

  local status=0
  wait -n "${PIDS[@]}" || status=$?
  report_death
  die "a process stopped (status $status); stopping the others"
}

install_python
check_python_version
make_venv
prepare_database
create_admin
if [ $SETUP_ONLY -eq 1 ]; then
  say "Set up. Start the service with: $0"
  if [ -n "$ADMIN_PASSWORD" ]; then
    echo "Admin user '$ADMIN_USER', password: $ADMIN_PASSWORD (shown only this once)"
  fi
  exit 0
fi
run_service
