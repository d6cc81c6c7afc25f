"""The rxgemm Python package against a real daemon (on PoCL under make check): results
against numpy in float64, errors against numpy's own and librxgemm's, status against the
CLI's, zero copy against the daemon's byte counters."""
import asyncio
import concurrent.futures
import json
import os
import subprocess

import numpy as np
import pytest

import rxgemm

RNG = np.random.default_rng(1234)


def rand(*shape):
    return RNG.standard_normal(shape, dtype=np.float32)


def ref(a, b, ta=False, tb=False, alpha=1.0, beta=0.0, c=None):
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    if ta:
        a64 = np.swapaxes(a64, -1, -2)
    if tb:
        b64 = np.swapaxes(b64, -1, -2)
    r = alpha * (a64 @ b64)
    if beta != 0:
        r = r + beta * c.astype(np.float64)
    return r


def close(got, want, k):
    assert got.dtype == np.float32
    assert got.shape == want.shape
    tol = 1e-5 * max(k, 1) * (np.abs(want).max() + 1)
    err = np.abs(got.astype(np.float64) - want).max() if want.size else 0
    assert err <= tol, "max error %g over tolerance %g" % (err, tol)


def client_counters(c):
    me = c.server_info["client_id"]
    return next(x for x in c.status()["clients"] if x["client_id"] == me)


def test_server_info(client):
    info = client.server_info
    assert info["protocol_version"] == 1 and info["client_id"] > 0
    want = os.environ.get("RXGEMM_TEST_BUSY_POLL_US")
    if want is None:
        pytest.skip("RXGEMM_TEST_BUSY_POLL_US: the daemon's --busy-poll is not known")
    assert info["busy_poll_us"] == int(want)


# --- correctness over shapes, layouts, transposes ---------------------------------------

@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (7, 13, 5), (130, 67, 99), (1, 300, 17),
                                   (64, 1, 200)])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_shapes_and_transposes(client, m, n, k, ta, tb):
    a = rand(k, m) if ta else rand(m, k)
    b = rand(n, k) if tb else rand(k, n)
    close(client.matmul(a, b, trans_a=ta, trans_b=tb), ref(a, b, ta, tb), k)


@pytest.mark.parametrize("layout", ["C", "F", "rows", "cols", "slice", "negative", "T"])
def test_layouts(client, layout):
    base_a, base_b = rand(90, 70), rand(70, 50)
    if layout == "C":
        a, b = base_a, base_b
    elif layout == "F":
        a, b = np.asfortranarray(base_a), np.asfortranarray(base_b)
    elif layout == "rows":      # every other row: a padded leading dimension
        a, b = rand(180, 70)[::2], rand(70, 100)[:, :50]
    elif layout == "cols":      # every other column: copied (no unit stride)
        a, b = rand(90, 140)[:, ::2], rand(140, 50)[::2]
    elif layout == "slice":
        a, b = rand(100, 80)[5:95, 3:73], np.asfortranarray(rand(80, 60))[4:74, 2:52]
    elif layout == "negative":
        a, b = base_a[::-1], base_b[:, ::-1]
    else:
        a, b = base_a.T.copy().T, rand(50, 70).T
    close(client.matmul(a, b), ref(a, b), a.shape[1])


def test_alpha_beta_out(client):
    a, b, c0 = rand(33, 21), rand(21, 17), rand(33, 17)
    out = c0.copy()
    r = client.matmul(a, b, out, alpha=0.5, beta=-2.0)
    assert r is out
    close(out, ref(a, b, alpha=0.5, beta=-2.0, c=c0), 21)
    # A Fortran-ordered out goes through a temporary and ends up right too.
    outf = np.asfortranarray(c0)
    client.matmul(a, b, outf, alpha=1.5, beta=1.0)
    close(outf, ref(a, b, alpha=1.5, beta=1.0, c=c0), 21)
    # Padded out: the padding is left alone.
    big = np.full((33, 20), 7.0, np.float32)
    client.matmul(a, b, big[:, :17])
    close(big[:, :17], ref(a, b), 21)
    assert (big[:, 17:] == 7.0).all()


