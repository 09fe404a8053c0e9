"""LightGBM and scikit-learn on the features ml-bench wrote: the same rows,
the same held-out days (`valid` = 1), parameters matched to Basin's
defaults (200 trees, learning rate 0.1, depth 8, 64 leaves, 255 bins, L2 1).
Prints one JSON line per engine: fit seconds and held-out RMSE and R²."""

import json
import sys
import time

import numpy as np
import pyarrow.parquet as pq

FEATURES = ["trip_distance", "duration_min", "pickup_hour", "pickup_weekday",
            "pu_zone", "do_zone", "passenger_count", "rate_code"]


def load(path):
    t = pq.read_table(path).to_pandas()
    x = t[FEATURES].to_numpy(dtype=np.float64)
    y = t["fare_amount"].to_numpy()
    v = t["valid"].to_numpy() == 1
    return x[~v], y[~v], x[v], y[v]


def metrics(y, p):
    se = float(np.sum((y - p) ** 2))
    return {"rmse": (se / len(y)) ** 0.5, "r2": 1 - se / float(np.sum((y - y.mean()) ** 2))}


def lightgbm(xt, yt, xv, yv):
    import lightgbm as lgb
    params = dict(objective="regression", n_estimators=200, learning_rate=0.1, max_depth=8,
                  num_leaves=64, max_bin=255, reg_lambda=1.0, min_child_weight=1.0,
                  min_child_samples=1, n_jobs=2, verbose=-1)
    m = lgb.LGBMRegressor(**params)
    start = time.perf_counter()
    m.fit(xt, yt)
    s = time.perf_counter() - start
    return {"engine": "lightgbm", "version": lgb.__version__, "seconds": s, **metrics(yv, m.predict(xv))}


def sklearn(xt, yt, xv, yv):
    import sklearn
    from sklearn.ensemble import HistGradientBoostingRegressor
    m = HistGradientBoostingRegressor(max_iter=200, learning_rate=0.1, max_depth=8,
                                      max_leaf_nodes=64, max_bins=255, l2_regularization=1.0,
                                      min_samples_leaf=1, early_stopping=False)
    start = time.perf_counter()
    m.fit(xt, yt)
    s = time.perf_counter() - start
    return {"engine": "sklearn", "version": sklearn.__version__, "seconds": s, **metrics(yv, m.predict(xv))}


if __name__ == "__main__":
    data = load(sys.argv[1])
    for run in (lightgbm, sklearn):
        print(json.dumps(run(*data)), flush=True)
