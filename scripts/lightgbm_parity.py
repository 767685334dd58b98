"""Python's `lightgbm` side of the Rust/Python model-file parity test.

    train   --data labelled.csv --features a,b,c --monotone 1,-1,1 --model-out M
            Trains a binary booster on the labelled CSV (blank = missing) and saves
            it with Booster.save_model, as a risk team working in Python would.
    predict --model M --rows rows.csv --features a,b,c --out predictions.txt
            Loads a LightGBM text model (from Rust or Python) and writes one
            probability per row, as repr() (shortest round-trip form).

Run by provisioner/tests/lightgbm_python.rs with the interpreter scripts/test
installs (lightgbm pinned to the version lightgbm3-sys bundles).
"""

import argparse
import csv
import math

import lightgbm as lgb
import numpy as np


def read(path, features, with_label):
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    x = np.array(
        [[float(row[f]) if row[f].strip() else math.nan for f in features] for row in rows],
        dtype=np.float64,
    )
    y = np.array([float(row["default"]) for row in rows]) if with_label else None
    return x, y


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["train", "predict"])
    parser.add_argument("--data")
    parser.add_argument("--rows")
    parser.add_argument("--features", required=True)
    parser.add_argument("--monotone")
    parser.add_argument("--model-out")
    parser.add_argument("--model")
    parser.add_argument("--out")
    args = parser.parse_args()
    features = args.features.split(",")
    if args.command == "train":
        x, y = read(args.data, features, True)
        params = {
            "objective": "binary",
            "learning_rate": 0.05,
            "num_leaves": 15,
            "min_data_in_leaf": 50,
            "monotone_constraints": [int(v) for v in args.monotone.split(",")],
            "seed": 7,
            "deterministic": True,
            "verbosity": -1,
        }
        booster = lgb.train(params, lgb.Dataset(x, y, feature_name=features), num_boost_round=80)
        booster.save_model(args.model_out)
    else:
        x, _ = read(args.rows, features, False)
        booster = lgb.Booster(model_file=args.model)
        with open(args.out, "w") as out:
            for p in booster.predict(x):
                out.write(repr(float(p)) + "\n")


if __name__ == "__main__":
    main()
