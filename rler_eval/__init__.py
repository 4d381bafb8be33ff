"""rler-eval: evaluate and train video LMMs with RLER (Reinforce to Learn, Elect to Reason)."""

__version__ = "0.1.0"
