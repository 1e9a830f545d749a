"""Packaging of the Python package (proto/python): the Lua scripts it ships
are proto/scripts/*.lua (through a link), and `pip install` works offline
(no index, Debian's setuptools), with Debian's pip and with the newest other pip
found, into a fresh virtual environment, where the
installed package finds its scripts and runs the read path against Redis."""

import glob
import os
import shutil
import subprocess
import sys

import pytest

import harness

PKG_DIR = os.path.join(harness.REPO_ROOT, "proto", "python")
SCRIPTS_DIR = os.path.join(harness.REPO_ROOT, "proto", "scripts")
PACKAGED_DIR = os.path.join(PKG_DIR, "inval", "scripts")


def _lua_files(d):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(d, "*.lua")))


def test_packaged_scripts_are_proto_scripts():
    """The package's scripts directory is a link to proto/scripts, so the
    scripts have one source; pip copies the files into the package."""
    assert _lua_files(SCRIPTS_DIR) == ["commit.lua", "log_append.lua", "soft.lua",
                                       "unlock.lua"]
    assert os.path.realpath(PACKAGED_DIR) == os.path.realpath(SCRIPTS_DIR)


SMOKE = r"""
import importlib.metadata, os, sys
import redis
import inval, inval.lua
assert os.path.realpath(inval.__file__).startswith(os.path.realpath(sys.prefix)), inval.__file__
assert importlib.metadata.version("inval") == inval.__version__
for name in inval.lua.NAMES:
    with open(os.path.join(sys.argv[1], name + ".lua"), "rb") as f:
        assert inval.lua.source(name) == f.read(), name
r = redis.Redis(host="127.0.0.1", port=int(sys.argv[2]))
res = inval.get_or_fill(r, "installed:{1}", 30, lambda: b"from-venv")
assert res.regenerated and not res.fenced, res
assert inval.get_or_fill(r, "installed:{1}", 30, lambda: b"x").hit
print("ok", inval.__file__)
"""


def _pip_version(py):
    p = subprocess.run([py, "-m", "pip", "--version"], capture_output=True,
                       text=True, timeout=60)
    if p.returncode != 0:
        return None
    return tuple(int(x) for x in p.stdout.split()[1].split(".")[:2])


def _pips():
    """The interpreters whose pip installs the package: Debian's (python3-pip,
    the test's own interpreter) and the newest pip of the pyenv versions on
    this machine (pip 24 here; no index is reachable to fetch a newer one),
    so that the package is known to install with more than Debian's pip."""
    pips = [os.path.realpath(sys.executable)]
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    others = [(v, exe) for exe in glob.glob(
                  os.path.join(root, "versions", "*", "bin", "python3"))
              for v in [_pip_version(exe)] if v is not None]
    if others:
        pips.append(os.path.realpath(max(others)[1]))
    return pips


@pytest.mark.parametrize("installer", _pips())
def test_pip_install_offline_into_venv(workdir, standalone, installer):
    assert _pip_version(installer) >= (22, 3), "pip --python needs 22.3"
    # Install from a copy, so the in-tree build leaves nothing behind in
    # the checkout and parallel runs cannot collide.
    src = os.path.join(workdir, "src")
    shutil.copytree(PKG_DIR, src, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__"))
    venv = os.path.join(workdir, "venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip",
                    "--system-site-packages", venv], check=True, timeout=120)
    py = os.path.join(venv, "bin", "python")
    p = subprocess.run([installer, "-m", "pip", "--python", py,
                        "install", "--no-index", "--disable-pip-version-check",
                        src], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Successfully installed inval-0.1.0" in p.stdout
    p = subprocess.run([py, "-c", SMOKE, SCRIPTS_DIR, str(standalone.port)],
                       capture_output=True, text=True, timeout=60,
                       cwd=workdir)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("ok " + venv), p.stdout
    assert standalone.client().get("installed:{1}") == b"from-venv"
