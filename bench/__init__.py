"""Benchmarks: ``python -m bench`` runs every ``bench/bench_*.py`` module and writes
``bench/RESULTS.md``.

Contract for a bench module: a function ``run() -> dict`` returning::

    {
        "title": "Evaluation throughput",
        "figures": [
            {
                "name": "worker path",           # what was measured
                "value": 512.3, "unit": "samples/s",
                "baseline": {"name": "raw httpx loop", "value": 640.1, "unit": "samples/s"},
                "ratio": 0.80,                    # value / baseline value (same run)
                "target": ">= 0.75 of baseline and >= 300 samples/s",  # optional
                "met": True,                      # optional
            },
        ],
        "details": {...},                         # optional, printed as JSON
        "notes": ["..."],                         # optional
    }

Speed targets live here, never in timed unit tests (DESIGN.md, "Measuring, not timing").
"""
