"""Federated training: contributors train one shared model on data that never leaves them.

The model is multinomial logistic regression on 8x8 digit images (64 features scaled to
0..1, ten classes, ``PARAMETERS`` = 650 weights and biases), held as the fixed-point integer
vector of ``agora.protocol.federation``. A round goes:

1. a validator asks each contributor (route ``/task/federated``) for its update to the
   current global model, named by hash, with the round's seed;
2. the contributor trains ``local_steps`` of full-batch gradient descent on its own rows,
   clips the change to ``max_update_norm`` and answers with it as integers, signed by the
   neuron protocol: the rows themselves never leave it;
3. each validator scores every update by leave-one-out improvement on a held-out sample it
   draws per round from its own pool: the held-out loss of the aggregate without the update
   minus the loss with it (in micro-nats). A validator keeps a moving average of each
   contributor's score (``score_memory``) and weights the positive ones, so Yuma pays data
   as it pays compute. A zero update, or one already seen (the same update hash), scores 0;
4. the round's aggregate is ``federation.compute_aggregate`` of the updates the subnet paid
   (incentive above 0): integer arithmetic, the same bytes on every node.

Data files (``agora miner run --netuid N --data FILE``), one labelled image per row:

- CSV (``.csv``): no header, 65 comma-separated numbers per row, the 64 pixel values
  (0..16, row by row, as in scikit-learn's ``load_digits``) then the label (0..9);
- NumPy (``.npz``): an array ``features`` of shape (rows, 64) with pixels in 0..16 and an
  integer array ``labels`` of shape (rows,) in 0..9.

A file that cannot be read, has the wrong number of features, a NaN or infinite value, a
pixel or label out of range, or no rows, is refused with a ``DataFileError`` (codes
3650-3659) before anything is trained.

Wire format (route ``/task/federated``)::

    request  {"round": int, "seed": hex, "model_hash": hex, "model": [650 ints] (optional)}
    response {"round": int, "model_hash": hex, "update": [650 ints], "update_hash": hex}

The contributor refuses a model whose hash is not ``model_hash`` (``ModelHashMismatch``).

Serving a trained model (``agora miner run --netuid N --serve-model``; route
``/task/federated/predict``), whose paid requests pay the model's contributors a royalty::

    request  {"input": [[64 pixels in 0..16], ...]}  (1 to ``MAX_PREDICT_ROWS`` rows)
    response {"model_hash": hex, "predictions": [{"label": 0..9, "probabilities": [10]}]}

A request that is not that shape is refused with ``InvalidPredictRequest`` (3663).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from agora.protocol.blocks import compute_merkle_root
from agora.protocol.consensus.fixed import compute_normalized, u16_proportion_to_fixed
from agora.protocol.consensus.yuma import (
    YumaParams,
    compute_active_stake,
    compute_clipped_weights,
    compute_consensus,
    compute_incentive,
    compute_stake,
    compute_u16_proportions,
)
from agora.protocol.federation import (
    FIXED_ONE,
    VALUE_MAX,
    VALUE_MIN,
    Vector,
    compute_aggregate,
    compute_model_hash,
    compute_update_hash,
)
from agora.tasks.base import (
    SCORE_ONE,
    BadBackendSpec,
    Challenge,
    InvalidRequestError,
    TaskError,
    apply_latency,
    derive_rng,
)

TASK = "federated"
ROUTE = "/task/federated"

FEATURES = 64
CLASSES = 10
PARAMETERS = FEATURES * CLASSES + CLASSES
MAX_PIXEL = 16
CONTRIBUTOR_ROWS = 1_100  # of the 1,797 digits: the pool contributors' shards come from
VALIDATOR_ROWS = 300  # the validators' held-out pool; the remaining 397 are the test rows

MODEL_NAME = "federated-digits-logistic"  # what a served model is sold as
PREDICT_ROUTE = "/task/federated/predict"
MAX_PREDICT_ROWS = 256
DATA_SCHEMA = "digits-8x8-v1"  # the schema a data commitment names
DEFAULT_CONFIG: dict[str, Any] = {
    "local_steps": 20,
    "learning_rate": 2.0,
    "l2": 0.0001,
    "max_update_norm": 64.0,
    "held_out": 300,  # rows a validator draws from its pool each round
    "score_memory": 0.8,  # the share of a contributor's past score kept each round
    "fast_ms": 5_000,
    "timeout_ms": 60_000,
}


class DataFileError(TaskError):
    """A contributor's data file is refused (codes 3650-3659); nothing was trained on it."""

    code = 3650


