"""API routes (filled by the evaluations issue)."""

urlpatterns = []
