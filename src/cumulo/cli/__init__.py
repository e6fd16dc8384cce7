"""The ``cumulo`` command. The only package that calls ``sys.exit``."""
