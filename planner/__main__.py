"""``python -m planner``: the ``planner`` command, from an install or a source checkout."""

import sys

from planner.cli import main

sys.exit(main())
