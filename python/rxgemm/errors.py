"""One exception class per librxgemm error code (RXG_E* in rxgemm.h), all under Error.

Each carries .code (the library's number, the same as the wire protocol's), .name
("RXG_EBUSY"), and its message: the sentence the library or the daemon gave for this
failure (rxg_errmsg), else the code's text (rxg_strerror).
"""

from . import _capi


class Error(Exception):
    """A failure reported by librxgemm or the daemon."""

    code = None
    name = None

    def __init__(self, message=None, code=None):
        if code is not None:
            self.code = code
        if not message:
            message = strerror(self.code)
        super().__init__(message)
        self.message = message


# (code, RXG_ name, class name, extra base): the table of rxgemm.h's RXG_ERRORS.
_TABLE = [
    (1, "RXG_EINVAL", "InvalidArgumentError", ValueError),
    (2, "RXG_ETOOBIG", "TooBigError", None),
    (3, "RXG_EPROTO", "ProtocolError", None),
    (4, "RXG_EVERSION", "VersionError", None),
    (5, "RXG_EDEVICE", "DeviceError", None),
    (6, "RXG_ENOMEM", "OutOfMemoryError", MemoryError),
    (7, "RXG_ESHUTDOWN", "ShutdownError", None),
    (8, "RXG_EUNSUPPORTED", "UnsupportedError", None),
    (9, "RXG_EINTERNAL", "InternalError", None),
    (10, "RXG_EBUSY", "BusyError", None),
    (11, "RXG_ETIMEOUT", "DeadlineError", TimeoutError),
    (12, "RXG_ECANCELLED", "CancelledError", None),
    (13, "RXG_EREGION", "RegionError", None),
    (14, "RXG_EPERM", "PermissionDeniedError", PermissionError),
    (15, "RXG_ETENSOR", "TensorError", None),
    (16, "RXG_EQUOTA", "QuotaError", None),
    (100, "RXG_ECONNECT", "ConnectError", ConnectionError),
    (101, "RXG_EIO", "ConnectionLostError", ConnectionError),
    (102, "RXG_EAGAIN", "AgainError", None),
]

#: code -> exception class
by_code = {}

for _code, _name, _cls, _extra in _TABLE:
    _bases = (Error,) if _extra is None else (Error, _extra)
    _klass = type(_cls, _bases, {"code": _code, "name": _name,
                                 "__doc__": "%s (%d)." % (_name, _code),
                                 "__module__": "rxgemm"})
    globals()[_cls] = _klass
    by_code[_code] = _klass

__all__ = ["Error", "by_code", "strerror"] + [t[2] for t in _TABLE]


def strerror(code):
    """The library's text for a code ("invalid argument")."""
    return _capi.lib.rxg_strerror(code).decode()


def make(code, message=None):
    """The exception for a code, with the sentence that explains it."""
    cls = by_code.get(code)
    if cls is None:
        return Error(message or strerror(code), code=code)
    return cls(message or None)
