"""`python -m chaos`: the same as `python -m chaos.run`."""

import sys

from chaos.run import main

sys.exit(main())
