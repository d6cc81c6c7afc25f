"""rxgemm.Client: GEMM on the rxgemmd daemon for numpy float32 arrays.

Layouts and strides (the rule matmul follows): each operand's last two axes are used in
place when one of them has unit stride (4 bytes) and the other a positive multiple of 4 at
least that wide, that is a C-ordered or Fortran-ordered matrix, or a slice of one (rows or
columns skipped, padding between them); a Fortran-ordered matrix is sent as the transpose
of a row-major one, at no cost. Anything else (negative or zero strides, both strides
other than 4, broadcast views) is copied to a C-ordered array first. A 3-D operand's
matrices are used in place when its first stride is positive and they do not overlap.
Only float32 is accepted (no silent casts): other dtypes raise TypeError.

Asynchronous jobs: submit() returns a concurrent.futures.Future, settled by one waiter
thread per client (started while such jobs are in flight). asubmit() and amatmul() are
for asyncio: they watch librxgemm's pollable fd (rxg_fd) with the running loop's
add_reader, so that the loop itself collects the replies (rxg_wait_any without blocking)
and no thread is involved. Either kind of job may be collected by the other's machinery
(a reply is taken by whoever reads it): each future is settled in its own way, an asyncio
one always on its loop. A blocking call (matmul, status, ...) may read an asyncio job's
reply while it waits for its own, which then does not make the fd readable: such calls
ask the loops to look again when they return.
"""

import asyncio
import concurrent.futures
import contextlib
import ctypes
import threading
import weakref

import numpy as np

from . import _capi
from . import errors

lib = _capi.lib
_F4 = 4  # bytes per float32


def _check(rc, handle=None):
    if rc != 0:
        msg = lib.rxg_errmsg(handle)
        raise errors.make(rc, msg.decode("utf-8", "replace") if msg else None)


def _dec(s):
    return s.decode("utf-8", "replace") if s is not None else ""


class _Region:
    """One shared-memory buffer of a client; freed when no array uses it any more."""

    def __init__(self, client, nbytes):
        h = ctypes.c_void_p()
        with client._blocking():
            _check(lib.rxg_buffer_create(client._h, max(nbytes, 1), ctypes.byref(h)),
                   client._h)
        self.client = client
        self.handle = h.value
        self.ptr = lib.rxg_buffer_ptr(h)
        self.size = lib.rxg_buffer_size(h)
        self.detached = False

    def array(self, shape):
        raw = (ctypes.c_char * self.size).from_address(self.ptr)
        raw._rxgemm_region = self  # the array's base chain keeps the region alive
        n = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(raw, dtype=np.float32, count=n).reshape(shape)

    def __del__(self):
        # After the client closed, the mapping is left as ordinary memory: arrays made from
        # it stay valid (rxg_buffer_free needs the open handle).
        if not self.detached and self.client._h:
            with self.client._blocking():
                lib.rxg_buffer_free(self.handle)


class Tensor:
    """float32 data kept in the daemon's device memory (rxg_tensor_*), 1-D to 3-D.

    Use it as a matmul operand (2-D, row-major) or as matmul's out; .numpy() reads it back.
    It counts against the daemon's device-memory budget until .free() or the client closes.
    """

    def __init__(self, client, handle, shape):
        self.client = client
        self._t = handle
        self.shape = tuple(shape)
        self.dtype = np.dtype(np.float32)

    @property
    def ndim(self):
        return len(self.shape)

    def numpy(self):
        """A new numpy array with the tensor's data."""
        if not self._t:
            raise errors.TensorError("the tensor was freed")
        out = np.empty(self.shape, np.float32)
        with self.client._blocking():
            _check(lib.rxg_tensor_read(self._t, out.ctypes.data, out.size), self.client._h)
        return out

    def free(self):
        if self._t and self.client._h:
            with self.client._blocking():
                lib.rxg_tensor_free(self._t)
        self._t = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()

    def __repr__(self):
        return "rxgemm.Tensor(shape=%r)" % (self.shape,)


class Job(concurrent.futures.Future):
    """The future of one submitted GEMM. cancel() asks the daemon to cancel the job."""

    def __init__(self, client):
        super().__init__()
        self._client = client
        self._id = 0
        self._keep = None
        self._result_value = None
        self._post = None
        self.timings = None

    def cancel(self):
        if self.done():
            return False
        outcome = self._client._cancel(self._id)
        if outcome == _capi.RXG_CANCEL_QUEUED:
            # It will not run: its ECANCELLED reply is dropped when it comes.
            return super().cancel()
        return False

    def _settle(self, rc, t, msg):
        """The job's reply, in whichever thread collected it."""
        if self.done():
            return
        self._ctimings = t
        self.timings = t.as_dict()
        if rc == 0:
            if self._post is not None:
                np.copyto(self._post[1], self._post[0].reshape(self._post[1].shape))
            self._client.last_timings = self.timings
            self.set_result(self._result_value)
        elif rc == errors.CancelledError.code:
            concurrent.futures.Future.cancel(self)
        else:
            self.set_exception(errors.make(rc, msg))


