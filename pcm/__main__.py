import sys

from pcm.cli import main

sys.exit(main())
