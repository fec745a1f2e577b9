"""An import-linter contract type: packages that import nothing but themselves and the standard library.

import-linter's own `forbidden` contract is a deny-list, and it can forbid an external package only by
naming it; the domain's rule is an allow-list (itself and the standard library), so any package not on
it (one added to requirements.txt tomorrow too) breaks the contract. `make lint` and tests/test_layering.py
run it through `lint-imports` with the contracts in pyproject.toml.
"""

from __future__ import annotations

import sys

from grimp import DetailedImport, ImportGraph
from importlinter import Contract, ContractCheck, fields, output
from importlinter.domain.contract import InvalidContractOptions


class StandardLibraryOnlyContract(Contract):
    """Each module of `source_modules` (packages: their descendants too) imports only from within its
    own package and from the standard library."""

    type_name = "standard_library_only"

    source_modules = fields.ListField(subfield=fields.ModuleField())

    def validate(self) -> None:
        # Without external packages in the graph there is nothing to tell the standard library from.
        if str(self.session_options.get("include_external_packages")).lower() != "true":
            raise InvalidContractOptions(
                {"source_modules": "this contract needs include_external_packages = true"}
            )

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        violations: list[DetailedImport] = []
        for source in self.source_modules:  # type: ignore[attr-defined]
            package = source.name
            for importer in sorted({package} | graph.find_descendants(package)):
                for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                    if _is_within(imported, package) or _is_standard_library(imported):
                        continue
                    violations.extend(graph.get_import_details(importer=importer, imported=imported))
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for violation in check.metadata["violations"]:
            output.print_error(
                f"{violation['importer']} -> {violation['imported']} (l.{violation['line_number']})",
                bold=True,
            )
            output.new_line()


def _is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def _is_standard_library(module: str) -> bool:
    return module.split(".")[0] in sys.stdlib_module_names
