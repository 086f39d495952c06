"""Writes notebooks/*.ipynb from the cell sources below (kept in code so diffs stay readable).

Run: .venv/bin/python scripts/make_notebooks.py
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

FRAUD = [
    new_markdown_cell(
        "# Fraud detection, end to end\n\n"
        "This walkthrough runs the fraud app through the shared core, step by step: generate card "
        "transactions, check them against the data contract, look at the card-history features, train "
        "and gate the models, then score a transaction with the exported SavedModel and over the "
        "TF-Serving REST API. Everything runs offline on a laptop in a minute or two.\n\n"
        "Set `NOTEBOOK_SIZE` to generate more data (the app's default is 200,000 transactions)."
    ),
    new_code_cell(
        "import os, tempfile\n"
        "os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')\n"
        "from pathlib import Path\n"
        "import pandas as pd\n\n"
        "from solutions_core.registry import get_solution\n"
        "from solutions_core.settings import Settings\n\n"
        "SIZE = int(os.environ.get('NOTEBOOK_SIZE', 30_000))\n"
        "HOME = Path(tempfile.mkdtemp(prefix='fraud-walkthrough-'))  # models, data and reports land here\n"
        "solution = get_solution('fraud_detection')\n"
        "config = solution.make_config({'size': SIZE, 'days': 60, 'fraud_rate': 0.01,\n"
        "                               'training': {'epochs': 2}})\n"
        "settings = Settings(home=HOME)\n"
        "config.model_dump()"
    ),
    new_markdown_cell("## 1. Data and its contract\nThe generator is the embedded default; a client's data is loaded with `source=` instead."),
    new_code_cell(
        "tables = solution.generate(config)\n"
        "transactions = tables['fraud_transactions']\n"
        "print(f\"{len(transactions):,} transactions, {transactions.is_fraud.mean():.2%} fraud\")\n"
        "transactions.head()"
    ),
    new_code_cell(
        "from solutions_core.contracts import load_contract\n\n"
        "contract = load_contract('fraud_transactions')\n"
        "print(contract.validate(transactions).format())\n\n"
        "broken = transactions.head(100).assign(amount=-1.0)\n"
        "print(contract.validate(broken).format())"
    ),
    new_markdown_cell(
        "## 2. Card-history features\nA transaction alone says little; the card's recent past says a lot. "
        "The same definitions run offline (vectorized over the table) and online (per request, in the server)."
    ),
    new_code_cell(
        "examples = solution.prepare(tables, config)\n"
        "from fraud_detection.history import HISTORY_FEATURES\n"
        "examples.groupby('is_fraud')[list(HISTORY_FEATURES)].median().T"
    ),
    new_markdown_cell("## 3. Train, evaluate against baselines, gate, publish\nOne call runs the core's pipeline."),
    new_code_cell(
        "from solutions_core.training import run_training\n\n"
        "result = run_training(solution, config, settings, verbose=0, report=print)\n"
        "pd.DataFrame({'candidate': result.test.metrics, **{n: e.metrics for n, e in result.baselines.items()}}).round(4)"
    ),
    new_code_cell("from IPython.display import Image\nImage(filename=str(result.plots[0]))"),
    new_markdown_cell("## 4. The exported SavedModel\nPreprocessing is inside the graph: it takes raw fields."),
    new_code_cell(
        "from solutions_core.export import load_signature, predict_frame\n\n"
        "signature = load_signature(result.version.path, solution.custom_ops)\n"
        "scores = predict_frame(signature, examples.tail(5))\n"
        "pd.DataFrame(scores)"
    ),
    new_markdown_cell(
        "## 5. The REST API (TF Serving's)\nA request carries one raw transaction; the server adds the card's "
        "history from its online feature table."
    ),
    new_code_cell(
        "from solutions_core.demo import ServerProcess, http_json\n\n"
        "transaction = {k: (v.isoformat() if isinstance(v, pd.Timestamp) else v)\n"
        "               for k, v in transactions.iloc[-1].drop(['transaction_id', 'is_fraud']).items()}\n"
        "with ServerProcess(HOME) as server:\n"
        "    server.wait_ready(['fraud_detection'])\n"
        "    status, answer = http_json('POST', f'{server.url}/v1/models/fraud_detection:predict',\n"
        "                               {'instances': [transaction]})\n"
        "print(status, answer)\n"
        "assert status == 200"
    ),
]

if __name__ == "__main__":
    folder = Path(__file__).resolve().parents[1] / "notebooks"
    folder.mkdir(exist_ok=True)
    notebook = new_notebook(cells=FRAUD, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(notebook, folder / "fraud_detection.ipynb")
    print("wrote", folder / "fraud_detection.ipynb")
