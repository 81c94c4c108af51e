"""``python -m txdsl``: the same as the ``txdsl`` command."""

import sys

from .cli import main

sys.exit(main())
