"""The images domain's settings section for ingest, cut from `Settings` in the composition root.

Field names are the settings' own (env var names in lower case); the URL fetch policy and the
structure walk's bounds are built here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.core.config import Settings
from app.services.fetch.url_policy import UrlPolicy
from app.services.validation.limits import IntegrityLimits
from app.services.validation.settings import integrity_limits


def url_policy(settings: Settings) -> UrlPolicy:
    """The URL fetch policy from settings (the size limit is the upload limit)."""
    return UrlPolicy(
        max_redirects=settings.url_fetch_max_redirects,
        connect_timeout=settings.url_fetch_connect_timeout,
        read_timeout=settings.url_fetch_read_timeout,
        total_timeout=settings.url_fetch_total_timeout,
        max_bytes=settings.max_upload_bytes,
        allow_loopback=settings.url_fetch_allow_loopback,
    )


@dataclass(frozen=True)
class IngestSettings:
    """Uploads and URL downloads (`IngestService`): sizes, form shape, formats, checks."""

    max_upload_bytes: int
    max_declared_trailer_bytes: int  # a phone photo's declared trailer may come on top
    max_request_body_bytes: int  # the file, its trailer and multipart framing
    max_form_parts: int
    max_form_field_bytes: int
    max_form_preamble_bytes: int
    max_form_padding_bytes: int
    upload_memory_copy_bytes: int  # a small file's copy in memory, for its checks
    upload_memory_budget_bytes: int  # such copies of all uploads in flight
    allowed_formats: frozenset[str]
    max_image_pixels: int
    upload_decode_check: Literal["structure", "draft"]
    integrity: IntegrityLimits
    url_policy: UrlPolicy
    perceptual_hash_at_upload: bool
    perceptual_reuse_distance: int  # 0: no reuse, so no hash either

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestSettings:
        return cls(
            max_upload_bytes=settings.max_upload_bytes,
            max_declared_trailer_bytes=settings.max_declared_trailer_bytes,
            max_request_body_bytes=settings.max_request_body_bytes,
            max_form_parts=settings.max_form_parts,
            max_form_field_bytes=settings.max_form_field_bytes,
            max_form_preamble_bytes=settings.max_form_preamble_bytes,
            max_form_padding_bytes=settings.max_form_padding_bytes,
            upload_memory_copy_bytes=settings.upload_memory_copy_bytes,
            upload_memory_budget_bytes=settings.upload_memory_budget_bytes,
            allowed_formats=frozenset(settings.allowed_formats),
            max_image_pixels=settings.max_image_pixels,
            upload_decode_check=settings.upload_decode_check,
            integrity=integrity_limits(settings),
            url_policy=url_policy(settings),
            perceptual_hash_at_upload=settings.perceptual_hash_at_upload,
            perceptual_reuse_distance=settings.perceptual_reuse_distance,
        )