class MalformedDataFile(DataFileError):
    """The file cannot be read as the documented CSV or ``.npz`` format, or holds no rows."""

    code = 3651


class WrongFeatureCount(DataFileError):
    """A row does not hold 64 pixel values (plus the label, in a CSV)."""

    code = 3652


class NonFiniteData(DataFileError):
    """A row holds NaN or an infinite value."""

    code = 3653


class ValueOutOfRange(DataFileError):
    """A pixel is outside 0..16 or a label is not an integer in 0..9."""

    code = 3654


class FederatedRequestError(TaskError):
    """A federated request or update is refused (codes 3660-3669)."""

    code = 3660


class ModelHashMismatch(FederatedRequestError):
    """The model sent with a request does not hash to the ``model_hash`` it claims, or the
    contributor holds no model with that hash."""

    code = 3661


class InvalidPredictRequest(FederatedRequestError):
    """A prediction request is not 1 to ``MAX_PREDICT_ROWS`` rows of 64 pixels in 0..16."""

    code = 3663


class UpdateShapeError(FederatedRequestError):
    """An update is not a list of ``PARAMETERS`` signed 32-bit integers, or its hash is not
    the ``update_hash`` it claims."""

    code = 3662


@dataclass(frozen=True, slots=True)
class Dataset:
    """Labelled images: ``features`` (rows, 64) scaled to 0..1, ``labels`` (rows,) int."""

    features: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


# --- data ------------------------------------------------------------------------------------


def load_data_file(path: Path) -> Dataset:
    """A contributor's rows, checked; raises a ``DataFileError`` saying what is wrong."""
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                features = np.asarray(archive["features"])
                labels = np.asarray(archive["labels"])
        elif path.suffix == ".csv":
            table = _read_csv(path)
            features, labels = table[:, :FEATURES], table[:, FEATURES]
        else:
            raise MalformedDataFile(f"{path}: use a .csv or .npz file (see the documented format)")
    except (OSError, ValueError, KeyError) as error:
        raise MalformedDataFile(f"{path}: not a readable data file ({error})") from None
    return make_dataset(features, labels, str(path))


def _read_csv(path: Path) -> np.ndarray:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) != FEATURES + 1:
            raise WrongFeatureCount(
                f"{path}:{number}: {len(cells)} values; a row is 64 pixels and a label"
            )
        try:
            rows.append([np.float64(cell) for cell in cells])
        except ValueError:
            raise MalformedDataFile(f"{path}:{number}: a value is not a number") from None
    if not rows:
        raise MalformedDataFile(f"{path}: no rows")
    return np.array(rows, dtype=np.float64)


def make_dataset(features: Any, labels: Any, source: str = "data") -> Dataset:
    """Check raw pixels (0..16) and labels (0..9), and scale the pixels to 0..1."""
    features = np.asarray(features)
    labels = np.asarray(labels)
    if features.ndim != 2 or features.shape[1] != FEATURES:
        raise WrongFeatureCount(f"{source}: features have shape {features.shape}, not (rows, 64)")
    if labels.shape != (features.shape[0],):
        raise MalformedDataFile(f"{source}: {labels.shape} labels for {features.shape[0]} rows")
    if len(labels) == 0:
        raise MalformedDataFile(f"{source}: no rows")
    if not np.issubdtype(features.dtype, np.number) or not np.issubdtype(labels.dtype, np.number):
        raise MalformedDataFile(f"{source}: features and labels must be numbers")
    bad = ~np.isfinite(features).all(axis=1) | ~np.isfinite(labels)
    if bad.any():
        raise NonFiniteData(f"{source}: row {int(np.argmax(bad))} holds NaN or infinity")
    if features.min() < 0 or features.max() > MAX_PIXEL:
        raise ValueOutOfRange(f"{source}: pixels must be in 0..{MAX_PIXEL}")
    if (labels != np.round(labels)).any() or labels.min() < 0 or labels.max() >= CLASSES:
        raise ValueOutOfRange(f"{source}: labels must be integers in 0..{CLASSES - 1}")
    return Dataset(features.astype(np.float64) / MAX_PIXEL, labels.astype(np.int64))


