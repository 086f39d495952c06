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
        "from solutions_core.settings import Settings\n"
        "from solutions_core.training import context_for\n\n"
        "SIZE = int(os.environ.get('NOTEBOOK_SIZE', 30_000))\n"
        "QUICK = os.environ.get('NOTEBOOK_QUICK') == '1'  # CI: seconds of data, so the gate's baseline rule is off\n"
        "HOME = Path(tempfile.mkdtemp(prefix='fraud-walkthrough-'))  # models, data and reports land here\n"
        "solution = get_solution('fraud_detection')\n"
        "config = solution.make_config({'size': SIZE, 'days': 60, 'fraud_rate': 0.01,\n"
        "                               'training': {'epochs': 2}, 'gate': {'beat_baselines': not QUICK}})\n"
        "settings = Settings(home=HOME)\n"
        "context = context_for(solution, config, settings)  # the config and the contracts every hook sees\n"
        "config.model_dump()"
    ),
    new_markdown_cell("## 1. Data and its contract\nThe generator is the embedded default; a client's data is loaded with `source=` instead."),
    new_code_cell(
        "tables = solution.data.generate(context, HOME / 'data')\n"
        "transactions = tables['fraud_transactions']\n"
        "print(f\"{len(transactions):,} transactions, {transactions.is_fraud.mean():.2%} fraud\")\n"
        "transactions.head()"
    ),
    new_code_cell(
        "contract = context.contract  # data_contracts/fraud_transactions.yaml, found through Settings.contracts_dir\n"
        "print(contract.validate(transactions).format())\n\n"
        "broken = transactions.head(100).assign(amount=-1.0)\n"
        "print(contract.validate(broken).format())"
    ),
    new_markdown_cell(
        "## 2. Card-history features\nA transaction alone says little; the card's recent past says a lot. "
        "The same definitions run offline (vectorized over the table) and online (per request, in the server)."
    ),
    new_code_cell(
        "examples = solution.data.prepare(context, tables)\n"
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

VISION = [
    new_markdown_cell(
        "# Vision quality control, end to end\n\n"
        "Is a part good or defective, and where is the defect? This walkthrough generates inspection images "
        "with pixel masks, checks the manifest against its contract, trains the supervised and the one-class "
        "model through the core's pipeline, looks at anomaly maps, then runs the published model three ways: "
        "as a SavedModel, over the TF-Serving REST API (an image sent as `{\"b64\": ...}`), and as the int8 "
        "TFLite edge model with ai-edge-litert alone.\n\n"
        "`NOTEBOOK_QUICK=1` (set by the test suite) shrinks everything to seconds; the defaults take a few minutes."
    ),
    new_code_cell(
        "import os, tempfile\n"
        "os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')\n"
        "from pathlib import Path\n"
        "import numpy as np\n"
        "import pandas as pd\n\n"
        "from solutions_core.registry import get_solution\n"
        "from solutions_core.settings import Settings\n"
        "from solutions_core.training import context_for\n\n"
        "QUICK = os.environ.get('NOTEBOOK_QUICK') == '1'\n"
        "HOME = Path(tempfile.mkdtemp(prefix='vision-walkthrough-'))  # images, models and reports land here\n"
        "solution = get_solution('vision_qc')\n"
        "config = solution.make_config(\n"
        "    {'size': 64, 'image_size': 64, 'source_image_size': 64, 'defect_rate': 0.4,\n"
        "     'training': {'epochs': 2}, 'edge': {'calibration_images': 16, 'latency_runs': 5},\n"
        "     'gate': {'beat_baselines': False}}  # seconds of data: the plumbing, not the gate's baseline rule\n"
        "    if QUICK else\n"
        "    {'size': 400, 'image_size': 128, 'source_image_size': 128})\n"
        "settings = Settings(home=HOME)\n"
        "context = context_for(solution, config, settings)  # the config and the contracts every hook sees\n"
        "config.model_dump(include={'size', 'image_size', 'channels', 'training'})"
    ),
    new_markdown_cell(
        "## 1. Images, masks and the manifest\nThe generator paints textured surfaces (photographs bundled "
        "with scikit-image, brushed metal, weave) and draws scratches, cracks, holes, stains and contamination "
        "with a pixel mask each. A client's line is loaded with `source=` instead: a manifest, class folders "
        "or an MVTec-style tree."
    ),
    new_code_cell(
        "tables = solution.data.generate(context, HOME / 'images')\n"
        "manifest = tables['vision_qc_images']\n"
        "print(manifest.label.value_counts().to_dict())\n"
        "manifest.head()"
    ),
    new_code_cell(
        "import matplotlib.pyplot as plt\n"
        "from vision_qc.manifest import read_image, read_mask\n\n"
        "defects = manifest[manifest.label == 'defect'].head(4)\n"
        "figure, axes = plt.subplots(2, 4, figsize=(10, 5))\n"
        "for column, (_, row) in enumerate(defects.iterrows()):\n"
        "    axes[0, column].imshow(read_image(row.image_path)); axes[0, column].set_title(row.defect_type)\n"
        "    axes[1, column].imshow(read_mask(row.mask_path), cmap='gray')\n"
        "for axis in axes.flat: axis.axis('off')"
    ),
    new_code_cell(
        "contract = context.contract  # data_contracts/vision_qc_images.yaml, found through Settings.contracts_dir\n"
        "print(contract.validate(manifest).format())\n"
        "print(contract.validate(manifest.head(10).assign(label='maybe')).format())"
    ),
    new_markdown_cell(
        "## 2. Train, evaluate against baselines, gate, publish\nOne call runs the core's pipeline: the "
        "supervised network is fitted by the core's Keras loop (then fine-tuned on its int8 grids through the "
        "same loop), the one-class Gaussian by its own learner; the better one on validation AUROC is exported, scored on "
        "the test split against the baselines, converted to TFLite and checked for int8 parity, then published "
        "if it beats the current champion."
    ),
    new_code_cell(
        "from solutions_core.training import run_training\n\n"
        "result = run_training(solution, config, settings, verbose=0, report=print)\n"
        "pd.DataFrame({'model': result.test.metrics, **{n: e.metrics for n, e in result.baselines.items()}}).round(3)"
    ),
    new_code_cell("from IPython.display import Image\nImage(filename=str([p for p in result.plots if p.name == 'anomaly_maps.png'][0]))"),
    new_markdown_cell("## 3. The exported SavedModel\nImage decoding and resizing are inside the graph: it takes encoded bytes."),
    new_code_cell(
        "from solutions_core.export import load_signature\n"
        "import tensorflow as tf\n\n"
        "signature = load_signature(result.version.path)\n"
        "sample = manifest.tail(4)\n"
        "outputs = signature(image=tf.constant([Path(p).read_bytes() for p in sample.image_path]))\n"
        "pd.DataFrame({'label': sample.label.to_numpy(), 'score': outputs['defect_score'].numpy(),\n"
        "              'decision': outputs['decision'].numpy().astype(str)})"
    ),
    new_markdown_cell("## 4. The REST API (TF Serving's)\nImages travel as `{\"b64\": ...}` or as arrays of pixels; a broken image is a 400."),
    new_code_cell(
        "import base64\n"
        "from solutions_core.demo import ServerProcess, http_json\n\n"
        "image = {'b64': base64.b64encode(Path(sample.image_path.iloc[0]).read_bytes()).decode()}\n"
        "with ServerProcess(HOME) as server:\n"
        "    server.wait_ready(['vision_qc'])\n"
        "    url = f'{server.url}/v1/models/vision_qc:predict'\n"
        "    status, answer = http_json('POST', url, {'instances': [{'image': image}]})\n"
        "    bad_status, bad_answer = http_json('POST', url, {'instances': [{'image': {'b64': 'bm90IGFuIGltYWdl'}}]})\n"
        "print(status, answer['predictions'][0]['decision'], round(answer['predictions'][0]['defect_score'], 3))\n"
        "print(bad_status, bad_answer)\n"
        "assert status == 200 and bad_status == 400"
    ),
    new_markdown_cell(
        "## 5. On the edge: int8 TFLite with ai-edge-litert\nThe model file carries its labels, threshold and "
        "input description; the device needs nothing else. The parity gate compared it with the SavedModel on "
        "validation images before it was published; the network was trained on the int8 grids (quantization-aware), "
        "so the int8 model decides as the served model does."
    ),
    new_code_cell(
        "from vision_qc.edge import EdgeModel\n\n"
        "print({k: v for k, v in result.edge.report.items() if k in ('quantization', 'passed', 'why')})\n"
        "edge = EdgeModel(result.edge.files['edge_int8.tflite'])\n"
        "print(edge.metadata['labels'], edge.metadata['threshold'], edge.metadata['input']['shape'])\n"
        "size = edge.metadata['image_size']\n"
        "pixels = read_image(sample.image_path.iloc[0], size=size, channels=config.channels)\n"
        "edge.predict(pixels)['decision'], f'{edge.latency_ms(20):.2f} ms per image on one thread'"
    ),
]

RECOMMENDATION = [
    new_markdown_cell(
        "# Recommendation, end to end\n\n"
        "This walkthrough runs the recommendation app through the shared core: generate an interaction log "
        "(long-tail popularity, taste clusters, sessions, new items arriving), check it against its contracts, "
        "train the keras-rs two-tower retriever and the DCN ranker, compare them with popularity and matrix "
        "factorization, then ask the exported model and `/recommend` for items, for a known user, a new user "
        "with features and a user nobody knows.\n\n"
        "Set `NOTEBOOK_SIZE` to generate more interactions (the app's default is 100,000)."
    ),
    new_code_cell(
        "import os, tempfile\n"
        "os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')\n"
        "from pathlib import Path\n"
        "import pandas as pd\n\n"
        "from solutions_core.registry import get_solution\n"
        "from solutions_core.settings import Settings\n"
        "from solutions_core.training import context_for\n\n"
        "QUICK = os.environ.get('NOTEBOOK_QUICK') == '1'\n"
        "SIZE = int(os.environ.get('NOTEBOOK_SIZE', 30_000))\n"
        "HOME = Path(tempfile.mkdtemp(prefix='recommendation-walkthrough-'))  # data, models and reports land here\n"
        "solution = get_solution('recommendation')\n"
        "config = solution.make_config({'size': SIZE, 'users': max(100, SIZE // 30), 'items': max(100, SIZE // 50),\n"
        "                               'training': {'epochs': 2 if QUICK else 6}, 'ranking': {'epochs': 1 if QUICK else 3},\n"
        "                               'gate': {'beat_baselines': not QUICK}})  # QUICK (CI): tiny data, plumbing only\n"
        "settings = Settings(home=HOME)\n"
        "context = context_for(solution, config, settings)  # the config and the contracts every hook sees\n"
        "config.model_dump(include={'size', 'users', 'items', 'top_k', 'columns', 'training'})"
    ),
    new_markdown_cell(
        "## 1. Interactions, users, items and their contracts\nThree tables, each with a contract. A client's "
        "log is loaded with `source=` (a folder of parquet/csv tables, a RecBole atomic folder, or "
        "`movielens-100k`, read from the installed recbole package)."
    ),
    new_code_cell(
        "tables = solution.data.generate(context, HOME / 'data')\n"
        "log, users, items = tables['rec_interactions'], tables['rec_users'], tables['rec_items']\n"
        "counts = log.item_id.value_counts()\n"
        "print(f'{len(log):,} interactions, {log.user_id.nunique():,} users, {len(items):,} items; '\n"
        "      f'the top 10% of items take {counts.head(len(items) // 10).sum() / len(log):.0%} of interactions')\n"
        "items.head()"
    ),
    new_code_cell(
        "for name, table in tables.items():\n"
        "    print(context.contracts[name].validate(table).format())\n"
        "print(context.contracts['rec_users'].validate(users.head(20).assign(region='mars')).format())"
    ),
    new_markdown_cell(
        "## 2. Train, evaluate against baselines, gate, publish\nEach user's latest interaction is the test, the "
        "one before it validation. The two-tower retriever and the DCN re-ranker compete with retrieval alone on "
        "validation NDCG@10; the winner is exported with the catalog's vectors and index inside."
    ),
    new_code_cell(
        "from solutions_core.training import run_training\n\n"
        "result = run_training(solution, config, settings, verbose=0, report=print)\n"
        "columns = ['recall_at_10', 'ndcg_at_10', 'recall_at_100', 'coverage_at_10']\n"
        "pd.DataFrame({'model': result.test.metrics, **{n: e.metrics for n, e in result.baselines.items()}}).loc[columns].round(3)"
    ),
    new_code_cell("from IPython.display import Image\nImage(filename=str([p for p in result.plots if p.name == 'recall_ndcg.png'][0]))"),
    new_markdown_cell(
        "## 3. The exported SavedModel\nOne signature: a user (id, recent history, features, items to exclude) "
        "to the top-k item ids and scores, with `strategy` saying how the user was known."
    ),
    new_code_cell(
        "from solutions_core.export import load_signature, predict_frame\n\n"
        "signature = load_signature(result.version.path)\n"
        "requests = pd.DataFrame(result.golden_instances).iloc[[0, -2, -1]]\n"
        "outputs = predict_frame(signature, requests)\n"
        "pd.DataFrame({'user_id': requests.user_id.to_numpy(), 'strategy': outputs['strategy'].astype(str),\n"
        "              'top 5': [list(row[:5].astype(str)) for row in outputs['item_ids']]})"
    ),
    new_markdown_cell(
        "## 4. The REST API: TF Serving's `:predict` and `/recommend`\n`/recommend` fills the user's history and "
        "features from the online store, leaves out what they have seen, and falls back to popular items for "
        "users nobody knows. Bad requests are 4xx with a JSON error."
    ),
    new_code_cell(
        "from solutions_core.demo import ServerProcess, http_json\n\n"
        "user = result.golden_instances[0]['user_id']\n"
        "with ServerProcess(HOME) as server:\n"
        "    server.wait_ready(['recommendation'])\n"
        "    status, known = http_json('POST', f'{server.url}/recommend', {'user_id': user, 'k': 5})\n"
        "    _, new = http_json('POST', f'{server.url}/recommend', {'user_id': 'just-signed-up', 'k': 5})\n"
        "    bad_status, bad = http_json('POST', f'{server.url}/recommend', {'user_id': user, 'k': 0})\n"
        "print(known['strategy'], [(i['item_id'], i['details'].get('title')) for i in known['items']])\n"
        "print(new['strategy'], [i['item_id'] for i in new['items']])\n"
        "print(bad_status, bad)\n"
        "assert status == 200 and bad_status == 400"
    ),
]

FORECASTING = [
    new_markdown_cell(
        "# Demand forecasting, end to end\n\n"
        "This walkthrough runs the forecasting app through the shared core: generate daily store × product "
        "sales (seasonality, prices and promotions, holidays, stock-outs, slow movers, new products), check "
        "them against their contracts, backtest one global Keras model against seasonal naive and Theta on "
        "rolling origins, look at fan charts, then forecast a series through the exported model, "
        "`/forecast` and the batch forecast.\n\n"
        "Set `NOTEBOOK_SERIES` to generate more series (the app's default is 500)."
    ),
    new_code_cell(
        "import os, tempfile\n"
        "os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')\n"
        "from pathlib import Path\n"
        "import pandas as pd\n\n"
        "from solutions_core.registry import get_solution\n"
        "from solutions_core.settings import Settings\n"
        "from solutions_core.training import context_for\n\n"
        "QUICK = os.environ.get('NOTEBOOK_QUICK') == '1'\n"
        "SERIES = int(os.environ.get('NOTEBOOK_SERIES', 30 if QUICK else 200))\n"
        "HOME = Path(tempfile.mkdtemp(prefix='forecasting-walkthrough-'))  # data, models and reports land here\n"
        "solution = get_solution('demand_forecasting')\n"
        "config = solution.make_config({'size': SERIES, 'stores': 5, 'days': 300 if QUICK else 730,\n"
        "                               'baselines': ['seasonal_naive'] if QUICK else ['seasonal_naive', 'theta'],\n"
        "                               'training': {'epochs': 2 if QUICK else 10},\n"
        "                               'gate': {'beat_baselines': not QUICK}})  # QUICK (CI): tiny data, plumbing only\n"
        "settings = Settings(home=HOME)\n"
        "context = context_for(solution, config, settings)  # the config and the contracts every hook sees\n"
        "config.model_dump(include={'size', 'days', 'horizon', 'lookback', 'quantiles', 'backtest_origins', 'baselines'})"
    ),
    new_markdown_cell(
        "## 1. Sales, series and their contracts\nLong format: one row per series and day, with the covariates "
        "known in advance (price, promotion, holiday, store open). A client's data is loaded with `source=` "
        "(a folder of `sales`/`series` tables), and `tourism` or `m1` load competition series with their "
        "official horizons."
    ),
    new_code_cell(
        "tables = solution.data.generate(context, HOME / 'data')\n"
        "sales, series = tables['demand_sales'], tables['demand_series']\n"
        "print(f'{len(sales):,} rows, {len(series)} series, {sales.stockout.mean():.1%} of days censored by a stock-out, '\n"
        "      f'{(sales.quantity == 0).mean():.0%} zero days')\n"
        "sales.head()"
    ),
    new_code_cell(
        "for name, table in tables.items():\n"
        "    print(context.contracts[name].validate(table).format())\n"
        "print(context.contracts['demand_sales'].validate(sales.head(50).assign(promotion=3)).format())"
    ),
    new_markdown_cell(
        "## 2. Backtest, baselines, gate, publish\nThe model is fitted once on the history before the validation "
        "origin, then scored on the last origins of every series (rolling origin), each forecast seeing only "
        "the history before it. The gate compares MASE with the champion's on the same windows."
    ),
    new_code_cell(
        "from solutions_core.training import run_training\n\n"
        "result = run_training(solution, config, settings, tables=tables, verbose=0, report=print)\n"
        "columns = ['mase', 'weighted_mase', 'smape', 'pinball_p50', 'coverage_p10_p90']\n"
        "pd.DataFrame({'model': result.test.metrics, **{n: e.metrics for n, e in result.baselines.items()}}).reindex(columns).round(3)"
    ),
    new_code_cell("from IPython.display import Image\nImage(filename=str([p for p in result.plots if p.name == 'fan_charts.png'][0]))"),
    new_markdown_cell(
        "## 3. The REST API: TF Serving's `:predict` and `/forecast`\n`:predict` takes a window's arrays (or only "
        "a `series_id`: the stored history fills the rest); `/forecast` takes dated rows and a plan and answers "
        "quantiles per date. Bad requests are 4xx with a JSON error."
    ),
    new_code_cell(
        "from solutions_core.demo import ServerProcess, http_json\n\n"
        "series_id = series.series_id.iloc[0]\n"
        "start = (sales.date.max() + pd.Timedelta(days=1)).date()\n"
        "plan = [{'date': str(start + pd.Timedelta(days=d)), 'promotion': 1} for d in range(7)]\n"
        "with ServerProcess(HOME) as server:\n"
        "    server.wait_ready(['demand_forecasting'])\n"
        "    status, plain = http_json('POST', f'{server.url}/forecast', {'series_id': series_id})\n"
        "    _, promoted = http_json('POST', f'{server.url}/forecast', {'series_id': series_id, 'future': plan})\n"
        "    bad_status, bad = http_json('POST', f'{server.url}/forecast', {'series_id': series_id, 'history': []})\n"
        "frame = pd.DataFrame({'date': [p['date'] for p in plain['forecast']],\n"
        "                      'p50': [p['quantiles']['p50'] for p in plain['forecast']],\n"
        "                      'p50 with a week of promotion': [p['quantiles']['p50'] for p in promoted['forecast']]})\n"
        "print(bad_status, bad)\n"
        "assert status == 200 and bad_status == 400\n"
        "frame.head(10).round(2)"
    ),
    new_markdown_cell(
        "## 4. The batch forecast for planning\nEvery series' quantiles after a date, as one long table "
        "(what the daily Airflow job publishes to Parquet/DuckDB). Only rows up to the date count as history."
    ),
    new_code_cell(
        "from demand_forecasting.batch import forecast_table\n"
        "from solutions_core.export import load_signature, predict_frame\n\n"
        "config_used = solution.make_config(result.version.metadata()['config'])\n"
        "signature = load_signature(result.version.path)\n"
        "table = forecast_table(tables, config_used, lambda frame: predict_frame(signature, frame), sales.date.max().date(),\n"
        "                       model_version=result.version.version)\n"
        "print(f'{table.series_id.nunique()} series × {config_used.horizon} days')\n"
        "table.head()"
    ),
]

NOTEBOOKS = {"fraud_detection": FRAUD, "vision_qc": VISION, "recommendation": RECOMMENDATION, "demand_forecasting": FORECASTING}

if __name__ == "__main__":
    folder = Path(__file__).resolve().parents[1] / "notebooks"
    folder.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
        path = folder / f"{name}.ipynb"
        # Cell ids are random: rewrite a notebook only when its sources changed, so diffs stay quiet.
        if path.exists() and [c.source for c in nbformat.read(path, as_version=4).cells] == [c.source for c in cells]:
            continue
        nbformat.write(new_notebook(cells=cells, metadata=kernel), path)
        print("wrote", path)
