"""Sampled human review (step 4)."""


def sample(decisions) -> None:
    return None
