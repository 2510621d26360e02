"""Class names in the two shapes the code uses: a list in index order and an {index: name} dict."""

from __future__ import annotations

from typing import Any, Dict, List

from utils.errors import UserError


def names_dict(names: Any, nc: int = 0) -> Dict[int, str]:
    """Class names as {index: name} from a list / tuple or an {index: name} mapping (int or digit-string keys).

    names None or empty: 'class0' .. 'class{nc-1}'. Anything else (a string, a number, a non-index key) is a
    UserError. The dict keeps the indices given, gaps included; names_list orders them.
    """
    if not names:
        return {i: f"class{i}" for i in range(nc)}
    if isinstance(names, dict):
        try:
            return {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError) as e:
            raise UserError(f"class names: keys must be class indices 0, 1, 2, ..., got {list(names)[:5]}") from e
    if isinstance(names, (list, tuple)):
        return {i: str(n) for i, n in enumerate(names)}
    raise UserError(f"class names must be a list or an {{index: name}} mapping, got {type(names).__name__}")


def names_list(names: Any, nc: int = 0) -> List[str]:
    """Class names as a list in index order (see names_dict for what names may be)."""
    d = names_dict(names, nc)
    return [d[k] for k in sorted(d)]
