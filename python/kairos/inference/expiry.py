"""Model expiry (issue #16, ADR 0098): a serving version older than ``--model-max-age-days`` without a
newer version that passed the gate since is flagged; with ``--abstain-expired`` it is demoted to flat.

Age is counted from the newer of (the serving version's creation, the newest newer version registered
after passing the gate): while retraining keeps producing passing challengers the operator has a fresh
candidate and the champion is not stale; when every round fails (the market moved away from what can
be learned) the champion ages out. Creation is the registry's version timestamp (registration), or for
a file the card's ``created_utc`` (else the file's mtime). Unknown creation (0) never expires.

Figures: ``kairos_inference_model_age_seconds{model}``, ``kairos_inference_model_expired{model}``
(alert KairosModelExpired), ``kairos_inference_expired_abstained_total{model}``; ``ModelStatus.expired``
and ``created_time_us``; ``kairos models list`` shows the champion's age and EXPIRED from the registry
with the same rule (``is_expired``).
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import Counter, Gauge

from kairos.inference.logs import get_logger
from kairos.inference.metrics import Metrics
from kairos.inference.model import ModelManager, ServedModel
from kairos.inference.v1 import inference_pb2 as pb

DAY_US = 86_400 * 1_000_000
REFRESH_MAX_S = 60.0


def is_expired(created_us: int, newest_passing_us: int, max_age_days: float, now_us: int) -> bool:
    """The rule: max age set, creation known, and more than max age since the newer of the version's
    creation and the newest passing retrain after it."""
    if max_age_days <= 0 or created_us <= 0:
        return False
    return now_us - max(created_us, newest_passing_us) > max_age_days * DAY_US


class ExpiryWatch:
    def __init__(self, manager: ModelManager, metrics: Metrics, max_age_days: float, abstain: bool) -> None:
        r = metrics.registry
        self.manager = manager
        self.max_age_days = max_age_days
        self.abstain = abstain
        self.log = get_logger()
        self.age = Gauge(
            "kairos_inference_model_age_seconds",
            "Seconds since the serving version was registered (or its file trained).",
            ["model"],
            registry=r,
        )
        self.expired_g = Gauge(
            "kairos_inference_model_expired",
            "1 while the serving version is older than --model-max-age-days without a newer passing "
            "retrain, else 0.",
            ["model"],
            registry=r,
        )
        self.abstained = Counter(
            "kairos_inference_expired_abstained_total",
            "Signals sent flat because the serving version expired (--abstain-expired).",
            ["model"],
            registry=r,
        )
        self._newest: dict[tuple[str, str], int] = {}  # (name, version) -> newest passing retrain (us)
        self._label = ""
        self._was_expired: dict[tuple[str, str], bool] = {}

    def expired(self, model: ServedModel | None, now_us: int | None = None) -> bool:
        if model is None:
            return False
        now = time.time_ns() // 1000 if now_us is None else now_us
        newest = self._newest.get((model.name, model.version), 0)
        return is_expired(model.created_time_us, newest, self.max_age_days, now)

    def abstaining(self, model: ServedModel) -> bool:
        return self.abstain and self.expired(model)

    def fill(self, st: pb.ModelStatus) -> None:
        """``expired`` of the serving model's status entry."""
        st.expired = self.expired(self.manager.current)

    def update(self) -> None:
        """Gauges and a log line when the serving version's state changes (called by ``run``)."""
        m = self.manager.current
        if m is None:
            return
        label = f"{m.name}/{m.version}"
        if self._label and self._label != label:
            self.age.remove(self._label)
            self.expired_g.remove(self._label)
        self._label = label
        now = time.time_ns() // 1000
        if m.created_time_us > 0:
            self.age.labels(label).set((now - m.created_time_us) / 1e6)
        exp = self.expired(m, now)
        self.expired_g.labels(label).set(1.0 if exp else 0.0)
        key = (m.name, m.version)
        if self._was_expired.get(key) != exp:
            self._was_expired[key] = exp
            if exp:
                self.log.warning(
                    "model expired",
                    model=m.name,
                    version=m.version,
                    max_age_days=self.max_age_days,
                    created_time_us=m.created_time_us,
                    abstaining=self.abstain,
                )

    async def refresh(self) -> None:
        m = self.manager.current
        if m is not None and self.max_age_days > 0:
            try:
                newest = await asyncio.to_thread(self.manager.source.newest_passing_after, m.version)
            except Exception as e:  # a registry hiccup keeps the last answer
                self.log.warning("expiry: registry lookup failed", error=str(e))
            else:
                self._newest[(m.name, m.version)] = newest
        self.update()

    async def run(self) -> None:
        interval = min(self.manager.poll_interval_s or REFRESH_MAX_S, REFRESH_MAX_S)
        while True:
            await self.refresh()
            await asyncio.sleep(interval)
