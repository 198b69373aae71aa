"""adasr-av: a language model that reasons over audio and video while the stream arrives."""

__version__ = "0.1.0"