class AsyncJob(asyncio.Future):
    """The asyncio future of one GEMM sent by Client.asubmit: awaiting it gives the result
    array. Cancelling it (or the task that awaits it) asks the daemon to cancel the job and
    cancels the future at once; cancel_outcome then says what the daemon found (one of
    the RXG_CANCEL_* values: QUEUED means the job will not run; NOT_FOUND also when its
    reply was already in, not yet delivered to the future). The operands stay referenced
    until the daemon's reply is in, also after a cancel."""

    def __init__(self, client, loop):
        super().__init__(loop=loop)
        self._client = client
        self._id = 0
        self._keep = None
        self._result_value = None
        self._post = None
        self.timings = None
        self.cancel_outcome = None

    def cancel(self, msg=None):
        if self.done():
            return False
        if self._id and self.cancel_outcome is None:
            self.cancel_outcome = _capi.RXG_CANCEL_NOT_FOUND
            with self._client._jobs_lock:
                pending = self._id in self._client._jobs
            if pending:
                try:
                    self.cancel_outcome = self._client._cancel(self._id)
                except errors.Error:
                    pass  # collected meanwhile, or the connection is gone: nothing to stop
        return super().cancel(msg)

    def _settle(self, rc, t, msg):
        """The job's reply, in whichever thread collected it: settled on the loop."""
        if rc == 0 and self._post is not None:
            np.copyto(self._post[1], self._post[0].reshape(self._post[1].shape))
        try:
            self.get_loop().call_soon_threadsafe(self._set, rc, t, msg)
        except RuntimeError:
            pass  # the loop is closed: nobody awaits this any more

    def _set(self, rc, t, msg):
        self.timings = t.as_dict()
        if not self.done():
            if rc == 0:
                self._client.last_timings = self.timings
                self.set_result(self._result_value)
            elif rc == errors.CancelledError.code:
                super().cancel()
            else:
                self.set_exception(errors.make(rc, msg))
        self._client._reader_update(self.get_loop())


class _Operand:
    """A matrix argument as rxg_gemm takes it: pointer or buffer, ld, transposed or not."""

    __slots__ = ("arr", "trans", "ld", "stride", "tensor", "keep")

    def __init__(self):
        self.arr = None
        self.trans = False
        self.ld = 0
        self.stride = 0
        self.tensor = None
        self.keep = None


