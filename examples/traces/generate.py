#!/usr/bin/env python3
"""Writes the request-rate traces for `autoscaler simulate` (CSV `second,rps`).

Deterministic (no randomness): rerun to regenerate identical files.
"""
import math
from pathlib import Path

HERE = Path(__file__).parent


def write(name, rates):
    with open(HERE / name, "w") as f:
        f.write("second,rps\n")
        for s, r in enumerate(rates):
            f.write(f"{s},{max(0.0, r):.1f}\n")


# 5 → 90 → 5 req/s: the design's reaction yardstick, then the scale-down window.
write("step.csv", [90.0 if 30 <= s < 180 else 5.0 for s in range(600)])

# Linear 5 → 100 over 300 s, hold 60 s, back to 5 over 240 s.
def ramp(s):
    if s < 300:
        return 5 + 95 * s / 300
    if s < 360:
        return 100
    return 100 - 95 * (s - 360) / 240
write("ramp.csv", [ramp(s) for s in range(600)])

# Sawtooth: 5 → 80 over 60 s, then a sudden drop; ten periods (tests flapping).
write("sawtooth.csv", [5 + 75 * (s % 60) / 60 for s in range(600)])

# A day compressed to 1440 s (one second per minute): trough at 04:00, peak at 14:00,
# a lunchtime bump and a small deterministic ripple.
def diurnal(s):
    hours = s / 60
    base = 45 - 38 * math.cos(2 * math.pi * (hours - 4) / 24) / 1.0
    lunch = 12 * math.exp(-((hours - 12.5) ** 2) / 0.5)
    ripple = 2 * math.sin(s / 7) + 1.5 * math.sin(s / 3.1)
    return base + lunch + ripple
write("diurnal.csv", [diurnal(s) for s in range(1440)])

# Flash crowd: 10 req/s, then 150 within 5 s at 120 s, decaying with a 60 s time constant.
def flash(s):
    if s < 120:
        return 10
    if s < 125:
        return 10 + 140 * (s - 119) / 6
    return 10 + 140 * math.exp(-(s - 125) / 60)
write("flash-crowd.csv", [flash(s) for s in range(600)])
