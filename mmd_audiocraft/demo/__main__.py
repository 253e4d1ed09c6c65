"""`python -m mmd_audiocraft.demo`: see run.py."""
import sys

from .run import main

sys.exit(main())
