"""`python -m experiments.report OUTPUT_DIR`: regenerate summary.csv, report.md and plots."""

import sys

from experiments.report.writer import main

if __name__ == "__main__":
  sys.exit(main())
