import sys

from qhead.cli import main

sys.exit(main())
