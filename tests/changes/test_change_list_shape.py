"""The change list is built from rows for speed; it must say exactly what the documented
serializer would say for the same change."""

import pytest

from changes import selectors, services
from changes.models import ChangeRequest
from changes.serializers import ChangeSummarySerializer
from tests.factories import make_change

pytestmark = pytest.mark.django_db


def test_row_summaries_match_the_documented_serializer(engineer, auditor, passing_evaluations):
    # given changes in a few states, one submitted (so it has a submitted_at)
    first = make_change(author=engineer)
    make_change(author=engineer, title="Second <b>change</b>")
    services.change_request_submit(actor=engineer, change_request=first)
    # when the list rows are shaped
    rows = selectors.change_summaries(
        selectors.change_list(auditor).order_by("-id").values(*selectors.LIST_COLUMNS)
    )
    # then each equals the serializer's output for that change
    expected = [
        dict(ChangeSummarySerializer(change).data)
        for change in ChangeRequest.objects.order_by("-id")
    ]
    assert rows == expected
    assert set(rows[0]) == set(ChangeSummarySerializer.Meta.fields)
