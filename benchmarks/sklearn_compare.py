"""arrayprop.sklearn beside scikit-learn's own MLP: same data, hidden sizes, epochs and solver.

For docs/sklearn.md. Digits and breast cancer (accuracy) and diabetes (R², standardized
target): a 75/25 split per seed, StandardScaler on X, 5 seeds; every fit runs all ``--epochs``
(tol=0 with n_iter_no_change = epochs, so neither stops early). Fit times are from the same
runs: the ratio is the median arrayprop time over the median scikit-learn time. The machine's
load average is printed beside them.

    python benchmarks/sklearn_compare.py [--epochs 100] [--seeds 5]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkClassifier
from sklearn.neural_network import MLPRegressor as SkRegressor
from sklearn.preprocessing import StandardScaler

from arrayprop.sklearn import MLPClassifier, MLPRegressor

SETS = {
    "digits": (load_digits, True),
    "breast_cancer": (load_breast_cancer, True),
    "diabetes": (load_diabetes, False),
}


def run(epochs: int, seeds: int, hidden: tuple[int, ...]) -> None:
    common = {
        "hidden_layer_sizes": hidden,
        "max_iter": epochs,
        "tol": 0.0,
        "n_iter_no_change": epochs,
    }
    print(f"load average before: {os.getloadavg()}")
    print("| data set | metric | scikit-learn (mean ± sd) | arrayprop (mean ± sd) | time ratio |")
    print("|---|---|---|---|---|")
    for name, (load, classify) in SETS.items():
        x, y = load(return_X_y=True)
        scores: dict[str, list[float]] = {"sk": [], "ap": []}
        times: dict[str, list[float]] = {"sk": [], "ap": []}
        for seed in range(seeds):
            xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=seed)
            scaler = StandardScaler().fit(xtr)
            xtr, xte = scaler.transform(xtr), scaler.transform(xte)
            if not classify:
                mu, sd = ytr.mean(), ytr.std()
                ytr, yte = (ytr - mu) / sd, (yte - mu) / sd
            for who in ("sk", "ap"):
                if classify:
                    cls = SkClassifier if who == "sk" else MLPClassifier
                else:
                    cls = SkRegressor if who == "sk" else MLPRegressor
                est = cls(random_state=seed, **common)
                t0 = time.perf_counter()
                est.fit(xtr, ytr)
                times[who].append(time.perf_counter() - t0)
                scores[who].append(est.score(xte, yte))
        ratio = np.median(times["ap"]) / np.median(times["sk"])
        cells = [f"{np.mean(scores[w]):.3f} ± {np.std(scores[w]):.3f}" for w in ("sk", "ap")]
        metric = "accuracy" if classify else "R²"
        print(f"| {name} | {metric} | {cells[0]} | {cells[1]} | {ratio:.2f} |")
    print(f"load average after: {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64])
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    run(args.epochs, args.seeds, tuple(args.hidden))


if __name__ == "__main__":
    main()
