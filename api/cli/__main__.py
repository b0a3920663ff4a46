"""``python -m api.cli``: the ``sessiongraph`` command."""

import sys

from api.cli import main

sys.exit(main())
