"""`python -m mmd_audiocraft.apps.demo`: see run.py."""
import sys

from .run import main

sys.exit(main())
