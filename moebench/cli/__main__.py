"""``python -m moebench.cli``: the ``moebench`` command (:func:`moebench.cli.main`)."""

import sys

from moebench.cli import main

sys.exit(main())
