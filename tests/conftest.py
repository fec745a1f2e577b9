"""Fixtures shared by every test: the emulator over HTTPS and Azurite, each on free ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.core.credentials import AccessToken

from emulator import Emulator, EmulatorServer
from emulator.azurite import AZURITE_BIN, Azurite


class StaticToken:
    """Any bearer token is accepted by the emulator; this one never expires."""

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken("emulator-token", 4102444800)


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(time_scale=1.0)) as server:
        yield server


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> Emulator:
    """A clean emulator for each test (same server, state reset)."""
    emulator_server.emulator.reset()
    return emulator_server.emulator


@pytest.fixture
def sdk_kwargs(emulator_server: EmulatorServer, emulator: Emulator) -> dict[str, object]:
    """What every SDK client needs to talk to the emulator instead of Azure."""
    return {
        "credential": StaticToken(),
        "base_url": emulator_server.endpoint,
        "connection_verify": emulator_server.ca_bundle,
        "credential_scopes": ["https://management.azure.com/.default"],
    }


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """Azurite (blob, queue, table) in memory on free ports; yields its connection string."""
    if not AZURITE_BIN.exists():
        pytest.fail(
            f"Azurite is not installed ({AZURITE_BIN} is missing): run the tests with `make test`, "
            "which installs it with npm from package.json.",
            pytrace=False,
        )
    with Azurite() as server:
        yield server.connection_string


# The sweep's integration fixtures (tests/sweep_fixtures.py), shared with every test module.
pytest.register_assert_rewrite("tests.sweep_fixtures")
from tests.sweep_fixtures import demo_bench, sweep_bench  # noqa: E402, F401

# The new-VM flow's fixtures (tests/new_vm_fixtures.py), shared with every test module.
pytest.register_assert_rewrite("tests.new_vm_fixtures")
from tests.new_vm_fixtures import new_vm_bench  # noqa: E402, F401

# The remediation tests' fixtures (tests/remediation_fixtures.py), shared with every test module.
pytest.register_assert_rewrite("tests.remediation_fixtures")
from tests.remediation_fixtures import remediation_bench  # noqa: E402, F401
