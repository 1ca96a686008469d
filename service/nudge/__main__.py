"""`python -m nudge`: the same as the `nudge` command."""

import sys

from nudge.cli import main

sys.exit(main())
