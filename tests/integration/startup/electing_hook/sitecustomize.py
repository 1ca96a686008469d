"""Run by Python at the start of a `nudge` child of tests/integration/startup, whose PYTHONPATH
names this folder (`electing.child_env`): the child meets a broker still electing coordinators."""

import os

if os.environ.get("NUDGE_TEST_ELECTING_SECONDS"):
    import electing

    electing.install_from_env()
