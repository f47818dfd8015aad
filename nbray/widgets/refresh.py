"""A background refresh loop for live widgets.

Runs in the notebook kernel, on one daemon thread per live widget. It calls
the widget's refresh every period until stopped, the widget is closed or
the cluster connection ends (ipywidgets sends trait changes from any
thread through the kernel's IOPub thread).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import nbray

logger = logging.getLogger(__name__)


class Refresher:
    def __init__(self, refresh: Callable[[], None], period_s: float, name: str) -> None:
        self._refresh = refresh
        self.base_period_s = period_s
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def _loop(self) -> None:
        while not self._stop.wait(self._period_s):
            if not nbray.is_initialized():
                return
            start = time.perf_counter()
            try:
                self._refresh()
            except Exception:  # keep the view alive through a transient failure
                logger.debug("widget refresh failed", exc_info=True)
            # a big view refreshes less often: at most ~10% of the kernel's time
            self._period_s = max(self.base_period_s, 10 * (time.perf_counter() - start))
