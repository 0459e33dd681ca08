"""ONNX export of the trained pipeline, so the API scores one row in microseconds, not milliseconds.

scikit-learn spends most of a one-row `predict_proba` checking and dispatching the DataFrame through
the ColumnTransformer and every tree; onnxruntime runs the same computation as one compiled graph.
The export is only worth serving when it predicts what scikit-learn predicts, so `export` converts,
measures the largest probability difference on held-out rows, and reports `ok=False` (never raises)
when either step fails: the caller then keeps serving with scikit-learn.

Precision: double end to end. Inputs are `double` tensors, the scaler runs in double (Sub, Div: the
same operations as scikit-learn), and the tree thresholds are stored as double tensors
(`nodes_values_as_tensor`, ai.onnx.ml opset 3). skl2onnx's default tree converter writes thresholds as
float32 attributes even for double inputs; a scaled value that lies between a float32-rounded
threshold and the real one then takes the other branch, and one flipped split moves a forest's
probability by 1/n_trees (measured: up to 0.067 on 3000 rows, in a tenth of them).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import yaml

from ml.schema import Schema
from ml.tables import feature_frame

ONNX_OPSET = 18
# ai.onnx.ml 3 is the first with double tree attributes; 5 deprecates TreeEnsembleClassifier for
# TreeEnsemble, which skl2onnx does not emit.
ML_OPSET = 3
SCHEMA_KEY, CLASSES_KEY = "opcon.schema", "opcon.classes"
# Tree attributes skl2onnx builds as float64 arrays; ONNX keeps doubles only in their `_as_tensor` twin.
DOUBLE_TREE_ATTRIBUTES = ("nodes_values", "nodes_hitrates", "class_weights", "base_values")
NUMPY_INPUT_TYPES = {"tensor(double)": np.float64, "tensor(float)": np.float32, "tensor(string)": str}
REASON_CHARS = 300


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What `export` produced: `onnx_bytes` is set exactly when `ok` (the caller may serve it)."""

    onnx_bytes: bytes | None
    max_abs_diff: float | None
    ok: bool
    reason: str


def _input_types(schema: Schema) -> list[tuple[str, object]]:
    """One [None, 1] input per feature, so a caller passes columns, never a packed matrix."""
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    return [(f.name, DoubleTensorType([None, 1]) if f.type == "number" else StringTensorType([None, 1]))
            for f in schema.features]


class _DoubleTreeContainer:
    """skl2onnx's container, except that tree nodes keep their thresholds and weights in double.

    skl2onnx computes them in float64 (with its `sklearn_threshold` correction for scikit-learn's
    float32 comparisons) but passes them as plain attributes, which ONNX stores as float32.
    """

    def __init__(self, container, scope, probabilities):
        self._container, self._scope, self._probabilities = container, scope, probabilities

    def __getattr__(self, name):
        return getattr(self._container, name)

    def add_node(self, op_type, inputs, outputs, **attrs):
        if op_type != "TreeEnsembleClassifier":
            return self._container.add_node(op_type, inputs, outputs, **attrs)
        from onnx import numpy_helper

        for key in DOUBLE_TREE_ATTRIBUTES:
            value = attrs.get(key)
            if isinstance(value, np.ndarray) and value.dtype == np.float64:
                attrs[f"{key}_as_tensor"] = numpy_helper.from_array(attrs.pop(key), f"{key}_as_tensor")
        missing = "nodes_missing_value_tracks_true"
        if missing in attrs:  # numpy booleans, which onnx rejects in an INTS attribute
            attrs[missing] = [int(v) for v in attrs[missing]]
        outputs = [outputs] if isinstance(outputs, str) else list(outputs)
        return self._add_with_double_output(op_type, inputs, outputs, attrs)

    def _add_with_double_output(self, op_type, inputs, outputs, attrs):
        """The operator's scores are always float32; cast them when the graph declared double."""
        from onnx import TensorProto
        from skl2onnx.common.data_types import DoubleTensorType

        declared = self._probabilities
        if declared.full_name not in outputs or not isinstance(declared.type, DoubleTensorType):
            return self._container.add_node(op_type, inputs, outputs, **attrs)
        scores = self._scope.get_unique_variable_name("float_probabilities")
        outputs[outputs.index(declared.full_name)] = scores
        self._container.add_node(op_type, inputs, outputs, **attrs)
        return self._container.add_node("Cast", [scores], [declared.full_name], to=TensorProto.DOUBLE,
                                        name=self._scope.get_unique_operator_name("Cast"))


def _double_tree_converter(scope, operator, container):
    """skl2onnx's forest/boosting converter at TreeEnsembleClassifier version 3 (double attributes)."""
    from skl2onnx.operator_converters.random_forest import convert_sklearn_random_forest_classifier

    proxy = _DoubleTreeContainer(container, scope, operator.outputs[1])
    convert_sklearn_random_forest_classifier(scope, operator, proxy, op_version=ML_OPSET)


