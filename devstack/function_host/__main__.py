"""`python -m devstack.function_host`: the stand-in for `func start`."""

import sys

from devstack.function_host.cli import main

if __name__ == "__main__":
    sys.exit(main())
