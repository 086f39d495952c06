"""Serving load: this server vs the framework's ceiling and a naive server, in one run.

    .venv/bin/python benchmarks/serving_load.py [--home artifacts] [--seconds 10] [--warmup 3]

Every server runs pinned to core 0 and the load generator (wrk, Debian's package) to core 1, on
127.0.0.1; each cell is a warm-up then a timed run, bounded in time. Cells:

- ceiling: an empty FastAPI endpoint (uvicorn, uvloop, httptools, orjson) answering the same body;
- naive: a FastAPI endpoint that runs the fraud version with Keras ``model.predict`` per request
  (a Keras model over the SavedModel's signature), as many first servers do;
- this server (``solutions serve``) for each app's main request: fraud one raw transaction (a random
  card of the demo's and a fresh transaction id per request, so the card history stays realistic),
  fraud 256 transactions per request, vision one image as b64, ``/recommend`` k=100 (the demo's catalog,
  and a 10^6-item one: ``--catalog-items``, trained once into ``--catalog-home``), ``/forecast``; the
  server logs every answered request (the default); the two fraud cells run again with the log off.

Models come from ``--home`` (``make demo`` writes them to ``artifacts``); apps without a published
version are skipped with a note. Prints one Markdown table (req/s, predictions/s, p50/p99 ms, errors)
and each cell's ratio to the ceiling's req/s at the same concurrency.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

CEILING_APP = '''
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
app = FastAPI()
@app.post("/v1/models/{target}")
async def predict(target: str, request: Request) -> Response:
    await request.body()
    return Response(orjson.dumps({"predictions": [{"fraud_probability": 0.5, "decision": 0}]}), media_type="application/json")
@app.get("/healthz")
async def health() -> Response:
    return Response(b"{}", media_type="application/json")
'''

NAIVE_APP = '''
import importlib, json, os
import numpy as np, keras, tensorflow as tf
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
path = os.environ["MODEL_PATH"]
for module in json.loads(open(path + "/assets.extra/solution_metadata.json").read()).get("custom_ops", []):
    importlib.import_module(module)  # the trees' ops (ydf) must be registered before the load
loaded = tf.saved_model.load(path)  # kept: the signature's variables live as long as this object
signature = loaded.signatures["serving_default"]
specs = signature.structured_input_signature[1]
class Served(keras.Model):
    def call(self, inputs):
        # Keras hands floats over as float32: cast back to the signature's dtypes.
        return signature(**{n: v if specs[n].dtype == tf.string else tf.cast(v, specs[n].dtype) for n, v in inputs.items()})
model = Served()
history = json.loads(os.environ["HISTORY_DEFAULTS"])
app = FastAPI()
@app.post("/v1/models/{target}")
async def predict(target: str, request: Request):
    instances = [{**history, **i} for i in (await request.json())["instances"]]
    columns = {}
    for name, spec in specs.items():
        values = [i.get(name) for i in instances]
        if name == "timestamp" and spec.dtype != tf.string:
            values = [np.datetime64(v, "s").astype("int64") for v in values]
        columns[name] = np.asarray(values, dtype=object if spec.dtype == tf.string else spec.dtype.as_numpy_dtype)
    outputs = model.predict(columns, verbose=0)
    names = list(outputs)
    return JSONResponse({"predictions": [{n: np.asarray(outputs[n])[k].item() for n in names} for k in range(len(instances))]})
@app.get("/healthz")
async def health():
    return {}
'''

LUA_FIXED = '''
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BODY_FILE"), "rb"); wrk.body = f:read("*a"); f:close()
'''

# A fresh transaction per request: %CARD% -> one of the demo's cards, %ID% -> a unique id.
LUA_TEMPLATE = '''
local f = io.open(os.getenv("BODY_FILE"), "rb"); local template = f:read("*a"); f:close()
local cards = tonumber(os.getenv("CARDS"))
local counter = 0
local thread_id = tostring(math.random(1, 1000000000))
request = function()
  local body = template:gsub("%%(%u+)%%", function(key)
    if key == "CARD" then return string.format("card_%06d", math.random(0, cards - 1)) end
    counter = counter + 1
    return "bench-" .. thread_id .. "-" .. counter
  end)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process pinned to core 0; stopped on exit."""

    def __init__(self, command: list[str], port: int, env: dict[str, str] | None = None, ready_path: str = "/healthz"):
        self.command, self.port, self.env, self.ready_path = command, port, env or {}, ready_path
        self.log = tempfile.NamedTemporaryFile(prefix="serving_load_", suffix=".log", delete=False)

    def __enter__(self) -> "Server":
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **self.env}
        self.process = subprocess.Popen(["taskset", "-c", "0", *self.command], stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command[:4]} exited; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{self.ready_path}", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.command[:4]} not ready; see {self.log.name}")

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def wrk(url: str, body_file: Path, concurrency: int, seconds: float, lua: str, cards: int = 0) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    env = {**os.environ, "BODY_FILE": str(body_file), "CARDS": str(cards)}
    command = ["taskset", "-c", "1", "wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s", "--latency", "-s", script.name, url]
    output = subprocess.run(command, capture_output=True, text=True, env=env, timeout=seconds + 60).stdout

    def latency(percent: str) -> float:
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if not match:
            return float("nan")
        return float(match.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[match.group(2)]

    requests = re.search(r"Requests/sec:\s+([\d.]+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {
        "rps": float(requests.group(1)) if requests else 0.0,
        "p50": latency("50"),
        "p99": latency("99"),
        "errors": (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, sockets.groups())) if sockets else 0),
    }


