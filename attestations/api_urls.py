"""Attestation API routes (mounted under ``/api/v1/``). Read-only except verification:
any other method is 405."""

from django.urls import path

from . import apis

urlpatterns = [
    path(
        "changes/<int:pk>/attestation.pdf",
        apis.ChangeAttestationPdfApi.as_view(),
        name="api-change-attestation-pdf",
    ),
    path(
        "changes/<int:pk>/evidence.zip",
        apis.ChangeEvidenceApi.as_view(),
        name="api-change-evidence",
    ),
    path(
        "changes/<int:pk>/attestations/",
        apis.ChangeAttestationListApi.as_view(),
        name="api-change-attestations",
    ),
    path("attestations/", apis.AttestationListApi.as_view(), name="api-attestation-list"),
    path(
        "attestations/verify/", apis.AttestationVerifyApi.as_view(), name="api-attestation-verify"
    ),
    path(
        "attestations/certificate/",
        apis.AttestationCertificateApi.as_view(),
        name="api-attestation-certificate",
    ),
    path(
        "attestations/<int:pk>/",
        apis.AttestationDetailApi.as_view(),
        name="api-attestation-detail",
    ),
    path("attestations/<int:pk>/pdf", apis.AttestationPdfApi.as_view(), name="api-attestation-pdf"),
    path(
        "attestations/<int:pk>/envelope.json",
        apis.AttestationEnvelopeApi.as_view(),
        name="api-attestation-envelope",
    ),
]
