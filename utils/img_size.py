"""--imgsz checks shared by train.py, val.py, detect.py and export.py."""

from __future__ import annotations

import logging
import math
from typing import List, Sequence, Union

from utils.errors import UserError
from utils.flag_ranges import MAX_IMGSZ

LOGGER = logging.getLogger(__name__)


def _fit(x: int, stride: int, floor: int) -> int:
    """The smallest multiple of stride that is >= x, and at least floor."""
    return max(int(math.ceil(x / stride) * stride), floor)


def check_img_size(imgsz: Union[int, Sequence[int]], stride: int = 32, floor: int = 0) -> Union[int, List[int]]:
    """Round --imgsz up to multiples of stride (at least floor), with a warning when it changes.

    The result has the input's shape: an int gives an int (a square side), a sequence gives [h, w]
    (one value stands for a square).
    """
    sides = [imgsz] if isinstance(imgsz, (int, float)) else list(imgsz)
    if not sides or not all(isinstance(x, (int, float)) and 0 < x <= MAX_IMGSZ for x in sides):
        raise UserError(f"--imgsz {imgsz} must be between 1 and {MAX_IMGSZ} pixels per side")
    if isinstance(imgsz, (int, float)):
        old, new = int(imgsz), _fit(int(imgsz), stride, floor)
    else:
        old = [int(x) for x in imgsz] * (2 if len(imgsz) == 1 else 1)
        new = [_fit(x, stride, floor) for x in old]
    if new != old:
        LOGGER.warning("WARNING: --imgsz %s must be multiple of max stride %d, updating to %s", old, stride, new)
    return new
