"""The floor of single-row serving, for bench/serve.py: a minimal Flask endpoint under our gunicorn
settings that hands the JSON record to the same ONNX session the API uses, with no validation,
authentication, logging, metrics or shadowing.

    gunicorn -c control_api/gunicorn_conf.py 'bench.floor_app:create_app()'
"""

from __future__ import annotations

import numpy as np
from flask import Flask, jsonify, request


def create_app() -> Flask:
    from control_api import serving
    from ml import config, registry
    from ml import params as params_module

    params = params_module.load(config.project_dir())  # OPCON_PROJECT_DIR and OPCON_HOME, as the API
    name, schema = params.registry.model_name, params.schema
    served = serving.load(name, str(registry.champion(name).version), schema)
    if served.onnx is None:
        raise RuntimeError("the champion has no ONNX model: the floor measures the ONNX path")
    session, names = served.onnx, schema.feature_names
    app = Flask(__name__)

    @app.post("/predict")
    def predict():
        record = request.get_json()["records"][0]
        proba = session.predict_proba({n: np.array([record[n]]) for n in names})
        return jsonify({"probability": float(proba[0, 1])})

    return app
