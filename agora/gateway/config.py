"""The gateway's settings: one dataclass, built by the CLI and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agora.protocol.params import BASE_UNITS_PER_AGR

LEVELS = ("none", "spot", "redundant")


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    node_url: str
    data_dir: Path  # receipts and channels: ``gateway.db``
    host: str = "127.0.0.1"
    port: int = 8080
    deposit: int = BASE_UNITS_PER_AGR  # base units locked per channel open or top-up
    daily_limit: int | None = None  # base units a UTC day; None: no limit
    channel_blocks: int = 7_200  # a channel's lifetime at opening and at each renewal
    verification: str = "none"  # the level when a request names none
    redundancy: int = 3  # miners asked at the "redundant" level
    attempts: int = 3  # miners tried for one answer before giving up
    embedding_timeout_s: float = 30.0
    generation_timeout_base_s: float = 10.0
    generation_timeout_per_token_s: float = 0.5
    catalog_interval_s: float = 5.0  # how often the chain's subnets and miners are re-read
    maintenance_interval_s: float = 2.0  # how often expired channels are closed

    @property
    def database_path(self) -> Path:
        return self.data_dir / "gateway.db"
