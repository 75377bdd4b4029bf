"""Sessions: one per distribution, `integration` (everything), `lint`, `demo`, `bench`.

Every session reuses the torch already installed on the machine (virtualenvs see the system
site-packages) and otherwise installs the local CPU build `torch==2.13.0`: no session ever
downloads a CUDA build of torch. `nox -t ci` is what CI runs.
"""

from pathlib import Path

import nox

ROOT = Path(__file__).parent
PLUGINS = sorted(p for p in (ROOT / "plugins").glob("*") if (p / "pyproject.toml").exists())
CPU_TORCH = "torch==2.13.0"
VENV = ["--system-site-packages"]
# real model code the tests compile (transformers pinned to the range litgpt supports), and
# expecttest, without which PyTorch's OpInfo database (tests/test_opinfo.py) cannot be imported
TEST_LIBRARIES = ["transformers>=4.51,<4.57", "litgpt", "expecttest"]

nox.options.reuse_existing_virtualenvs = True


def _torch_version(session) -> str | None:
    """The torch version the session's Python imports (its own or the system's), or None."""
    out = session.run("python", "-c",
                      "import importlib.util as u; print('TORCH', u.find_spec('torch') and "
                      "__import__('torch').__version__.split('+')[0])", silent=True)
    version = out.strip().rsplit("TORCH ", 1)[-1]
    return None if version in ("None", "") else version


def _install_core(session, *extra):
    """thunder-core (editable, no dependency resolution that could pull a CUDA torch) and test tools.
    Torch is pinned to what is installed (or the local CPU build) for every later install, so a
    package that depends on torch (litgpt) never replaces it."""
    version = _torch_version(session)
    if version is None:
        session.install(CPU_TORCH)
        version = _torch_version(session)
    pin = Path(session.create_tmp()) / "torch-pin.txt"
    pin.write_text(f"torch=={version}\n")
    session.env["PIP_CONSTRAINT"] = str(pin)
    session.install("pluggy>=1.3", "pytest>=7")
    session.install("--no-build-isolation", "--no-deps", "-e", str(ROOT / "thunder_core"),
                    "-e", str(ROOT / "tests" / "sample_plugin"), *extra)


@nox.session(venv_params=VENV)
def core(session):
    """thunder-core with the sample plugin distribution: the core tests."""
    _install_core(session)
    session.run("python", "-m", "pytest", "-q", "tests", *session.posargs)


for _plugin in PLUGINS:
    def _plugin_session(session, _path=_plugin):
        _install_core(session, "-e", str(_path))
        session.run("python", "-m", "pytest", "-q", str(_path / "tests"), *session.posargs)

    nox.session(name=_plugin.name.removeprefix("thunder_"), venv_params=VENV)(_plugin_session)


@nox.session(venv_params=VENV, tags=["ci"])
def integration(session):
    """Everything installed: core tests, every plugin's tests, cross-plugin tests."""
    editable = [arg for p in PLUGINS for arg in ("-e", str(p))]
    _install_core(session, *editable)
    session.install(*TEST_LIBRARIES)
    paths = ["tests"] + [str(p / "tests") for p in PLUGINS if (p / "tests").exists()]
    session.run("python", "-m", "pytest", "-q", *paths, *session.posargs)


@nox.session(venv_params=VENV, tags=["ci"])
def lint(session):
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session(venv_params=VENV)
def demo(session):
    """Compiles the seed MLP and a transformer block on CPU, checks them, prints trace and timings."""
    _install_core(session)
    session.run("python", "examples/demo.py")


@nox.session(venv_params=VENV)
def bench(session):
    """Per-call overhead on a cache hit against eager and torch.compile (CPU, tiny shapes)."""
    _install_core(session)
    session.run("python", "examples/bench_overhead.py", *session.posargs)
