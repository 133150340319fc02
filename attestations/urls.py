"""Web routes for attestations (mounted under ``/attestations/``)."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.attestation_list, name="attestation-list"),
    path("verify/", views.attestation_verify, name="attestation-verify"),
    path("certificate.pem", views.certificate_pem, name="attestation-certificate"),
    path("changes/<int:pk>/panel/", views.change_panel, name="attestation-panel"),
]
