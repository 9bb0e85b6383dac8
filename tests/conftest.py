import pytest
import torch as th

# Small networks: one thread per test process is faster than contending threads under pytest-xdist.
th.set_num_threads(1)

#: Seconds a test marked slow may run (the others get pyproject.toml's timeout).
SLOW_TEST_TIMEOUT = 3600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TEST_TIMEOUT))
