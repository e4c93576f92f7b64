"""The plugin SDK from the outside (issue 11, plugin ABI 3): install it with
`cmake --install` into a scratch prefix, build examples/plugin-systemd-credentials out of
tree against it through pkg-config alone, then run the real agent with that plugin and a
real redis-server and check the credential systemd would hand over is published."""
import os
import shutil
import subprocess

import pytest

import rc_harness as h

EXAMPLE = os.path.join(h.SOURCE_DIR, "examples", "plugin-systemd-credentials")


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, (cmd, r.stdout[-3000:], r.stderr[-3000:])
    return r


@pytest.fixture(scope="module")
def example_plugin(tmp_path_factory):
    """The example built against an SDK installed in a scratch prefix: its plugin dir."""
    if not shutil.which("cmake") or not shutil.which("pkg-config"):
        pytest.fail("building the example needs cmake and pkg-config")
    root = tmp_path_factory.mktemp("sdk")
    prefix, build = root / "prefix", root / "build"
    run(["cmake", "--install", h.BUILD_DIR, "--prefix", str(prefix)])
    pc_dirs = [str(p.parent) for p in prefix.rglob("redis-creds-plugin.pc")]
    assert pc_dirs, "cmake --install put no redis-creds-plugin.pc under %s" % prefix
    # The SDK is plugin.h alone (ABI 5): no header of the host's beside it.
    headers = sorted(p.name for p in prefix.rglob("redis-creds-plugin/*.h"))
    assert headers == ["plugin.h"], headers
    env = dict(os.environ, PKG_CONFIG_PATH=":".join(pc_dirs), PKG_CONFIG_LIBDIR="/nonexistent")
    # Nothing of the source tree may leak in: only the scratch prefix's headers.
    cflags = run(["pkg-config", "--cflags", "redis-creds-plugin"], env=env).stdout
    assert str(prefix) in os.path.realpath(cflags.split("-I", 1)[1].strip()), cflags
    run(["cmake", "-S", EXAMPLE, "-B", str(build), "-DCMAKE_C_FLAGS=-Werror"], env=env)
    run(["cmake", "--build", str(build)], env=env)
    so = build / "systemd.so"
    out = run(["nm", "-D", "--defined-only", "--format=posix", str(so)]).stdout
    assert [line.split()[0] for line in out.splitlines()] == ["redis_creds_plugin"], out
    plugins = root / "plugins"
    plugins.mkdir(mode=0o755)
    os.chmod(plugins, 0o755)
    shutil.copy(so, plugins / "systemd.so")
    os.chmod(plugins / "systemd.so", 0o644)
    return str(plugins)


def sd_config(sc, plugin_dir, **cred):
    c = sc.cred(source="creds", credential="redis-password", username="app", **cred)
    del c["path"]
    return sc.write_config([c], [{"name": "creds", "type": "systemd-credentials"}],
                           agent={"plugin_dir": plugin_dir})


def credentials_dir(sc, password):
    d = os.path.join(sc.tree.root, "credentials")
    os.makedirs(d, mode=0o700, exist_ok=True)
    with open(os.path.join(d, "redis-password"), "w") as f:
        f.write(password + "\n")
    return d


def test_example_plugin_built_against_the_installed_sdk_publishes_the_credential(sc, example_plugin):
    sc.redis.create_user("app", "sd-pw-1234567890")
    creds = credentials_dir(sc, "sd-pw-1234567890")
    sd_config(sc, example_plugin)
    r = sc.run_agent("--check-config")
    assert r.returncode == 0, r.stderr
    a = sc.start_agent(env={"CREDENTIALS_DIRECTORY": creds})
    d = sc.wait_published(password="sd-pw-1234567890", timeout=15)
    assert d["username"] == "app" and d["validated"] == "all", d
    assert d["version"].startswith("h-"), d
    assert "sd-pw-1234567890" not in a.log()   # read from the file, never logged


def test_example_plugin_without_credentials_directory_names_the_fix(sc, example_plugin):
    sc.redis.create_user("app", "sd-pw-1234567890")
    credentials_dir(sc, "sd-pw-1234567890")
    sd_config(sc, example_plugin)
    a = sc.start_agent()   # no CREDENTIALS_DIRECTORY: the secret is never taken from elsewhere
    a.wait_log("CREDENTIALS_DIRECTORY is not set to an absolute path", timeout=15)
    assert sc.read_bytes() is None


def test_example_plugin_refuses_a_symlinked_credential(sc, example_plugin):
    sc.redis.create_user("app", "sd-pw-1234567890")
    creds = credentials_dir(sc, "sd-pw-1234567890")
    os.rename(os.path.join(creds, "redis-password"), os.path.join(creds, "elsewhere"))
    os.symlink("elsewhere", os.path.join(creds, "redis-password"))
    sd_config(sc, example_plugin)
    a = sc.start_agent(env={"CREDENTIALS_DIRECTORY": creds})
    a.wait_log("redis-password: a symlink (refused)", timeout=15)
    assert sc.read_bytes() is None