@pytest.mark.parametrize("sa,sb", [((4, 20, 30), (4, 30, 10)), ((5, 20, 30), (30, 10)),
                                   ((20, 30), (3, 30, 10)), ((1, 20, 30), (3, 30, 10)),
                                   ((3, 20, 30), (1, 30, 10)), ((1, 8, 9), (1, 9, 4)),
                                   ((30,), (30, 10)), ((20, 30), (30,)), ((3, 20, 30), (30,))])
def test_batched_broadcasting(client, sa, sb):
    a, b = rand(*sa), rand(*sb)
    want = a.astype(np.float64) @ b.astype(np.float64)
    close(client.matmul(a, b), want, sa[-1])


def test_batched_layouts(client):
    a = np.asfortranarray(rand(3, 25, 19))          # each matrix Fortran-ordered
    b = rand(3, 40, 11)[:, ::2, :]                  # strided matrices
    close(client.matmul(a, b[:, :19, :]), ref(a, b[:, :19, :]), 19)
    a2 = rand(6, 25, 19)[::2]                       # every other matrix of a stack
    bb = rand(19, 7)
    close(client.matmul(a2, bb), ref(a2, bb), 19)
    out = np.zeros((3, 25, 7), np.float32)
    client.matmul(a2, bb, out)
    close(out, ref(a2, bb), 19)


def test_empty_products(client):
    close(client.matmul(rand(4, 0), rand(0, 3)), np.zeros((4, 3)), 1)
    assert client.matmul(rand(0, 5), rand(5, 3)).shape == (0, 3)
    c0 = rand(4, 3)
    out = c0.copy()
    client.matmul(rand(4, 0), rand(0, 3), out, beta=2.0)
    close(out, 2.0 * c0.astype(np.float64), 1)


def test_one_line_form():
    a, b = rand(40, 30), rand(30, 20)
    close(rxgemm.matmul(a, b), ref(a, b), 30)


# --- errors -----------------------------------------------------------------------------

def numpy_error(sa, sb):
    with pytest.raises(ValueError) as e:
        np.matmul(np.zeros(sa, np.float32), np.zeros(sb, np.float32))
    return str(e.value)


@pytest.mark.parametrize("sa,sb", [((3, 4), (5, 6)), ((2, 3, 4), (3, 4, 5)), ((4,), (5,)),
                                   ((2, 3, 4), (5, 6))])
def test_shape_errors_are_numpys(client, sa, sb):
    with pytest.raises(ValueError) as e:
        client.matmul(np.zeros(sa, np.float32), np.zeros(sb, np.float32))
    assert str(e.value) == numpy_error(sa, sb)


def test_dtype_and_rank_errors(client):
    with pytest.raises(TypeError, match="float32"):
        client.matmul(np.zeros((2, 2)), np.zeros((2, 2), np.float32))
    with pytest.raises(TypeError, match="float32"):
        client.matmul(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match="dimensions"):
        client.matmul(np.zeros((2, 2, 2, 2), np.float32), np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError):
        client.matmul(np.zeros((2, 3), np.float32), np.zeros((3, 4), np.float32),
                      np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="beta"):
        client.matmul(np.zeros((2, 3), np.float32), np.zeros((3, 4), np.float32), beta=1.0)


def test_error_classes_match_the_library():
    import ctypes
    from rxgemm import _capi
    seen = set()
    for code, cls in rxgemm.by_code.items():
        assert issubclass(cls, rxgemm.Error)
        assert cls.code == code and cls.name.startswith("RXG_E")
        assert cls.__name__ not in seen
        seen.add(cls.__name__)
        assert str(cls()) == _capi.lib.rxg_strerror(ctypes.c_int(code)).decode()
    # Every code the library names has its class (unknown codes get the library's text).
    for code in list(range(0, 40)) + list(range(100, 110)):
        text = _capi.lib.rxg_strerror(code).decode()
        known = code == 0 or code in rxgemm.by_code
        assert known == (text != _capi.lib.rxg_strerror(9999).decode()), code


