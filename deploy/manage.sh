#!/usr/bin/env bash
# Run manage.py as the cpusched user with the services' environment, e.g.
#   sudo /opt/cpusched/deploy/manage.sh config list limits
#   sudo /opt/cpusched/deploy/manage.sh createsuperuser
set -euo pipefail
cd "$(dirname "$0")/.."
ENV_FILE=${CPUSCHED_ENV_FILE:-/etc/cpusched/environment}
[ -r "$ENV_FILE" ] || { echo "manage.sh: cannot read $ENV_FILE" >&2; exit 1; }

# Read the file as systemd's EnvironmentFile= does (KEY=value lines, comments,
# one pair of surrounding quotes stripped), not as shell code.
assignments=()
while IFS= read -r line || [ -n "$line" ]; do
  line=${line#"${line%%[![:space:]]*}"}
  case $line in '' | '#'* | ';'*) continue ;; esac
  key=${line%%=*}
  value=${line#*=}
  case $value in \"*\" | \'*\') value=${value:1:${#value}-2} ;; esac
  assignments+=("$key=$value")
done <"$ENV_FILE"

exec runuser -u cpusched -- env "${assignments[@]}" .venv/bin/python manage.py "$@"
