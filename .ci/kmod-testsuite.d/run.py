#!/usr/bin/env python3
"""Runs kmod's own testsuite cases (depmod, modinfo, modprobe, ...) against several tool
sets, each case in a chroot of its rootfs, and prints a PASS/FAIL/SKIP table.

Input: the JSON lines printed by the test programs compiled against modkit's stand-in
testsuite.h (dump.c), one file per kmod version, and the prepared rootfs of that version.
Each case runs the command line the kmod test spawns, in a fresh copy of the test's
rootfs, with the tool reached as /tools/<name> (a wrapper running the tool with its own
dynamic loader and libraries from /.kts, and fakesys.so preloaded: fake uname(2) release
and fake init_module/finit_module/delete_module). Checks, as kmod's testsuite.c does but
stricter (whole outputs, not a prefix): exit status (expected_fail), stdout/stderr against
the expected file (or line-wise regex), generated files byte for byte, and /sys/module
against modules_loaded / modules_not_loaded.

usage: run.py --suite NAME=CASES.jsonl:ROOTFS ... --tool NAME=BUNDLE ... --work DIR
              [--gate SUITE:REFTOOL[:ALSO]] [--only REGEX]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys

TOOLS = ["depmod", "modinfo", "modprobe", "insmod", "rmmod", "lsmod", "kmod"]
PH = "@ROOTFS@/"


def wrapper(tool):
    return (
        "#!/.kts/sh\n"
        'exec /.kts/lib/ld.so --library-path /.kts/lib --preload /.kts/fakesys.so '
        '--argv0 "$0" /.kts/bin/%s "$@"\n' % tool
    )


def map_path(p, case_rootfs, rootfs, dst):
    """A path as the test names it (under @ROOTFS@) to the host path of this run."""
    rel = p[len(PH):] if p.startswith(PH) else p.lstrip("/")
    croot = case_rootfs[len(PH):].rstrip("/")
    if rel == croot or rel.startswith(croot + "/"):
        return os.path.join(dst, rel[len(croot):].lstrip("/"))
    return os.path.join(rootfs, rel)


def prepare(case, rootfs, bundle, dst):
    src = os.path.join(rootfs, case["rootfs"][len(PH):])
    shutil.copytree(src, dst, symlinks=True)
    subprocess.run(["cp", "-al", bundle, os.path.join(dst, ".kts")], check=True)
    os.makedirs(os.path.join(dst, "tools"), exist_ok=True)
    entry = os.readlink(os.path.join(bundle, "entry"))
    for t in TOOLS:
        w = os.path.join(dst, "tools", t)
        with open(w, "w") as f:
            f.write(wrapper(entry))
        os.chmod(w, 0o755)
    sh = os.path.join(dst, "bin", "sh")
    if not os.path.lexists(sh):
        os.makedirs(os.path.dirname(sh), exist_ok=True)
        os.link(os.path.join(bundle, "sh"), sh)
    osr = os.path.join(dst, "proc", "sys", "kernel", "osrelease")
    if not os.path.lexists(osr):
        os.makedirs(os.path.dirname(osr), exist_ok=True)
        with open(osr, "w") as f:
            f.write((case["uname_r"] or os.uname().release) + "\n")


def loaded(dst):
    d = os.path.join(dst, "sys", "module")
    if not os.path.isdir(d):
        return set()
    return {n.replace("-", "_") for n in os.listdir(d) if not n.startswith(".")}


def names(s):
    return {n.replace("-", "_") for n in s.split(",") if n} if s else set()


def cmp_out(what, got, path, regex):
    try:
        want = open(path, "rb").read()
    except OSError as e:
        return "%s: cannot read expected %s: %s" % (what, path, e)
    if not regex:
        if got != want and want.startswith(got) and not want[len(got):].strip():
            # kmod's fd_cmp_exact() compares the output with as many bytes of the expected
            # file, so trailing blank lines there go unnoticed (kmod 34's
            # correct-license.txt has one); accept exactly that, nothing more.
            return None
        if got != want:
            return "%s differs from %s:\n--- expected\n%s--- got\n%s" % (
                what, os.path.basename(path), want.decode(errors="replace"),
                got.decode(errors="replace"))
        return None
    gl = got.decode(errors="replace").split("\n")
    wl = want.decode(errors="replace").split("\n")
    if gl and gl[-1] == "":
        gl.pop()
    if wl and wl[-1] == "":
        wl.pop()
    if len(gl) != len(wl):
        return "%s: %d lines, pattern has %d:\n%s" % (what, len(gl), len(wl), "\n".join(gl))
    for g, w in zip(gl, wl):
        if not re.search(w, g):
            return "%s: line %r does not match %r" % (what, g, w)
    return None


def run_case(case, rootfs, bundle, dst, tool):
    """Returns (status, detail): status in PASS, FAIL, SKIP."""
    if case["skip"]:
        return "SKIP", "marked skip in kmod's test"
    if case["spawn"] is None:
        return "SKIP", "libkmod API test (spawns no tool)"
    prog = case["spawn"]["prog"]
    if not prog.startswith("/tools/"):
        return "SKIP", "spawns %s, not a tool" % prog
    if prog == "/tools/kmod" and tool == "modkit":
        return "SKIP", ("`kmod insert/remove` (kmod 30's experimental subcommands, gone in "
                        "kmod 34): modkit has no `kmod` multicall name")
    if os.path.exists(dst):
        shutil.rmtree(dst)
    prepare(case, rootfs, bundle, dst)
    env = {"PATH": "/tools:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    for k, v in (("TESTSUITE_UNAME_R", case["uname_r"]),
                 ("TESTSUITE_INIT_MODULE_RETCODES", case["init_module_retcodes"]),
                 ("TESTSUITE_DELETE_MODULE_RETCODES", case["delete_module_retcodes"])):
        if v is not None:
            env[k] = v
    for k, v in case["env"] or []:
        env[k] = v
    if case["path"]:
        env["PATH"] = case["path"] + ":" + env["PATH"]
    cwd = case["spawn"]["cwd"]

    def enter():
        os.chroot(dst)
        os.chdir(cwd)

    try:
        p = subprocess.run(case["spawn"]["args"], executable=prog, env=env, preexec_fn=enter,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "FAIL", "timed out"
    except OSError as e:
        return "FAIL", "cannot run %s: %s" % (prog, e)
    rc = p.returncode
    problems = []
    if case["out"]:
        e = cmp_out("stdout", p.stdout, map_path(case["out"], case["rootfs"], rootfs, dst),
                    case["regex"])
        if e:
            problems.append(e)
    if case["err"]:
        e = cmp_out("stderr", p.stderr, map_path(case["err"], case["rootfs"], rootfs, dst),
                    case["regex"])
        if e:
            problems.append(e)
    for want, got in case["files"] or []:
        a = map_path(want, case["rootfs"], rootfs, dst)
        b = map_path(got, case["rootfs"], rootfs, dst)
        try:
            if open(a, "rb").read() != open(b, "rb").read():
                r = subprocess.run(["diff", "-u", a, b], capture_output=True, text=True,
                                   errors="replace")
                problems.append("file %s differs from %s\n%s" % (
                    os.path.relpath(b, dst), os.path.basename(a), r.stdout[:2000]))
        except OSError as e:
            problems.append("file: %s" % e)
    if case["modules_loaded"] is not None and not case["expected_fail"]:
        want, got = names(case["modules_loaded"]), loaded(dst)
        if want != got:
            problems.append("loaded modules %s, expected %s" % (sorted(got), sorted(want)))
    if case["modules_not_loaded"]:
        bad = names(case["modules_not_loaded"]) & loaded(dst)
        if bad:
            problems.append("loaded but must not be: %s" % sorted(bad))
    out = "exit %d%s" % (rc, "" if rc >= 0 else " (signal)")
    tail = ("\nstderr:\n" + p.stderr.decode(errors="replace")) if p.stderr and not case["err"] else ""
    if rc < 0:
        return ("PASS", out) if case["expected_fail"] else ("FAIL", out + tail)
    if case["expected_fail"]:
        if rc == 0:
            return "FAIL", "exit 0 but kmod's test expects a failure" + tail
        return ("PASS", "expected failure, " + out) if not problems else (
            "FAIL", out + ": " + "\n".join(problems))
    if rc != 0:
        return "FAIL", "\n".join([out] + problems) + tail
    if problems:
        return "FAIL", "\n".join(problems) + tail
    return "PASS", out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", action="append", required=True)
    ap.add_argument("--tool", action="append", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--gate", action="append", default=[],
                    help="SUITE:REF[:ALSO]: modkit must pass where REF passes (and, when "
                         "given, ALSO passes too, unless the case is a weakdep/outdir one)")
    ap.add_argument("--only")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    tools = dict(t.split("=", 1) for t in a.tool)
    results = {}  # (suite, file, name) -> {tool: (status, detail)}
    order = []
    for s in a.suite:
        sname, rest = s.split("=", 1)
        cases_file, rootfs = rest.rsplit(":", 1)
        for line in open(cases_file):
            case = json.loads(line)
            name = case["name"]
            if a.only and not re.search(a.only, name):
                continue
            key = (sname, os.path.basename(case["file"]), name)
            order.append(key)
            results[key] = {}
            for tname, bundle in tools.items():
                dst = os.path.join(a.work, sname, tname, name)
                results[key][tname] = run_case(case, rootfs, bundle, dst, tname)
    tnames = list(tools)
    w = max(len("%s %s" % (k[0], k[2])) for k in order) + 2
    print("%-*s %s" % (w, "case", " ".join("%-10s" % t for t in tnames)))
    counts = {(s, t): {"PASS": 0, "FAIL": 0, "SKIP": 0} for s in {k[0] for k in order}
              for t in tnames}
    for k in order:
        row = results[k]
        print("%-*s %s" % (w, "%s %s" % (k[0], k[2]),
                           " ".join("%-10s" % row[t][0] for t in tnames)))
        for t in tnames:
            counts[(k[0], t)][row[t][0]] += 1
    print()
    for k in order:
        for t in tnames:
            st, d = results[k][t]
            if st == "SKIP" and all(results[k][u][0] == "SKIP" for u in tnames) and t != tnames[0]:
                continue
            if st != "PASS" or a.verbose:
                print("%s %s [%s] %s: %s" % (k[0], k[2], t, st, d))
    print()
    print("summary:")
    for (s, t), c in sorted(counts.items()):
        print("  suite %-8s %-8s PASS %2d  FAIL %2d  SKIP %2d" % (s, t, c["PASS"], c["FAIL"], c["SKIP"]))
    bad = []
    for g in a.gate:
        parts = g.split(":")
        suite, ref = parts[0], parts[1]
        also = parts[2] if len(parts) > 2 else None
        for k in order:
            if k[0] != suite:
                continue
            r = results[k]
            if r[ref][0] != "PASS" or r["modkit"][0] == "PASS":
                continue
            if also and r[also][0] != "PASS" and not re.search("weakdep|outdir", k[1] + " " + k[2]):
                print("  note: %s %s: modkit %s, %s passes but %s does not (newer behaviour)"
                      % (k[0], k[2], r["modkit"][0], ref, also))
                continue
            bad.append("%s %s: modkit %s where %s passes" % (k[0], k[2], r["modkit"][0], ref))
    for b in bad:
        print("GATE FAIL: " + b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
