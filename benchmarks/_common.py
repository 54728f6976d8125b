"""Shared helpers for the benchmarks: timing, peak memory, embedding quality."""

from __future__ import annotations

import resource
import time
from contextlib import contextmanager

import numpy as np


@contextmanager
def timer(out: dict, key: str):
    t0 = time.perf_counter()
    yield
    out[key] = time.perf_counter() - t0


def alternating_rounds(adata, calls: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds of each ``calls[label](copy of adata, seed)``, all of them in every round
    (``seed`` = the round), so that drifts in the machine's speed fall on each alike."""
    times = {label: [] for label in calls}
    for seed in range(rounds):
        for label, call in calls.items():
            ad = adata.copy()
            t0 = time.perf_counter()
            call(ad, seed)
            times[label].append(time.perf_counter() - t0)
    return times


class PeakRSS:
    """Peak resident memory (GB) of this process while the block runs, sampled every 10 ms
    (``ru_maxrss`` cannot be reset, so it would include whatever ran before)."""

    def __enter__(self):
        import threading

        import psutil

        self._proc, self._stop = psutil.Process(), threading.Event()
        self.before = self.peak = self._proc.memory_info().rss / 2**30
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._proc.memory_info().rss / 2**30)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss / 2**30)


class StagePeaks(PeakRSS):
    """:class:`PeakRSS` that also keeps the peak and the time of each named stage: ``stage(name)``
    marks where the next stage starts; ``peaks`` maps each stage to its peak RSS (GB),
    ``seconds`` to its wall time."""

    def __enter__(self):
        self.current, self.peaks, self.seconds = "start", {}, {}
        self._started = time.perf_counter()
        return super().__enter__()

    def stage(self, name: str) -> None:
        self._note()
        now = time.perf_counter()
        self.seconds[self.current] = self.seconds.get(self.current, 0.0) + now - self._started
        self.current, self._started = name, now

    def _note(self):
        rss = self._proc.memory_info().rss / 2**30
        self.peak = max(self.peak, rss)
        self.peaks[self.current] = max(self.peaks.get(self.current, 0.0), rss)

    def _sample(self):
        while not self._stop.wait(0.005):
            self._note()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self.stage("end")


def warm_umap() -> None:
    """Compile umap-learn's numba code before timing it: its exact kNN below 4,096 cells and
    pynndescent from 4,096 on are different code, so warm both (a 300-cell warm-up left
    pynndescent's compilation, about 20 s, inside the first large fit's time)."""
    import umap

    rng = np.random.default_rng(0)
    for n in (300, 5000):
        umap.UMAP(n_neighbors=15, n_epochs=5).fit_transform(rng.normal(size=(n, 50)).astype(np.float32))


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def trustworthiness(reference: np.ndarray, embedding: np.ndarray, k: int = 15, max_cells: int = 5000, seed: int = 0) -> float:
    """sklearn's trustworthiness on a fixed random subset (it is O(n^2) in memory)."""
    from sklearn.manifold import trustworthiness as tw

    idx = np.random.default_rng(seed).permutation(len(embedding))[:max_cells]
    return float(tw(reference[idx], embedding[idx], n_neighbors=k))


def knn_accuracy(embedding: np.ndarray, labels, k: int = 15) -> float:
    """Fraction of cells whose label is the majority among their k nearest neighbours."""
    from sklearn.neighbors import NearestNeighbors

    codes = np.unique(np.asarray(labels), return_inverse=True)[1]
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(embedding).kneighbors(embedding)
    votes = codes[idx[:, 1:]]
    majority = np.array([np.bincount(v).argmax() for v in votes])
    return float((majority == codes).mean())


def run_isolated(cmd: list[str], timeout: float, label: str) -> dict | None:
    """Run one benchmark case in a fresh process; its last stdout line is a JSON dict.
    Returns ``{"stopped": True}`` past ``timeout`` and None (printing stderr) on failure."""
    import json
    import subprocess
    import sys

    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"stopped": True}
    if res.returncode != 0:
        print(f"{label} failed:\n{res.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def print_table(rows: list[dict], title: str) -> None:
    cols = list(dict.fromkeys(key for row in rows for key in row))  # every row's columns, in order
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    widths = [max(len(c), *(len(fmt(r.get(c, ""))) for r in rows)) for c in cols]
    print(f"\n## {title}\n")
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(fmt(r.get(c, "")).ljust(w) for c, w in zip(cols, widths)) + " |")
