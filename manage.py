#!/usr/bin/env python
"""Django's command-line utility for cpusched."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpusched.settings")
    from django.core.management import execute_from_command_line

    from cpusched.config import ConfigError

    try:
        execute_from_command_line(sys.argv)
    except ConfigError as exc:
        # A bad environment variable or config.ini is an operator mistake:
        # one line saying what is wrong, not a traceback through settings.
        print(f"cpusched: configuration refused: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
