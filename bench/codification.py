"""Classifier figures on the labelled e-mails shipped with the tests
(tests/dispatcher/service/data/codification_mails.json): stratified 5-fold cross-validated
accuracy, accuracy on a fixed half split, the share the default confidence threshold lets
through (and its accuracy), training time and time to categorise one e-mail (median, p99).

    python -m bench.codification

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from dispatcher.service.codification import DEFAULT_MIN_CONFIDENCE, evaluate, train

DATA = Path(__file__).resolve().parents[1] / "tests/dispatcher/service/data/codification_mails.json"
PREDICTIONS = 500


def main() -> None:
    mails = json.loads(DATA.read_text())["mails"]
    pairs = [(f"{s}\n{b}", c) for s, b, c in mails]
    print(f"labelled set: {len(pairs)} e-mails, {len({c for _, c in pairs})} categories")
    started = time.perf_counter()
    accuracy = evaluate(pairs)
    print(f"5-fold cross-validated accuracy: {accuracy:.3f} "
          f"({time.perf_counter() - started:.2f} s for 5 trainings)")
    train_set, test_set = pairs[::2], pairs[1::2]
    started = time.perf_counter()
    model = train(train_set)
    trained = time.perf_counter() - started
    predicted = [model.predict(t) for t, _ in test_set]
    hits = [p[0] == c for p, (_, c) in zip(predicted, test_set, strict=True)]
    confident = [(p, h) for p, h in zip(predicted, hits, strict=True)
                 if p[1] >= DEFAULT_MIN_CONFIDENCE]
    print(f"half split: trained on {len(train_set)} in {trained * 1000:.0f} ms; accuracy "
          f"{sum(hits) / len(hits):.3f} on {len(test_set)}")
    print(f"at the default threshold {DEFAULT_MIN_CONFIDENCE}: "
          f"{len(confident) / len(hits):.0%} categorised, accuracy "
          f"{sum(h for _, h in confident) / max(1, len(confident)):.3f} (the rest: no category)")
    times = []
    for i in range(PREDICTIONS):
        text = test_set[i % len(test_set)][0]
        t0 = time.perf_counter()
        model.predict(text)
        times.append(time.perf_counter() - t0)
    times.sort()
    print(f"categorise one e-mail: median {statistics.median(times) * 1000:.2f} ms, "
          f"p99 {times[int(len(times) * 0.99) - 1] * 1000:.2f} ms")


if __name__ == "__main__":
    main()
