"""A small command line for CI/CD pipelines: ``python -m pcm gate --change CR-12 --wait``.

Standard library only, so a pipeline runner needs nothing but Python (docs/REVIEWS.md).
"""
