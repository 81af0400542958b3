import sys

from meshpilot.cli.main import main

sys.exit(main())
