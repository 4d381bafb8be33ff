"""Test package (makes `tests.fixtures` win over any site-packages `tests`, e.g. latex2sympy2's)."""