def save_data_file(path: Path, dataset: Dataset) -> None:
    """Write rows in the documented format chosen by the suffix (pixels back in 0..16)."""
    pixels = np.rint(dataset.features * MAX_PIXEL).astype(np.int64)
    if path.suffix == ".npz":
        np.savez(path, features=pixels, labels=dataset.labels)
        return
    lines = [
        ",".join(str(int(v)) for v in row) + f",{int(label)}"
        for row, label in zip(pixels, dataset.labels, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")


def compute_row_hashes(dataset: Dataset) -> list[bytes]:
    """One hash per row (its 64 pixels in 0..16 and its label): what a data commitment's
    Merkle root covers. An owner can later prove a row was in its data without showing the
    others."""
    pixels = np.rint(dataset.features * MAX_PIXEL).astype(np.uint8)
    return [
        hashlib.blake2b(
            b"agora/data/row/v1" + row.tobytes() + bytes([int(label)]), digest_size=32
        ).digest()
        for row, label in zip(pixels, dataset.labels, strict=True)
    ]


def compute_data_root(dataset: Dataset) -> bytes:
    return compute_merkle_root(compute_row_hashes(dataset))


@dataclass(frozen=True, slots=True)
class DigitsPools:
    """scikit-learn's digits in three fixed parts: contributors', validators', test."""

    contributors: Dataset
    validators: Dataset
    test: Dataset


@cache
def load_pools() -> DigitsPools:
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = sorted(
        range(len(digits.target)),
        key=lambda row: hashlib.sha256(
            b"agora/tasks/federated/split" + row.to_bytes(4, "big")
        ).digest(),
    )
    parts = (
        order[:CONTRIBUTOR_ROWS],
        order[CONTRIBUTOR_ROWS : CONTRIBUTOR_ROWS + VALIDATOR_ROWS],
        order[CONTRIBUTOR_ROWS + VALIDATOR_ROWS :],
    )
    datasets = [make_dataset(digits.data[rows], digits.target[rows]) for rows in parts]
    return DigitsPools(contributors=datasets[0], validators=datasets[1], test=datasets[2])


def split_dirichlet(dataset: Dataset, count: int, alpha: float, seed: int) -> list[Dataset]:
    """``count`` non-identical shards: each class's rows split by a Dirichlet(alpha) draw."""
    rng = np.random.default_rng(seed)
    shards: list[list[int]] = [[] for _ in range(count)]
    for label in range(CLASSES):
        rows = np.flatnonzero(dataset.labels == label)
        rng.shuffle(rows)
        cuts = (np.cumsum(rng.dirichlet([alpha] * count)) * len(rows)).astype(int)[:-1]
        for shard, part in zip(shards, np.split(rows, cuts), strict=True):
            shard.extend(int(row) for row in part)
    return [
        Dataset(dataset.features[sorted(rows)], dataset.labels[sorted(rows)]) for rows in shards
    ]


# --- the model -------------------------------------------------------------------------------


def make_initial_model() -> Vector:
    return (0,) * PARAMETERS


def to_array(vector: Sequence[int]) -> np.ndarray:
    return np.asarray(vector, dtype=np.float64) / FIXED_ONE


def to_vector(values: np.ndarray) -> Vector:
    fixed = np.clip(np.rint(values * FIXED_ONE), VALUE_MIN, VALUE_MAX).astype(np.int64)
    return tuple(int(v) for v in fixed)


def _logits(weights: np.ndarray, features: np.ndarray) -> np.ndarray:
    matrix = weights[: FEATURES * CLASSES].reshape(FEATURES, CLASSES)
    result: np.ndarray = features @ matrix + weights[FEATURES * CLASSES :]
    return result


def _probabilities(weights: np.ndarray, features: np.ndarray) -> np.ndarray:
    logits = _logits(weights, features)
    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
    result: np.ndarray = exponentials / exponentials.sum(axis=1, keepdims=True)
    return result


def compute_loss(weights: np.ndarray, data: Dataset) -> float:
    """Mean cross-entropy in nats."""
    probabilities = _probabilities(weights, data.features)
    picked = probabilities[np.arange(len(data)), data.labels]
    return float(-np.log(np.maximum(picked, 1e-12)).mean())


def compute_accuracy(model: Sequence[int] | np.ndarray, data: Dataset) -> float:
    weights = model if isinstance(model, np.ndarray) else to_array(model)
    return float((_logits(weights, data.features).argmax(axis=1) == data.labels).mean())


def _gradient(weights: np.ndarray, data: Dataset, l2: float) -> np.ndarray:
    errors = _probabilities(weights, data.features)
    errors[np.arange(len(data)), data.labels] -= 1.0
    errors /= len(data)
    matrix = weights[: FEATURES * CLASSES].reshape(FEATURES, CLASSES)
    weight_gradient = data.features.T @ errors + l2 * matrix
    return np.concatenate([weight_gradient.ravel(), errors.sum(axis=0)])


def train(weights: np.ndarray, data: Dataset, steps: int, settings: dict[str, Any]) -> np.ndarray:
    """Full-batch gradient descent: deterministic, so a replay gives the same update."""
    weights = weights.copy()
    for _ in range(steps):
        weights -= settings["learning_rate"] * _gradient(weights, data, settings["l2"])
    return weights


def train_pooled(data: Dataset, rounds: int, config: dict[str, Any] | None = None) -> Vector:
    """The baseline: the same model trained centrally, with as many steps as ``rounds`` of
    federated training give each contributor."""
    settings = {**DEFAULT_CONFIG, **(config or {})}
    weights = train(np.zeros(PARAMETERS), data, rounds * settings["local_steps"], settings)
    return to_vector(weights)


def compute_local_update(
    model: Sequence[int], data: Dataset, config: dict[str, Any] | None = None
) -> Vector:
    """The contributor's answer: the change its rows make to ``model``, clipped, as integers."""
    settings = {**DEFAULT_CONFIG, **(config or {})}
    start = to_array(model)
    if len(data) == 0:
        return (0,) * PARAMETERS
    change = train(start, data, settings["local_steps"], settings) - start
    norm = float(np.linalg.norm(change))
    if norm > settings["max_update_norm"]:
        change *= settings["max_update_norm"] / norm
    return to_vector(change)


# --- the contributor's side ------------------------------------------------------------------


@dataclass(slots=True)
class ContributorBackend:
    """A contributor's private rows and the models it has been sent, by hash."""

    data: Dataset
    config: dict[str, Any] = field(default_factory=dict)
    models: dict[bytes, Vector] = field(default_factory=dict)
    model: str = MODEL_NAME


def validate_request(request: Any) -> tuple[int, bytes, Vector | None]:
    if not isinstance(request, dict):
        raise InvalidRequestError("a federated request is a JSON object")
    round_number, model_hash = request.get("round"), request.get("model_hash")
    if not isinstance(round_number, int) or isinstance(round_number, bool) or round_number < 0:
        raise InvalidRequestError("'round' must be a non-negative integer")
    if not isinstance(model_hash, str) or not _is_hex(model_hash, 32):
        raise InvalidRequestError("'model_hash' must be 32 bytes of hex")
    model = request.get("model")
    return round_number, bytes.fromhex(model_hash), None if model is None else parse_vector(model)


def _is_hex(text: str, size: int) -> bool:
    try:
        return len(bytes.fromhex(text)) == size
    except ValueError:
        return False


def parse_vector(value: Any) -> Vector:
    """A list of ``PARAMETERS`` signed 32-bit integers, or ``UpdateShapeError``."""
    if not isinstance(value, list | tuple) or len(value) != PARAMETERS:
        raise UpdateShapeError(f"a model or update is a list of {PARAMETERS} integers")
    for item in value:
        if type(item) is not int or not VALUE_MIN <= item <= VALUE_MAX:
            raise UpdateShapeError("every parameter is a signed 32-bit integer")
    return tuple(value)


async def handle(backend: ContributorBackend, request: dict[str, Any]) -> dict[str, Any]:
    """Train on the private rows, answer with the update: integers, never rows."""
    round_number, model_hash, model = validate_request(request)
    if model is not None:
        if compute_model_hash(model) != model_hash:
            raise ModelHashMismatch("the model sent does not hash to 'model_hash'")
        backend.models[model_hash] = model
    held = backend.models.get(model_hash)
    if held is None:
        raise ModelHashMismatch(f"no model 0x{model_hash.hex()} here; send it with the request")
    update = compute_local_update(held, backend.data, backend.config)
    return make_response(round_number, model_hash, update)


def make_response(round_number: int, model_hash: bytes, update: Vector) -> dict[str, Any]:
    return {
        "round": round_number,
        "model_hash": model_hash.hex(),
        "update": list(update),
        "update_hash": compute_update_hash(update).hex(),
    }


def parse_response(response: Any, round_number: int, model_hash: bytes) -> Vector:
    """The update of a well-formed answer to this round, or ``UpdateShapeError``."""
    if not isinstance(response, dict):
        raise UpdateShapeError("a federated response is a JSON object")
    if response.get("round") != round_number or response.get("model_hash") != model_hash.hex():
        raise UpdateShapeError("the response answers another round or model")
    update = parse_vector(response.get("update"))
    if response.get("update_hash") != compute_update_hash(update).hex():
        raise UpdateShapeError("'update_hash' is not the hash of 'update'")
    return update


# --- serving a trained model ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A trained model a miner serves for inference, by its content hash."""

    model_hash: bytes
    parameters: Vector
    model: str = MODEL_NAME


def load_served_model(parameters: Any, model_hash: bytes) -> ServedModel:
    """The model, once its parameters hash to ``model_hash`` (else ``ModelHashMismatch``)."""
    vector = parse_vector(parameters)
    if compute_model_hash(vector) != model_hash:
        raise ModelHashMismatch(f"the parameters do not hash to 0x{model_hash.hex()}")
    return ServedModel(model_hash=model_hash, parameters=vector)


def validate_predict_request(request: Any) -> np.ndarray:
    """The request's rows as features scaled to 0..1, or ``InvalidPredictRequest``."""
    rows = request.get("input") if isinstance(request, dict) else None
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_PREDICT_ROWS:
        raise InvalidPredictRequest(f"'input' must be a list of 1 to {MAX_PREDICT_ROWS} rows")
    for row in rows:
        if not isinstance(row, list) or len(row) != FEATURES:
            raise InvalidPredictRequest(f"every row of 'input' holds {FEATURES} pixel values")
        for value in row:
            if type(value) not in (int, float) or not 0 <= value <= MAX_PIXEL:
                raise InvalidPredictRequest(f"pixels are numbers in 0..{MAX_PIXEL}")
    return np.asarray(rows, dtype=np.float64) / MAX_PIXEL


async def handle_predict(backend: ServedModel, request: dict[str, Any]) -> dict[str, Any]:
    """Each row's most likely digit and the ten probabilities, named by the model's hash."""
    features = validate_predict_request(request)
    probabilities = _probabilities(to_array(backend.parameters), features)
    return {
        "model_hash": backend.model_hash.hex(),
        "predictions": [
            {"label": int(row.argmax()), "probabilities": [round(float(p), 6) for p in row]}
            for row in probabilities
        ],
    }


def make_random_prediction(request: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Well-formed noise: a random label per row."""
    rows = request.get("input", [])
    labels = [rng.randrange(CLASSES) for _ in rows]
    return {
        "model_hash": "00" * 32,
        "predictions": [
            {"label": label, "probabilities": [float(c == label) for c in range(CLASSES)]}
            for label in labels
        ],
    }


def parse_predict_response(request: dict[str, Any], answer: Any) -> list[int] | None:
    """The labels of a well-formed answer to ``request`` (one per row), else None."""
    if not isinstance(answer, dict) or not isinstance(answer.get("model_hash"), str):
        return None
    predictions = answer.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != len(request["input"]):
        return None
    labels = []
    for prediction in predictions:
        label = prediction.get("label") if isinstance(prediction, dict) else None
        probabilities = prediction.get("probabilities") if isinstance(prediction, dict) else None
        if type(label) is not int or not 0 <= label < CLASSES:
            return None
        if not isinstance(probabilities, list) or len(probabilities) != CLASSES:
            return None
        if any(type(p) not in (int, float) or not 0 <= p <= 1 for p in probabilities):
            return None
        labels.append(label)
    return labels


def make_challenge(
    seed: bytes, miner_hotkey: bytes, config: dict[str, Any] | None = None
) -> Challenge:
    """A request for the round named by ``config['round']`` on ``config['model']``."""
    settings = {**DEFAULT_CONFIG, **(config or {})}
    model = settings.get("model", make_initial_model())
    return Challenge(
        task=TASK,
        request={
            "round": settings.get("round", 0),
            "seed": seed.hex(),
            "model_hash": compute_model_hash(model).hex(),
            "model": list(model),
        },
        fast_ms=settings["fast_ms"],
        timeout_ms=settings["timeout_ms"],
    )


# --- the validator's side --------------------------------------------------------------------


def draw_held_out(seed: bytes, validator: bytes, size: int) -> Dataset:
    """The validator's held-out rows for one round: drawn from its pool by the round's seed
    and its own key, so contributors cannot know them in advance."""
    pool = load_pools().validators
    rng = derive_rng(b"agora/tasks/federated/held-out", seed, validator)
    rows = sorted(rng.sample(range(len(pool)), min(size, len(pool))))
    return Dataset(pool.features[rows], pool.labels[rows])


def compute_leave_one_out(
    model: Sequence[int], updates: Sequence[Vector | None], held_out: Dataset
) -> list[int]:
    """Each update's improvement of the held-out loss, in micro-nats: the loss of the
    aggregate without it minus the loss with it. ``None`` (refused) and zero updates get 0
    and take no part in the aggregate."""
    taking_part = [
        i for i, update in enumerate(updates) if update is not None and any(v != 0 for v in update)
    ]
    scores = [0] * len(updates)
    if len(taking_part) < 2:
        return scores
    chosen: list[Vector] = [updates[i] for i in taking_part]  # type: ignore[misc]
    with_all = compute_loss(to_array(compute_aggregate(model, chosen)), held_out)
    for position, index in enumerate(taking_part):
        others = chosen[:position] + chosen[position + 1 :]
        without = compute_loss(to_array(compute_aggregate(model, others)), held_out)
        scores[index] = round((without - with_all) * SCORE_ONE)
    return scores


@dataclass(slots=True)
class ScoreMemory:
    """A validator's moving average of each contributor's leave-one-out scores."""

    memory: float = DEFAULT_CONFIG["score_memory"]
    averages: dict[bytes, float] = field(default_factory=dict)

    def update(self, contributor: bytes, score: int) -> float:
        previous = self.averages.get(contributor)
        average = score if previous is None else self.memory * previous + (1 - self.memory) * score
        self.averages[contributor] = average
        return average

    def compute_weights_u16(self, contributors: Sequence[bytes]) -> list[int]:
        """Positive averages scaled so the best is 65535; the rest 0."""
        positive = [max(0.0, self.averages.get(c, 0.0)) for c in contributors]
        best = max(positive, default=0.0)
        if best <= 0:
            return [0] * len(contributors)
        return [int(65_535 * value // best) for value in positive]


def compute_round_incentive(
    weights_u16: Sequence[Sequence[int]], stakes: Sequence[int]
) -> list[int]:
    """Contributors' incentive (u16) from validators' weight rows, by Yuma's own steps 2-8.

    Validators are uids ``0..V-1`` with ``stakes``; contributors follow. This is what the
    subnet's epoch computes on chain from the same weights.
    """
    validators, contributors = len(stakes), len(weights_u16[0]) if weights_u16 else 0
    n = validators + contributors
    stake = compute_stake(list(stakes) + [0] * contributors, None, 0)
    active_stake = compute_active_stake(stake, [True] * n, [i < validators for i in range(n)])
    rows = []
    for row in weights_u16:
        normalized = compute_normalized([w << 32 for w in row])
        rows.append([(validators + j, v) for j, v in enumerate(normalized) if row[j]])
    rows += [[] for _ in range(contributors)]
    kappa = u16_proportion_to_fixed(YumaParams().kappa_u16)
    consensus = compute_consensus(active_stake, rows, n, kappa)
    incentive = compute_incentive(compute_clipped_weights(rows, consensus), active_stake, n)
    return list(compute_u16_proportions(incentive)[validators:])


# --- a whole federation in one process (tests, bench, devnet's report) -----------------------

BEHAVIOURS = ("honest", "label_flip", "sign_flip", "free_rider", "copycat")
SIGN_FLIP_SCALE = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class Contributor:
    """A data owner. Anything but ``honest`` is an attack the tests expect to earn nothing:
    ``label_flip`` trains on ``9 - label``; ``sign_flip`` sends its honest update times -10;
    ``free_rider`` sends zeros; ``copycat`` replays an update revealed in the previous round."""

    hotkey: bytes
    data: Dataset
    behaviour: str = "honest"


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundOutcome:
    """One round as the ledger records it, plus the test accuracy the report prints."""

    round_number: int
    parent_hash: bytes
    model_hash: bytes
    update_hashes: tuple[bytes, ...]  # one per contributor, in contributor order
    credits_u16: tuple[int, ...]  # each contributor's incentive for the round
    accuracy: float


@dataclass(frozen=True, slots=True, kw_only=True)
class FederationOutcome:
    model: Vector
    rounds: tuple[RoundOutcome, ...]

    @property
    def credits(self) -> list[int]:
        """Each contributor's incentive summed over every round."""
        return [sum(column) for column in zip(*(r.credits_u16 for r in self.rounds), strict=True)]


def compute_behaviour_update(
    contributor: Contributor, model: Vector, previous: Sequence[Vector], config: dict[str, Any]
) -> Vector:
    if contributor.behaviour == "honest":
        return compute_local_update(model, contributor.data, config)
    if contributor.behaviour == "label_flip":
        flipped = Dataset(contributor.data.features, CLASSES - 1 - contributor.data.labels)
        return compute_local_update(model, flipped, config)
    if contributor.behaviour == "sign_flip":
        honest = to_array(compute_local_update(model, contributor.data, config))
        return to_vector(-SIGN_FLIP_SCALE * honest)
    if contributor.behaviour == "free_rider":
        return (0,) * PARAMETERS
    if contributor.behaviour == "copycat":
        return previous[0] if previous else (0,) * PARAMETERS
    raise ValueError(f"behaviour must be one of {', '.join(BEHAVIOURS)}")


def compute_round_seed(seed: int, round_number: int) -> bytes:
    material = (
        b"agora/tasks/federated/round" + seed.to_bytes(8, "big") + round_number.to_bytes(8, "big")
    )
    return hashlib.blake2b(material, digest_size=32).digest()


def compute_mean_aggregate(model: Vector, updates: Sequence[Vector]) -> Vector:
    """Plain averaging of every update, the undefended baseline the tests compare against."""
    mean = np.asarray(updates, dtype=np.int64).sum(axis=0) // len(updates)
    return tuple(int(v) for v in np.clip(np.asarray(model) + mean, VALUE_MIN, VALUE_MAX))


@dataclass(slots=True, kw_only=True)
class Federation:
    """Rounds of a federated subnet run in one process, validator by validator.

    ``validators`` are (hotkey, stake) pairs; every validator draws its own held-out rows
    per round, scores every update, keeps its moving average and sets weights; the incentive
    comes from Yuma's steps on those weights and decides which updates the aggregate takes.
    ``defended=False`` averages every update instead: the baseline an attack should break.
    """

    contributors: Sequence[Contributor]
    validators: Sequence[tuple[bytes, int]] = ((b"validator-0", 1), (b"validator-1", 1))
    config: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    defended: bool = True
    test: Dataset | None = None
    model: Vector = field(default_factory=make_initial_model)
    memories: list[ScoreMemory] = field(default_factory=list)
    seen: set[bytes] = field(default_factory=set)
    previous: list[Vector] = field(default_factory=list)
    history: list[RoundOutcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        settings = {**DEFAULT_CONFIG, **self.config}
        self.config = settings
        self.memories = [ScoreMemory(memory=settings["score_memory"]) for _ in self.validators]

    def run(self, rounds: int) -> FederationOutcome:
        for _ in range(rounds):
            self.run_round()
        return FederationOutcome(model=self.model, rounds=tuple(self.history))

    def collect_updates(self) -> list[Vector]:
        return [
            compute_behaviour_update(c, self.model, self.previous, self.config)
            for c in self.contributors
        ]

    def compute_admitted(self, updates: Sequence[Vector]) -> list[Vector | None]:
        """Updates already revealed (this round by an earlier contributor, or before) are
        refused: commitments come before reveals, so only a replay can repeat a hash."""
        admitted: list[Vector | None] = []
        for update in updates:
            update_hash = compute_update_hash(update)
            admitted.append(None if update_hash in self.seen else update)
            if any(update):
                self.seen.add(update_hash)
        return admitted

    def compute_weights(
        self, round_seed: bytes, admitted: Sequence[Vector | None]
    ) -> list[list[int]]:
        hotkeys = [c.hotkey for c in self.contributors]
        rows = []
        for (hotkey, _), memory in zip(self.validators, self.memories, strict=True):
            held_out = draw_held_out(round_seed, hotkey, self.config["held_out"])
            scores = compute_leave_one_out(self.model, admitted, held_out)
            for contributor, score in zip(hotkeys, scores, strict=True):
                memory.update(contributor, score)
            rows.append(memory.compute_weights_u16(hotkeys))
        return rows

    def run_round(self) -> RoundOutcome:
        round_number = len(self.history)
        round_seed = compute_round_seed(self.seed, round_number)
        updates = self.collect_updates()
        admitted = self.compute_admitted(updates)
        parent = self.model
        if self.defended:
            weights = self.compute_weights(round_seed, admitted)
            credits = compute_round_incentive(weights, [stake for _, stake in self.validators])
            included = [
                u for u, c in zip(admitted, credits, strict=True) if u is not None and c > 0
            ]
            self.model = compute_aggregate(parent, included) if included else parent
        else:
            credits = [0] * len(updates)
            self.model = compute_mean_aggregate(parent, updates)
        self.previous = [u for u in updates if any(u)]
        outcome = RoundOutcome(
            round_number=round_number,
            parent_hash=compute_model_hash(parent),
            model_hash=compute_model_hash(self.model),
            update_hashes=tuple(compute_update_hash(u) for u in updates),
            credits_u16=tuple(credits),
            accuracy=compute_accuracy(self.model, self.test) if self.test is not None else 0.0,
        )
        self.history.append(outcome)
        return outcome


async def load_backend(spec: str, cache_dir: Path | None = None) -> None:
    """Nothing: a contributor serves its own data file (``agora miner run --data``)."""
    if spec != "local":
        raise BadBackendSpec("a federated contributor trains on its own data, not an engine")
    return None


async def load_reference_backend(cache_dir: Path | None = None) -> None:
    """Nothing: validators score updates on their held-out rows."""
    return None


# --- one answer alone (the task interface) ---------------------------------------------------
# A federated subnet's validators score a whole round at once (``agora.validator.federated``:
# leave-one-out over every contributor's update). The task interface scores one answer by
# itself: the held-out improvement of the model with that update alone.


def make_random_response(request: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """An update of noise, well formed and correctly hashed, for the round asked."""
    update = tuple(rng.randint(-FIXED_ONE, FIXED_ONE) for _ in range(PARAMETERS))
    return make_response(request["round"], bytes.fromhex(request["model_hash"]), update)


async def compute_reference(
    reference_backend: None, challenge: Challenge, response: Any, sample_seed: bytes
) -> Dataset:
    """The held-out rows this answer is scored on, drawn after it arrived."""
    return draw_held_out(sample_seed, b"", DEFAULT_CONFIG["held_out"])


def compute_score(challenge: Challenge, response: Any, reference: Dataset, latency_ms: int) -> int:
    """The held-out loss improvement of the model with this update alone, in micro-nats,
    capped at ``SCORE_ONE`` (one nat); an update that does not improve it scores 0."""
    request = challenge.request
    model = parse_vector(request["model"])
    update = parse_response(response, request["round"], bytes.fromhex(request["model_hash"]))
    before = compute_loss(to_array(model), reference)
    after = compute_loss(to_array(compute_aggregate(model, [update])), reference)
    improvement = min(SCORE_ONE, max(0, round((before - after) * SCORE_ONE)))
    return apply_latency(improvement, latency_ms, challenge)
