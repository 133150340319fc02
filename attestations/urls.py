"""Web routes (filled by the attestations issue)."""

urlpatterns = []
