"""Bridges to other evaluation tools. `lmms_plugin` makes rler-eval a model of lmms-eval."""
