"""The package version, in a module of its own so that submodules can import it without
importing the package face (which imports them)."""

__version__ = "0.1.0"