def test_connect_error(tmp_path):
    with pytest.raises(rxgemm.ConnectError) as e:
        rxgemm.Client(str(tmp_path / "none.sock"))
    assert e.value.code == 100 and "none.sock" in str(e.value)
    assert isinstance(e.value, ConnectionError)


def test_daemon_message_is_carried(client):
    # A tensor beyond any budget: refused by the daemon, in its own words.
    with pytest.raises((rxgemm.TooBigError, rxgemm.QuotaError, rxgemm.OutOfMemoryError)) as e:
        client.tensor(shape=(1 << 20, 1 << 12, 1 << 8))
    assert str(e.value) and str(e.value) != rxgemm.strerror(e.value.code)
    # ... and the client still works.
    a, b = rand(5, 6), rand(6, 7)
    close(client.matmul(a, b), ref(a, b), 6)


# --- status and timings -----------------------------------------------------------------

def keys(d):
    if isinstance(d, dict):
        return {k: keys(v) for k, v in d.items()}
    if isinstance(d, list):
        return [keys(d[0])] if d else []
    return None


def test_status_equals_cli(client, cli):
    client.matmul(rand(20, 20), rand(20, 20))
    mine = client.status()
    theirs = json.loads(subprocess.run(cli + ["status", "--json"], check=True,
                                       capture_output=True, text=True).stdout)
    assert set(mine) == set(theirs)
    for k in mine:
        if isinstance(mine[k], dict):
            assert set(mine[k]) == set(theirs[k]), k
    for k in ("clients", "recent", "kernel_stats", "departed_clients"):
        if mine[k] and theirs[k]:
            assert keys(mine[k]) == keys(theirs[k]), k
    for k in ("daemon_version", "device", "devices", "kernels", "kernel_cache"):
        if k == "kernel_cache":
            assert mine[k]["dir"] == theirs[k]["dir"]
        else:
            assert mine[k] == theirs[k], k
    assert theirs["jobs_ok"] >= mine["jobs_ok"] >= 1


def test_timings(client):
    r, t = client.matmul(rand(64, 64), rand(64, 64), timings=True)
    assert set(t) == {"queued_ns", "h2d_ns", "kernel_ns", "d2h_ns", "total_ns"}
    assert t["total_ns"] > 0 and t["kernel_ns"] <= t["total_ns"]
    assert client.last_timings == t
    # The daemon's own record of the job has the same kernel time.
    rec = [j for j in client.status()["recent"] if j["client_id"] ==
           client.server_info["client_id"]][-1]
    assert rec["timings"] == t


# --- zero copy and tensors --------------------------------------------------------------

def test_zero_copy(client):
    a, b = rand(120, 80), rand(80, 60)
    before = client_counters(client)
    shm_before = client.status()["shm"]["jobs"]
    xa, xb = client.asarray(a), client.empty((80, 60))
    xb[...] = b
    assert client.asarray(xa) is xa
    r = client.matmul(xa, xb)
    close(r, ref(a, b), 80)
    # No request or reply frame carried a matrix.
    mid = client_counters(client)
    assert mid["bytes_in"] == before["bytes_in"]
    assert mid["bytes_out"] == before["bytes_out"]
    assert client._region_of(r) is not None
    assert mid["jobs_ok"] == before["jobs_ok"] + 1
    assert client.status()["shm"]["jobs"] == shm_before + 1
    # Views of shared arrays (transposes, slices, out in shared memory) stay zero-copy.
    out = client.empty((60, 120))
    client.matmul(xb.T, xa.T, out)
    close(out, ref(b.T.copy(), a.T.copy()), 80)
    after = client_counters(client)
    assert after["bytes_in"] == before["bytes_in"]
    assert after["bytes_out"] == before["bytes_out"]
    assert client.status()["shm"]["jobs"] == shm_before + 2
    # A small plain array does cross the socket (so the counters above can tell; large
    # ones are staged through shared memory by librxgemm itself).
    client.matmul(a, b)
    assert client_counters(client)["bytes_in"] > before["bytes_in"]
    assert client_counters(client)["bytes_out"] > before["bytes_out"]


