import sys

from spotctl.cli import main

sys.exit(main())
