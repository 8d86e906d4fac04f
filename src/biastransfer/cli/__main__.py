"""``python -m biastransfer.cli``."""

import sys

from biastransfer.cli import main

sys.exit(main())
