from django.urls import path

from . import views

urlpatterns = [
    path("systems/<int:pk>/", views.system_monitoring, name="monitoring-system"),
    path("systems/<int:pk>/tokens/", views.token_create, name="monitoring-token-create"),
    path("systems/<int:pk>/review/", views.review_queue, name="monitoring-review"),
    path("incidents/<int:pk>/", views.incident_detail, name="monitoring-incident"),
    path("changes/<int:pk>/monitor/", views.change_monitor, name="monitoring-change-monitor"),
]