def test_tensors(client):
    a, b = rand(50, 40), rand(40, 30)
    ta, tb = client.tensor(a), client.tensor(b)
    assert np.array_equal(ta.numpy(), a)
    close(client.matmul(ta, tb), ref(a, b), 40)
    tc = client.tensor(shape=(50, 30))
    assert client.matmul(ta, b, tc) is tc
    close(tc.numpy(), ref(a, b), 40)
    st = client_counters(client)
    assert st["tensors"] == 3
    for t in (ta, tb, tc):
        t.free()
    assert client_counters(client)["tensors"] == 0


# --- futures, asyncio, cancel -----------------------------------------------------------

def test_futures(client):
    pairs = [(rand(30 + i, 20), rand(20, 10 + i)) for i in range(8)]
    jobs = [client.submit(a, b) for a, b in pairs]
    done, _ = concurrent.futures.wait(jobs, timeout=300)
    assert len(done) == len(jobs)
    for job, (a, b) in zip(jobs, pairs):
        close(job.result(timeout=120), ref(a, b), 20)
        assert job.timings["total_ns"] > 0


def test_asyncio(client):
    a, b = rand(40, 30), rand(30, 20)

    async def main():
        return await asyncio.gather(*(asyncio.wrap_future(client.submit(a, b))
                                      for _ in range(3)), client.amatmul(a, b, alpha=2.0))
    rs = asyncio.run(main())
    for r in rs[:3]:
        close(r, ref(a, b), 30)
    close(rs[3], ref(a, b, alpha=2.0), 30)


def test_asyncio_on_the_fd():
    """asubmit/amatmul: the loop collects replies from the library's fd, no thread."""
    pairs = [(rand(50 + i, 30), rand(30, 20 + i)) for i in range(6)]
    with rxgemm.Client(name="pytest-asyncio") as c:
        async def main():
            jobs = [c.asubmit(a, b) for a, b in pairs]
            assert all(isinstance(j, asyncio.Future) for j in jobs)
            # The loop watches the library's fd while jobs are in flight.
            assert c._readers.get(asyncio.get_running_loop()) == c.fileno()
            # A blocking call on the loop's thread meanwhile may read the jobs' replies
            # itself: they must still arrive.
            st = c.status()
            rs = await asyncio.wait_for(asyncio.gather(*jobs), 300)
            r2, t2 = await asyncio.wait_for(c.amatmul(pairs[0][0], pairs[0][1], alpha=-1.0,
                                                      timings=True), 300)
            assert t2["total_ns"] > 0 and c.last_timings == t2
            return st, rs, r2, jobs
        st, rs, r2, jobs = asyncio.run(main())
        for r, (a, b), j in zip(rs, pairs, jobs):
            close(r, ref(a, b), 30)
            assert j.timings["total_ns"] > 0
        close(r2, ref(*pairs[0], alpha=-1.0), 30)
        assert st["jobs_ok"] >= 0
        # No thread was started for them, and nothing is left to collect or watch.
        assert c._waiter is None
        assert not c._jobs and not c._readers


