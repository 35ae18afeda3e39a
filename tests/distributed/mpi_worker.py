"""What each rank runs in tests/distributed/test_mpi.py (``mpirun -n N python mpi_worker.py``).

``train OUT BACKENDS``: every case of :data:`CASES` on every backend with ``fit(...,
distributed=True)``; each rank writes its final weights (and evaluate's numbers) to
``OUT/<backend>-<case>-rank<r>.npz``. The single-process reference is the same
:func:`train_case` with ``distributed=False``, computed by the test.
``raise OUT``: rank 1 raises in a callback after the first epoch, while rank 0 trains on.
``mismatch OUT``: rank 1's model differs from rank 0's in one parameter; ``broadcast OUT``:
the same, then ``broadcast_parameters`` (fit then starts; each rank writes its weights).
``interrupt OUT``: rank 1 gets a SIGINT in step 5; each rank writes (interrupted, steps).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np

import arrayprop as ap

#: (samples, batch size, loss, optimizer, epochs, features, outputs). The batch sizes do not
#: divide by 2 or 3 ranks, nor the samples by the batch size; with 50 samples in batches of 7
#: the last batch holds one row, so ranks 1 and 2 have none.
CASES = {
    "adam-ce": (50, 7, "softmax-ce", "adam", 2, 4, 3),
    "sgd-l2sum": (53, 10, "l2sum", "sgd", 2, 5, 2),
}


def make_data(case: str) -> tuple[np.ndarray, np.ndarray]:
    n, _, loss, _, _, features, outputs = CASES[case]
    rng = np.random.default_rng(11)
    x = rng.normal(size=(n, features))
    if loss == "softmax-ce":
        return x, rng.integers(0, outputs, size=n)
    return x, rng.normal(size=(n, outputs))


def make_model(backend: str, case: str, seed: int = 5) -> ap.Sequential:
    _, _, _, _, _, features, outputs = CASES[case]
    return ap.mlp([features, 16, outputs], seed=seed, backend=backend, dtype="float64")


def train_case(
    backend: str, case: str, *, distributed: bool, checkpoint: Path | None = None
) -> tuple[ap.Sequential, dict[str, float], list[float]]:
    """The model after fit, evaluate's numbers on the training set and the History's losses."""
    _, batch, loss_name, opt_name, epochs, _, _ = CASES[case]
    x, y = make_data(case)
    model = make_model(backend, case)
    loss = ap.L2Loss("sum") if loss_name == "l2sum" else loss_name
    params = model.parameters()
    opt = ap.Adam(params, lr=0.05) if opt_name == "adam" else ap.SGD(params, lr=0.01, momentum=0.9)
    metrics = ["accuracy"] if loss_name == "softmax-ce" else []
    kwargs = dict(loss=loss, optimizer=opt, batch_size=batch, seed=3, progress=None)
    kwargs.update(metrics=metrics, distributed=distributed)
    if checkpoint is None:
        history = ap.fit(model, x, y, epochs=epochs, **kwargs)
    else:  # one epoch, then a resumed run to the end: exactly the uninterrupted weights
        ap.fit(model, x, y, epochs=1, checkpoint=checkpoint, **kwargs)
        model = make_model(backend, case, seed=99)  # the resumed run must load the weights
        params = model.parameters()
        opt = (
            ap.Adam(params, lr=0.05)
            if opt_name == "adam"
            else ap.SGD(params, lr=0.01, momentum=0.9)
        )
        kwargs["optimizer"] = opt
        history = ap.fit(model, x, y, epochs=epochs, checkpoint=checkpoint, resume=True, **kwargs)
    numbers = ap.evaluate(model, x, y, loss=loss, metrics=metrics, distributed=distributed)
    return model, numbers, list(history.history["loss"])


def weights(model: ap.Sequential) -> dict[str, np.ndarray]:
    return {n: model.backend.to_host(p.data) for n, p in model.named_parameters()}


def main(argv: list[str]) -> None:
    what, out = argv[0], Path(argv[1])
    world = ap.distributed.init()
    rank = world.rank
    if what == "train":
        for backend in argv[2].split(","):
            for case in CASES:
                for resumed in (False, True):
                    ckpt = out / f"{backend}-{case}.ckpt.npz" if resumed else None
                    model, numbers, losses = train_case(
                        backend, case, distributed=True, checkpoint=ckpt
                    )
                    tag = f"{backend}-{case}{'-resumed' if resumed else ''}-rank{rank}"
                    extra = {f"evaluate:{k}": np.float64(v) for k, v in numbers.items()}
                    extra["history:loss"] = np.asarray(losses)
                    np.savez(out / f"{tag}.npz", **weights(model), **extra)
        # BatchNorm: per-shard statistics, running statistics averaged over the ranks
        be = ap.get_backend("numpy", dtype="float64")
        x, y = make_data("adam-ce")
        x, y = x[:48], y[:48]  # 6 batches of 8: every rank holds 2 rows or more of each
        rng = np.random.default_rng(5)
        model = ap.Sequential(
            [ap.Dense(4, 8, seed=rng, backend=be), ap.BatchNorm1d(8, backend=be), ap.ReLU(),
             ap.Dense(8, 3, seed=rng, backend=be)]
        )  # fmt: skip
        ap.fit(model, x, y, loss="softmax-ce", optimizer="sgd", epochs=1, batch_size=8,
               progress=None, distributed=True)  # fmt: skip
        buffers = {n: be.to_host(b.data) for n, b in model.named_buffers()}
        np.savez(out / f"batchnorm-rank{rank}.npz", **buffers)
    elif what == "raise":

        def fail(epoch: int, logs: dict) -> None:
            if rank == 1:
                raise RuntimeError(f"boom on rank {rank} after epoch {epoch}")

        x, y = make_data("adam-ce")
        model = make_model("numpy", "adam-ce")
        callback = ap.LambdaCallback(on_epoch_end=fail)
        ap.fit(model, x, y, loss="softmax-ce", optimizer="sgd", epochs=50, batch_size=7,
               progress=None, callbacks=[callback], distributed=True)  # fmt: skip
        (out / f"finished-rank{rank}").write_text("rank finished training: it should not have")
    elif what == "interrupt":

        @ap.register_layer
        class Kick(ap.Layer):
            """Identity; on rank 1, a SIGINT (a first Ctrl-C) in the forward of step 5."""

            calls = 0

            def forward(self, x):
                Kick.calls += 1
                if rank == 1 and Kick.calls == 5:
                    os.kill(os.getpid(), signal.SIGINT)
                return x

            def backward(self, grad):
                return grad

        x, y = make_data("adam-ce")
        model = make_model("numpy", "adam-ce")
        model = ap.Sequential([model.layers[0], Kick(), *model.layers[1:]])
        opt = ap.SGD(model.parameters(), lr=0.01)
        history = ap.fit(model, x, y, loss="softmax-ce", optimizer=opt, epochs=3, batch_size=7,
                         progress=None, checkpoint=out / "run.npz", distributed=True)  # fmt: skip
        (out / f"rank{rank}.txt").write_text(f"{history.interrupted} {opt.steps}")
    elif what in ("mismatch", "broadcast"):
        x, y = make_data("adam-ce")
        model = make_model("numpy", "adam-ce")
        if rank == 1:  # one weight of the last layer only: the error must name that parameter
            bias = model.layers[2].bias
            bias.data = bias.data + np.eye(1, bias.shape[0])[0] * 1e-9
        if what == "broadcast":  # rank 0's weights everywhere: then fit starts
            ap.distributed.broadcast_parameters(model)
        ap.fit(model, x, y, loss="softmax-ce", optimizer="sgd", epochs=1, batch_size=7,
               progress=None, distributed=True)  # fmt: skip
        np.savez(out / f"{what}-rank{rank}.npz", **weights(model))
    else:
        raise SystemExit(f"unknown scenario {what!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
