"""pytest fixtures for the rxgemm package's tests: a Client of the daemon that
tests/test-python.sh started ($RXGEMM_SOCKET), and the CLI ($RXGEMM) to compare with."""
import os

import pytest


@pytest.fixture(scope="module")
def client():
    import rxgemm
    with rxgemm.Client(name="pytest") as c:
        yield c


@pytest.fixture(scope="session")
def cli():
    path = os.environ.get("RXGEMM")
    if not path:
        pytest.skip("RXGEMM (the CLI) is not set")
    return [path, "--socket", os.environ["RXGEMM_SOCKET"]]
