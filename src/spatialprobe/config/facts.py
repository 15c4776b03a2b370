"""Facts declared beside the code they describe, read here without importing that code (no torch).

An architecture family's module (``spatialprobe/models/<family>.py``) declares, as a plain literal,
``FACTS = {arch: {...}}`` for each architecture it builds:

* ``units``: the number of modifiable units;
* ``narrowest``: ``[which layer, its channels at width 1]`` (the width rule of ``model.width``);
* ``width_divisor`` (optional): every layer's width is rounded to a multiple of it (MobileNetV2);
* ``full_width_only`` (optional): torchvision builds it at width 1 only;
* ``strided_maxpool``: ``always``, ``never`` or ``imagenet_stem`` (only with torchvision's ImageNet stem,
  which ``model.stem`` picks): whether BlurPool's ``pool`` mode has a max-pool to blur.

A method's module (``spatialprobe/methods/<name>.py``) declares ``KIND`` (``op``, ``gap_fc``, ``conv1x1``
or ``none``). The torch-free checks of :mod:`spatialprobe.config.schema` read these literals with
:mod:`ast`, so adding an architecture is its adapter and its yaml, and adding a method its module and
its yaml; ``tests/test_schema.py`` holds the facts against the built networks.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]


def module_literal(path: Path, name: str) -> object:
    """The value of the module-level assignment ``name = <literal>`` in the Python file ``path`` (or None)."""
    for node in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.value is not None:
            return ast.literal_eval(node.value)
    return None


def _declared(folder: str, name: str) -> dict[str, object]:
    """{module name: its ``name`` literal} for the modules of ``spatialprobe/<folder>`` that declare one."""
    found = {}
    for path in sorted((PACKAGE / folder).glob("*.py")):
        value = module_literal(path, name)
        if value is not None:
            found[path.stem] = value
    return found


@functools.cache
def arch_facts() -> dict[str, dict]:
    """Every architecture's facts (module docstring), with ``module``: the family module that builds it."""
    facts = {}
    for module, archs in _declared("models", "FACTS").items():
        for arch, fact in archs.items():
            facts[arch] = {**fact, "module": module}
    return facts


@functools.cache
def method_kinds() -> dict[str, str]:
    """Every method's kind, by its name (the name of its module)."""
    return dict(_declared("methods", "KIND"))
