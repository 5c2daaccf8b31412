"""Schemathesis hooks for ops/fuzz-api.sh: aim half of the valid requests at
a model that really exists.

A generated model name is a random string, so without this every /predict,
/batch_predict and /models/{name} request ends in a 404 before the code that
loads a model, checks features and answers ever runs, and the stateful phase
never reaches the batch job a 202 links to. fuzz-api.sh trains a small
sample-quality model first and passes its name, one real sample and the data
set id in the environment; here every other positive case for those
operations is pointed at them. Negative cases (deliberately invalid requests)
are left alone, so the checks that the API rejects them still run.
"""

import itertools
import json
import os

import schemathesis
from schemathesis.generation import GenerationMode

MODEL = os.environ.get("FUZZ_MODEL", "")
SAMPLE = json.loads(os.environ.get("FUZZ_SAMPLE", "{}"))
DATASET = os.environ.get("FUZZ_DATASET", "")
_turn = itertools.count()


def _positive(case):
    meta = getattr(case, "meta", None)
    return meta is not None and meta.generation.mode == GenerationMode.POSITIVE


@schemathesis.hook
def map_case(context, case):
    path = case.operation.path
    if not MODEL or path not in ("/predict", "/batch_predict", "/models/{name}"):
        return case
    if not _positive(case) or next(_turn) % 2:
        return case
    if path == "/models/{name}":
        case.path_parameters = {**(case.path_parameters or {}), "name": MODEL}
        return case
    if not isinstance(case.body, dict):
        return case
    body = dict(case.body)
    body["model"] = MODEL
    # A generated version number or alias names no version of this model;
    # nothing is deployed in the fuzz run, so name its only version.
    body.pop("alias", None)
    body["version"] = 1
    if path == "/predict":
        body["features"] = dict(SAMPLE)
    elif "dataset_id" in body and DATASET:
        body["dataset_id"] = DATASET
        body.pop("records", None)
    else:
        body["records"] = [dict(SAMPLE)]
    case.body = body
    return case
