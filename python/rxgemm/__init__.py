"""rxgemm: numpy GEMM on the rxgemmd daemon's device, over librxgemm (ctypes).

    import numpy as np, rxgemm
    with rxgemm.Client() as c:
        y = c.matmul(a, b)              # a, b float32; y == a @ b
    y = rxgemm.matmul(a, b)             # the same with a default client

Errors are rxgemm.Error subclasses, one per library code (rxgemm.BusyError, ...); shape and
dtype mistakes raise numpy's ValueError / TypeError before anything is sent.
"""

import threading

from .errors import *  # noqa: F401,F403 (the exception classes)
from .errors import Error, by_code, strerror  # noqa: F401
from .client import AsyncJob, Client, Job, Tensor  # noqa: F401

__version__ = "0.1.0"

_default = None
_default_lock = threading.Lock()


def default_client():
    """The process's shared Client (connected at first use to the default socket)."""
    global _default
    with _default_lock:
        if _default is None or not _default._h:
            _default = Client(name="python-rxgemm")
        return _default


def matmul(a, b, out=None, **kw):
    """Client.matmul on the default client: rxgemm.matmul(a, b) == a @ b."""
    return default_client().matmul(a, b, out, **kw)
