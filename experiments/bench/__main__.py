"""`python -m experiments.bench [--quick] [--out FILE.json]`."""

from experiments.bench.run import main

if __name__ == "__main__":
  main()
