import sys

from mtl.cli import main

sys.exit(main())
