"""``python -m neochat.client``: the same as ``neochat-client``."""

import sys

from neochat.client.cli import main

sys.exit(main())