def _tree_converters() -> dict:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    return {RandomForestClassifier: _double_tree_converter,
            HistGradientBoostingClassifier: _double_tree_converter}


def to_onnx(pipeline, schema: Schema) -> bytes:
    """The fitted pipeline as an ONNX model: one input per feature, probabilities as a tensor.

    The schema and the class order travel in the model's metadata, so the bytes alone are servable.
    Raises whatever skl2onnx raises for a model it cannot convert (`export` turns that into a reason).
    """
    from skl2onnx import convert_sklearn

    model = convert_sklearn(
        pipeline, initial_types=_input_types(schema),
        target_opset={"": ONNX_OPSET, "ai.onnx.ml": ML_OPSET},
        options={id(pipeline[-1]): {"zipmap": False}},
        custom_conversion_functions=_tree_converters())
    classes = np.asarray(pipeline.classes_).tolist()
    # YAML, not JSON: JSON would turn integer keys (the target's labels) into strings
    schema_text = yaml.safe_dump(schema.model_dump(), sort_keys=False)
    for key, value in ((SCHEMA_KEY, schema_text), (CLASSES_KEY, json.dumps(classes))):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def _session_options():
    """One thread, sequential: a single row is too small to split, and the API serves many at once."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class OnnxModel:
    """An exported pipeline in onnxruntime: `predict_proba` as scikit-learn's, in the same class order."""

    def __init__(self, onnx_bytes: bytes):
        import onnxruntime as ort

        self._session = ort.InferenceSession(onnx_bytes, _session_options(),
                                             providers=["CPUExecutionProvider"])
        metadata = self._session.get_modelmeta().custom_metadata_map
        self.schema = Schema.model_validate(yaml.safe_load(metadata[SCHEMA_KEY]))
        self.classes: list = json.loads(metadata[CLASSES_KEY])
        inputs = self._session.get_inputs()
        # the graph's inputs are the schema's features, in order (skl2onnx keeps initial_types order)
        self._inputs = tuple((feature.name, node.name, NUMPY_INPUT_TYPES[node.type])
                             for feature, node in zip(self.schema.features, inputs, strict=True))
        self._outputs = [next(o.name for o in self._session.get_outputs()
                              if o.type in ("tensor(double)", "tensor(float)"))]

    def predict_proba(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """(n, n_classes) float64 from one 1-D array per feature (numbers, or category strings).

        Categories go through str like `feature_frame` does, so 1 and "1" are the same category.
        """
        feeds = {node: np.asarray(columns[feature], dtype=dtype).reshape(-1, 1)
                 for feature, node, dtype in self._inputs}
        return self._session.run(self._outputs, feeds)[0].astype(np.float64, copy=False)

    def predict_proba_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """`predict_proba` on a DataFrame holding (at least) the feature columns."""
        return self.predict_proba({feature: frame[feature].to_numpy() for feature, _, _ in self._inputs})


def parity(pipeline, onnx_model: OnnxModel, frame: pd.DataFrame) -> float:
    """Largest absolute probability difference between scikit-learn and ONNX over the frame's rows.

    Infinite when the two disagree on the classes, since then no column can be compared.
    """
    if np.asarray(pipeline.classes_).tolist() != onnx_model.classes:
        return float("inf")
    features = feature_frame(frame, onnx_model.schema)
    expected = pipeline.predict_proba(features)
    actual = onnx_model.predict_proba_frame(features)
    if expected.shape != actual.shape:
        return float("inf")
    return float(np.max(np.abs(expected - actual), initial=0.0))


def _describe(error: Exception) -> str:
    """The error in one short line: skl2onnx's messages can hold a whole tree's attributes."""
    text = str(error).strip().splitlines()
    line = f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")
    return line if len(line) <= REASON_CHARS else line[:REASON_CHARS - 1] + "…"


def export(pipeline, schema: Schema, frame: pd.DataFrame, tolerance: float = 1e-4) -> ExportResult:
    """Convert and check parity on `frame` (e.g. the test split); never raises for conversion problems.

    ok=False carries the reason, and the caller serves the scikit-learn pipeline instead.
    """
    if len(frame) == 0:
        return ExportResult(None, None, False, "no rows to check the ONNX model against scikit-learn")
    try:
        onnx_bytes = to_onnx(pipeline, schema)
        model = OnnxModel(onnx_bytes)
    except Exception as error:
        return ExportResult(None, None, False, f"ONNX conversion failed: {_describe(error)}")
    try:
        difference = parity(pipeline, model, frame)
    except Exception as error:
        return ExportResult(None, None, False, f"ONNX parity check failed: {_describe(error)}")
    if not difference <= tolerance:  # also catches NaN
        return ExportResult(None, difference, False,
                            f"ONNX probabilities differ from scikit-learn's by up to {difference:.3g} "
                            f"(tolerance {tolerance:g}) on {len(frame)} rows")
    return ExportResult(onnx_bytes, difference, True,
                        f"ONNX matches scikit-learn within {difference:.3g} on {len(frame)} rows")
