"""Eval-vs-live discrepancy (step 3)."""


def check_change(change_id: int) -> None:
    return None
