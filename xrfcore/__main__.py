import sys

from xrfcore.cli import main

sys.exit(main())
