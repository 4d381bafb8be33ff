"""The test suite, a regular package: latex2sympy2 (an lmms-eval dependency) installs a
top-level `tests` package into site-packages, which would otherwise shadow this folder."""
