#!/usr/bin/env python3
"""A bounded load test of `deceive serve` on loopback, standard library only.

Starts the server (or uses --url), then CLIENTS threads mix predict and fool requests for
SECONDS: each client keeps one connection open and reconnects only when the server says
`Connection: close`. Reports requests/s, p50/p99 latency per route, status counts,
connection errors and the server's peak RSS (VmHWM).

    python3 scripts/loadtest.py .build/release/deceive --clients 40 --seconds 30
"""
import argparse
import http.client
import json
import random
import re
import subprocess
import sys
import threading
import time


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def client(host, port, stop, seed, results, lock, fool_share):
    rng = random.Random(seed)
    connection = None
    while not stop.is_set():
        if connection is None:
            connection = http.client.HTTPConnection(host, port, timeout=60)
        if rng.random() < fool_share:
            route = "/api/fool"
            body = {"target": rng.randrange(10), "seed": rng.randrange(1000)}
        else:
            route = "/api/predict"
            body = {"image": [round(rng.random(), 3) for _ in range(784)]}
        began = time.perf_counter()
        try:
            connection.request("POST", route, body=json.dumps(body), headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            status = response.status
            if status == 200 and route == "/api/fool" and not json.loads(payload).get("reached"):
                status = "200-not-reached"
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                connection = None
        except Exception as error:  # a dropped connection: counted, then reconnect
            status = f"error: {type(error).__name__}"
            connection.close()
            connection = None
        elapsed = time.perf_counter() - began
        with lock:
            results.append((route, status, elapsed))
    if connection is not None:
        connection.close()


def peak_rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return float("nan")
    return float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binary", nargs="?", default=".build/release/deceive")
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--fool-share", type=float, default=0.3, help="fraction of requests that are fool requests")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()

    server = subprocess.Popen([args.binary, "serve", "--port", "0"], stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    match = re.match(r"listening on http://([^:]+):(\d+)", line)
    if not match:
        server.kill()
        sys.exit(f"loadtest: the server did not start: {line!r}")
    host, port = match.group(1), int(match.group(2))

    # One client alone first: the latency a single user sees.
    single = []
    lock = threading.Lock()
    stop = threading.Event()
    thread = threading.Thread(target=client, args=(host, port, stop, 0, single, lock, 0.0))
    thread.start()
    time.sleep(3)
    stop.set()
    thread.join()
    fool_single = []
    connection = http.client.HTTPConnection(host, port, timeout=60)
    for target in range(10):
        began = time.perf_counter()
        connection.request("POST", "/api/fool", body=json.dumps({"target": target}), headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        reached = json.loads(response.read()).get("reached")
        fool_single.append((time.perf_counter() - began, reached))
        connection.close()
        connection = http.client.HTTPConnection(host, port, timeout=60)

    results = []
    stop = threading.Event()
    threads = [threading.Thread(target=client, args=(host, port, stop, seed + 1, results, lock, args.fool_share)) for seed in range(args.clients)]
    began = time.time()
    for thread in threads:
        thread.start()
    time.sleep(args.seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.time() - began
    rss = peak_rss_mb(server.pid)
    server.send_signal(2)
    code = server.wait(timeout=30)

    report = {
        "single_client": {
            "predict_requests": len(single),
            "predict_p50_ms": 1000 * percentile([e for _, _, e in single], 50),
            "predict_p99_ms": 1000 * percentile([e for _, _, e in single], 99),
            "fool_ms_per_digit": [round(1000 * e, 1) for e, _ in fool_single],
            "fool_reached": sum(1 for _, r in fool_single if r),
        },
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "requests": len(results),
        "requests_per_second": round(len(results) / elapsed, 1),
        "routes": {},
        "statuses": {},
        "server_peak_rss_mb": round(rss, 1),
        "server_exit_status": code,
    }
    for route in ("/api/predict", "/api/fool"):
        latencies = [e for r, s, e in results if r == route and s in (200, "200-not-reached")]
        report["routes"][route] = {
            "requests": sum(1 for r, _, _ in results if r == route),
            "ok": len(latencies),
            "p50_ms": round(1000 * percentile(latencies, 50), 1),
            "p99_ms": round(1000 * percentile(latencies, 99), 1),
        }
    for _, status, _ in results:
        report["statuses"][str(status)] = report["statuses"].get(str(status), 0) + 1
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as out:
            out.write(text + "\n")
    bad = {s: n for s, n in report["statuses"].items() if s.startswith("error") or (s.startswith("5") and s != "503")}
    if bad or code != 0:
        sys.exit(f"loadtest: failures: {bad}, server exit {code}")


if __name__ == "__main__":
    main()
