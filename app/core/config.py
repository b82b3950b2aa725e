"""Service settings: one pydantic-settings class read from the environment and `.env`.

Every limit the service enforces lives here, so that it can be changed without code.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from app.core.login_settings import LoginSettings
from app.core.model_settings import ModelSettings
from app.core.web_settings import WebSettings
from app.core.webhook_settings import WebhookSettings

CommaList = Annotated[list[str], NoDecode]

MiB = 1024 * 1024

# The checkout the service runs from: set-up exports the classifier into its models/, so the
# default works whatever the working directory of `uvicorn app.main:app` is.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(LoginSettings, ModelSettings, WebSettings, WebhookSettings):
    """All configuration of the service; env var names are the field names in upper case."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("data")

    # Upload limits
    max_upload_bytes: int = Field(default=5 * MiB, ge=1)
    max_multipart_overhead_bytes: int = Field(default=64 * 1024, ge=1024)
    # A phone photo's declared trailer (Motion Photo video, Samsung SEF) may come on top of
    # MAX_UPLOAD_BYTES; it is cut off, and the image stored must stay within MAX_UPLOAD_BYTES
    max_declared_trailer_bytes: int = Field(default=8 * MiB, ge=0)
    max_form_parts: int = Field(default=8, ge=1)
    max_form_field_bytes: int = Field(default=16 * 1024, ge=1)
    # Junk a form may carry: a preamble before its first boundary, spaces after a boundary
    max_form_preamble_bytes: int = Field(default=1024, ge=0)
    max_form_padding_bytes: int = Field(default=256, ge=0)
    # A file of at most UPLOAD_MEMORY_COPY_BYTES also keeps a copy in memory while it streams,
    # which its checks read (0: every file is read back from its temp file); the uploads being
    # received at once keep at most UPLOAD_MEMORY_BUDGET_BYTES between them
    upload_memory_copy_bytes: int = Field(default=256 * 1024, ge=0)
    upload_memory_budget_bytes: int = Field(default=16 * MiB, ge=0)
    # 8192 x 6144: the full resolution of 48-50 MP phone cameras (decoded reduced; see README)
    max_image_pixels: int = Field(default=50_331_648, ge=1)
    # JPEG check at upload: "structure" (marker walk to EOI, ~1 ms) or "draft" (1/8-scale decode)
    upload_decode_check: Literal["structure", "draft"] = "structure"
    # Wholeness walk at upload (app.services.validation.checks): chunks/segments walked per file; PNG
    # text chunks (count, raw bytes per chunk and in all; as Pillow's MAX_TEXT_CHUNK/MEMORY);
    # other metadata (JPEG APPn/COM, WebP ICCP/EXIF/XMP, PNG ancillary); what may follow a
    # JPEG's last EOI (bytes) and how many JPEGs one file may chain (MPF: Ultra HDR, MPO)
    image_max_chunks: int = Field(default=10_000, ge=1)
    png_max_text_chunks: int = Field(default=512, ge=0)
    png_max_text_chunk_bytes: int = Field(default=MiB, ge=0)
    png_max_text_bytes: int = Field(default=64 * MiB, ge=0)
    image_max_metadata_segments: int = Field(default=256, ge=0)
    image_max_metadata_bytes: int = Field(default=4 * MiB, ge=0)
    jpeg_max_trailing_bytes: int = Field(default=4096, ge=0)
    jpeg_max_images: int = Field(default=4, ge=1)
    allowed_formats: CommaList = ["jpeg", "png", "webp", "heic", "avif"]
    max_json_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # A request body that sends nothing for this long is cut (408) and its temp file removed
    body_read_timeout_seconds: float = Field(default=15.0, gt=0)
    # ... and one that crawls (app.api.stalls): after the grace, each window must bring the min
    # rate's bytes (0: no minimum); no body may take longer than the deadline from its first read
    body_min_rate_bytes: int = Field(default=1024, ge=0)
    body_min_rate_window_seconds: float = Field(default=5.0, gt=0)
    body_grace_seconds: float = Field(default=5.0, ge=0)
    request_body_deadline_seconds: float = Field(default=120.0, gt=0)
    # Connections (app.api.connections): a request head not complete in time is closed; at most
    # MAX_CONNECTIONS_PER_ADDRESS from one client address per worker (more: 503, closed)
    header_read_timeout_seconds: float = Field(default=10.0, gt=0)
    max_connections_per_address: int = Field(default=512, ge=1)

    # Access: callers without credentials are served when ANONYMOUS_ACCESS is true
    # (default: true, but false whenever API_KEYS is set)
    api_keys: CommaList = []
    anonymous_access: bool | None = None
    # Browser origins allowed by CORS: default "*" (any), but none in production (ENVIRONMENT)
    cors_origins: CommaList = Field(
        default_factory=lambda data: [] if data.get("environment") == "production" else ["*"]
    )
    # Security headers (app.api.security_headers): Strict-Transport-Security for this many
    # seconds (0: not sent; set it only where the service is reached over HTTPS alone)
    hsts_seconds: int = Field(default=0, ge=0)
    hsts_include_subdomains: bool = False

    # Database: SQLite under DATA_DIR by default; postgresql+asyncpg://... for PostgreSQL, whose
    # connection attempts give up after the timeout (then 503 database_unavailable)
    database_url: str | None = None
    database_connect_timeout_seconds: float = Field(default=5.0, gt=0)

    # Accounts and tokens. SECRET_KEY signs JWTs: unset, one is generated once and kept in
    # the database (shared by every replica) with a warning; production must set it.
    secret_key: SecretStr | None = None
    jwt_issuer: str = "image-analysis-service"
    jwt_audience: str = "image-analysis-api"
    access_token_minutes: int = Field(default=30, ge=1, le=24 * 60)
    refresh_token_days: int = Field(default=7, ge=1, le=365)
    # Expired refresh tokens and revocations are deleted while tokens are issued, at most this often
    token_purge_interval_seconds: float = Field(default=3600.0, gt=0)
    password_min_length: int = Field(default=8, ge=8, le=128)
    password_max_length: int = Field(default=128, ge=8, le=4096)
    # is_admin at registration: honoured for the first admin while none exists (default: on
    # except in production); an admin can always create admins
    admin_bootstrap: bool | None = None
    # Seed 000: an admin account from the environment (bcrypt hash accepted) and the
    # password that /v1/refill accepts instead of an admin token
    admin_username: str | None = None
    admin_pw_hash: SecretStr | None = None
    # Seed 003: a static admin token accepted by DELETE /history
    admin_token: SecretStr | None = None
    # Credits (seed 000's "tokens"): balance of a new user; what /v1/refill adds by default
    initial_credits: int = Field(default=10, ge=0)
    token_refill_amount: int = Field(default=10, ge=1)
    # How long a worker trusts its cached view of a user (admin flag, deletion, logouts)
    user_cache_seconds: float = Field(default=5.0, ge=0)
    # Failed logins, device cookies, password hashing: app.core.login_settings (LOGIN_*, PASSWORD_HASH_*)

    # Request history (seed 003): buffered, written in batches
    history_flush_seconds: float = Field(default=0.5, gt=0)
    history_batch_size: int = Field(default=500, ge=1)
    history_result_max_chars: int = Field(default=4000, ge=0)

    # Worker threads: disk work of uploads and cache reads; analyzers (CPU-bound)
    io_threads: int = Field(default=8, ge=1)
    analysis_threads: int = Field(default=2, ge=1)
    # Analyses of one analyzer waiting for a thread before new ones are refused (503)
    analysis_queue_limit: int = Field(default=64, ge=1)
    # A model-backed analysis expected to wait longer than this for a thread is refused at
    # once (503, before the request body is read), and one still queued after it is dropped
    # unstarted (503); 0 = no time bound
    analysis_max_queue_wait_seconds: float = Field(default=2.0, ge=0)
    # Requests served at once, in all and from one client address, before new ones get 503
    max_concurrent_requests: int = Field(default=1024, ge=1)
    max_concurrent_per_address: int = Field(default=256, ge=1)
    # This fraction of MAX_CONCURRENT_REQUESTS is kept for addresses holding less than an
    # equal share of the rest: a few addresses cannot fill the service (0: no reserve)
    admission_reserve_fraction: float = Field(default=0.25, ge=0, lt=1)

    # Rate limits ("<count>/<second|minute|hour>", moving window) per caller and per client
    # address for each route class; in memory (per worker) unless REDIS_URL is set (shared)
    rate_limits_enabled: bool = True
    redis_url: str | None = None
    rate_limit_upload: str = "600/minute"
    rate_limit_analyze: str = "600/minute"
    rate_limit_auth: str = "120/minute"
    rate_limit_login_username: str = "30/minute"
    rate_limit_default: str = "3000/minute"
    # Redis down, or slower than the timeout: limits are skipped with a warning and a metric
    # (fail-open) or every limited request is 503 rate_limiter_unavailable (fail-closed)
    redis_outage_policy: Literal["fail-open", "fail-closed"] = "fail-open"
    redis_timeout_seconds: float = Field(default=0.5, gt=0)

    # Prometheus metrics at /metrics (multiprocess: right with several workers); a token,
    # when set, is required as `Authorization: Bearer <token>`
    metrics_enabled: bool = True
    metrics_token: SecretStr | None = None
    # ONNX Runtime intra-op threads per session; 0 = cores // ANALYSIS_THREADS (at least 1),
    # so that analysis threads x intra-op threads never exceed the cores.
    onnx_threads: int = Field(default=0, ge=0)

    # Which model-backed analyzers to load (`skin` is always there): each costs memory and
    # start-up time (ONNX Runtime ~60 MiB once; classify ~40 MiB more; face and skin-measure
    # share the mesh, ~5 MiB; FACE_BACKEND=dlib ~50 MiB).
    analyzers: CommaList = ["classify", "face", "skin-measure"]

    # Models: the ONNX classifier exported at set-up (scripts/export_classifier.py); MODEL_PATH,
    # MODELS and the classifier's preprocessing: app.core.model_settings
    model_dir: Path = PROJECT_ROOT / "models"
    # Face landmarks: "68" (regions; iBUG 300-W licence, non-commercial) or "5" (alignment only, free)
    face_landmarks: Literal["68", "5"] = "68"
    # Faces are detected on a copy at most this long: larger finds smaller faces in big photos
    # (smallest face found ~ long side / this x 40 px) but costs latency (~900 ms at 4000 px).
    face_detect_max_side: int = Field(default=800, ge=200, le=10_000)
    # Face backend: "mesh" (MediaPipe BlazeFace + Face Mesh on ONNX Runtime, Apache-2.0; models
    # set up in MODEL_DIR) or "dlib" (HOG + FACE_LANDMARKS predictor above)
    face_backend: Literal["mesh", "dlib"] = "mesh"
    # Measured skin analysis (`skin-measure`): the quality gate, each failure a 422 with its code
    skin_min_face_px: int = Field(default=80, ge=16, le=10_000)  # face_too_small (box, shorter side)
    skin_max_outside_fraction: float = Field(default=0.0, ge=0, le=1)  # face_out_of_frame
    skin_max_yaw_degrees: float = Field(default=25.0, gt=0, le=90)  # head_turned
    skin_max_pitch_degrees: float = Field(default=25.0, gt=0, le=90)  # head_turned
    skin_min_sharpness: float = Field(default=40.0, ge=0)  # image_blurred (Laplacian var., eyes+brows)
    # Exposure is judged from what does not depend on the skin's colour (issue 17, part 3):
    skin_min_highlight_l: float = Field(default=45.0, ge=0, le=100)  # image_too_dark (photo's p99 L*)
    skin_min_eye_white_l: float = Field(default=45.0, ge=0, le=100)  # image_too_dark (eye whites' L*)
    skin_max_eye_white_l: float = Field(default=90.0, ge=0, le=100)  # image_overexposed (eye whites' L*)
    skin_max_clipped_fraction: float = Field(default=0.5, ge=0, le=1)  # image_overexposed (skin px at 255)
    skin_max_faces: int = Field(default=1, ge=1)  # multiple_faces (faces >= skin_min_face_px)
    # multiple_faces counts another face of at least this share of the measured one's size (and
    # skin_min_face_px); 0: every face (the tiles are then scanned in any big photo, ~1.6x the time)
    skin_other_face_ratio: float = Field(default=0.75, ge=0, le=1)
    analysis_memory_cache_entries: int = Field(default=10_000, ge=0)
    # Perceptual reuse (issue 18): a result of a near-duplicate image (PDQ Hamming distance at
    # most this, of 256 bits; 0: off) answers for an analyzer that declares it may; only among
    # the owner's images ("owner") or anyone's ("any"); the hash computed at upload, or at the
    # first analysis that may reuse (false: no decode on the upload path); candidates checked.
    # Up to 15 each band's index is probed for one value; 16-31: 17 values (17x the candidates)
    perceptual_reuse_distance: int = Field(default=15, ge=0, le=31)
    perceptual_reuse_scope: Literal["owner", "any"] = "owner"
    perceptual_hash_at_upload: bool = False
    perceptual_reuse_max_candidates: int = Field(default=8, ge=1)
    # Renditions (issue 17; app.services.images.previews): an image of these formats (no
    # reduced decoding: a 12 MP HEIC decodes in ~1.1 s of CPU) is decoded once into a full-size
    # upright JPEG of this quality beside its results, which model-backed analyses and previews
    # read instead; made in the background right after the upload answers (false: at the first
    # analysis or preview). Empty list: none (every analysis decodes the file itself)
    rendition_formats: CommaList = ["heic", "avif"]
    rendition_jpeg_quality: int = Field(default=90, ge=50, le=100)
    rendition_at_upload: bool = True
    # Catalog entries kept in memory (owner + metadata, ~2.5 KB each) so that a cache hit
    # needs no database round trip; a miss reads one row
    image_cache_entries: int = Field(default=10_000, ge=0)

    # Idempotency-Key records (IETF draft): how long a key replays its first response
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=1)
    # How long a claim outlives a process that stops renewing it (crash): a retry after that
    # uploads afresh; renewed every third of it while its request runs
    idempotency_lease_seconds: float = Field(default=60.0, ge=1)
    # A running analysis's credit hold: a lease renewed every third of it, so the hold of a
    # process that died (any host) stops counting within this
    credit_hold_lease_seconds: float = Field(default=60.0, ge=1)

    # Seed 004 contour jobs: concurrent runs, waiting jobs before 503, finished-job retention
    job_workers: int = Field(default=1, ge=1)
    job_max_pending: int = Field(default=100, ge=0)
    job_retention_seconds: float | None = Field(default=7 * 24 * 3600, gt=0)
    # Scale-out jobs (STORAGE_URL=s3://... with PostgreSQL): procrastinate. A worker runs in the
    # API process unless JOB_WORKER_IN_PROCESS=false (then `python -m app.worker`); a job whose
    # worker's heartbeat is older than JOB_STALLED_AFTER_SECONDS is retried by the stalled sweep
    job_worker_in_process: bool = True
    job_heartbeat_seconds: float = Field(default=2.0, gt=0)
    job_stalled_after_seconds: float = Field(default=10.0, gt=0)
    job_sweep_interval_seconds: float = Field(default=1.0, gt=0)
    job_poll_interval_seconds: float = Field(default=1.0, gt=0)
    job_run_delay_seconds: float = Field(default=0.0, ge=0)  # tests/demos only: slows each job run
    # Scale-out job maintenance, one replica at a time (advisory lock), every this many seconds:
    # JOB_RETENTION_SECONDS, re-deferring records no queued job carries, orphaned `jobs/` objects
    job_maintenance_interval_seconds: float = Field(default=60.0, gt=0)

    # URL fetches (seed 000 /v1/classify {"url": ...}); loopback only ever for tests
    url_fetch_connect_timeout: float = Field(default=5.0, gt=0)
    url_fetch_read_timeout: float = Field(default=10.0, gt=0)
    url_fetch_total_timeout: float = Field(default=30.0, gt=0)
    url_fetch_max_redirects: int = Field(default=3, ge=0, le=10)
    url_fetch_allow_loopback: bool = False

    # Where image bytes and analysis results live: unset, the data dir (the default); or
    # `s3://bucket/prefix` (scale-out: any replica serves any image). Credentials: the standard
    # AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). An S3 store that refuses, times
    # out or rejects the bucket/credentials is 503 storage_unavailable (S3_RETRY_AFTER_SECONDS)
    storage_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_connect_timeout_seconds: float = Field(default=2.0, gt=0)
    s3_read_timeout_seconds: float = Field(default=10.0, gt=0)
    s3_max_attempts: int = Field(default=3, ge=1)
    s3_max_connections: int = Field(default=32, ge=1)
    s3_retry_after_seconds: int = Field(default=5, ge=1)
    # Start-up sweep: bytes (files or objects) no catalog row names are removed once this old
    storage_orphan_grace_seconds: float = Field(default=600.0, ge=0)
    # With STORAGE_URL=s3://... start-up refuses a SQLite DATABASE_URL and an unset REDIS_URL
    # (app.core.scale_out); false: S3 storage on a single host
    scale_out_checks: bool = True

    # Readiness
    min_free_disk_bytes: int = Field(default=100 * MiB, ge=0)

    # Logging
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"

    @field_validator(
        "allowed_formats", "rendition_formats", "api_keys", "cors_origins", "analyzers", mode="before"
    )
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("allowed_formats", "rendition_formats")
    @classmethod
    def _known_formats(cls, value: list[str]) -> list[str]:
        from app.core.formats import FORMATS

        formats = [item.lower() for item in value]
        unknown = sorted(set(formats) - set(FORMATS))
        if unknown:
            raise ValueError(f"unknown formats {unknown}; known: {sorted(FORMATS)}")
        return formats

    @field_validator(
        "rate_limit_upload",
        "rate_limit_analyze",
        "rate_limit_auth",
        "rate_limit_login_username",
        "rate_limit_default",
    )
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse

        parse(value)  # ValueError for anything that is not "<count>/<unit>"
        return value

    @field_validator("storage_url")
    @classmethod
    def _storage_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None  # the data dir
        parsed = urlsplit(value.strip())
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"STORAGE_URL must be empty (the data dir) or s3://bucket/prefix: {value!r}")
        return value.strip()

    @field_validator("secret_key")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # HS256 wants a key at least as long as its 32-byte digest (RFC 7518 3.2)
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("SECRET_KEY must be at least 32 bytes (e.g. `openssl rand -hex 32`)")
        return value

    @field_validator("analyzers")
    @classmethod
    def _known_analyzers(cls, value: list[str]) -> list[str]:
        names = [item.lower() for item in value]
        unknown = sorted(set(names) - {"classify", "face", "skin", "skin-measure"})
        if unknown:
            raise ValueError(
                f"unknown analyzers {unknown}; known: classify, face, skin-measure (skin is always on)"
            )
        return names

    @model_validator(mode="after")
    def _stall_outlasts_heartbeats(self) -> Settings:
        # A live worker must never look stalled: its job would run twice at once.
        if self.job_stalled_after_seconds < 2 * self.job_heartbeat_seconds:
            raise ValueError(
                "JOB_STALLED_AFTER_SECONDS must be at least twice JOB_HEARTBEAT_SECONDS "
                f"({self.job_stalled_after_seconds} < 2 x {self.job_heartbeat_seconds})"
            )
        return self

    @property
    def anonymous_allowed(self) -> bool:
        """Whether calls without credentials are served."""
        return self.anonymous_access if self.anonymous_access is not None else not self.api_keys

    @property
    def admin_bootstrap_enabled(self) -> bool:
        """Whether the first `is_admin: true` registration is honoured while no admin exists."""
        if self.admin_bootstrap is not None:
            return self.admin_bootstrap
        return self.environment != "production"

    @property
    def database(self) -> str:
        """The SQLAlchemy async URL of the database."""
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'service.db'}"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def analysis_dir(self) -> Path:
        return self.data_dir / "analysis"

    @property
    def idempotency_dir(self) -> Path:
        return self.data_dir / "idempotency"

    @property
    def onnx_intra_op_threads(self) -> int:
        """ONNX Runtime threads per inference, so that threads x sessions <= cores."""
        if self.onnx_threads:
            return self.onnx_threads
        return max(1, (os.cpu_count() or 1) // self.analysis_threads)

    @property
    def max_request_body_bytes(self) -> int:
        """The most bytes an upload request body may carry: the file (its declared trailer
        included) plus multipart framing."""
        return self.max_upload_bytes + self.max_declared_trailer_bytes + self.max_multipart_overhead_bytes


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings()
