"""What must stay cheap to import: the torch-free tabular half, `import kdistill` and the CLI's
help. Each check runs in a fresh interpreter and reads sys.modules there."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "matplotlib")


def loaded_after(code: str) -> dict[str, bool]:
    """Which of HEAVY a fresh interpreter has imported after running `code`."""
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["kdistill", "kdistill.files", "kdistill.reporting",
                                    "kdistill.tabular.selection", "kdistill.tabular.metrics",
                                    "kdistill.tabular.hillclimb", "kdistill.tabular.library",
                                    "kdistill.tabular.munge", "kdistill.tabular.encoding",
                                    "kdistill.tabular.problems", "kdistill.tabular.inputs",
                                    "kdistill.tabular.compress_report", "kdistill.experiments",
                                    "kdistill.cli"])
def test_import_loads_neither_torch_nor_matplotlib(module: str) -> None:
    assert loaded_after(f"import {module}") == {m: False for m in HEAVY}


def test_the_probe_sees_torch_when_it_is_imported() -> None:
    assert loaded_after("import kdistill.tabular.mimic")["torch"]  # the probe can fail


@pytest.mark.parametrize("argv", [["--help"], ["reproduce", "--help"], ["compress", "--help"],
                                  ["predict", "--help"],
                                  ["train", "--help"], ["distill", "--help"]])
def test_help_loads_neither_torch_nor_matplotlib(argv: list[str]) -> None:
    code = ("import contextlib, io\nfrom kdistill.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    try:\n        main({argv!r})\n    except SystemExit:\n        pass")
    assert loaded_after(code) == {m: False for m in HEAVY}