def fraud_bodies(home: Path, folder: Path) -> tuple[Path, Path, dict, int]:
    version = max((home / "models" / "fraud_detection").iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else -1)
    golden = json.loads((version / "assets.extra" / "warmup_request.json").read_text())["instances"][0]
    contract_fields = {"timestamp", "merchant_id", "merchant_category", "amount", "channel", "device_id",
                       "merchant_lat", "merchant_lon", "home_lat", "home_lon"}
    raw = {k: v for k, v in golden.items() if k in contract_fields}
    instance = json.dumps({**raw, "card_id": "%CARD%", "transaction_id": "%ID%"})
    one = folder / "fraud_1.json"
    one.write_text('{"instances": [' + instance + "]}")
    many = folder / "fraud_256.json"
    many.write_text('{"instances": [' + ", ".join([instance] * 256) + "]}")
    history = {k: v for k, v in golden.items() if k not in contract_fields and k != "card_id"}
    cards = 4000  # the demo generator has ~5,000 cards: card_000000 ...
    return one, many, history, cards


def vision_body(home: Path, folder: Path) -> Path:
    from PIL import Image
    import numpy as np

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(90, 140, size=(224, 224, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    version = max((home / "models" / "vision_qc").iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else -1)
    golden = json.loads((version / "assets.extra" / "warmup_request.json").read_text())["instances"][0]
    name = next(k for k, v in golden.items() if isinstance(v, dict) and "b64" in v)
    path = folder / "vision.json"
    path.write_text(json.dumps({"instances": [{**golden, name: {"b64": base64.b64encode(buffer.getvalue()).decode()}}]}))
    return path


def catalog_version(catalog_home: Path, items: int) -> Path:
    """A recommendation version over a catalog of ``items`` items (the generator's, few interactions: the
    catalog size is what the cell measures), trained once into ``catalog_home`` and reused."""
    marker = catalog_home / f"items-{items}"
    if not marker.exists() or not (catalog_home / "models" / "recommendation").exists():
        shutil.rmtree(catalog_home, ignore_errors=True)
        catalog_home.mkdir(parents=True)
        print(f"training a recommendation version over a {items:,}-item catalog into {catalog_home} (once; ~5 min on 2 cores)", flush=True)
        command = [PYTHON, "-m", "solutions_core.cli", "train", "recommendation", "--home", str(catalog_home), "-q",
                   "--set", f"items={items}", "--set", "size=3000", "--set", "users=300", "--set", "training.epochs=2",
                   # a 3,000-interaction log decides nothing about quality: publish it for its size alone
                   "--set", "gate.beat_baselines=false"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        marker.touch()
    return catalog_home


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=ROOT / "artifacts")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--only", default="", help="run only the cells whose label has this text (the ceiling always runs)")
    parser.add_argument("--catalog-items", type=int, default=1_000_000, help="items of the /recommend catalog cell (0: skip it)")
    parser.add_argument("--catalog-home", type=Path, default=ROOT / "artifacts" / "bench" / "recommendation-catalog",
                        help="where that catalog's version is trained once and kept")
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.exit("Needs wrk and taskset: apt-get install wrk util-linux")
    if not (args.home / "models" / "fraud_detection").exists():
        sys.exit(f"No models under {args.home}/models: run `make demo` (or pass --home).")
    folder = Path(tempfile.mkdtemp(prefix="serving_load_"))
    # The run records transactions into the card history: work on a copy so the home stays as it was.
    home = folder / "home"
    shutil.copytree(args.home / "models", home / "models")
    if (args.home / "data").exists():  # the apps' online stores (card history, user items, sales)
        shutil.copytree(args.home / "data", home / "data")
    fraud_one, fraud_many, history, cards = fraud_bodies(home, folder)
    fixed_one = folder / "fraud_fixed.json"
    fixed_one.write_text(fraud_one.read_text().replace("%CARD%", "card_000001").replace("%ID%", "t1"))
    rows: list[tuple] = []
    ceiling: dict[int, float] = {}

    def cell(label: str, url: str, body: Path, concurrency: int, per_request: int = 1, template: bool = False) -> None:
        if args.only and args.only not in label and "ceiling" not in label:
            return
        lua = LUA_TEMPLATE if template else LUA_FIXED
        wrk(url, body, concurrency, args.warmup, lua, cards)
        result = wrk(url, body, concurrency, args.seconds, lua, cards)
        rows.append((label, concurrency, per_request, result))
        ratio = result["rps"] / ceiling[concurrency] if concurrency in ceiling and "ceiling" not in label else None
        print(f"{label:48s} c={concurrency:<3d} n={per_request:<4d} {result['rps']:9.0f} req/s  "
              f"{result['rps'] * per_request:10.0f} pred/s  p50 {result['p50']:8.2f} ms  p99 {result['p99']:8.2f} ms  "
              f"errors {result['errors']}" + (f"  ({ratio:.2f}x ceiling)" if ratio is not None else ""), flush=True)

    port = free_port()
    uvicorn = [PYTHON, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
               "--loop", "uvloop", "--http", "httptools"]
    url = f"http://127.0.0.1:{port}/v1/models/fraud_detection:predict"
    (folder / "ceiling_app.py").write_text(CEILING_APP)
    with Server([*uvicorn, "--app-dir", str(folder), "ceiling_app:app"], port):
        for c in args.concurrency:
            cell("empty FastAPI endpoint (ceiling)", url, fixed_one, c)
            ceiling[c] = rows[-1][3]["rps"]
    if not args.skip_naive:
        version = max((home / "models" / "fraud_detection").iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else -1)
        (folder / "naive_app.py").write_text(NAIVE_APP)
        env = {"MODEL_PATH": str(version), "HISTORY_DEFAULTS": json.dumps(history)}
        with Server([*uvicorn, "--app-dir", str(folder), "naive_app:app"], port, env):
            for c in args.concurrency:
                cell("naive: Keras model.predict per request", url, fraud_one, c, template=True)
    serve = [PYTHON, "-m", "solutions_core.cli", "serve", "--home", str(home), "--port", str(port), "--grpc-port", "0",
             "--poll-seconds", "0"]
    base = f"http://127.0.0.1:{port}"
    with Server(serve, port):
        for c in args.concurrency:
            cell("this server: fraud :predict, one transaction", url, fraud_one, c, template=True)
        for c in args.concurrency:
            cell("this server: fraud :predict, 256 transactions", url, fraud_many, c, per_request=256, template=True)
        if (home / "models" / "vision_qc").exists():
            body = vision_body(home, folder)
            for c in args.concurrency:
                cell("this server: vision :predict, 224x224 PNG b64", f"{base}/v1/models/vision_qc:predict", body, c)
        if (home / "models" / "recommendation").exists():
            body = folder / "recommend.json"
            body.write_text(json.dumps({"user_id": "u000398", "k": 100}))
            for c in args.concurrency:
                cell("this server: /recommend k=100", f"{base}/recommend", body, c)
        if (home / "models" / "recommendation").exists() and args.catalog_items and args.only in f"/recommend k=100, {args.catalog_items:,}-item catalog":
            catalog_home = catalog_version(args.catalog_home, args.catalog_items)
            shutil.copytree(catalog_home / "models", folder / "catalog" / "models")
            if (catalog_home / "data").exists():  # the users' stored histories
                shutil.copytree(catalog_home / "data", folder / "catalog" / "data")
        if (home / "models" / "demand_forecasting").exists():
            body = folder / "forecast.json"
            body.write_text(json.dumps({"series_id": "s000_p0000"}))
            for c in args.concurrency:
                cell("this server: /forecast", f"{base}/forecast", body, c)
    # The same fraud cells with the request log off: what logging every answered request costs.
    with Server(serve, port, {"SOLUTIONS_REQUEST_LOG_RATE": "0"}):
        for c in args.concurrency:
            cell("request log off: fraud :predict, one transaction", url, fraud_one, c, template=True)
        for c in args.concurrency:
            cell("request log off: fraud :predict, 256 transactions", url, fraud_many, c, per_request=256, template=True)
    if args.catalog_items and (folder / "catalog" / "models").exists():
        catalog = [PYTHON, "-m", "solutions_core.cli", "serve", "--home", str(folder / "catalog"), "--port", str(port),
                   "--grpc-port", "0", "--poll-seconds", "0"]
        body = folder / "recommend_catalog.json"
        body.write_text(json.dumps({"user_id": "u000042", "k": 100}))
        with Server(catalog, port):
            for c in args.concurrency:
                cell(f"this server: /recommend k=100, {args.catalog_items:,}-item catalog", f"{base}/recommend", body, c)
    print()
    print("| server | concurrency | rows/request | req/s | predictions/s | × ceiling req/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, c, n, r in rows:
        ratio = f"{r['rps'] / ceiling[c]:.2f}" if c in ceiling else ""
        print(f"| {label} | {c} | {n} | {r['rps']:.0f} | {r['rps'] * n:.0f} | {ratio} | {r['p50']:.2f} | {r['p99']:.2f} | {r['errors']} |")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
