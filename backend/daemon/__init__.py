"""The daemon: an I/O loop (ROUTER socket) and one worker thread owning the model."""
from .server import Daemon, VERSION  # noqa: F401
