"""The documentation stands alone and stays whole: README, the pages of docs/ (an mkdocs site), CITATION.cff.

mkdocs itself (strict mode) checks the links and anchors between the pages; these tests check what it cannot:
that nothing a user reads or runs sends them to files outside the repository, that every page is in the
navigation, that README's own links resolve, that the citation metadata names the papers, and that the commands
the docs show exist (console scripts, sweep scripts, make targets, experiments).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO

PAGES = sorted((REPO / "docs").glob("*.md"))
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def user_facing_files() -> list:
    """What a user of a clone reads or runs: README, the pages, the site and citation config, conf/, sweeps/."""
    files = [*DOCS, REPO / "mkdocs.yml", REPO / "CITATION.cff"]
    for folder in ("conf", "sweeps"):
        files += [p for p in (REPO / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return files


def code_blocks(text: str) -> str:
    return "\n".join(re.findall(r"^```[\w-]*\n(.*?)^```", text, re.S | re.M))


def prose(text: str) -> str:
    return re.sub(r"^```[\w-]*\n.*?^```", "", text, flags=re.S | re.M)


def nav_files(nav) -> list[str]:
    """The page files of mkdocs' nav (a list of strings, {title: file} and {title: [sections]})."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [f for item in nav for f in nav_files(item)]
    if isinstance(nav, dict):
        return [f for value in nav.values() for f in nav_files(value)]
    return []


def test_nothing_a_user_reads_or_runs_points_outside_the_repository():
    """A clone has no ../shared: only CI and the tests may use it, through environment variables."""
    offenders = [str(p.relative_to(REPO)) for p in user_facing_files() if "../shared" in p.read_text(errors="replace")]
    assert not offenders, f"these files send a reader or a command to ../shared: {offenders}"
    for folder in ("conf", "sweeps"):
        readers = [str(p.relative_to(REPO)) for p in (REPO / folder).rglob("*")
                   if p.is_file() and "SPATIALPROBE_SHARED" in p.read_text(errors="replace")]
        assert not readers, f"{folder}/ reads CI's shared folder: {readers}"


def test_every_page_is_in_the_navigation():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    listed = nav_files(config["nav"])
    assert len(listed) == len(set(listed)), "a page is listed twice"
    assert {p.name for p in PAGES} == set(listed), "docs/*.md and mkdocs.yml's nav differ"
    assert config.get("strict") is True and config["theme"]["name"] == "material"


def test_readme_links_resolve():
    text = prose((REPO / "README.md").read_text())
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text)
    relative = [t for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert len(relative) >= 10, relative  # README links to the pages
    missing = [t for t in relative if not (REPO / t.split("#")[0]).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"
    assert all(not t.startswith("/") for t in relative), "README links must be relative"


def test_citation_metadata_names_the_software_and_the_papers():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    project = pyproject()["project"]
    assert cff["cff-version"] == "1.2.0" and cff["title"] == "spatialprobe" and cff["license"] == "MIT"
    assert cff["version"] == project["version"] == "0.1.0"
    titles = [ref["title"] for ref in cff["references"]]
    assert titles == ["Analyzing the Dependency of ConvNets on Spatial Information",  # S0, the arXiv version
                      "Spatial Information is Overrated for Image Classification",  # S1, the ICLR 2020 submission
                      "Global Pooling, More than Meets the Eye: Position Information is Encoded Channel-Wise in CNNs"]
    assert all(ref["authors"] and ref["year"] for ref in cff["references"])
    text = (REPO / "CITATION.cff").read_text()
    assert "2002.01827" in text and "2108.07884" in text
    readme = (REPO / "README.md").read_text()
    for key in ("@software{spatialprobe", "arXiv:2002.01827", "Spatial Information is Overrated", "Global Pooling"):
        assert key in readme, key


def test_every_documented_command_has_its_console_script():
    """`python -m spatialprobe.<name>` in README or a page: the module exists, and `spatialprobe-<name>` (dashes)
    is a console script that resolves to a callable."""
    scripts = pyproject()["project"]["scripts"]
    text = "".join(p.read_text() for p in DOCS)
    commands = set(re.findall(r"python -m spatialprobe\.(\w+)", text))
    assert {"train", "evaluate", "inspect", "search_k", "collect", "plot", "rank", "decode", "plot_detection",
            "position_figures"} <= commands
    for name in sorted(commands):
        assert importlib.util.find_spec(f"spatialprobe.{name}") is not None, name
        assert f"spatialprobe-{name.replace('_', '-')}" in scripts, f"no console script for spatialprobe.{name}"
    for script, target in scripts.items():
        module, attr = target.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), script


def test_the_commands_the_docs_show_exist():
    """The code blocks of README and the pages run real scripts, make targets and experiments."""
    blocks = "".join(code_blocks(p.read_text()) for p in DOCS)
    makefile = (REPO / "Makefile").read_text()
    for script in set(re.findall(r"\bsweeps/[\w./]+\.(?:sh|py)", blocks)):
        assert (REPO / script).is_file(), script
    for target in set(re.findall(r"^(?:\S+=\S+ )*make ([\w-]+)", blocks, re.M)):
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"make {target}"
    ours = "\n".join(line for line in blocks.splitlines()  # a user's own folder holds its own experiments
                      if "--config-dir" not in line and "hydra.searchpath" not in line)
    experiments = set(re.findall(r"\bexperiment=(\w+)\b(?!<)", ours))  # not the tab-completion examples
    assert "demo_cifar10_kcurve" in experiments
    for name in experiments:
        assert (REPO / "conf" / "experiment" / f"{name}.yaml").is_file(), f"experiment={name}"
    every_script = {p.name for p in (REPO / "sweeps").glob("*.sh")} - {"lib.sh"}
    sweeps_page = (REPO / "docs" / "sweeps.md").read_text()
    assert not [s for s in every_script if f"`{s}`" not in sweeps_page], "a sweeps/ script missing from docs/sweeps.md"


def test_the_package_ships_its_type_marker():
    assert '"py.typed"' in (REPO / "setup.py").read_text()  # package data (the wheel test checks the wheel holds it)
    assert importlib.util.find_spec("spatialprobe") is not None
    marker = [p for p in (REPO / "src").rglob("py.typed")]
    assert marker and all(p.read_text() == "" for p in marker)
    assert "MIT License" in (REPO / "LICENSE").read_text()
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and re.search(r"^## \[0\.1\.0\] - \d{4}-\d{2}-\d{2}$", changelog, re.M)


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
                    reason="mkdocs-material is not installed (make docs installs the docs extra)")
def test_the_site_builds_in_strict_mode(tmp_path):
    # no --quiet: it hides the warnings from the counter that strict mode fails on
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                       cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file() and (tmp_path / "site" / "REPRODUCTION" / "index.html").is_file()
