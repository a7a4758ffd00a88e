"""chatapp: a terminal chat app for local Hugging Face models that shows how they sample."""

__version__ = "0.1.0"
