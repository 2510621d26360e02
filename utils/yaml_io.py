"""Reading user yaml files safely: yaml.safe_load only, one-line UserErrors for unreadable or wrong-shaped files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Union

import yaml

from utils.errors import UserError


def read_yaml_mapping(path: Union[str, Path], what: str, expect: str) -> Dict[str, Any]:
    """The mapping stored in a yaml file. what names the file for messages ('dataset yaml', '--cfg', '--hyp'),
    expect says what the mapping should hold. Nothing in the file is ever executed."""
    try:
        with open(path, encoding="utf-8") as f:
            d = yaml.safe_load(f)
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"cannot read {what} {path}: not a valid YAML text file ({reason})") from e
    if not isinstance(d, dict):
        raise UserError(f"{what} {path}: expected a mapping with {expect}, got {type(d).__name__}")
    return d
