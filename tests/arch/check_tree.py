#!/usr/bin/python3
"""Reads the tree (and a build of it) and checks the architecture's rules.

    check_tree.py SOURCE_DIR BUILD_DIR

The rules are the ones docs/development.md lists under "Architecture checks":
  acyclic      the call graph between the files of agent/ has no cycle (from the object
               files' defined and undefined symbols, so a call through a header counts)
  fn-length    no function in agent/, common/ or plugins/ is longer than 80 lines
  plugin-syms  each plugin .so exports exactly one symbol, redis_creds_plugin
  design-refs  docs/design.md exists, no "DESIGN §" reference is left in the tree, and
               nothing points at a document outside the repository
  module-tests each agent/ and common/ module X.c has tests/unit/test_X.c
  sdk-header   plugins/plugin.h, the whole plugin SDK, includes only system headers
               (#include <...>), so no header of the host's becomes part of the ABI
  one-home     each shared helper has one home, and no copy of it is written again:
               clocks (common/rctime.c), RFC 3339 (rctime.c), write_all (common/fdio.c),
               "no expiry" (RC_NO_EXPIRY), out of memory and the transport error class
               (plugins/plugin.h's rc_error_oom, rc_transport_class)

Findings not fixed yet are listed in KNOWN with the issue that removes them. A finding
that is not listed fails the run, and so does a listed one that is gone, so the list only
shrinks (take it out in the same change). Prints one line per rule, then its findings.
"""
import os
import re
import subprocess
import sys

MAX_FN_LINES = 80
# What is allowed to fail today, by rule: each entry names one finding (its key) and the
# issue that removes it. A finding not listed fails the run; a listed one that is gone
# fails it too ("remove it from the list"), so the list only shrinks.
KNOWN = {
    "acyclic": {},
    "fn-length": {},
    "module-tests": {},
    "sdk-header": {},
    "one-home": {},
}


def c_files(src, dirs):
    for d in dirs:
        for root, _, names in os.walk(os.path.join(src, d)):
            for n in sorted(names):
                if n.endswith(".c"):
                    yield os.path.join(root, n)


def strip_code(text):
    """The text with comments, strings and character literals blanked (lines kept)."""
    text = re.sub(r"/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group(0)), text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(\\.|[^"\\\n])*"', '""', text)
    return re.sub(r"'(\\.|[^'\\\n])*'", "''", text)


