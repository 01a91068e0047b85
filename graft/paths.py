"""Where graft keeps its runtime state, and the environment that keeps third-party tools inside it.

All state (ZenML config and store, MLflow database and artifacts, caches) lives under one folder,
``.graft/`` in the checkout by default, so a test can isolate a whole run with ``GRAFT_HOME``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from graft.errors import DEVICE_FULL, StateError

STATE_DIR_ENV = "GRAFT_HOME"
TRACKING_URI_ENV = "GRAFT_TRACKING_URI"


def project_root() -> Path:
    """The checkout this package was installed from (editable install), else the working directory."""
    package_parent = Path(__file__).resolve().parent.parent
    if (package_parent / "pyproject.toml").is_file() and (package_parent / "configs").is_dir():
        return package_parent
    return Path.cwd()


@dataclass(frozen=True)
class StateLayout:
    root: Path

    @property
    def zenml_config(self) -> Path:
        return self.root / "zenml"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def data_cache(self) -> Path:
        return self.root / "cache"

    @property
    def digest_memo(self) -> Path:
        """The sha256 of data files by their stat, so a file fingerprinted once is not read again."""
        return self.data_cache / "digests"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def run_claims(self) -> Path:
        """Which process runs which local pipeline run: how a run killed with -9 is found later."""
        return self.root / "runs"

    def default_tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db}"


def state_layout() -> StateLayout:
    configured = os.environ.get(STATE_DIR_ENV)
    root = Path(configured).expanduser().resolve() if configured else project_root() / ".graft"
    return StateLayout(root)


def check_writable(layout: StateLayout | None = None) -> StateLayout:
    """Fail at once, in one line, when the state folder cannot be written (every command that writes
    calls this first): a read-only mount, a parent that is a file, no permission, a full device.

    Without it the failure comes minutes later, from deep inside MLflow or ZenML, after their retries.
    """
    import tempfile

    layout = layout or state_layout()
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=layout.root, prefix=".write-check-")
        try:
            os.write(handle, b"graft")  # a full device refuses the data even when it still has inodes
        finally:
            os.close(handle)
            os.unlink(probe)
    except OSError as error:
        raise StateError(unusable_state_message(layout.root, error)) from None
    return layout


def unusable_state_message(root: Path, error: OSError) -> str:
    reason = error.strerror or str(error)
    if error.errno in DEVICE_FULL:
        return f"GRAFT_HOME {root}: no space left on its device ({reason}); free some space or point GRAFT_HOME elsewhere"
    return f"GRAFT_HOME {root} is not writable: {reason}; point GRAFT_HOME at a writable folder"


def configure_environment(layout: StateLayout | None = None) -> StateLayout:
    """Point ZenML, MLflow and Great Expectations at the state folder and quiet them.

    Must run before ``zenml`` is imported: ZenML reads its config path once, at import. Creates
    the folder if it can; a read-only one that exists is fine (``graft models``, ``graft predict``).
    """
    layout = layout or state_layout()
    if not layout.root.is_dir():
        try:
            layout.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StateError(unusable_state_message(layout.root, error)) from None
    os.environ["ZENML_CONFIG_PATH"] = str(layout.zenml_config)
    os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
    os.environ.setdefault("ZENML_LOGGING_VERBOSITY", "WARN")
    os.environ.setdefault("ZENML_ENABLE_RICH_TRACEBACK", "false")
    os.environ.setdefault("ZENML_DISABLE_CLIENT_SERVER_MISMATCH_WARNING", "true")
    os.environ.setdefault("AUTO_OPEN_DASHBOARD", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    # MLflow 3 phones home from a background thread; clusters without egress wait on it at every start
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_TRACKING_URI", resolve_tracking_uri(layout))
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    quiet_third_party_logs()
    return layout


def quiet_third_party_logs() -> None:
    """Keep the console for the pipeline's own progress: GE alone logs hundreds of lines at import."""
    import logging
    import warnings

    for name in (
        "great_expectations",
        "mlflow",
        "alembic",
        "urllib3",
        "git",
        "matplotlib",
        "PIL",
        "zenml.integrations.mlflow.experiment_trackers.mlflow_experiment_tracker",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*pkg_resources.*")


def resolve_tracking_uri(layout: StateLayout | None = None, configured: str | None = None) -> str:
    """The config's ``tracking.tracking_uri`` (``configured``) wins, then ``GRAFT_TRACKING_URI``, then
    the SQLite database in the state folder."""
    if configured:
        return configured
    layout = layout or state_layout()
    return os.environ.get(TRACKING_URI_ENV) or layout.default_tracking_uri()