def test_asyncio_errors_and_mixed_futures():
    """Thread futures and asyncio ones on one client all settle, whoever collects their
    replies; the daemon's verdict on a job is raised in the coroutine that awaits it."""
    a, b = rand(64, 48), rand(48, 32)
    with rxgemm.Client(name="pytest-asyncio-mixed") as c:
        # In shared memory, so that sending them is quick, and large, so that the queue
        # still holds them when the job with a deadline comes, however busy the machine
        # (staged 384^3 ones ran out first under CI's load now and then).
        big = (c.asarray(rand(768, 768)), c.asarray(rand(768, 768)))
        async def main():
            futs = [c.submit(a, b) for _ in range(4)]
            ajobs = [c.asubmit(a, b, alpha=3.0) for _ in range(4)]
            rs = await asyncio.wait_for(asyncio.gather(*ajobs), 300)
            return [f.result(timeout=300) for f in futs], rs
        thread_rs, async_rs = asyncio.run(main())
        for r in thread_rs:
            close(r, ref(a, b), 48)
        for r in async_rs:
            close(r, ref(a, b, alpha=3.0), 48)

        async def expire():
            # Behind jobs of a higher priority, a 1 ms deadline passes in the queue.
            ahead = [c.asubmit(*big, priority=3) for _ in range(6)]
            late = c.asubmit(a, b, deadline=0.001)
            with pytest.raises(rxgemm.DeadlineError) as e:
                await asyncio.wait_for(late, 300)
            await asyncio.wait_for(asyncio.gather(*ahead), 300)
            return e.value
        err = asyncio.run(expire())
        assert isinstance(err, TimeoutError) and str(err)
        assert not c._jobs and not c._readers


def test_asyncio_cancel():
    """Cancelling the task that awaits a job cancels the job on the daemon."""
    with rxgemm.Client(name="pytest-asyncio-cancel") as c:
        # In shared memory, so that sending the jobs is quick and they queue up.
        big = [(c.asarray(rand(384, 384)), c.asarray(rand(384, 384))) for _ in range(2)]
        before = c.status()["queue"]["cancelled"]

        async def main():
            jobs = [c.asubmit(*big[i % 2]) for i in range(12)]
            last = jobs[-1]
            waiter = asyncio.ensure_future(last)
            await asyncio.sleep(0)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert last.cancelled()
            rs = await asyncio.wait_for(asyncio.gather(*jobs[:-1]), 300)
            # The cancelled job's reply is still collected (its operands held till then).
            while last._id in c._jobs:
                await asyncio.sleep(0.01)
            return rs, last
        rs, last = asyncio.run(main())
        for i, r in enumerate(rs):
            close(r, ref(*big[i % 2]), 384)
        assert last.cancel_outcome in (rxgemm._capi.RXG_CANCEL_QUEUED,
                                       rxgemm._capi.RXG_CANCEL_RUNNING,
                                       rxgemm._capi.RXG_CANCEL_NOT_FOUND)
        after = c.status()["queue"]["cancelled"]
        # A job cancelled while queued never runs: the daemon counts it as cancelled.
        if last.cancel_outcome == rxgemm._capi.RXG_CANCEL_QUEUED:
            assert after == before + 1
        else:
            assert after >= before
        assert not c._jobs and not c._readers and c._waiter is None


def test_cancel(client):
    before = client.status()["queue"]["cancelled"]
    big = [(rand(384, 384), rand(384, 384)) for _ in range(2)]
    jobs = [client.submit(*big[i % 2]) for i in range(12)]
    last = jobs[-1]
    cancelled = last.cancel()
    for j in jobs[:-1]:
        j.result(timeout=300)
    if cancelled:
        assert last.cancelled()
        with pytest.raises(concurrent.futures.CancelledError):
            last.result()
    else:
        close(last.result(timeout=300), ref(*big[11 % 2]), 384)
    # Wait until the daemon has answered the last one, then check its count.
    client.matmul(rand(2, 2), rand(2, 2))
    after = client.status()["queue"]["cancelled"]
    if cancelled:
        assert after == before + 1


def test_priority_and_deadline(client):
    a, b = rand(30, 20), rand(20, 10)
    close(client.matmul(a, b, priority=3, deadline=60), ref(a, b), 20)
    with pytest.raises(ValueError):
        client.matmul(a, b, priority=7)
