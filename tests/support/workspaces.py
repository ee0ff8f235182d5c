"""What the session-wide fixtures in tests/conftest.py hand to tests (importing this needs no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from refine_cli.data.format.unified import UnifiedDataset


@dataclass(frozen=True)
class ShapesWorkspace:
    """The session's shared shapes dataset and its tiny checkpoint: read them, never write.

    A test that damages or edits the dataset copies it first (`shutil.copytree(ws.data, tmp_path / ...)`).
    """

    data: Path  # the unified dataset folder: 10 images of 64x64, 8 train / 2 val, 6 classes
    checkpoint: Path  # `checkpoints.save_tiny_checkpoint` for its classes (seed 0), no dataset facts in `extra`

    @property
    def dataset(self) -> UnifiedDataset:
        from refine_cli.data.format.unified import UnifiedDataset

        return UnifiedDataset(self.data)

    @property
    def images(self) -> Path:
        """The dataset's image folder (a folder `refine predict` can take as it is)."""
        return self.data / "images"
