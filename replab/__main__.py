"""``python -m replab``: the CLI, also as launched by ``torchrun ... -m replab <command>``."""

import sys

from replab.cli import main

sys.exit(main())