def long_functions(path):
    """(name, first line, length) of each function over MAX_FN_LINES lines: a block opened
    at depth 0 whose head (the text since the last ';' or '}' at depth 0) has a '(' and no
    '=' (so initialisers and struct definitions are not counted)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = strip_code(f.read())
    out = []
    depth, head, head_line, start, name = 0, "", 1, None, None
    line = 1
    for ch in text:
        if ch == "\n":
            line += 1
        if depth == 0:
            if ch == "{":
                if "(" in head and "=" not in head and not re.match(r"\s*#", head.strip()[:1] or " "):
                    m = re.findall(r"(\w+)\s*\(", head)
                    start, name = head_line, (m[0] if m else "?")
                depth = 1
                continue
            if ch in ";}":
                head = ""
                continue
            if not head.strip():
                head_line = line
            head += ch
            if ch == "\n" and head.strip().startswith("#"):
                head = ""
        else:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    if start is not None and line - start + 1 > MAX_FN_LINES:
                        out.append((name, start, line - start + 1))
                    start, head = None, ""
    return out


def check_fn_length(src, _build):
    bad = []
    for p in c_files(src, ["agent", "common", "plugins"]):
        for name, line, n in long_functions(p):
            rel = os.path.relpath(p, src)
            bad.append((f"{rel}:{name}", f"{rel}:{line}: {name}() is {n} lines"))
    return bad


def symbols(obj):
    out = subprocess.run(["nm", "--defined-only", obj], capture_output=True, text=True).stdout
    defined = {l.split()[-1] for l in out.splitlines() if len(l.split()) == 3 and l.split()[1] in "TDRB"}
    out = subprocess.run(["nm", "--undefined-only", obj], capture_output=True, text=True).stdout
    undefined = {l.split()[-1] for l in out.splitlines() if l.strip()}
    return defined, undefined


def agent_objects(build):
    """file name -> object path for the agent's own sources (the agent executable's)."""
    objs = {}
    for root, _, names in os.walk(os.path.join(build, "agent")):
        for n in names:
            if n.endswith(".c.o"):
                objs.setdefault(n[:-2], os.path.join(root, n))
    return objs


def find_cycle(graph):
    state = {}
    stack = []

    def visit(u):
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if v not in state:
                c = visit(v)
                if c:
                    return c
        stack.pop()
        state[u] = 2
        return None

    for u in sorted(graph):
        if u not in state:
            c = visit(u)
            if c:
                return c
    return None


def check_acyclic(_src, build):
    objs = agent_objects(build)
    if not objs:
        return [("no-build", f"no agent object files under {build}/agent: build first")]
    syms = {f: symbols(o) for f, o in objs.items()}
    owner = {}
    for f, (defined, _) in syms.items():
        for s in defined:
            owner[s] = f
    graph = {f: {owner[s] for s in und if s in owner and owner[s] != f} for f, (_, und) in syms.items()}
    bad = []
    while True:
        c = find_cycle(graph)
        if not c:
            break
        bad.append((" -> ".join(c), "cycle: " + " -> ".join(c)))
        graph[c[0]].discard(c[1])   # report each cycle once, then look for others
    return bad


def check_plugin_syms(_src, build):
    d = os.path.join(build, "plugins")
    sos = sorted(n for n in os.listdir(d) if n.endswith(".so")) if os.path.isdir(d) else []
    if not sos:
        return [("no-build", f"no plugins under {d}: build first")]
    bad = []
    for n in sos:
        out = subprocess.run(["nm", "-D", "--defined-only", os.path.join(d, n)],
                             capture_output=True, text=True).stdout.split("\n")
        # AddressSanitizer adds an ODR indicator next to each exported global
        # (__odr_asan.<name>): instrumentation, not part of the plugin's interface.
        names = sorted(l.split()[-1] for l in out if l.strip() and "__odr_asan" not in l)
        if names != ["redis_creds_plugin"]:
            bad.append((n, f"plugins/{n} exports {len(names)} symbols: {' '.join(names[:8])}"))
    return bad


def check_design_refs(src, _build):
    bad = []
    if not os.path.isfile(os.path.join(src, "docs", "design.md")):
        bad.append(("missing", "docs/design.md is missing"))
    out = subprocess.run(["git", "-C", src, "grep", "-n", "DESIGN §", "--", ".",
                          ":!tests/arch/check_tree.py"], capture_output=True, text=True).stdout
    refs = [l for l in out.splitlines() if l.strip()]
    if refs:
        bad.append(("refs", f"{len(refs)} 'DESIGN §' references left, first: {refs[0]}"))
    # Nothing may point at a document outside the repository (the workplace's shared/).
    out = subprocess.run(["git", "-C", src, "grep", "-nE", r"\.\./shared/|shared/reference/|STYLE\.md",
                          "--", ".", ":!tests/arch/check_tree.py"], capture_output=True, text=True).stdout
    outside = [l for l in out.splitlines() if l.strip()]
    if outside:
        bad.append(("outside", f"{len(outside)} references to documents outside the repository, first: {outside[0]}"))
    return bad


def check_module_tests(src, _build):
    bad = []
    for d in ["agent", "common"]:
        for p in c_files(src, [d]):
            mod = os.path.basename(p)[:-2]
            if mod in ("main", "cli"):   # entry points: tested through the binary
                continue
            if not os.path.isfile(os.path.join(src, "tests", "unit", f"test_{mod}.c")):
                bad.append((f"{d}/{mod}.c", f"{d}/{mod}.c has no tests/unit/test_{mod}.c"))
    return bad


def check_sdk_header(src, _build):
    """plugins/plugin.h is installed alone: a quoted #include would need a project header."""
    with open(os.path.join(src, "plugins", "plugin.h"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    bad = []
    for i, line in enumerate(lines, 1):
        m = re.match(r'\s*#\s*include\s*(\S.*)', line)
        if m and not m.group(1).startswith("<"):
            bad.append((f"plugin.h:{i}", f"plugins/plugin.h:{i}: {line.strip()} (the SDK installs plugin.h "
                                          "alone: include system headers only)"))
    return bad


# kind -> (where the helper lives, pattern of a copy, match on the code without comments
# and strings?). A copy is any match outside the home.
ONE_HOME = {
    "clock": ("common/rctime.c", r"\bclock_gettime\s*\(", True),
    "rfc3339": ("common/rctime.c", r"\b(timegm|strptime|gmtime_r)\s*\(", True),
    "write_all": ("common/fdio.c", r"\bwrite_all\s*\(", True),
    "no-expiry": ("common/rctime.h", r"\bexpires_at\b[^;,]*\bINT64_MIN\b", True),
    "oom": ("plugins/plugin.h", r'rc_error_set\s*\(\s*\w+\s*,\s*RC_ERR_TRANSIENT\s*,\s*"out of memory"\s*\)', False),
    "transport-class": ("plugins/plugin.h", r"EMSGSIZE[^;]*RC_ERR_INVALID", True),
}
# Not copies: backoff.c mixes both clocks' raw values into a jitter seed (entropy, not time).
ONE_HOME_ALLOWED = {"common/backoff.c:clock"}


def check_one_home(src, _build):
    bad = []
    for d in ["agent", "common", "plugins"]:
        for root, _, names in os.walk(os.path.join(src, d)):
            for n in sorted(names):
                if not n.endswith((".c", ".h")):
                    continue
                p = os.path.join(root, n)
                rel = os.path.relpath(p, src)
                with open(p, encoding="utf-8", errors="replace") as f:
                    raw = f.read()
                code = strip_code(raw)
                for kind, (home, pat, on_code) in ONE_HOME.items():
                    key = f"{rel}:{kind}"
                    if rel == home or key in ONE_HOME_ALLOWED:
                        continue
                    m = re.search(pat, code if on_code else raw)
                    if m:
                        line = (code if on_code else raw)[:m.start()].count("\n") + 1
                        bad.append((key, f"{rel}:{line}: a copy of the {kind} helper (its home: {home})"))
    return bad


RULES = [
    ("acyclic", check_acyclic),
    ("fn-length", check_fn_length),
    ("plugin-syms", check_plugin_syms),
    ("design-refs", check_design_refs),
    ("module-tests", check_module_tests),
    ("sdk-header", check_sdk_header),
    ("one-home", check_one_home),
]


def main(argv):
    if len(argv) != 3:
        print("usage: check_tree.py SOURCE_DIR BUILD_DIR", file=sys.stderr)
        return 2
    src, build = argv[1], argv[2]
    failed = False
    for name, fn in RULES:
        found = dict(fn(src, build))
        known = KNOWN.get(name, {})
        new = [t for k, t in found.items() if k not in known]
        gone = [k for k in known if k not in found]
        allowed = len(found) - len(new)
        words = "ok" if not found else f"{allowed} known" + (f", {len(new)} NEW" if new else "")
        print(f"{name}: {words}")
        for t in new:
            print(f"  FAILED {t}")
        for k in gone:
            print(f"  FAILED {k!r} is fixed: remove it from KNOWN[{name!r}] in tests/arch/check_tree.py")
        for k, t in found.items():
            if k in known:
                print(f"  known: {t} ({known[k]})")
        failed = failed or bool(new) or bool(gone)
    print("check_tree: " + ("FAILED" if failed else "ok"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
