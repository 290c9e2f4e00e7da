"""Load benchmark for the tagging service: starts `policytag serve` on 127.0.0.1, drives it
with concurrent clients for a bounded time and prints requests/s, paragraphs/s and p50/p95
latency.

    python benchmarks/serve_load.py --model runs/m3e-ihms [--clients 16] [--seconds 20]
            [--paragraphs-per-request 1] [--paragraphs ../shared/data/paragraphs.jsonl]"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--backend", default="torch", help="torch / onnx (needs `policytag export-onnx`)")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--paragraphs-per-request", type=int, default=1)
    ap.add_argument("--paragraphs", default=str(HERE.parent.parent / "shared/data/paragraphs.jsonl"))
    args = ap.parse_args()

    from policytag.files import read_jsonl

    texts = [r["text"] for r in read_jsonl(args.paragraphs)]
    port = free_port()
    exe = shutil.which("policytag") or str(Path(sys.executable).with_name("policytag"))
    env = {k: v for k, v in os.environ.items() if k != "POLICYTAG_API_TOKEN"}
    server = subprocess.Popen([exe, "serve", "--model", args.model, "--port", str(port), "--backend", args.backend], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        latencies: list[float] = []
        errors = [0]
        lock = threading.Lock()
        stop = time.perf_counter() + args.seconds

        def client(seed: int) -> None:
            i = seed
            with httpx.Client(base_url=url, timeout=60) as http:
                while time.perf_counter() < stop:
                    batch = [texts[(i + k) % len(texts)] for k in range(args.paragraphs_per_request)]
                    i += args.clients * args.paragraphs_per_request
                    start = time.perf_counter()
                    r = http.post("/v1/tag", json={"paragraphs": batch})
                    with lock:
                        if r.status_code == 200:
                            latencies.append(time.perf_counter() - start)
                        else:
                            errors[0] += 1

        httpx.post(f"{url}/v1/tag", json={"paragraphs": texts[:8]})  # warm-up
        begin = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - begin
    finally:
        server.terminate()
        server.wait(timeout=20)
    n = len(latencies)
    q = statistics.quantiles(latencies, n=100) if n >= 2 else [float("nan")] * 99
    print(f"{args.clients} clients × {args.seconds:.0f} s, {args.paragraphs_per_request} paragraph(s) per request, backend {args.backend}")
    print(f"requests: {n} ok, {errors[0]} errors")
    print(f"throughput: {n / elapsed:.1f} requests/s, {n * args.paragraphs_per_request / elapsed:.1f} paragraphs/s")
    print(f"latency: p50 {1000 * q[49]:.0f} ms, p95 {1000 * q[94]:.0f} ms")


if __name__ == "__main__":
    main()
