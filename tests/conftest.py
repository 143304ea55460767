"""Shared test setup: a throwaway data directory so tests never touch ./data."""

import os
import tempfile

_DATA = tempfile.mkdtemp(prefix="cpusched-test-")
os.environ.setdefault("CPUSCHED_DATA_DIR", _DATA)
