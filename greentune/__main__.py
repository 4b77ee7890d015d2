"""``python -m greentune``: the ``greentune`` command."""

import sys

from .cli import main

sys.exit(main())
