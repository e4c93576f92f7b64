"""Every config key and CLI flag is documented, and the man pages render cleanly.

The config keys come from the code's schema tables: every `.name = "..."` inside an array
of `struct config_key` in common/config.c and `struct rc_config_key` in plugins/ (macros such as
AZ_TLS_KEYS expanded), plus the hand-checked `cred_extra_keys` (`mode`). Each key must be:

- a tagged entry (`.TP`, then the key in bold) in man/redis-creds.conf.5, in a section
  whose heading names the table's context (`agent`, `redis`, `vault`, ...);
- in docs/configuration.md, as `key` or `key =`; a plugin's keys may instead be in a
  page that docs/configuration.md links to (sources.md, vault.md, azure.md);
- in config/agent.conf.example, as `key =` (commented out or not).

The CLI flags come from `--help` of the built binaries (REDIS_CREDS_BUILD_DIR, default
./build): each must be in the rendered man page of that program, and each command of
`redis-creds --help` must be a tagged entry of redis-creds(1). Every page must render
with no warning from groff (`-ww`) or man-db (`man --warnings`, as lintian runs it), and
lexgrog must find its NAME line (whatis). Run:

    REDIS_CREDS_BUILD_DIR=build /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/docs
"""
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("REDIS_CREDS_BUILD_DIR", ROOT / "build"))
MAN = ROOT / "man"
PAGES = {
    "redis-creds.1": MAN / "redis-creds.1",
    "redis-creds-exec.1": MAN / "redis-creds-exec.1",
    "redis-creds.conf.5": MAN / "redis-creds.conf.5",
    "redis-creds-agent.8": MAN / "redis-creds-agent.8",
}
CONF_PAGE = PAGES["redis-creds.conf.5"]
CONFIG_MD = ROOT / "docs" / "configuration.md"
EXAMPLE = ROOT / "config" / "agent.conf.example"

# The heading word of the man page section for each table of common/config.c. A plugin's
# tables belong to a section naming the plugin (its folder under plugins/).
HOST_TABLE_SECTION = {
    "agent_keys": "agent",
    "source_host_keys": "sources",
    "cred_host_keys": "credentials",
    "cred_extra_keys": "credentials",
    "redis_keys": "redis",
    "rotation_keys": "rotation",
}


# ---- the schema, read from the C sources -------------------------------------------------

