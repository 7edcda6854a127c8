"""sqlite-utils, imported without pandas and numpy.

sqlite-utils imports pandas and numpy when they are installed, only to map their column types.
The metadata store never hands it such values, and in a server process the two would cost
about 90 MiB of memory for nothing, so they are hidden while sqlite-utils loads.
"""

from __future__ import annotations

import sys

_HIDDEN = [name for name in ("pandas", "numpy") if name not in sys.modules]
for _name in _HIDDEN:
    sys.modules[_name] = None  # type: ignore[assignment]
try:
    from sqlite_utils import Database
finally:
    for _name in _HIDDEN:
        if sys.modules.get(_name) is None:
            del sys.modules[_name]

__all__ = ["Database"]
