"""What every Python API result object shares: one entry per image, split per image, save and print."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Union

from PIL import Image

from utils.paths import increment_path

LOGGER = logging.getLogger(__name__)


class ImageResults:
    """Base of Detections and Classifications: `files` and `render()` per image; `COLUMNS` name the tables() keys."""

    SAVE_DIR = "runs/detect/exp"
    COLUMNS: List[str] = []
    files: List[str]

    def __len__(self) -> int:
        return len(self.files)

    def to_list(self) -> list:
        """One result object per image."""
        return [self[i] for i in range(len(self))]

    tolist = to_list  # YOLOv5's spelling

    def tables(self) -> List[List[Dict[str, Any]]]:
        raise NotImplementedError

    def render(self, **kwargs: Any) -> list:
        raise NotImplementedError

    def pandas(self) -> List[Any]:
        """Per image a pandas DataFrame of tables() rows; needs pandas (not a requirement of this project)."""
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError(
                f"{type(self).__name__}.pandas() needs pandas (pip install pandas); .tables() does not"
            ) from e
        return [pd.DataFrame(rows, columns=self.COLUMNS) for rows in self.tables()]

    def save(self, save_dir: Union[str, Path, None] = None, exist_ok: bool = False, **render_kwargs: Any) -> Path:
        """Write the rendered images (file names as given, imageN.jpg for arrays) into a new run folder."""
        save_dir = increment_path(save_dir or self.SAVE_DIR, exist_ok=exist_ok, mkdir=True)
        for f, im in zip(self.files, self.render(**render_kwargs)):
            Image.fromarray(im).save(save_dir / f)
        LOGGER.info("Saved %d image%s to %s", len(self.files), "s" * (len(self.files) > 1), save_dir)
        return save_dir

    def print(self) -> None:
        """Log the per-image summary and the speed line."""
        LOGGER.info("%s", self)
