"""The Python version the function app runs: a template parameter azd sets, limited to what Flex
Consumption runs and this project is tested on (3.11 and 3.12; `make test PYTHON=python3.12`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from tests.test_infra import (
    AZD_ENVIRONMENT,
    FUNCTION_APP,
    MAIN,
    main_evaluator,
    module_evaluator,
    parse_bicep,
    resources_of_type,
)

TESTED_VERSIONS = {"3.11", "3.12"}


def allowed_values(parameter: Mapping[str, Any]) -> set[str]:
    (allowed,) = (d["argument"] for d in parameter.get("decorators", []) if d["type"] == "allowed")
    return set(allowed)


def deployed_runtime(environment: Mapping[str, str]) -> Any:
    app = module_evaluator(main_evaluator(environment), "functionApp")
    (site,) = resources_of_type(app.tree, "Microsoft.Web/sites").values()
    return app.evaluate(site["properties"]["functionAppConfig"]["runtime"])


def test_the_runtime_version_is_a_parameter_limited_to_the_tested_versions() -> None:
    for path in (MAIN, FUNCTION_APP):
        parameter = parse_bicep(path)["parameters"]["runtimeVersion"]
        assert allowed_values(parameter) == TESTED_VERSIONS, path.name
        assert parameter["default"] == "3.11", path.name


@pytest.mark.parametrize(
    ("given", "expected"), [({}, "3.11"), ({"BACKUPWARDEN_RUNTIME_VERSION": "3.12"}, "3.12")]
)
def test_azd_sets_the_python_version_of_the_app(given: dict[str, str], expected: str) -> None:
    assert deployed_runtime({**AZD_ENVIRONMENT, **given}) == {"name": "python", "version": expected}
