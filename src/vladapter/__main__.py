"""`python -m vladapter <command>`: the same as the `vladapter` command."""

import sys

from vladapter.cli import main

sys.exit(main())
