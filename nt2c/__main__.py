"""``python -m nt2c`` runs the command line."""

import sys

from nt2c.cli import main

sys.exit(main())
