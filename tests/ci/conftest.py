"""The CI tooling under ci/ is scripts, not a package: make its modules importable here."""

import sys
from pathlib import Path

CI = Path(__file__).resolve().parents[2] / "ci"
if str(CI) not in sys.path:
    sys.path.insert(0, str(CI))