def _matrix_layout(shape, strides):
    """(transposed, ld) when a matrix of this shape and these byte strides can be sent as
    it is (row-major, or the transpose of row-major), else None."""
    r, c = shape
    s0, s1 = strides
    if (c == 1 or s1 == _F4) and (r == 1 or (s0 > 0 and s0 % _F4 == 0 and s0 >= _F4 * c)):
        return False, (s0 // _F4 if r > 1 else max(c, 1))
    if (r == 1 or s0 == _F4) and (c == 1 or (s1 > 0 and s1 % _F4 == 0 and s1 >= _F4 * r)):
        return True, (s1 // _F4 if c > 1 else max(r, 1))
    return None


def _operand(x):
    op = _Operand()
    lay = _matrix_layout(x.shape[-2:], x.strides[-2:])
    if lay is not None and x.ndim == 3 and x.shape[0] > 1:
        trans, ld = lay
        rows, cols = (x.shape[-1], x.shape[-2]) if trans else (x.shape[-2], x.shape[-1])
        extent = ld * (rows - 1) + cols
        s = x.strides[0]
        if s <= 0 or s % _F4 or s // _F4 < extent:
            lay = None
    if lay is None:
        x = np.ascontiguousarray(x)
        lay = (False, max(x.shape[-1], 1))
    op.arr = x
    op.trans, op.ld = lay
    if x.ndim == 3:
        op.stride = x.strides[0] // _F4 if x.shape[0] > 1 else 0
    return op


def _as_f32(x, what):
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        if x.dtype != np.float32:
            raise TypeError("rxgemm: %s has dtype %s; only float32 is supported "
                            "(convert with .astype(numpy.float32))" % (what, x.dtype))
        return x
    return np.asarray(x, dtype=np.float32)


def _numpy_shape_error(sa, sb):
    """Raise numpy's own error for matmul of these shapes (numpy checks shapes before it
    computes anything, so arrays of zero strides cost nothing)."""
    z = np.zeros(1, np.float32)
    a = np.lib.stride_tricks.as_strided(z, sa, (0,) * len(sa))
    b = np.lib.stride_tricks.as_strided(z, sb, (0,) * len(sb))
    np.matmul(a, b)
    raise ValueError("rxgemm: matmul of shapes %s and %s" % (sa, sb))


class Client:
    """A connection to rxgemmd (librxgemm's handle). Use as a context manager.

    socket: the daemon's socket path (None: $RXGEMM_SOCKET, else the default one, as
    rxg_default_socket says). name: shown in the daemon's logs and status.
    Connection failures raise rxgemm.ConnectError (or another rxgemm.Error).
    """

    def __init__(self, socket=None, name=None):
        h = ctypes.c_void_p()
        self._h = None
        rc = lib.rxg_connect(socket.encode() if socket else None,
                             (name or "python-rxgemm").encode(), ctypes.byref(h))
        if rc != 0:
            msg = lib.rxg_errmsg(None)
            raise errors.make(rc, _dec(msg) or None)
        self._h = h.value
        self._regions = weakref.WeakSet()
        self._tensors = weakref.WeakSet()
        self._jobs = {}          # id -> Job or AsyncJob, until its reply is collected
        self._thread_jobs = 0    # of them, Jobs: the waiter thread runs while there are
        self._loop_jobs = {}     # asyncio loop -> its AsyncJobs in _jobs
        self._readers = {}       # asyncio loop -> the fd it watches for us
        self._closing = False
        self._collecting = 0     # rxg_wait_any calls under way: close() waits for them
        self._jobs_lock = threading.Lock()
        self._jobs_cond = threading.Condition(self._jobs_lock)
        self._waiter = None
        self.last_timings = None
        info = lib.rxg_server_info(self._h).contents
        self.server_info = {
            "protocol_version": info.protocol_version,
            "daemon_version": _dec(info.daemon_version),
            "device": _dec(info.device),
            "max_frame_bytes": info.max_frame_bytes,
            "client_id": info.client_id,
            "busy_poll_us": info.busy_poll_us,
        }

    # --- life ---------------------------------------------------------------------------
    def close(self):
        """Wait for submitted jobs, free tensors, and close the connection. Arrays from
        empty()/asarray() stay valid as ordinary memory."""
        if not self._h:
            return
        with self._jobs_lock:
            # Every job is collected first, asyncio ones included, by the waiter thread.
            self._closing = True
            if self._jobs:
                self._start_waiter()
            while self._jobs:
                self._jobs_cond.wait()
        self._readers_remove()
        for t in list(self._tensors):
            t.free()
        # Buffers still alive are used by arrays: they stay mapped (rxg_close ends the
        # daemon's side), as ordinary memory of this process.
        for r in list(self._regions):
            r.detached = True
        with self._jobs_lock:
            h, self._h = self._h, None
            # The waiter thread or a loop may still be inside rxg_wait_any on the handle.
            while self._collecting:
                self._jobs_cond.wait()
            self._jobs_cond.notify_all()
        lib.rxg_close(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _handle(self):
        if not self._h:
            raise errors.ConnectionLostError("the client is closed")
        return self._h

    def fileno(self):
        """librxgemm's pollable fd (rxg_fd): readable when a reply has arrived."""
        return lib.rxg_fd(self._handle())

    # --- shared memory ------------------------------------------------------------------
    def empty(self, shape):
        """An uninitialised (zero-filled) float32 array in a shared-memory buffer the daemon
        maps too: matmul on such arrays sends no matrix through the socket."""
        shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise ValueError("negative dimensions are not allowed")
        n = int(np.prod(shape, dtype=np.int64))
        reg = _Region(self, n * _F4)
        self._regions.add(reg)
        return reg.array(shape)

    def asarray(self, x):
        """x (float32) copied into a shared-memory array; such an array is returned as is."""
        x = _as_f32(x, "x")
        if self._region_of(x) is not None:
            return x
        out = self.empty(x.shape)
        out[...] = x
        return out

    def _region_of(self, x):
        """(region, byte offset) when x's data lies in one of this client's buffers."""
        if not isinstance(x, np.ndarray) or x.size == 0:
            return None
        lo, hi = np.byte_bounds(x)
        for r in list(self._regions):
            if r.ptr <= lo and hi <= r.ptr + r.size:
                return r, x.ctypes.data - r.ptr
        return None

    # --- device tensors -----------------------------------------------------------------
    def tensor(self, x=None, shape=None):
        """A device tensor holding x (float32, 1-D to 3-D), or zeros of shape."""
        if x is not None:
            x = np.ascontiguousarray(_as_f32(x, "x"))
            shape = x.shape
        shape = tuple(int(s) for s in shape)
        if not 1 <= len(shape) <= 3:
            raise ValueError("rxgemm: a tensor has 1 to 3 dimensions, not %d" % len(shape))
        dims = (ctypes.c_int64 * len(shape))(*shape)
        h = ctypes.c_void_p()
        reg = self._region_of(x) if x is not None else None
        with self._blocking():
            if reg is not None:
                _check(lib.rxg_tensor_create_from_buffer(self._handle(), reg[0].handle,
                                                         reg[1], dims, len(shape),
                                                         ctypes.byref(h)), self._h)
            else:
                _check(lib.rxg_tensor_create(self._handle(), dims, len(shape),
                                             x.ctypes.data if x is not None else None,
                                             ctypes.byref(h)), self._h)
        t = Tensor(self, h.value, shape)
        self._tensors.add(t)
        return t

    # --- GEMM ---------------------------------------------------------------------------
    def _prepare(self, a, b, out, alpha, beta, trans_a, trans_b):
        """Check the operands as numpy would, and fill rxg_gemm_args. Returns (args, out,
        result, keep, post): result is what matmul returns; post, when not None, copies
        a temporary C into out afterwards."""
        a = _as_f32(a, "a")
        b = _as_f32(b, "b")
        ta_is_t = isinstance(a, Tensor)
        tb_is_t = isinstance(b, Tensor)
        for x, what in ((a, "a"), (b, "b")):
            if x.ndim == 0:
                raise ValueError("matmul: Input operand %d does not have enough dimensions "
                                 "(has 0, gufunc core with signature (n?,k),(k,m?)->(n?,m?) "
                                 "requires 1)" % (0 if what == "a" else 1))
            if x.ndim > 3:
                raise ValueError("rxgemm: %s has %d dimensions; matmul takes 1-D to 3-D "
                                 "arrays" % (what, x.ndim))
        if (ta_is_t or tb_is_t) and (a.ndim != 2 or b.ndim != 2):
            raise ValueError("rxgemm: tensors are used as 2-D matrices only")
        # 1-D operands as numpy does: a vector on the left is a row, on the right a column.
        squeeze = []
        if a.ndim == 1:
            a = a.reshape(1, -1)
            squeeze.append(-2)
        if b.ndim == 1:
            b = b.reshape(-1, 1)
            squeeze.append(-1)
        sa = a.shape[:-2] + ((a.shape[-1], a.shape[-2]) if trans_a else a.shape[-2:])
        sb = b.shape[:-2] + ((b.shape[-1], b.shape[-2]) if trans_b else b.shape[-2:])
        m, k = sa[-2:]
        k2, n = sb[-2:]
        ba = sa[0] if len(sa) == 3 else 1
        bb = sb[0] if len(sb) == 3 else 1
        if k != k2 or (ba != bb and ba != 1 and bb != 1):
            _numpy_shape_error(sa, sb)
        batch = max(ba, bb)
        batched = len(sa) == 3 or len(sb) == 3
        rshape = ((batch,) if batched else ()) + (m, n)
        final_shape = list(rshape)
        for ax in sorted(squeeze):
            del final_shape[ax]
        final_shape = tuple(final_shape)

        args = _capi.GemmArgs()
        args.layout = _capi.RXG_ROW_MAJOR
        args.m, args.n, args.k = m, n, k
        args.alpha, args.beta = float(alpha), float(beta)
        keep = [a, b]

        # Broadcast a batch of one (a 2-D operand, or a 3-D one of length 1) against a
        # batch: a stack on the left and one matrix on the right fold into a single taller
        # product when the stack is C-ordered; otherwise the single one is repeated.
        fold = False
        if batched and batch > 1:
            if (bb == 1 and len(sa) == 3 and not trans_a and not tb_is_t and
                    a.flags.c_contiguous):
                fold = True
            else:
                if ba == 1 and not ta_is_t:
                    a = np.ascontiguousarray(np.broadcast_to(a.reshape(a.shape[-2:]),
                                                             (batch,) + a.shape[-2:]))
                if bb == 1 and not tb_is_t:
                    b = np.ascontiguousarray(np.broadcast_to(b.reshape(b.shape[-2:]),
                                                             (batch,) + b.shape[-2:]))
                keep += [a, b]
        if fold:
            a = a.reshape(batch * a.shape[1], a.shape[2])
            b = b.reshape(b.shape[-2:])
            args.m = batch * m
        elif batched and batch == 1:
            a = a.reshape(a.shape[-2:])
            b = b.reshape(b.shape[-2:])

        for x, which, t in ((a, "a", trans_a), (b, "b", trans_b)):
            if isinstance(x, Tensor):
                setattr(args, which + "_tensor", x._t)
                setattr(args, "ld" + which, x.shape[1])
                setattr(args, "trans_" + which, int(bool(t)))
                continue
            op = _operand(x)
            keep.append(op.arr)
            setattr(args, "trans_" + which, int(bool(t) != op.trans))
            setattr(args, "ld" + which, op.ld)
            if op.arr.ndim == 3:
                setattr(args, "stride_" + which, op.stride)
            reg = self._region_of(op.arr)
            if reg is not None:
                setattr(args, which + "_buf", reg[0].handle)
                setattr(args, which + "_offset", reg[1])
            else:
                setattr(args, which, op.arr.ctypes.data)
        if batched and batch > 1 and not fold:
            args.batch_count = batch

        # C: out when given (used in place if it is a row-major matrix or stack, else
        # through a temporary), else a new array: in shared memory when both operands are.
        post = None
        if isinstance(out, Tensor):
            if batched or out.shape != (m, n):
                raise ValueError("rxgemm: out tensor has shape %s, the product %s"
                                 % (out.shape, rshape))
            args.c_out_tensor = out._t
            if beta != 0:
                args.c_tensor = out._t
            args.ldc = n
            return args, out, out, keep, None
        if out is not None:
            if not isinstance(out, np.ndarray) or out.dtype != np.float32:
                raise TypeError("rxgemm: out must be a float32 numpy array")
            if out.shape != final_shape:
                raise ValueError("rxgemm: out has shape %s, the product %s"
                                 % (out.shape, final_shape))
            if not out.flags.writeable:
                raise ValueError("rxgemm: out is read-only")
            c = out.reshape(rshape) if out.shape != rshape else out
            lay = _matrix_layout(c.shape[-2:], c.strides[-2:]) if c.size else None
            ok = (lay is not None and not lay[0] and np.shares_memory(c, out))
            if ok and c.ndim == 3 and batch > 1:
                s = c.strides[0]
                ok = s > 0 and s % _F4 == 0 and s // _F4 >= lay[1] * (m - 1) + n
            if ok and fold and c.ndim == 3 and c.strides[0] != lay[1] * m * _F4:
                ok = False
            if not ok:
                tmp = np.ascontiguousarray(c)
                post = (tmp, out)
                c = tmp
        else:
            both_shared = (all(isinstance(x, Tensor) or self._region_of(x) is not None
                               for x in (a, b)))
            c = self.empty(rshape) if both_shared else np.empty(rshape, np.float32)
            result = c
        if out is not None:
            result = out
        lay = _matrix_layout(c.shape[-2:], c.strides[-2:]) if c.size else (False, n)
        args.ldc = max(lay[1], 1) if not fold else max(lay[1], 1)
        if c.ndim == 3 and batch > 1 and not fold:
            args.stride_c = c.strides[0] // _F4
        keep.append(c)
        reg = self._region_of(c)
        if reg is not None:
            args.c_buf = reg[0].handle
            args.c_offset = reg[1]
        else:
            args.c = c.ctypes.data
        if squeeze and out is None:
            result = result.reshape(final_shape)
        return args, out, result, keep, post

    def matmul(self, a, b, out=None, *, alpha=1.0, beta=0.0, trans_a=False, trans_b=False,
               priority=0, deadline=None, timings=False):
        """alpha * op(a) @ op(b) + beta * out, computed by the daemon.

        a, b: float32 arrays (1-D to 3-D; a stack of 3-D matrices broadcasts against one
        matrix as numpy's matmul does) or Tensors. trans_a / trans_b: use the transpose of
        a's (b's) last two axes. out: where the result goes (its contents are C's input
        when beta != 0); a Tensor keeps it on the device. priority 0 to 3; deadline:
        seconds the job may wait in the daemon's queue. Returns the result array, or
        (result, timings dict) with timings=True; self.last_timings has them too.
        Raises numpy's ValueError / TypeError for shapes and dtypes, rxgemm.Error
        subclasses for what the daemon refuses."""
        if beta != 0 and out is None:
            raise ValueError("rxgemm: beta != 0 needs out (C's input)")
        args, out, result, keep, post = self._prepare(a, b, out, alpha, beta, trans_a,
                                                      trans_b)
        t = _capi.Timings()
        if args.k == 0 and args.m and args.n:
            # An empty sum: nothing for the device (numpy gives zeros, scaled C with beta).
            if isinstance(out, Tensor):
                raise ValueError("rxgemm: k = 0 with a tensor out")
            c = result if out is None else out
            c[...] = 0 if beta == 0 else beta * c
        elif args.m and args.n and (priority or deadline):
            job = self._submit_args(Job(self), args, keep, priority, deadline)
            job.result()
            t = job._ctimings
        elif args.m and args.n:
            with self._blocking():
                _check(lib.rxg_gemm(self._handle(), ctypes.byref(args), ctypes.byref(t)),
                       self._h)
        elif beta == 0 and out is not None and not isinstance(out, Tensor):
            out[...] = 0
        if post is not None:
            np.copyto(post[1], post[0].reshape(post[1].shape))
        self.last_timings = t.as_dict()
        if timings:
            return result, self.last_timings
        return result

    __call__ = matmul

    # --- asynchronous jobs --------------------------------------------------------------
    def submit(self, a, b, out=None, *, alpha=1.0, beta=0.0, trans_a=False, trans_b=False,
               priority=0, deadline=None):
        """Send one matmul and return at once a Job (a concurrent.futures.Future) whose
        result() is the array; cancel() cancels it on the daemon. In asyncio code, use
        asubmit() or amatmul() instead (no thread). The operands must not change until
        the job is done."""
        if beta != 0 and out is None:
            raise ValueError("rxgemm: beta != 0 needs out (C's input)")
        args, out, result, keep, post = self._prepare(a, b, out, alpha, beta, trans_a,
                                                      trans_b)
        job = Job(self)
        job._result_value = result
        job._post = post
        return self._submit_args(job, args, keep, priority, deadline)

    def asubmit(self, a, b, out=None, *, alpha=1.0, beta=0.0, trans_a=False, trans_b=False,
                priority=0, deadline=None):
        """submit() for asyncio, called from a coroutine: returns an AsyncJob (an
        asyncio.Future) of the running loop, which collects the reply by watching the
        library's fd (no thread). Cancelling it cancels the job on the daemon."""
        loop = asyncio.get_running_loop()
        if beta != 0 and out is None:
            raise ValueError("rxgemm: beta != 0 needs out (C's input)")
        args, out, result, keep, post = self._prepare(a, b, out, alpha, beta, trans_a,
                                                      trans_b)
        job = AsyncJob(self, loop)
        job._result_value = result
        job._post = post
        return self._submit_args(job, args, keep, priority, deadline)

    async def amatmul(self, a, b, out=None, *, timings=False, **kw):
        """await c.amatmul(a, b) gives the result array (asubmit, awaited), or (result,
        timings dict) with timings=True; cancelling the awaiting task cancels the job on
        the daemon."""
        job = self.asubmit(a, b, out, **kw)
        result = await job
        return (result, job.timings) if timings else result

    def _submit_args(self, job, args, keep, priority, deadline):
        opts = _capi.JobOptions()
        if not 0 <= int(priority) <= 3:
            raise ValueError("rxgemm: priority is 0 to 3, not %r" % (priority,))
        opts.priority = int(priority)
        if deadline is not None:
            if deadline <= 0:
                raise ValueError("rxgemm: deadline must be positive seconds")
            opts.deadline_ms = max(1, int(round(deadline * 1000)))
        job._keep = (args, keep)
        jid = ctypes.c_uint64()
        with self._jobs_lock:
            # Registered before anyone can collect its reply.
            _check(lib.rxg_submit_gemm(self._handle(), ctypes.byref(args), ctypes.byref(opts),
                                       ctypes.byref(jid)), self._h)
            job._id = jid.value
            self._jobs[job._id] = job
            if isinstance(job, AsyncJob):
                loop = job.get_loop()
                self._loop_jobs[loop] = self._loop_jobs.get(loop, 0) + 1
            else:
                self._thread_jobs += 1
                self._start_waiter()
            self._jobs_cond.notify_all()
        if isinstance(job, AsyncJob):
            self._reader_update(job.get_loop())
        return job

    def _start_waiter(self):
        """Start the waiter thread unless it runs. Call with _jobs_lock held."""
        if self._waiter is None:
            self._waiter = threading.Thread(target=self._wait_loop, daemon=True,
                                            name="rxgemm-waiter")
            self._waiter.start()

    def _cancel(self, jid):
        out = ctypes.c_int()
        with self._blocking():
            _check(lib.rxg_cancel(self._handle(), jid, ctypes.byref(out)), self._h)
        return out.value

    def _finish(self, jid, rc, t, msg):
        """Settle job jid with the reply rxg_wait_any returned, in any thread."""
        with self._jobs_lock:
            job = self._jobs.pop(jid, None)
            if isinstance(job, AsyncJob):
                self._loop_jobs[job.get_loop()] -= 1
            elif job is not None:
                self._thread_jobs -= 1
            self._jobs_cond.notify_all()
        if job is not None:
            job._settle(rc, t, msg)

    def _fail_all(self, h, rc):
        """The connection failed: every job fails with it."""
        err_msg = _dec(lib.rxg_errmsg(h)) or None
        with self._jobs_lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            self._finish(job._id, rc, _capi.Timings(), err_msg)

    def _wait_loop(self):
        """The thread that waits for submitted jobs while Jobs (or, on close, any jobs) are
        in flight, and settles their futures."""
        while True:
            with self._jobs_lock:
                # Gone when idle (the next submit starts another), so that the thread
                # does not keep an unused client alive.
                if not self._h or not (self._jobs if self._closing else self._thread_jobs):
                    self._waiter = None
                    return
                h = self._h
                self._collecting += 1
            try:
                jid = ctypes.c_uint64()
                t = _capi.Timings()
                rc = lib.rxg_wait_any(h, 200, ctypes.byref(jid), ctypes.byref(t))
                if jid.value != 0:
                    self._finish(jid.value, rc, t, _dec(lib.rxg_errmsg(h)) if rc else None)
                elif rc not in (errors.AgainError.code, errors.InvalidArgumentError.code):
                    # (EAGAIN: none finished yet; EINVAL: another thread took the last.)
                    self._fail_all(h, rc)
            finally:
                self._collected()

    def _collected(self):
        with self._jobs_lock:
            self._collecting -= 1
            self._jobs_cond.notify_all()

    # asyncio: one reader per loop on the library's fd, while that loop has jobs.
    def _reader_update(self, loop):
        """Watch the fd on loop while it has jobs in flight, and not otherwise. Runs in
        loop's thread (or before it runs, as from asubmit)."""
        with self._jobs_lock:
            want = bool(self._loop_jobs.get(loop)) and self._h is not None
            fd = self._readers.get(loop)
            if want and fd is None:
                fd = lib.rxg_fd(self._h)
                if fd < 0:
                    want = False
                else:
                    self._readers[loop] = fd
            elif not want and fd is not None:
                del self._readers[loop]
            if not self._loop_jobs.get(loop):
                self._loop_jobs.pop(loop, None)
        if loop.is_closed():
            return
        if want and fd is not None:
            loop.add_reader(fd, self._drain, loop)
            # Replies read by a blocking call before the reader was there do not make
            # the fd readable: look once now.
            loop.call_soon(self._drain, loop)
        elif not want and fd is not None:
            loop.remove_reader(fd)

    def _readers_remove(self):
        """On close: no loop may watch the fd once it is closed (its number is reused)."""
        with self._jobs_lock:
            readers, self._readers = dict(self._readers), {}
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, fd in readers.items():
            if loop.is_closed():
                continue
            if loop is running:
                loop.remove_reader(fd)
            else:
                loop.call_soon_threadsafe(loop.remove_reader, fd)

    def _drain(self, loop):
        """The fd is readable (or a blocking call may have read replies): collect every
        reply there is, without blocking."""
        with self._jobs_lock:
            h = self._h
            if h is None:
                return
            self._collecting += 1
        try:
            while True:
                jid = ctypes.c_uint64()
                t = _capi.Timings()
                rc = lib.rxg_wait_any(h, 0, ctypes.byref(jid), ctypes.byref(t))
                if jid.value == 0:
                    # EAGAIN: nothing more (or another thread is reading: it collects
                    # what comes); EINVAL: no job left to collect.
                    if rc not in (errors.AgainError.code, errors.InvalidArgumentError.code):
                        self._fail_all(h, rc)
                    break
                self._finish(jid.value, rc, t, _dec(lib.rxg_errmsg(h)) if rc else None)
        finally:
            self._collected()
        # (Each AsyncJob settled updates its loop's reader; with none left, it goes.)

    def _kick(self):
        """After a blocking call: ask every loop that watches the fd to look again."""
        with self._jobs_lock:
            loops = list(self._readers)
        for loop in loops:
            try:
                loop.call_soon_threadsafe(self._drain, loop)
            except RuntimeError:
                pass  # closed

    @contextlib.contextmanager
    def _blocking(self):
        """Around a blocking library call, which may collect asyncio jobs' replies."""
        try:
            yield
        finally:
            if self._readers:
                self._kick()

    # --- NAS --------------------------------------------------------------------------
    def nas_eval(self, genotype, dataset="cifar10", C=None, layers=None, batch=None,
                 weights=None, input=None, alphas=None, *, classes=None, height=None,
                 width=None, steps=None, multiplier=None, weight_seed=0, input_seed=0,
                 warmup=0, repeat=1, logits=True, breakdown=False):
        """Evaluate a DARTS network on the daemon's device (docs/NAS.md).

        genotype: a name ("DARTS_V2"), the reference's printed Genotype(...) text, or a
        namedtuple with its fields; None with alphas for the supernet. weights: a flat
        float32 blob or a state_dict (names to arrays or PyTorch tensors, converted as
        docs/NAS.md lays out); None for the seeded init. input: batch x 3 x H x W float32;
        None for the seeded one. alphas: (alpha_normal, alpha_reduce), each edges x 8.
        C, layers, classes, height, width: None for the dataset's defaults.
        breakdown: time every step (by_op, by_cell; the events cost device time, and
        unprofiled_median_ns says how much).
        Returns a dict: params, macs, latency_*_ns, run_ns, by_op, by_cell, profiled, ...,
        and logits (batch x classes) unless logits=False."""
        from . import nas
        args, keep, out = nas.build_args(genotype, dataset, C, layers, classes, height,
                                         width, batch, weights, input, alphas, steps,
                                         multiplier, weight_seed, input_seed, warmup,
                                         repeat, logits)
        args.want_breakdown = int(bool(breakdown))
        p = ctypes.POINTER(_capi.NasResult)()
        with self._blocking():
            _check(lib.rxg_nas_eval(self._handle(), ctypes.byref(args), ctypes.byref(p)),
                   self._h)
        try:
            return nas.result_dict(p.contents, out)
        finally:
            lib.rxg_nas_result_free(p)

    # --- status -------------------------------------------------------------------------
    def status(self):
        """The daemon's state: the same dict as `rxgemm status --json` prints."""
        p = ctypes.POINTER(_capi.Status)()
        with self._blocking():
            _check(lib.rxg_status(self._handle(), ctypes.byref(p)), self._h)
        try:
            return _status_dict(p.contents)
        finally:
            lib.rxg_status_free(p)


def _status_name(code):
    """As rxgemm status --json names a job's result: "OK", "EBUSY", ..."""
    if code == 0:
        return "OK"
    cls = errors.by_code.get(code)
    return cls.name[len("RXG_"):] if cls else "?"


def _gflops(flops, ns):
    return flops / ns if ns else None


def _client_stats(c):
    return {
        "client_id": c.client_id, "name": _dec(c.name), "uid": c.uid, "pid": c.pid,
        "jobs_ok": c.jobs_ok, "jobs_failed": c.jobs_failed,
        "requests_rejected": c.requests_rejected, "jobs_in_flight": c.jobs_in_flight,
        "flops": c.flops, "bytes_in": c.bytes_in, "bytes_out": c.bytes_out,
        "tensors": c.tensors, "tensor_bytes": c.tensor_bytes,
        "gflops": _gflops(c.flops, c.timings.kernel_ns), "timings": c.timings.as_dict(),
    }


def _status_dict(st):
    def job(r):
        t = r.timings
        return {"request_id": r.request_id, "client_id": r.client_id, "m": r.m, "n": r.n,
                "k": r.k, "status": _status_name(r.status), "timings": t.as_dict(),
                "gflops": (2.0 * r.m * r.n * r.k / t.kernel_ns
                           if r.status == 0 and t.kernel_ns else None)}

    return {
        "daemon_version": _dec(st.daemon_version), "device": _dec(st.device),
        "uptime_ns": st.uptime_ns, "clients_connected": st.clients_connected,
        "clients_total": st.clients_total, "jobs_ok": st.jobs_ok,
        "jobs_failed": st.jobs_failed, "requests_rejected": st.requests_rejected,
        "jobs_queued": st.jobs_queued, "flops_total": st.flops_total,
        "kernel_ns_total": st.kernel_ns_total,
        "average_gflops": _gflops(st.flops_total, st.kernel_ns_total),
        "device_global_mem_bytes": st.device_global_mem_bytes,
        "device_max_alloc_bytes": st.device_max_alloc_bytes,
        "recent": [job(st.recent[i]) for i in range(st.n_recent)],
        "devices": [{
            "index": d.index, "platform": _dec(d.platform), "name": _dec(d.name),
            "type": _dec(d.type), "version": _dec(d.version), "driver": _dec(d.driver),
            "global_mem_bytes": d.global_mem_bytes, "compute_units": d.compute_units,
            "clock_mhz": d.clock_mhz, "in_use": bool(d.in_use)}
            for d in (st.devices[i] for i in range(st.n_devices))],
        "kernel_cache": {
            "dir": _dec(st.kernel_cache_dir), "writable": bool(st.kernel_cache_writable),
            "max_bytes": st.kernel_cache_max_bytes, "entries": st.kernel_cache_entries,
            "bytes": st.kernel_cache_bytes, "hits": st.kernel_cache_hits,
            "misses": st.kernel_cache_misses, "memory_hits": st.kernel_cache_memory_hits,
            "rejected": st.kernel_cache_rejected, "evictions": st.kernel_cache_evictions,
            "compile_ns": st.kernel_cache_compile_ns, "load_ns": st.kernel_cache_load_ns},
        "nas_plan_cache": {
            "capacity": st.nas_plan_cache_capacity, "entries": st.nas_plan_cache_entries,
            "hits": st.nas_plan_cache_hits, "misses": st.nas_plan_cache_misses,
            "evictions": st.nas_plan_cache_evictions, "bytes": st.nas_plan_cache_bytes},
        "memory": {
            "budget_bytes": st.vram_budget_bytes, "reserved_bytes": st.vram_reserved_bytes,
            "in_use_bytes": st.vram_in_use_bytes, "peak_bytes": st.vram_peak_bytes,
            "pool_bytes": st.vram_pool_bytes, "pool_buffers": st.vram_pool_buffers,
            "jobs_waiting": st.jobs_waiting_for_memory,
            "client_quota_bytes": st.vram_client_quota_bytes, "jobs_split": st.jobs_split},
        "shm": {
            "regions": st.shm_regions, "region_bytes": st.shm_region_bytes,
            "registered": st.shm_regions_registered, "jobs": st.shm_jobs,
            "jobs_in_place": st.shm_jobs_in_place},
        "host_buffers": {
            "kept": st.host_buffers_kept, "kept_bytes": st.host_buffer_kept_bytes,
            "pinned": st.host_buffers_pinned, "pinned_bytes": st.host_buffer_pinned_bytes,
            "hits": st.host_buffer_hits, "misses": st.host_buffer_misses,
            "pins_made": st.host_buffer_pins_made},
        "queue": {
            "max_queue": st.max_queue, "client_max_queue": st.client_max_queue,
            "jobs_waiting": st.jobs_waiting, "clients_waiting": st.clients_waiting,
            "rejected_busy": st.jobs_rejected_busy, "expired": st.jobs_expired,
            "cancelled": st.jobs_cancelled},
        "kernels": [{
            "trans_a": bool(k.trans_a), "trans_b": bool(k.trans_b),
            "size_class": k.size_class, "kernel": _dec(k.kernel), "tuned": bool(k.tuned),
            "gflops": k.gflops} for k in (st.kernels[i] for i in range(st.n_kernels))],
        "utilisation": {
            "busy_ns": st.device_busy_ns, "since_start": st.device_utilisation,
            "recent_busy_ns": st.device_recent_busy_ns,
            "recent_window_ns": st.device_recent_window_ns,
            "recent": st.device_utilisation_recent,
            "current_job_ns": st.device_current_job_ns},
        "clients": [_client_stats(st.clients[i]) for i in range(st.n_clients)],
        "departed_clients": _client_stats(st.departed),
        "kernel_stats": [{
            "kernel": _dec(v.kernel), "jobs": v.jobs, "flops": v.flops,
            "gflops": _gflops(v.flops, v.timings.kernel_ns), "timings": v.timings.as_dict()}
            for v in (st.kernel_stats[i] for i in range(st.n_kernel_stats))],
    }
