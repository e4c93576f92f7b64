"""A minimal PEP 517 / PEP 660 build backend, standard library only.

redis-creds' Python client is pure Python with no dependencies; this builds its wheel and
sdist without setuptools, so `pip install --no-build-isolation client/python` (and `pip
install -e`) work offline on a bare Debian python3-venv. It packages the `redis_creds`
package directory and the metadata of pyproject.toml's [project] table."""
import base64
import hashlib
import io
import os
import tarfile
import re
import time
import zipfile

try:
    import tomllib
except ImportError:  # Python < 3.11: our pyproject.toml's [project] strings are simple
    tomllib = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "redis_creds"


def _project():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        if tomllib is not None:
            return tomllib.load(f)["project"]
        text = f.read().decode("utf-8")
    section = text.split("[project]", 1)[1].split("\n[", 1)[0]
    return {k: v for k, v in re.findall(r'^([a-z-]+) = "([^"]*)"', section, re.M)}


def _dist_name(p):
    return p["name"].replace("-", "_")


def _metadata(p):
    lines = ["Metadata-Version: 2.1", "Name: " + p["name"], "Version: " + p["version"]]
    if p.get("description"):
        lines.append("Summary: " + p["description"])
    if p.get("requires-python"):
        lines.append("Requires-Python: " + p["requires-python"])
    for extra, reqs in p.get("optional-dependencies", {}).items():
        lines.append("Provides-Extra: " + extra)
        for r in reqs:
            lines.append('Requires-Dist: %s ; extra == "%s"' % (r, extra))
    for r in p.get("dependencies", []):
        lines.append("Requires-Dist: " + r)
    body = ""
    readme = p.get("readme")
    if readme and os.path.exists(os.path.join(ROOT, readme)):
        lines.append("Description-Content-Type: text/markdown")
        with open(os.path.join(ROOT, readme), encoding="utf-8") as f:
            body = "\n" + f.read()
    return ("\n".join(lines) + "\n" + body).encode("utf-8")


def _package_files():
    out = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, PACKAGE)):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for fn in sorted(filenames):
            if fn.endswith((".pyc", ".pyo")):
                continue
            full = os.path.join(dirpath, fn)
            out.append((os.path.relpath(full, ROOT).replace(os.sep, "/"), full))
    return out


def _hash(data):
    d = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "sha256=" + d


def _write_wheel(wheel_directory, files):
    """files: list of (archive name, bytes). Adds dist-info; returns the wheel's name."""
    p = _project()
    name, version = _dist_name(p), p["version"]
    distinfo = "%s-%s.dist-info" % (name, version)
    wheel_name = "%s-%s-py3-none-any.whl" % (name, version)
    files = list(files) + [
        (distinfo + "/METADATA", _metadata(p)),
        (distinfo + "/WHEEL", b"Wheel-Version: 1.0\nGenerator: rc_backend\n"
                              b"Root-Is-Purelib: true\nTag: py3-none-any\n"),
        (distinfo + "/top_level.txt", (PACKAGE + "\n").encode()),
    ]
    record = "".join("%s,%s,%d\n" % (n, _hash(b), len(b)) for n, b in files)
    record += distinfo + "/RECORD,,\n"
    files.append((distinfo + "/RECORD", record.encode()))
    path = os.path.join(wheel_directory, wheel_name)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for n, b in files:
            zi = zipfile.ZipInfo(n, date_time=(2026, 1, 1, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, b)
    return wheel_name


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    files = []
    for arc, full in _package_files():
        with open(full, "rb") as f:
            files.append((arc, f.read()))
    return _write_wheel(wheel_directory, files)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    # PEP 660: a .pth file that puts the source directory on sys.path.
    pth = ("%s\n" % ROOT).encode()
    return _write_wheel(wheel_directory, [("__editable__.%s.pth" % _dist_name(_project()), pth)])


def build_sdist(sdist_directory, config_settings=None):
    p = _project()
    base = "%s-%s" % (_dist_name(p), p["version"])
    members = [("pyproject.toml", os.path.join(ROOT, "pyproject.toml")),
               ("README.md", os.path.join(ROOT, "README.md")),
               ("_build/rc_backend.py", os.path.abspath(__file__))] + _package_files()
    path = os.path.join(sdist_directory, base + ".tar.gz")
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as t:
        def add_bytes(name, data):
            ti = tarfile.TarInfo(base + "/" + name)
            ti.size = len(data)
            ti.mtime = int(time.time())
            ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))
        add_bytes("PKG-INFO", _metadata(p))
        for arc, full in members:
            if os.path.exists(full):
                with open(full, "rb") as f:
                    add_bytes(arc, f.read())
    return base + ".tar.gz"
