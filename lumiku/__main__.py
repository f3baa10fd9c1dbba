from __future__ import annotations

import sys

from lumiku.cli import main

sys.exit(main())
