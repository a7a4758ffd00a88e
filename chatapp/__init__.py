"""chatapp: a terminal chat app for local Hugging Face models that shows how they sample."""

from chatapp import timings as _timings  # noqa: F401 - its clock starts with the package

__version__ = "0.1.0"
