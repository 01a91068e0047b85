"""A ZenML artifact store on a folder every host of the team mounts at the same path.

ZenML's ``local`` artifact store keys its step cache by the client's id ("the same folder on
several machines is not shared"), so two hosts never reuse each other's steps, and it must live
under the client's own ZenML config folder. A team trial without object storage (an NFS export,
one machine) needs the opposite: the same absolute path everywhere, one cache for everybody.
That is all this flavor changes; production stacks use S3/GCS (infra/README.md).
"""

from __future__ import annotations

import os
from typing import ClassVar, Optional, Set, Type

from pydantic import field_validator
from zenml.artifact_stores import BaseArtifactStore, BaseArtifactStoreConfig, BaseArtifactStoreFlavor
from zenml.io.local_filesystem import LocalFilesystem

FLAVOR = "graft_shared_folder"


class SharedFolderArtifactStoreConfig(BaseArtifactStoreConfig):
    """``path``: an absolute folder, mounted at that same path on every host and in every step container."""

    SUPPORTED_SCHEMES: ClassVar[Set[str]] = {""}

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: str) -> str:
        if not os.path.isabs(path):
            raise ValueError(f"the shared artifact folder must be an absolute path, not {path!r}")
        return path


class SharedFolderArtifactStore(LocalFilesystem, BaseArtifactStore):
    """Files under one shared folder; no per-client cache key, no ``local_path`` (nothing to mount
    from the client's config folder: the orchestrator mounts the shared folder itself)."""

    @property
    def local_path(self) -> Optional[str]:
        return None

    @property
    def custom_cache_key(self) -> Optional[bytes]:
        return None


class SharedFolderArtifactStoreFlavor(BaseArtifactStoreFlavor):
    @property
    def name(self) -> str:
        return FLAVOR

    @property
    def config_class(self) -> Type[SharedFolderArtifactStoreConfig]:
        return SharedFolderArtifactStoreConfig

    @property
    def implementation_class(self) -> Type[SharedFolderArtifactStore]:
        return SharedFolderArtifactStore