def strip_c_comments(text):
    """C text without comments, string literals kept (a "//" inside a string stays)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        else:
            out.append(c)
            i += 1
    return "".join(out)


NAME_RE = re.compile(r'\.name\s*=\s*"([^"]*)"')
MACRO_RE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(\w+)[ \t]*((?:[^\n]*\\\n)*[^\n]*)", re.M)
TABLE_RE = re.compile(r"struct\s+(?:rc_)?config_key\s+(\w+)\s*\[\s*\]\s*=\s*\{", re.S)
EXTRA_RE = re.compile(r"char\s*\*\s*const\s+(\w+_extra_keys)\s*\[\s*\]\s*=\s*\{([^}]*)\}")


def braced_body(text, start):
    """The text between the `{` at text[start - 1] and its matching `}`."""
    depth, i = 1, start
    while depth:
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
        elif text[i] == '"':
            i = text.index('"', i + 1)
        i += 1
    return text[start:i - 1]


def schema_sources():
    files = [ROOT / "common" / "config.c"]
    files += sorted(p for p in (ROOT / "plugins").rglob("*") if p.suffix in (".c", ".h"))
    return files


def read_schema():
    """[(table, file, context word, [keys])] for every struct config_key (host) and rc_config_key (plugin) table."""
    texts = {f: strip_c_comments(f.read_text()) for f in schema_sources()}
    macros = {}
    for text in texts.values():
        for m in MACRO_RE.finditer(text):
            names = NAME_RE.findall(m.group(2))
            if names:
                macros[m.group(1)] = names
    tables = []
    for f, text in texts.items():
        rel = f.relative_to(ROOT)
        plugin = rel.parts[1] if rel.parts[0] == "plugins" and len(rel.parts) > 2 else None
        for m in TABLE_RE.finditer(text):
            body = braced_body(text, m.end())
            keys = NAME_RE.findall(body)
            for ident in re.findall(r"\b[A-Z][A-Z0-9_]+\b", body):
                keys += macros.get(ident, [])
            tables.append((m.group(1), rel, plugin or HOST_TABLE_SECTION.get(m.group(1)), keys))
        for m in EXTRA_RE.finditer(text):
            tables.append((m.group(1), rel, HOST_TABLE_SECTION.get(m.group(1)),
                           re.findall(r'"([^"]+)"', m.group(2))))
    return tables


SCHEMA = read_schema()
ALL_KEYS = sorted({(k, t[0], str(t[1]), t[2]) for t in SCHEMA for k in t[3]})


def test_schema_extraction_finds_the_tables():
    """The extraction itself: the tables this test knows exist are found, with keys."""
    names = {t[0]: t[3] for t in SCHEMA}
    for table, key in [("agent_keys", "runtime_dir"), ("redis_keys", "endpoints"),
                       ("rotation_keys", "strategy"), ("cred_host_keys", "poll_interval"),
                       ("source_host_keys", "type"), ("cred_extra_keys", "mode"),
                       ("file_source_keys", "directory"), ("vault_auth_keys", "method"),
                       ("az_identity_keys", "client_id")]:
        assert key in names.get(table, []), f"{table}: {key} not extracted; the parser is broken"
    # AZ_TLS_KEYS is a macro: its keys reach the tables that use it.
    assert "tls_insecure_skip_verify" in names["az_keyvault_source_keys"]
    for plugin in sorted(p.name for p in (ROOT / "plugins").iterdir() if p.is_dir()):
        assert any(t[2] == plugin and t[3] for t in SCHEMA), f"no config_key table with keys in plugins/{plugin}"


def test_every_table_has_a_man_section():
    unknown = [f"{t[1]}: {t[0]}" for t in SCHEMA if t[2] is None]
    assert not unknown, ("tables of common/config.c this test does not place in a man page "
                         "section; add them to HOST_TABLE_SECTION: " + ", ".join(unknown))


# ---- the man page's tagged entries, by section --------------------------------------------

def roff_plain(s):
    """Roff text without font escapes and with \\- as -."""
    s = re.sub(r"\\f(\[[^\]]*\]|\(..|.)", "", s)
    return s.replace("\\-", "-").replace("\\&", "").replace("\\(aq", "'").replace("\\e", "\\")


def man_tags(page):
    """{section heading (lower case): set of bold words on .TP tag lines}."""
    sections, heading, lines = {}, "", page.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith((".SH", ".SS")):
            heading = roff_plain(line[3:]).strip().strip('"').lower()
            sections.setdefault(heading, set())
        elif line.startswith(".TP") and i + 1 < len(lines):
            tag = lines[i + 1]
            words = re.findall(r"\\fB(.*?)\\f[RPI]", tag)
            if re.match(r"\.B[RI]?\s", tag):
                words.append(re.split(r"\s+", tag, maxsplit=2)[1].strip('"'))
            for w in words:
                sections.setdefault(heading, set()).update(
                    x for x in re.split(r"[\s,]+", roff_plain(w)) if x)
    return sections


def test_config_keys_in_man_page():
    tags = man_tags(CONF_PAGE)
    missing = []
    for key, table, src, word in ALL_KEYS:
        if word is None:
            continue
        if not any(word in h and key in ws for h, ws in tags.items()):
            missing.append(f"  {key} ({src}: {table}) has no .TP entry in a section whose heading "
                           f"contains \"{word}\"")
    assert not missing, f"keys missing from {CONF_PAGE.relative_to(ROOT)}:\n" + "\n".join(missing)


# ---- docs/configuration.md and the pages it links to --------------------------------------

def md_mentions(text, key):
    return re.search(rf"`{re.escape(key)}`|\b{re.escape(key)}\s*=", text) is not None


def linked_pages():
    text = CONFIG_MD.read_text()
    names = sorted(set(re.findall(r"\]\(([\w.-]+\.md)(?:#[^)]*)?\)", text)))
    return {n: (CONFIG_MD.parent / n).read_text() for n in names if (CONFIG_MD.parent / n).exists()}


def test_config_keys_in_configuration_md():
    main = CONFIG_MD.read_text()
    linked = linked_pages()
    missing = []
    for key, table, src, word in ALL_KEYS:
        if md_mentions(main, key):
            continue
        if not src.startswith("plugins/"):
            missing.append(f"  {key} ({src}: {table}): not in docs/configuration.md")
        elif not any(md_mentions(t, key) for t in linked.values()):
            missing.append(f"  {key} ({src}: {table}): neither in docs/configuration.md nor in a "
                           f"page it links to ({', '.join(linked)})")
    assert not missing, "keys missing from the docs:\n" + "\n".join(missing)


def test_config_keys_in_example():
    text = EXAMPLE.read_text()
    missing = [f"  {key} ({src}: {table}): no `{key} = ...` line, commented out or not"
               for key, table, src, word in ALL_KEYS
               if not re.search(rf"(?<![\w.]){re.escape(key)}\s*=", text)]
    assert not missing, f"keys missing from {EXAMPLE.relative_to(ROOT)}:\n" + "\n".join(missing)


def test_example_still_loads(tmp_path):
    """The commented-out examples keep the file loadable (--check-config, this build's plugins)."""
    text = EXAMPLE.read_text()
    text, n = re.subn(r"(?m)^(\s*)#\s*plugin_dir\s*=\s*\"[^\"]*\"",
                      lambda m: f'{m.group(1)}plugin_dir = "{BUILD / "plugins"}"', text)
    assert n == 1, "the example's commented-out plugin_dir line was not found"
    # What the example names on a host where the package is installed (the group, the
    # secrets directory) need not exist here: --check-config checks it on the machine.
    (tmp_path / "secrets").mkdir()
    text, n1 = re.subn(r'(?m)^(\s*group\s*=\s*)"redis-creds"', r'\1""', text)
    text, n2 = re.subn(r'"/etc/redis-creds/secrets"', f'"{tmp_path / "secrets"}"', text)
    assert n1 == 1 and n2 >= 1, "the example's group or secrets directory was not found"
    conf = tmp_path / "agent.conf"
    conf.write_text(text)
    r = subprocess.run([str(binary("redis-creds-agent")), "--check-config", "-c", str(conf)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"config/agent.conf.example does not load: {r.stderr}"


def test_source_types_in_man_page():
    """Every source type a plugin serves has its place in redis-creds.conf(5)."""
    types = set()
    for f in schema_sources():
        if f.relative_to(ROOT).parts[0] == "plugins":
            types.update(re.findall(r'\.type\s*=\s*"([^"]+)"', strip_c_comments(f.read_text())))
    assert types, "no source type found in plugins/"
    rendered = render(CONF_PAGE)
    missing = sorted(t for t in types if not re.search(rf'"{re.escape(t)}"|\b{re.escape(t)}\b', rendered))
    assert not missing, f"source types missing from {CONF_PAGE.name}: {missing}"


# ---- CLI flags -------------------------------------------------------------------------

def render(page):
    """The page as man shows it, on a wide line without hyphenation, plain ASCII."""
    r = subprocess.run(["groff", "-man", "-Tascii", "-P-cbou", "-rLL=250n", "-rHY=0", str(page)],
                       capture_output=True, text=True, check=True)
    return r.stdout


def binary(name):
    path = BUILD / "agent" / name
    if not path.exists():
        pytest.fail(f"{path} not found: build first, or set REDIS_CREDS_BUILD_DIR")
    return path


def help_text(*argv):
    r = subprocess.run([str(binary(argv[0]))] + list(argv[1:]) + ["--help"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"{' '.join(argv)} --help exited {r.returncode}: {r.stderr}"
    return r.stdout


FLAG_RE = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[A-Za-z])(?![\w-])")


def flags_missing(help_out, page):
    rendered = render(page)
    flags = sorted(set(FLAG_RE.findall(help_out)))
    assert flags, "no flag found in the --help text; the parser is broken"
    return [f for f in flags if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", rendered)]


@pytest.mark.parametrize("argv,page", [
    (("redis-creds",), "redis-creds.1"),
    (("redis-creds-agent",), "redis-creds-agent.8"),
])
def test_cli_flags_in_man_page(argv, page):
    missing = flags_missing(help_text(*argv), PAGES[page])
    assert not missing, f"flags of `{' '.join(argv)} --help` missing from man/{page}: {missing}"


def cli_commands():
    out = help_text("redis-creds")
    block = out.split("Commands:", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^  ([a-z][a-z-]*)\b", block, re.M)


def test_cli_commands_in_man_page():
    commands = cli_commands()
    assert "get" in commands and "status" in commands, f"commands not parsed: {commands}"
    tags = set().union(*man_tags(PAGES["redis-creds.1"]).values())
    missing = [c for c in commands if c not in tags]
    assert not missing, f"commands of `redis-creds --help` without a .TP entry in man/redis-creds.1: {missing}"


def test_exec_flags_in_man_page():
    if "exec" not in cli_commands():
        pytest.skip("this build's redis-creds has no exec command")
    missing = flags_missing(help_text("redis-creds", "exec"), PAGES["redis-creds-exec.1"])
    assert not missing, f"flags of `redis-creds exec --help` missing from man/redis-creds-exec.1: {missing}"


def test_agent_page_names_every_message_id_and_notification():
    """The journal's MESSAGE_IDs (the catalog) and the sd_notify messages (agent/notify.c)."""
    rendered = render(PAGES["redis-creds-agent.8"])
    ids = re.findall(r"(?m)^-- ([0-9a-f]{32})$", (ROOT / "deploy" / "redis-creds.catalog").read_text())
    assert len(ids) >= 9, f"catalog ids not parsed: {ids}"
    missing = [i for i in ids if i not in rendered]
    notes = set(re.findall(r'"([A-Z_]+)=', strip_c_comments((ROOT / "agent" / "notify.c").read_text())))
    assert "READY" in notes, f"notify.c messages not parsed: {notes}"
    missing += [f"{n}=" for n in sorted(notes) if f"{n}=" not in rendered]
    assert not missing, f"missing from man/redis-creds-agent.8: {missing}"


# ---- rendering -------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_renders_without_warnings(name):
    page = PAGES[name]
    r = subprocess.run(["groff", "-ww", "-z", "-man", "-Tutf8", str(page)], capture_output=True, text=True)
    problems = r.stderr or (f"exit status {r.returncode}" if r.returncode else "")
    assert not problems, f"groff -ww on man/{name}:\n{problems}"
    # as lintian runs it (manpage-has-errors-from-man, groff-message)
    env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80", MANROFFSEQ="")
    r = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(page)],
                       capture_output=True, text=True, env=env)
    problems = r.stderr or (f"exit status {r.returncode}" if r.returncode else "")
    assert not problems, f"man --warnings -l man/{name}:\n{problems}"
    r = subprocess.run(["lexgrog", str(page)], capture_output=True, text=True)
    assert r.returncode == 0 and "parse failed" not in r.stdout, f"lexgrog (whatis) on man/{name}: {r.stdout}"
    assert name.rsplit(".", 1)[0] in r.stdout, f"lexgrog names another page: {r.stdout}"


def test_pages_are_installed():
    """cmake --install puts each page under share/man/manN."""
    if not (BUILD / "CMakeCache.txt").exists():
        pytest.fail(f"{BUILD} is not a build directory: build first, or set REDIS_CREDS_BUILD_DIR")
    dest = tempfile.mkdtemp()
    try:
        subprocess.run(["cmake", "--install", str(BUILD)], env=dict(os.environ, DESTDIR=dest),
                       check=True, capture_output=True)
        installed = {p.name: p for p in Path(dest).rglob("*") if p.parent.name.startswith("man")}
        for name in PAGES:
            section = name.rsplit(".", 1)[1]
            assert name in installed, f"{name} not installed by cmake --install"
            assert installed[name].parent.name == f"man{section}", f"{name} installed in {installed[name].parent}"
            assert installed[name].parent.parent.name == "man"
    finally:
        shutil.rmtree(dest)
