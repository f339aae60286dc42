"""One typed settings object, read once from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_API_URL = "https://api.cekura.ai"
APP_NAME = "cekura-labs-mcp"


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


class Settings(BaseSettings):
    """Every knob of the server. The Cekura names (`CEKURA_API_KEY`, `CEKURA_API_URL`) are the
    official SDK's, so users who already have them set need nothing new."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    api_key: SecretStr | None = Field(default=None, validation_alias="CEKURA_API_KEY")
    api_url: str = Field(default=DEFAULT_API_URL, validation_alias="CEKURA_API_URL")
    project_id: int | None = Field(
        default=None, ge=1, validation_alias="CEKURA_PROJECT_ID",
        description="The project an organisation-level API key works on; sent wherever a request takes "
                    "`project_id` and the tool was given none.",
    )
    data_dir: Path = Field(default_factory=default_data_dir, validation_alias="CEKURA_LABS_DATA_DIR")
    database_url: SecretStr | None = Field(
        default=None, validation_alias="CEKURA_LABS_DATABASE_URL",
        description="A team's shared ledger: postgresql://USER:PASSWORD@HOST:PORT/DATABASE. Unset: one SQLite file "
                    "per backend in the data dir.")
    confirm_threshold: int = Field(
        default=100, ge=1, validation_alias="CEKURA_LABS_CONFIRM_THRESHOLD",
        description="Calls above which an evaluation needs the person's confirmation.",
    )
    guard_window_seconds: int = Field(
        default=3600, ge=60, validation_alias="CEKURA_LABS_GUARD_WINDOW_SECONDS",
        description="Rolling window over which evaluated calls are summed against the threshold.",
    )
    confirmation_ttl_seconds: int = Field(
        default=300, ge=10, validation_alias="CEKURA_LABS_CONFIRMATION_TTL_SECONDS"
    )
    credits_per_judge_evaluation: float = Field(
        default=0.2, ge=0, validation_alias="CEKURA_LABS_CREDITS_PER_EVALUATION"
    )
    http_timeout_seconds: float = Field(default=30.0, gt=0, validation_alias="CEKURA_LABS_HTTP_TIMEOUT")
    max_retries: int = Field(default=3, ge=0, le=10, validation_alias="CEKURA_LABS_MAX_RETRIES")
    max_retry_after_seconds: float = Field(
        default=30.0, ge=0, validation_alias="CEKURA_LABS_MAX_RETRY_AFTER"
    )
    max_concurrency: int = Field(default=8, ge=1, le=64, validation_alias="CEKURA_LABS_MAX_CONCURRENCY")
    poll_timeout_seconds: float = Field(
        default=45.0, gt=0, le=600, validation_alias="CEKURA_LABS_POLL_TIMEOUT",
        description="Longest a tool waits for Cekura (auto-improve, evaluation) before answering 'still running': "
                    "Claude Desktop drops a tool result after about 60 s.")
    evaluation_give_up_seconds: float = Field(
        default=900.0, gt=0, validation_alias="CEKURA_LABS_EVALUATION_GIVE_UP",
        description="After this long, calls whose new results never arrived are reported as not evaluated.")
    fresh_sample_size: int = Field(default=25, ge=20, le=30, validation_alias="CEKURA_LABS_FRESH_SAMPLE",
                                   description="Recent calls outside the Lab that validation re-evaluates.")
    improve_min_disagreements: int = Field(
        default=1, ge=0, validation_alias="CEKURA_LABS_IMPROVE_MIN_DISAGREEMENTS",
        description="Of the feedback_threshold Lab entries, how many must be disagreements (agreements alone "
                    "teach the optimizer nothing).")
    poll_interval_seconds: float = Field(default=1.0, gt=0, le=30, validation_alias="CEKURA_LABS_POLL_INTERVAL")
    feedback_threshold: int = Field(default=6, ge=1, validation_alias="CEKURA_LABS_FEEDBACK_THRESHOLD")
    review_lease_seconds: float = Field(
        default=900.0, gt=0, validation_alias="CEKURA_LABS_REVIEW_LEASE_SECONDS",
        description="How long a call handed to a reviewer stays theirs without a verdict or a skip.")
    log_format: Literal["console", "json"] = Field(default="console", validation_alias="CEKURA_LABS_LOG_FORMAT")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", validation_alias="CEKURA_LABS_LOG_LEVEL"
    )
    read_only: bool = Field(default=False, validation_alias="CEKURA_LABS_READ_ONLY",
                            description="Offer only the tools that change nothing on Cekura.")
    http_bearer_token: SecretStr | None = Field(default=None, validation_alias="CEKURA_LABS_HTTP_TOKEN")
    reviewers_file: Path | None = Field(
        default=None, validation_alias="CEKURA_LABS_REVIEWERS_FILE",
        description="JSON file naming the reviewers (name → SHA-256 of their bearer token) for remote use.")
    sandbox_seed: int = Field(default=7, validation_alias="CEKURA_LABS_SANDBOX_SEED")
    # The embedded sandbox's dialect (`serve --sandbox`, `demo`); None: the sandbox's own default.
    sandbox_dialect: Literal["documented", "spec"] | None = Field(
        default=None, validation_alias="CEKURA_LABS_SANDBOX_DIALECT")

    @field_validator("api_key", mode="before")
    @classmethod
    def _blank_key_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("database_url", mode="before")
    @classmethod
    def _blank_url_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("log_level", "log_format", "sandbox_dialect", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def uses_sandbox(self) -> bool:
        return self.api_key is None

    @property
    def database_url_value(self) -> str | None:
        return self.database_url.get_secret_value() if self.database_url else None

    @property
    def ledger_path(self) -> Path:
        """The ledger of the configured backend (CEKURA_API_URL and CEKURA_API_KEY)."""
        # Imported here: the ledger brings SQLAlchemy, which commands that never open a ledger (`reviewer`, `sandbox`,
        # the parent of `serve --workers`) should not pay for at start-up.
        from cekura_labs_mcp.server.ledger import ledger_file

        return ledger_file(self.data_dir, self.api_url, self.api_key.get_secret_value() if self.api_key else None)

