"""Where the dashboard's templates and static files are (README "Layout").

Installed from a wheel or ``pip install .``, they are inside the package (``rsgo/templates``,
``rsgo/static``: pyproject.toml maps the repository's folders there). Run from a checkout
(an editable install, the tests), they are the repository's top-level ``templates/`` and
``static/``, next to the package.
"""

from __future__ import annotations

import os

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def asset_folder(name: str) -> str:
    """The absolute path of ``templates`` or ``static``: inside the package if installed there."""
    inside = os.path.join(_PACKAGE, name)
    return inside if os.path.isdir(inside) else os.path.join(os.path.dirname(_PACKAGE), name)
