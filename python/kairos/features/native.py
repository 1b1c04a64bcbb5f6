"""The feature kernel in C++ for the inference server's stacked bar windows (ADR 0100).

``kairos.features.compute.rows_from_windows`` stays the one definition of the features (training
runs it, and the parity test holds the C++ kernel to it on real bars, float64, 1e-9). Called on a few
windows at a time, numpy's per-operation overhead makes that kernel cost ~130 µs a call whatever the
number of windows; the C++ kernel (``cpp/features/kernel.cpp``, built by ``make cpp-build`` into
``build/cpp-features``, or ``$KAIROS_FEATURES_EXT``) computes the same rows in a few µs.

``load()`` returns the kernel configured with ``kairos.features.schema``'s lookbacks, or None when
the extension is not built (or ``KAIROS_FEATURES_KERNEL=numpy``); callers then use the numpy kernel.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from kairos.features import schema

_LOADED: list[Any] = []  # [kernel or None] once load() ran
_MODULE: list[Any] = []  # [the extension module, or None when not built] once extension() ran


def candidates() -> list[Path]:
    env = os.environ.get("KAIROS_FEATURES_EXT")
    if env:
        return [Path(env)]
    build = Path(__file__).resolve().parents[3] / "build" / "cpp-features"
    return sorted(build.glob("kairos_features_ext*.so"))


def extension() -> Any:
    """The extension module (built by ``make cpp-build``, or ``$KAIROS_FEATURES_EXT``), or None when it
    is not built; cached. ``KAIROS_FEATURES_KERNEL=numpy`` chooses the numpy kernel, not this."""
    if not _MODULE:
        path = next((p for p in candidates() if p.is_file()), None)
        module = None
        if path is not None:
            spec = importlib.util.spec_from_file_location("kairos_features_ext", path)
            if spec is not None and spec.loader is not None:
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
        _MODULE.append(module)
    return _MODULE[0]


def load() -> Any:
    """The C++ kernel (``.rows(windows (m, 6, W)) -> (m, n_features)``), or None; cached."""
    if _LOADED:
        return _LOADED[0]
    kernel = None
    if os.environ.get("KAIROS_FEATURES_KERNEL", "").lower() != "numpy":
        module = extension()
        if module is not None:
            path = module.__file__  # the spec's origin: the .so loaded
            kernel = module.Kernel(
                return_horizons=list(schema.RETURN_HORIZONS),
                vol_windows=list(schema.VOL_WINDOWS),
                long_window=schema.LONG_WINDOW,
                range_window=schema.RANGE_WINDOW,
                channel_windows=list(schema.CHANNEL_WINDOWS),
                momentum_window=schema.MOMENTUM_WINDOW,
                trend_windows=list(schema.TREND_WINDOWS),
                spread_vol_window=schema.SPREAD_VOL_WINDOW,
                activity_window=schema.ACTIVITY_WINDOW,
            )
            if kernel.n_features != schema.SCHEMA.n_features or kernel.window > schema.SCHEMA.window:
                raise RuntimeError(
                    f"{path}: kernel of {kernel.n_features} features over {kernel.window} bars does not "
                    f"match the schema ({schema.SCHEMA.n_features} over {schema.SCHEMA.window}); rebuild "
                    "it with `make cpp-build`"
                )
    _LOADED.append(kernel)
    return kernel


def bar_windows(window: int) -> Any:
    """A C++ ring of one symbol's latest ``window`` bars (``BarWindows``) for ``Kernel.push_rows``.

    Only after ``load()`` returned the kernel.
    """
    return _MODULE[0].BarWindows(window)


def row_ring(capacity: int, n_features: int) -> Any:
    """A C++ ring of one symbol's latest ``capacity`` feature rows (float32, ``RowRing``) for
    ``Kernel.inputs``. Only after ``load()`` returned the kernel."""
    return _MODULE[0].RowRing(capacity, n_features)


def tick_bars(timeframe_s: int, point: float = 1e-5) -> Any:
    """One symbol's bar builder from ticks in C++ (``TickBars``, ADR 0119): ``BarBuilder``'s rule and
    arithmetic, the same bars bit for bit, with its ``add_tick``, ``add_ticks``, ``flush`` and
    ``late_ticks``; the tick intake (``Kernel.intake_ticks``) moves it too. Only after ``load()``
    returned the kernel."""
    from kairos.features.bars import Bar

    return _MODULE[0].TickBars(timeframe_s, point, Bar)


def slot(symbol: str, windows: Any, ring: Any, bars: Any = None) -> Any:
    """One symbol's stream state for the intakes (``Slot``: watermarks, quote, its ``BarWindows``,
    ``RowRing`` and ``TickBars``; ADRs 0110, 0119). Only after ``load()`` returned the kernel."""
    return _MODULE[0].Slot(symbol, windows, ring, bars)


def intake() -> Any:
    """A stream's symbol -> ``Slot`` table for ``Kernel.intake_bars`` and ``Kernel.intake_ticks`` (ADRs
    0110, 0119). Only after ``load()`` returned the kernel."""
    return _MODULE[0].Intake()


def drift_tally(edges: Any, window: int, mean: Any, std: Any, mean_distance: float) -> Any:
    """The drift monitor's per-row work in C++ (``DriftTally``, ADR 0111): each row's DI and the PSI
    window's running bin counts. Only after ``load()`` returned the kernel."""
    return _MODULE[0].DriftTally(edges, window, mean, std, mean_distance)


def idle_spin() -> Any:
    """A thread that keeps this process's CPU from going idle (``IdleSpin``, ADR 0123): ``start()``,
    ``stop()``, ``running``, ``tid``. Raises RuntimeError when the extension is not built."""
    module = extension()
    if module is None:
        raise RuntimeError(
            "the idle spin thread is in the C++ extension kairos_features_ext, which is not built: "
            "run `make cpp-build` (or set KAIROS_FEATURES_EXT)"
        )
    return module.IdleSpin()
