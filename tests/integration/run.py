"""run.py -- discovers tests/integration/test_*.py and runs every test_* function.

Each module may define setup() returning a fixture (e.g. a Stack) passed to its
tests, and teardown(fixture). Prints one line per test and a final
"integration: N passed, N failed" line; writes the counts to $OBS_COUNTS_FILE.
Usage: python3 tests/integration/run.py [module-or-test-substring ...]
"""
import importlib.util
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main(argv):
    only = argv[1:]
    passed = failed = 0
    mods = sorted(f for f in os.listdir(HERE) if f.startswith("test_") and f.endswith(".py"))
    for fname in mods:
        spec = importlib.util.spec_from_file_location(fname[:-3], os.path.join(HERE, fname))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        # definition order (module dicts keep insertion order)
        tests = [(n, f) for n, f in vars(mod).items() if n.startswith("test_") and callable(f)]
        if only:
            tests = [(n, f) for n, f in tests if any(o in fname or o in n for o in only)]
        if not tests:
            continue
        print("== %s" % fname, flush=True)
        fixture = None
        try:
            if hasattr(mod, "setup"):
                fixture = mod.setup()
        except Exception:
            traceback.print_exc()
            for n, _ in tests:
                print("FAIL %s.%s (setup failed)" % (fname[:-3], n), flush=True)
                failed += 1
            continue
        for n, f in tests:
            t0 = time.time()
            try:
                f(fixture) if fixture is not None else f()
                passed += 1
                print("ok   %s.%s (%.1fs)" % (fname[:-3], n, time.time() - t0), flush=True)
            except Exception:
                failed += 1
                print("FAIL %s.%s (%.1fs)" % (fname[:-3], n, time.time() - t0), flush=True)
                traceback.print_exc()
                if fixture is not None and hasattr(fixture, "procs"):
                    for name in fixture.procs:
                        print("--- %s log tail ---\n%s" % (name, fixture.log(name)[-1500:]))
        if hasattr(mod, "teardown"):
            try:
                mod.teardown(fixture)
            except Exception:
                traceback.print_exc()
    print("integration: %d passed, %d failed" % (passed, failed), flush=True)
    cf = os.environ.get("OBS_COUNTS_FILE")
    if cf:
        with open(cf, "w") as f:
            f.write("%d %d\n" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
