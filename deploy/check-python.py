"""Fail early, and clearly, when the Python that will build the virtualenv is too old."""

import sys

# ruff assumes the project's own minimum; this script exists to check it on other Pythons.
if sys.version_info < (3, 11):  # noqa: UP036
    sys.exit(
        f"supplymeter needs Python >= 3.11 (this is {sys.version.split()[0]}); "
        "run make with PYTHON=/path/to/python3.11"
    )
