"""Two (or more) eigenpub builds against each other, interleaved on one registry: wall
time and CPU of a no-op plan and of an apply of N new artifacts, for a change whose
effect is smaller than the spread between two `scripts/bench` runs.

    python3 scripts/bench_ab.py [--rounds 6] [--specs 500] [--latency-ms 0] BINARY BINARY...

starts a docker-registry on loopback (storage on /dev/shm), publishes N specs once with
the first binary, then each round runs every binary's no-op plan of them and every
binary's apply of N new artifacts (a fresh repository prefix each), in turn, the order
reversed every other round so that neither build gets the quieter moments. With
--latency-ms every request goes through scripts/bench_late.py, answered that late.
Prints each round, then per binary the median and min-max of wall time and CPU (user +
system, from wait4: the eigenpub process alone).

Why: on this shared 2-core machine the rounds of one `scripts/bench` row spread 0.7-2x
with the load, so two builds measured in two bench runs minutes apart differ by the
load more than by the change. Here the builds alternate run by run against the same
registry, and CPU, which the load hardly moves, is printed next to the wall time. It
reuses scripts/bench's generator, registry and process timing.
"""

import argparse
import importlib.machinery
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_bench():
    """scripts/bench as a module (it has no .py suffix)."""
    loader = importlib.machinery.SourceFileLoader("bench", str(ROOT / "scripts" / "bench"))
    spec = importlib.util.spec_from_loader("bench", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binaries", nargs="+", type=Path, help="eigenpub builds to compare")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--specs", type=int, default=500, help="artifacts per plan and apply")
    ap.add_argument("--latency-ms", type=float, default=0.0,
                    help="answer every request this late (scripts/bench_late.py)")
    args = ap.parse_args()
    bench = load_bench()
    bins = [str(b.resolve()) for b in args.binaries]
    for b in bins:
        if not os.access(b, os.X_OK):
            sys.exit(f"bench_ab: {b} is not an executable")
    n = max(1, args.specs)
    m = max(1, n // 10)
    tmp = Path(tempfile.mkdtemp(prefix="eigenpub-ab-"))
    shm = Path("/dev/shm")
    registry = bench.Registry(Path(tempfile.mkdtemp(prefix="eigenpub-ab-registry-",
                                                    dir=shm if shm.is_dir() else tmp)))
    env = bench.bench_env(tmp)
    samples = {b: {"plan": [], "plan CPU": [], "apply": [], "apply CPU": []} for b in bins}
    late = None
    try:
        registry.start()
        host = registry.host
        if args.latency_ms > 0:
            late = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "bench_late.py"),
                                     host, str(args.latency_ms)], stdout=subprocess.PIPE,
                                    text=True, start_new_session=True)
            port = late.stdout.readline().strip()
            if not port.isdigit():
                sys.exit(f"bench_ab: scripts/bench_late.py did not start (exit {late.poll()})")
            host = f"127.0.0.1:{port}"

        def run(binary, proj, argv, what):
            r = bench.Run([binary, "--color", "never", "-c", str(proj / "eigenruntime.toml")]
                          + argv, proj, env)
            registry.requests()  # keeps the access log read
            if r.rc != 0:
                sys.exit(f"bench_ab: {what} with {binary} failed (exit {r.rc}):\n"
                         + r.stderr[-2000:])
            return r

        seed = tmp / "seed"
        bench.write_project(seed, n, m, f"{host}/seed", None)
        run(bins[0], seed, ["apply"], "the first apply")
        applies = 0
        for i in range(max(1, args.rounds)):
            order = bins if i % 2 == 0 else bins[::-1]
            for b in order:
                r = run(b, seed, ["plan", "--format", "json"], "a no-op plan")
                samples[b]["plan"].append(r.wall)
                samples[b]["plan CPU"].append(r.cpu)
            for b in order:
                applies += 1
                proj = tmp / f"apply-{applies}"
                bench.write_project(proj, n, m, f"{host}/ab-{applies}", None)
                r = run(b, proj, ["apply"], "an apply")
                samples[b]["apply"].append(r.wall)
                samples[b]["apply CPU"].append(r.cpu)
            print(f"round {i + 1}: " + "; ".join(
                f"{Path(b).name} plan {samples[b]['plan'][-1]:.2f} s "
                f"(CPU {samples[b]['plan CPU'][-1]:.2f}), apply {samples[b]['apply'][-1]:.2f} s "
                f"(CPU {samples[b]['apply CPU'][-1]:.2f})" for b in bins), flush=True)
    finally:
        if late is not None:
            late.terminate()
            late.wait()
        registry.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(registry.dir, ignore_errors=True)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    latency = f", {args.latency_ms:g} ms per request" if args.latency_ms > 0 else ", loopback"
    print(f"\n{n} artifacts{latency}, {args.rounds} rounds, load at the end {load}; "
          "medians (min-max), seconds:")
    for b in bins:
        print(f"  {b}: " + ", ".join(
            f"{k} {statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})"
            for k, v in samples[b].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
