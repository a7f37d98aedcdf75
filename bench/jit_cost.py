"""Cold/warm JIT cost (zoo/bench/jit_cost.py), runnable from a checkout: ``python bench/jit_cost.py``."""

from zoo.bench.jit_cost import main

if __name__ == "__main__":
    main()
