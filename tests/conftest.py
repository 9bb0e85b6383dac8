import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch as th

# Small networks: one thread per test process is faster than contending threads under pytest-xdist.
th.set_num_threads(1)

#: Seconds a test marked slow may run (the others get pyproject.toml's timeout).
SLOW_TEST_TIMEOUT = 3600
#: Seconds a PostgreSQL server command (initdb, start, createdb, stop) is given.
SERVER_TIMEOUT = 60


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TEST_TIMEOUT))


def _postgres_bindir() -> Path:
    """
    :return: the folder of the newest PostgreSQL server binaries installed by Debian's packages
    """
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda path: int(path.parts[-3]))
    if not found:
        pytest.fail("PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql-15)")
    return found[-1].parent


def _free_port() -> int:
    """
    :return: a TCP port on the loopback interface that nothing listens on now
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """
    A PostgreSQL server of its own, on a free loopback port, with an empty database.

    The server runs as the ``postgres`` user when the tests run as root (``initdb`` refuses root), from a data
    folder in a temporary folder that user owns; it is stopped and the folder removed at the end.

    :return: the database URL
    """
    bindir = _postgres_bindir()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="sb3_pgnotes_postgres_"))
    if as_postgres:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
    data, port = root / "data", _free_port()
    try:
        subprocess.run(
            [*as_postgres, bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-locale", "-E", "UTF8"],
            check=True,
            capture_output=True,
            timeout=SERVER_TIMEOUT,
        )
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
        start = [*as_postgres, bindir / "pg_ctl", "-D", data, "-o", options, "-l", root / "server.log", "-w", "start"]
        subprocess.run(start, check=True, capture_output=True, timeout=SERVER_TIMEOUT)
        try:
            createdb = [bindir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "optuna"]
            subprocess.run(createdb, check=True, capture_output=True, timeout=SERVER_TIMEOUT)
            yield f"postgresql://postgres@127.0.0.1:{port}/optuna"
        finally:
            subprocess.run(
                [*as_postgres, bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],
                check=True,
                timeout=SERVER_TIMEOUT,
            )
    finally:
        shutil.rmtree(root)
