"""The op benchmark table (zoo/bench/report.py), runnable from a checkout: ``python bench/report.py [--quick]``."""

from zoo.bench.report import main

if __name__ == "__main__":
    main()
