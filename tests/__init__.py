# A regular package, so that `tests.fixtures` resolves here even when an installed wheel
# (latex2sympy2, pulled in by lmms-eval) ships its own top-level `tests` package.
