import sys

from ufd_lib.cli.main import main

sys.exit(main())
