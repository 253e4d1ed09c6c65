"""Run pytest and treat "no tests collected" (exit code 5) as the failure it is."""
import sys

import pytest

if __name__ == "__main__":  # guarded: tests spawn processes that re-import the main module
    code = pytest.main(sys.argv[1:])
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("pytest collected no tests: failing, a green run must have run something", file=sys.stderr)
        code = 1
    sys.exit(int(code))
