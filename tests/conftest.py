"""Every test session gets its own state folder, set before anything imports ZenML or MLflow."""

import os
import tempfile

_STATE = tempfile.mkdtemp(prefix="graft-test-state-")
os.environ["GRAFT_HOME"] = _STATE
os.environ.pop("GRAFT_TRACKING_URI", None)
os.environ["GRAFT_PROGRESS"] = "0"
