"""Loaded as a pytest plugin (``-p tests.testenv``) before Django's settings.

It points CPUSCHED_DATA_DIR at a throwaway directory so no test writes into
./data, and removes that directory when the run ends. A conftest would load
too late: pytest-django reads the settings before conftest files run.
"""

import atexit
import os
import shutil
import tempfile

if "CPUSCHED_DATA_DIR" not in os.environ:
    _DATA = tempfile.mkdtemp(prefix="cpusched-test-")
    os.environ["CPUSCHED_DATA_DIR"] = _DATA
    atexit.register(shutil.rmtree, _DATA, ignore_errors=True)
os.environ.pop("CPUSCHED_CONFIG", None)
