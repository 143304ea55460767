#!/usr/bin/env bash
# Start daphne on server.host:server.port, read from the layered configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(.venv/bin/python manage.py config get server.host)
port=$(.venv/bin/python manage.py config get server.port)
exec .venv/bin/daphne -b "$host" -p "$port" cpusched.asgi:application
