"""Solar position from latitude, longitude and UTC time (NOAA's low-precision formulas).

Accurate to about 0.5 degree between 1950 and 2050, far finer than a rendered shadow needs.
Azimuth is measured clockwise from north, elevation above the horizon, both in degrees.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime


def solar_position(lat: float, lon: float, when: datetime) -> tuple[float, float]:
    """Return ``(azimuth_deg, elevation_deg)`` of the sun seen from (lat, lon) at ``when``.

    ``when`` is taken as UTC when it carries no timezone.
    """
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    day_of_year = when.timetuple().tm_yday
    hours = when.hour + when.minute / 60 + when.second / 3600
    gamma = 2 * math.pi / 365 * (day_of_year - 1 + (hours - 12) / 24)
    eqtime = 229.18 * (
        0.000075
        + 0.001868 * math.cos(gamma)
        - 0.032077 * math.sin(gamma)
        - 0.014615 * math.cos(2 * gamma)
        - 0.040849 * math.sin(2 * gamma)
    )
    decl = (
        0.006918
        - 0.399912 * math.cos(gamma)
        + 0.070257 * math.sin(gamma)
        - 0.006758 * math.cos(2 * gamma)
        + 0.000907 * math.sin(2 * gamma)
        - 0.002697 * math.cos(3 * gamma)
        + 0.00148 * math.sin(3 * gamma)
    )
    true_solar_min = hours * 60 + eqtime + 4 * lon
    hour_angle = math.radians(true_solar_min / 4 - 180)
    phi = math.radians(lat)
    cos_zen = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(hour_angle)
    zen = math.acos(max(-1.0, min(1.0, cos_zen)))
    elevation = 90 - math.degrees(zen)
    # Azimuth from north, clockwise; atan2 form avoids the quadrant bookkeeping of acos.
    az = math.degrees(
        math.atan2(
            math.sin(hour_angle),
            math.cos(hour_angle) * math.sin(phi) - math.tan(decl) * math.cos(phi),
        )
    )
    azimuth = (az + 180.0) % 360.0
    return azimuth, elevation


def local_solar_noon_utc_hour(lon: float) -> float:
    """UTC hour at which the sun is roughly highest at longitude ``lon``."""
    return (12.0 - lon / 15.0) % 24.0
