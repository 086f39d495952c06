"""What the request log costs per row, in isolation: the batch thread's part (one JSON line per
answered batch) and the writer's part (Arrow's JSON reader, then Parquet), for one-row and 256-row
requests batched as the server batches them. CPU seconds of this process (``time.process_time``).

    .venv/bin/python benchmarks/request_log_cost.py [--rows 30000] [--repeats 3]

The rows are generated fraud transactions (the fields a fraud request carries) with a probability and
a decision per row, as the served model answers. The server-level figures (logged ÷ not logged, on one
pinned core) come from ``benchmarks/serving_load.py``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from fraud_detection.generate import generate_transactions
    from solutions_core.serving.request_log import RequestLog

    table = generate_transactions(args.rows, days=30, seed=0).drop(columns=["is_fraud"])
    rows = json.loads(table.to_json(orient="records", date_format="iso"))
    print("| requests | rows a batch | record (batch thread) µs/row | convert + write (writer) µs/row |")
    print("|---|---|---|---|")
    for label, batch_rows in (("one transaction, ~30 batched", 30), ("256 transactions", 256)):
        recorded, written = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as folder:
                log = RequestLog(Path(folder), flush_seconds=3600, convert_seconds=3600)  # converted and written by hand below
                batches = [rows[start : start + batch_rows] for start in range(0, len(rows), batch_rows)]
                answers = [{"probability": np.random.rand(len(batch)).astype(np.float32), "decision": np.zeros(len(batch), np.int64)}
                           for batch in batches]
                started = time.process_time()
                for batch, outputs in zip(batches, answers):
                    log.record("fraud_detection", 1, batch, outputs)
                recorded.append((time.process_time() - started) / len(rows) * 1e6)
                started = time.process_time()
                log.flush()
                written.append((time.process_time() - started) / len(rows) * 1e6)
                log.close()
        # The first repeat pays imports (pandas, pyarrow.json): the best of the repeats is reported.
        print(f"| {label} | {batch_rows} | {min(recorded):.2f} | {min(written):.2f} |")


if __name__ == "__main__":
    main()
